"""Benchmark section ``onnx``: the ONNX Runtime backend side by side with the torch backend, in one run.

    .venv/bin/python benchmarks/bench.py --only onnx        # into bench-out/bench.json, with the table

The full-size random model is exported (``sound-monitor export --int8``) into ``DIR/clap-full-onnx`` once. Every
ONNX timing runs in a subprocess that never imports torch (``worker`` mode below), as the lean install would;
the torch baseline is measured in the same run, at the same thread count. Measured:

- per-window cost, batch 1 and batch 4 (median), torch fp32 / onnx fp32 / onnx int8, and onnx fp32 with the
  CPU memory arena on and off (with the RSS each leaves after batch-1 and batch-4 runs);
- agreement on 16 windows: onnx fp32 vs torch fp32 (embedding cosine, largest score change), onnx int8 vs
  onnx fp32, torch bf16 (``precision: auto`` on a CPU with native bf16) vs torch fp32;
- ``replay --realtime`` of 30 s: steady and peak RSS; the onnx backend from an empty label cache (the text model
  runs) and from a warm one; time from start to READY=1;
- replay's marginal cost per window (a 90 s minus a 30 s file, as fast as possible) per backend;
- RSS of a bare ``import onnxruntime`` and ``import torch, transformers``.

The per-process measurements run in ``benchmarks/onnx_workers.py``.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from onnx_workers import variant_tag

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).with_name("onnx_workers.py")
WINDOWS = 16


def _run_worker(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, str(WORKERS), *args], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def _replay(cfg: Path, wav: Path, *extra: str) -> tuple[float, float, list[dict[str, Any]], dict[str, float]]:
    """``sound-monitor replay`` in a subprocess: (wall s, CPU s, JSON lines, steady and peak RSS in MB).

    RSS is sampled every 0.1 s; the peak is the child's own high-water mark (VmHWM) at the last sample, so a
    spike between samples is not missed (bench.py's ``maxrss`` of children would report this process's peak:
    ``ru_maxrss`` survives the fork and exec)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "replay", str(wav), "--config", str(cfg), *extra],
                                stdout=out, stderr=err, text=True)
        rss, hwm = [], 0.0
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                break
            fields = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in status.splitlines()
                      if ln.startswith(("VmRSS", "VmHWM"))}
            if fields:
                rss.append(fields.get("VmRSS", 0.0))
                hwm = max(hwm, fields.get("VmHWM", 0.0))
            time.sleep(0.1)  # sampling period of the probe, not synchronisation
        proc.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"replay failed: {stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    steady = statistics.median(rss[len(rss) // 2 :]) if rss else 0.0
    lines = [json.loads(ln) for ln in stdout.splitlines() if ln.strip()]
    return wall, cpu, lines, {"steady_mb": steady, "peak_mb": max(hwm, max(rss, default=0.0))}


def _import_rss(code: str) -> float:
    probe = "\nfrom pathlib import Path\nprint([ln for ln in Path('/proc/self/status').read_text().splitlines()" \
            " if ln.startswith('VmHWM')][0].split()[1])"
    proc = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, timeout=300)
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def _ready_seconds(cfg: Path, wav: Path, tmp: Path) -> float:
    """Seconds from spawning ``replay --realtime`` to its READY=1 (a stand-in NOTIFY_SOCKET), then stop it."""
    path = tmp / f"notify-{time.monotonic_ns()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(600)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "replay", str(wav), "--config", str(cfg), "--realtime"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "NOTIFY_SOCKET": str(path)}, cwd=ROOT)
    try:
        while sock.recv(4096).decode() != "READY=1":
            pass
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
        sock.close()


def _agreement(a_emb: np.ndarray, a_scores: np.ndarray, b_emb: np.ndarray, b_scores: np.ndarray) -> dict[str, float]:
    cos = (a_emb * b_emb).sum(-1)
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
            "max_score_change": float(np.abs(a_scores - b_scores).max()),
            "top1_changed": float((a_scores.argmax(1) != b_scores.argmax(1)).mean())}


def measure_onnx(model: str, out: Path, tmp: Path, threads: int, repeat: int) -> dict[str, Any]:
    """The ``onnx`` section (see the module docstring); ``model`` is the torch checkpoint, exported here once."""
    from bench import LABELS_10, labelled, test_audio, write_config, write_wav

    from monitor.inference.export import export_model

    folder = out / "clap-full-onnx"
    if not (folder / "onnx" / "audio_model_quantized.onnx").is_file():
        print(f"exporting {model} to {folder} ...", file=sys.stderr)
        export_model(model, folder, int8=True)
    res: dict[str, Any] = {"folder": str(folder), "files_mb": {
        p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(folder.glob("onnx/*.onnx"))}}
    res["import_rss_mb"] = {"onnxruntime": _import_rss("import onnxruntime"),
                            "torch+transformers": _import_rss("import torch, transformers")}

    # Per-window cost: each backend in its own process on the same windows and labels, in two rounds (this box is
    # shared: the lower of the two medians is kept), then the settings compared once each.
    x = test_audio(WINDOWS)
    work = tmp / "onnx-work"
    work.mkdir(exist_ok=True)
    np.save(work / "windows.npy", x)
    (work / "labels.json").write_text(json.dumps([[lbl.name, lbl.prompts[0]] for lbl in labelled(LABELS_10)]))
    cache = tmp / "onnx-cache"

    def onnx(variant: dict[str, Any]) -> dict:
        return _run_worker(["worker", str(folder), str(threads), json.dumps(variant), str(cache), str(work),
                            str(repeat)])

    rounds: list[dict[str, dict]] = []
    for i in range(2):  # the first onnx run fills the label cache: the text model runs there
        rounds.append({"torch": _run_worker(["torch-worker", model, str(threads), str(work), str(repeat)]),
                       "fp32-cold" if i == 0 else "fp32": onnx({"precision": "fp32"}),
                       "int8": onnx({"precision": "int8"})})
    runs = {**rounds[0], **rounds[1]}
    for key in ("torch", "int8"):
        runs[key] = min((r[key] for r in rounds), key=lambda v: v["ms_batch1"])
    if rounds[0]["fp32-cold"]["ms_batch1"] < runs["fp32"]["ms_batch1"]:
        runs["fp32"] = {**runs["fp32"], **{k: rounds[0]["fp32-cold"][k] for k in ("ms_batch1", "ms_batch1_min",
                                                                                  "cpu_ms_batch1")}}
    for variant in ({"precision": "fp32", "arena": True}, {"precision": "fp32", "spin": True},
                    {"precision": "fp32", "trim": True}, {"precision": "int8", "trim": True}):
        runs[variant_tag(variant)] = onnx(variant)
    res["onnx_runs"] = runs
    res["rounds"] = {k: [r[k if k in r else f"{k}-cold"]["ms_batch1"] for r in rounds]
                     for k in ("torch", "fp32", "int8")}

    def load(tag: str) -> tuple[np.ndarray, np.ndarray]:
        return np.load(work / f"emb-{tag}.npy"), np.load(work / f"scores-{tag}.npy")

    res["onnx_fp32_vs_torch"] = _agreement(*load("fp32"), *load("torch"))
    res["onnx_int8_vs_fp32"] = _agreement(*load("int8"), *load("fp32"))
    if (work / "emb-bf16.npy").is_file():
        res["auto_bf16_vs_fp32"] = _agreement(*load("bf16"), *load("torch"))

    # replay in subprocesses: memory (real time), READY, marginal cost per window (as fast as possible)
    rng = np.random.default_rng(1)
    wavs = {}
    for seconds in (30, 90):
        audio = np.concatenate([test_audio(1, seed=s)[0] for s in range(seconds // 5)])
        wavs[seconds] = write_wav(tmp / f"onnx-{seconds}s.wav", audio + 0.01 * rng.standard_normal(len(audio)).astype(
            np.float32))
    onnx_inf = {"threads": threads, "backend": "onnx"}
    replay_cache = str(tmp / "replay-cache")  # empty for the first ("cold") run, which fills it for the others
    cfgs = {
        "torch": write_config(tmp / "t.yaml", model),
        "onnx-cold": write_config(tmp / "o.yaml", str(folder), inference={**onnx_inf, "cache_dir": replay_cache}),
        "onnx-int8": write_config(tmp / "o8.yaml", str(folder), inference={**onnx_inf, "precision": "int8",
                                                                          "cache_dir": replay_cache}),
    }
    cfgs["onnx"] = cfgs["onnx-cold"]
    replay: dict[str, Any] = {}
    for name in ("torch", "onnx-cold", "onnx", "onnx-int8"):
        wall, cpu, _, mem = _replay(cfgs[name], wavs[30], "--realtime")
        replay[f"{name} realtime 30s"] = {"wall_s": wall, "cpu_s": cpu, **mem}
    for name in ("torch", "onnx", "onnx-int8"):
        fast = {s: _replay(cfgs[name], wavs[s], "--scores") for s in (30, 90)}
        n = {s: sum(ln["kind"] == "scores" for ln in fast[s][2]) for s in fast}
        replay[f"{name} marginal"] = {"ms_wall": (fast[90][0] - fast[30][0]) / (n[90] - n[30]) * 1000,
                                      "ms_cpu": (fast[90][1] - fast[30][1]) / (n[90] - n[30]) * 1000}
    res["onnx_replay"] = replay
    res["ready_s"] = {
        "torch": _ready_seconds(cfgs["torch"], wavs[30], tmp),
        "onnx (empty cache)": _ready_seconds(write_config(tmp / "r.yaml", str(folder), inference={
            **onnx_inf, "cache_dir": str(tmp / "c-ready")}), wavs[30], tmp),
        "onnx (cached labels)": _ready_seconds(cfgs["onnx"], wavs[30], tmp),
    }
    return {"onnx": res}


def report_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the onnx section for bench.py's table."""
    o = r["onnx"]
    runs, rep = o["onnx_runs"], o["onnx_replay"]

    def run(k: str) -> str:
        v = runs[k]
        return (f"{v['ms_batch1']:.0f} ms (min {v['ms_batch1_min']:.0f}, CPU {v['cpu_ms_batch1']:.0f}); RSS "
                f"{v['rss_after_batch1_mb']:.0f} / {v['rss_after_batch4_mb']:.0f} / "
                f"{v['rss_after_batch4_then_batch1_mb']:.0f} MB")

    rows = [
        ("onnx: files (MB)", ", ".join(f"{k} {v}" for k, v in o["files_mb"].items())),
        ("onnx: RSS of a bare import: onnxruntime / torch+transformers",
         f"{o['import_rss_mb']['onnxruntime']:.0f} / {o['import_rss_mb']['torch+transformers']:.0f} MB"),
        ("onnx: per window, batch 1, median (min; CPU): torch fp32 / onnx fp32 / onnx int8",
         " / ".join(f"{runs[k]['ms_batch1']:.0f} ms ({runs[k]['ms_batch1_min']:.0f}; {runs[k]['cpu_ms_batch1']:.0f})"
                    for k in ("torch", "fp32", "int8"))),
        ("onnx: per window, batch 4: torch fp32 / onnx fp32 / onnx int8",
         " / ".join(f"{runs[k]['ms_batch4_per_window']:.0f}" for k in ("torch", "fp32", "int8")) + " ms"),
        ("onnx: batch-1 medians of the two rounds: torch / onnx fp32 / onnx int8",
         " / ".join(", ".join(f"{v:.0f}" for v in o["rounds"][k]) for k in ("torch", "fp32", "int8")) + " ms"),
        ("onnx: numpy features per window", f"{runs['fp32']['features_ms']:.1f} ms"),
        ("onnx: load, empty label cache / cached: seconds, peak RSS",
         f"{runs['fp32-cold']['load_s']:.1f} s, {runs['fp32-cold']['peak_at_load_mb']:.0f} MB / "
         f"{runs['fp32']['load_s']:.1f} s, {runs['fp32']['peak_at_load_mb']:.0f} MB"),
    ]
    for k in ("fp32", "fp32-arena", "fp32-spin", "fp32-trim", "int8", "int8-trim"):
        rows.append((f"onnx: {k}: batch 1 per window; RSS after batch 1 / batch 4 / batch 4 then 1", run(k)))
    for key, label in (("onnx_fp32_vs_torch", "onnx fp32 vs torch fp32"), ("onnx_int8_vs_fp32", "onnx int8 vs fp32"),
                       ("auto_bf16_vs_fp32", "torch bf16 (auto here) vs fp32")):
        if key in o:
            a = o[key]
            rows.append((f"onnx: agreement, {label} ({WINDOWS} windows)",
                         f"embedding cosine min {a['cos_min']:.6f}, largest score change {a['max_score_change']:.2g}, "
                         f"top label changed on {a['top1_changed']:.0%}"))
    if "bf16_ms_batch1" in runs["torch"]:
        t = runs["torch"]
        rows.append(("onnx: torch bf16 / fp32 per window, batch 1, median (min)",
                     f"{t['bf16_ms_batch1']:.0f} ({t['bf16_ms_batch1_min']:.0f}) / {t['ms_batch1']:.0f} "
                     f"({t['ms_batch1_min']:.0f}) ms"))
    for name, v in rep.items():
        if "realtime" in name:
            rows.append((f"onnx: replay {name}: steady / peak RSS",
                         f"{v['steady_mb']:.0f} / {v['peak_mb']:.0f} MB (CPU {v['cpu_s']:.1f} s)"))
        else:
            rows.append((f"onnx: replay {name} cost per window (90 s - 30 s)",
                         f"{v['ms_wall']:.0f} ms wall, {v['ms_cpu']:.0f} ms CPU"))
    rows.append(("onnx: start to READY=1", ", ".join(f"{k} {v:.1f} s" for k, v in o["ready_s"].items())))
    return rows


def table(r: dict[str, Any]) -> str:
    """The onnx rows alone, as a markdown table (when the other sections have not run)."""
    rows = report_rows(r)
    width = max(len(a) for a, _ in rows)
    lines = [f"| {'measurement'.ljust(width)} | result |", f"| {'-' * width} | --- |"]
    return f"Machine: {r['machine']}\n\n" + "\n".join([*lines, *(f"| {a.ljust(width)} | {b} |" for a, b in rows)])
