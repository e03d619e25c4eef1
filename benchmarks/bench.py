"""Benchmark: what one window costs, against baselines measured in the same run on the same machine.

    .venv/bin/python benchmarks/bench.py [--model M] [--out DIR] [--quick]

Without ``--model`` it builds the full-size CLAP architecture with random weights (``ClapConfig()``;
same compute as ``laion/clap-htsat-unfused``) into ``DIR/clap-full`` once. It measures:

  a  the bare audio-tower forward per window (the floor)
  b  the project's whole per-window path (samples in, scores out: features, forward, scoring)
  c  the walkthrough's per-window ``pipeline()`` call with 10 labels
  d  the project's per-window cost with 1, 10 and 50 labels; batching; fp32 vs int8 (vs bf16 where native)
  e  steady and peak resident memory of ``sound-monitor replay``
  f  latency from the end of a window to its event at a subscriber on a loopback mosquitto (p50, p95)
  g  CPU-seconds per second of audio at the default hop, and replay's marginal cost per window (90 s - 30 s)
  h  the adaptive hop: CPU saved on a mostly quiet recording, detection delay on one with events
  i  several sources, one model (benchmarks/bench_sources.py): cost per source-window batched vs one at a time,
     how many sources stay real time at hop 1 s, CPU of the ffmpeg readers (``--only sources``)

and prints a table with the ratios b/a, c/b and 50-label/1-label. Results also go to DIR/bench.json.
Timings are medians of repeated runs; compare numbers only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the service runs (see monitor/cli.py)

import numpy as np
import soundfile as sf
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the test harness's mosquitto and subscriber (real ones)

from monitor.inference.scorer import ClapScorer, LabelPrompts, bf16_supported
from monitor.testing.randommodel import build_random_clap

RATE = 48_000
WINDOW = 240_000
LABELS_10 = [
    "glass breaking", "dog barking", "a smoke alarm beeping", "a baby crying", "someone knocking on the door",
    "a doorbell ringing", "water running from a tap", "a car horn honking", "footsteps on a wooden floor",
    "a person coughing",
]
EXTRA = ["rain on a window", "thunder", "a vacuum cleaner", "a microwave beeping", "a cat meowing", "birds singing",
         "a kettle whistling", "a phone ringing", "keys jingling", "a door slamming"]
LABELS_50 = LABELS_10 + EXTRA + [f"{a} {b}" for a in ("loud", "distant") for b in EXTRA]
TEMPLATE = "This is a sound of {}."


def median_ms(fn: Any, repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def test_audio(n: int, seed: int = 0) -> np.ndarray:
    """A mix of noise, tones and chirps, like a room: (n, 240000) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW) / RATE
    out = []
    for i in range(n):
        f = 200 + 300 * (i % 7)
        x = 0.05 * rng.standard_normal(WINDOW) + 0.2 * np.sin(2 * np.pi * f * t) * (i % 3 != 0)
        x += 0.2 * np.sin(2 * np.pi * (100 + 400 * t) * t) * (i % 2)
        out.append(x.astype(np.float32))
    return np.stack(out)


def labelled(names: list[str]) -> list[LabelPrompts]:
    return [LabelPrompts(n, (TEMPLATE.format(n),)) for n in names]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_config(path: Path, model: str, **over: Any) -> Path:
    cfg: dict[str, Any] = {"model": model, "labels": [{"name": n} for n in LABELS_10], "inference": {"threads": 2}}
    for key, value in over.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_replay(cfg: Path, wav: Path, *extra: str) -> tuple[float, float, list[dict[str, Any]], dict[str, float]]:
    """Run ``sound-monitor replay`` in a subprocess; (wall s, cpu s, JSON lines, memory stats MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Output goes to files: a pipe nobody reads while the run lasts would fill up and stall the child.
    out_f = tempfile.TemporaryFile("w+")
    err_f = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "replay", str(wav), "--config", str(cfg), *extra],
                            stdout=out_f, stderr=err_f, text=True)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter() - t0, rss_mb(proc.pid)))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.1)  # sampling period of the memory probe, not synchronisation
    proc.wait()
    wall = time.perf_counter() - t0
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"replay failed: {err[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    rss = [r for _, r in samples if r > 0]
    # steady: the median over the second half of the run (model loaded, windows flowing)
    steady = statistics.median(rss[len(rss) // 2 :]) if rss else 0.0
    mem = {"peak_mb": max(rss, default=0.0), "steady_mb": steady, "maxrss_mb": after.ru_maxrss / 1024}
    return wall, cpu, lines, mem


def only(label: str, threshold: float) -> list[dict[str, Any]]:
    """The 10 labels, all scored (same softmax as in calibration), only ``label`` able to fire."""
    return [{"name": n, "threshold": threshold, "enabled": n == label} for n in LABELS_10]


def write_wav(path: Path, x: np.ndarray) -> Path:
    sf.write(str(path), x, RATE, subtype="FLOAT")
    return path


def quiet_then_event(seconds: int, event_at: int, event_len: int, seed: int = 0) -> np.ndarray:
    """Low room noise with one tonal event (a beeping alarm)."""
    rng = np.random.default_rng(seed)
    x = (0.01 * rng.standard_normal(seconds * RATE)).astype(np.float32)
    t = np.arange(event_len * RATE) / RATE
    beep = (0.4 * np.sin(2 * np.pi * 2800 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    x[event_at * RATE : (event_at + event_len) * RATE] += beep
    return x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id or folder (default: a random full-size model built in --out)")
    parser.add_argument("--out", default=str(ROOT / "bench-out"), help="working folder (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip latency and adaptive hop")
    parser.add_argument("--report", action="store_true", help="only print the table of the last run's bench.json")
    parser.add_argument("--only", help="comma-separated sections to rerun (inprocess,replay,latency,adaptive,onnx,"
                        "sources), merged into the last bench.json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report:
        print(report(json.loads((out / "bench.json").read_text())))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    repeat = 5 if args.quick else 15
    model = args.model
    if model is None:
        folder = out / "clap-full"
        if not (folder / "model.safetensors").exists():
            print("building the full-size random CLAP model ...", file=sys.stderr)
            build_random_clap(folder, size="full")
        model = str(folder)
    only = set(args.only.split(",")) if args.only else {"inprocess", "replay", "latency", "adaptive", "onnx",
                                                          "sources"}
    if args.quick:
        only -= {"latency", "adaptive", "sources"}
    previous = json.loads((out / "bench.json").read_text()) if args.only and (out / "bench.json").exists() else {}
    res: dict[str, Any] = {
        **previous,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, bf16 native: {bf16_supported()}",
        "model": model, "threads": args.threads,
    }
    cpu_name = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), platform.machine())
    res["machine"] = f"{cpu_name}; " + res["machine"]
    print(f"# machine: {res['machine']}\n# model: {model}", file=sys.stderr)

    if "inprocess" in only:
        res.update(measure_in_process(model, args.threads, repeat))

    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    if "replay" in only:
        res.update(measure_replay(model, tmp))
    if "latency" in only:
        res.update(measure_latency(model, tmp))
    if "adaptive" in only:
        res.update(measure_adaptive(model, tmp))
    if "onnx" in only:  # the ONNX Runtime backend beside the torch one (benchmarks/bench_onnx.py)
        from bench_onnx import measure_onnx

        res.update(measure_onnx(model, out, tmp, args.threads, repeat))
    if "sources" in only:  # several sources, one model (benchmarks/bench_sources.py)
        from bench_sources import measure_sources

        res.update(measure_sources(model, args.threads, repeat))
    (out / "bench.json").write_text(json.dumps(res, indent=2))
    print(report(res))
    return 0


def measure_replay(model: str, tmp: Path) -> dict[str, Any]:
    """e and g: memory of replay runs, and replay's marginal cost per window (90 s minus 30 s)."""
    res: dict[str, Any] = {}
    cfg = write_config(tmp / "c.yaml", model)
    # e + g: replay of 30 s and 90 s files: memory, and marginal cost per window
    rng = np.random.default_rng(1)
    runs = {}
    for seconds in (30, 90):
        audio = np.concatenate([test_audio(1, seed=s)[0] for s in range(seconds // 5)])
        audio += (0.01 * rng.standard_normal(len(audio))).astype(np.float32)
        wav = write_wav(tmp / f"{seconds}s.wav", audio)
        wall, cpu, lines, mem = run_replay(cfg, wav, "--scores")
        runs[seconds] = {"wall_s": wall, "cpu_s": cpu, "windows": sum(ln["kind"] == "scores" for ln in lines), **mem}
    # as the live monitor runs: one window per hop, so batches of one; and the same with int8
    wall, cpu, lines, mem = run_replay(cfg, tmp / "30s.wav", "--realtime")
    runs["30_realtime"] = {"wall_s": wall, "cpu_s": cpu, "windows": 26, **mem}
    cfg8 = write_config(tmp / "c8.yaml", model, inference={"threads": 2, "precision": "int8"})
    wall, cpu, lines, mem = run_replay(cfg8, tmp / "30s.wav", "--realtime")
    runs["30_realtime-int8"] = {"wall_s": wall, "cpu_s": cpu, "windows": 26, **mem}
    d_win = runs[90]["windows"] - runs[30]["windows"]
    res["replay"] = runs
    res["replay_marginal_ms_per_window"] = (runs[90]["wall_s"] - runs[30]["wall_s"]) / d_win * 1000
    res["replay_marginal_cpu_ms_per_window"] = (runs[90]["cpu_s"] - runs[30]["cpu_s"]) / d_win * 1000
    return res


def measure_in_process(model: str, threads: int, repeat: int) -> dict[str, Any]:
    """a, b, c, d and precision: timings of the scoring path in this process."""
    res: dict[str, Any] = {}
    x = test_audio(16)
    one = x[:1]
    scorer = ClapScorer(model, threads=threads)

    # d: label count (text tower still loaded for encoding)
    per_labels = {}
    for n, names in ((1, LABELS_10[:1]), (50, LABELS_50), (10, LABELS_10)):
        scorer.set_labels(labelled(names))
        per_labels[n] = median_ms(lambda: scorer.score(one), repeat)
    res["labels_ms"] = per_labels
    scorer.free_text_tower()

    feats = scorer.features(one)
    with torch.inference_mode():
        res["a_forward_ms"] = median_ms(lambda: scorer.model.get_audio_features(**feats), repeat)
    res["b_path_ms"] = median_ms(lambda: scorer.score(one), repeat)
    res["features_torch_ms"] = median_ms(lambda: scorer.features(one), repeat)
    res["features_numpy_ms"] = median_ms(
        lambda: scorer.feature_extractor(list(one), sampling_rate=RATE, return_tensors="pt"), repeat
    )
    res["batch4_per_window_ms"] = median_ms(lambda: scorer.score(x[:4]), max(3, repeat // 3)) / 4

    # precision agreement and speed
    fp32_emb = scorer.audio_embeddings(x)
    fp32_scores = scorer.score(x)
    fp32_top = fp32_scores.argmax(1)
    precisions = {"fp32": {"ms": res["b_path_ms"], "cos_min": 1.0, "top1_changed": 0.0}}
    for prec in ["int8"] + (["bf16"] if bf16_supported() else []):
        other = ClapScorer(model, threads=threads, precision=prec)
        other._text, other.labels = scorer._text, list(scorer.labels)  # the same text side, not re-encoded
        emb = other.audio_embeddings(x)
        cos = (fp32_emb * emb).sum(-1)
        precisions[prec] = {
            "ms": median_ms(lambda o=other: o.score(one), repeat),
            "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
            "top1_changed": float((other.score(x).argmax(1) != fp32_top).mean()),
            # with random weights the 10 scores are close together, so the top label flips on tiny changes:
            # the score change itself is the better measure of agreement
            "max_score_change": float(np.abs(other.score(x) - fp32_scores).max()),
            "fp32_score_spread": float(np.mean(fp32_scores.max(1) - fp32_scores.min(1))),
        }
    res["precision"] = precisions

    # c: the walkthrough's pipeline() per window, 10 labels
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    pipe = pipeline("zero-shot-audio-classification", model=model)
    res["c_pipeline_ms"] = median_ms(lambda: pipe(one[0], candidate_labels=LABELS_10), max(3, repeat // 2))
    return res



def measure_latency(model: str, tmp: Path) -> dict[str, Any]:
    """f and g: a live-paced run through a real mosquitto; event latency and CPU per audio second."""
    from helpers import Broker, MqttCollector

    from monitor.config import load_config
    from monitor.records import ScoredWindow
    from monitor.sinks import Sink
    from monitor.sources.audiofile import FileSource
    from monitor.wiring import build_monitor

    seconds = 60
    # 4 s of beeping every 8 s, so that events start and end again and again
    x = np.concatenate([quiet_then_event(8, 2, 4, seed=i) for i in range(seconds // 8)])
    wav = write_wav(tmp / "latency.wav", x)
    # Calibrate a threshold on this audio with a fast run: random weights mean nothing, so take the label whose
    # score separates beeping windows from quiet ones best, and put its threshold between them.
    cfg_path = write_config(tmp / "cal.yaml", model)
    _, _, lines, _ = run_replay(cfg_path, wav, "--scores")
    scores = [ln for ln in lines if ln["kind"] == "scores"]
    median_level = np.median([s["level_dbfs"] for s in scores])
    loud = [i for i, s in enumerate(scores) if s["level_dbfs"] > median_level]
    quiet = [i for i, s in enumerate(scores) if s["level_dbfs"] <= median_level]
    best = max(LABELS_10, key=lambda lbl: np.median([scores[i]["scores"][lbl] for i in loud])
               - np.median([scores[i]["scores"][lbl] for i in quiet]))
    threshold = float(np.percentile([s["scores"][best] for s in scores], 60))

    broker = Broker().start()
    try:
        cfg_path = write_config(
            tmp / "lat.yaml", model,
            labels=only(best, threshold),
            detection={"min_hits": 1, "end_after_seconds": 0.5, "cooldown_seconds": 0.0},
            mqtt={"host": broker.host, "port": broker.port, "topic_prefix": "bench"},
        )
        cfg = load_config(cfg_path)
        cut_at: dict[float, float] = {}
        arrivals: list[tuple[float, float]] = []
        sub = MqttCollector(broker.host, broker.port, ["bench/events"])
        sub.wait_connected()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            body = json.loads(msg.payload)
            if body["type"] == "start":
                arrivals.append((time.monotonic(), float(body["window_end"])))

        sub.client.on_message = on_message
        inference: list[float] = []

        class Timing(Sink):
            def on_window(self, sw: ScoredWindow) -> None:
                cut_at[round(sw.end, 3)] = sw.mono_end
                if not sw.skipped:
                    inference.append(sw.inference_seconds)

        mon = build_monitor(cfg, lambda: FileSource(wav, realtime=True), live=True, extra_sinks=[Timing()],
                            stdout=False)
        stop = threading.Event()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        mon.run(stop)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - t0
        sub.close()
    finally:
        broker.close()
    lat = sorted((arr - cut_at[round(end, 3)]) * 1000 for arr, end in arrivals if round(end, 3) in cut_at)
    return {
        "f_latency_ms": {
            "events": len(lat),
            "p50": float(np.percentile(lat, 50)) if lat else None,
            "p95": float(np.percentile(lat, 95)) if lat else None,
            "inference_median_ms": statistics.median(inference) * 1000 if inference else None,
        },
        "g_cpu_s_per_audio_s": cpu / seconds,
        "g_wall_s": wall,
    }


def measure_adaptive(model: str, tmp: Path) -> dict[str, Any]:
    """h: CPU on a mostly quiet recording and detection delay, fixed hop vs adaptive hop."""
    x = quiet_then_event(120, 90, 10)
    wav = write_wav(tmp / "quiet.wav", x)
    cal = write_config(tmp / "aq.yaml", model)
    _, _, lines, _ = run_replay(cal, wav, "--scores")
    scores = [ln for ln in lines if ln["kind"] == "scores"]
    quiet = [s for s in scores if s["window_end"] <= 90]
    loud = [s for s in scores if s["window_start"] >= 90 and s["window_end"] <= 100]
    best = max(LABELS_10, key=lambda lbl: min(s["scores"][lbl] for s in loud) - max(s["scores"][lbl] for s in quiet))
    q_max = max(s["scores"][best] for s in quiet)
    l_min = min(s["scores"][best] for s in loud)
    threshold = (q_max + l_min) / 2 if l_min > q_max else l_min
    base = {"labels": only(best, threshold), "detection": {"min_hits": 1}}
    out: dict[str, Any] = {"h_label": best, "h_threshold": threshold, "h_separable": bool(l_min > q_max)}
    for name, audio in (("fixed", {}), ("adaptive", {"idle_hop_seconds": 5.0, "adaptive_margin": 0.5 * abs(
            threshold - q_max) if l_min > q_max else 0.05})):
        cfg = write_config(tmp / f"{name}.yaml", model, audio=audio, **base)
        wall, cpu, lines, _ = run_replay(cfg, wav, "--scores")
        starts = [ln for ln in lines if ln["kind"] == "event" and ln["type"] == "start"]
        scored = sum(1 for ln in lines if ln["kind"] == "scores" and not ln["skipped"])
        out[f"h_{name}"] = {"cpu_s": cpu, "wall_s": wall, "windows_scored": scored,
                            "first_start_window_end": starts[0]["window_end"] if starts else None}
    return out


def report(r: dict[str, Any]) -> str:
    """The table for docs/BENCHMARKS.md (the sections present in ``r``)."""
    from bench_sources import report_rows as sources_rows

    if "labels_ms" not in r and "onnx" in r:  # only the onnx section has run (--only onnx on a fresh folder)
        from bench_onnx import table

        return table(r)
    rows = report_core(r) if "labels_ms" in r else []
    if "onnx" in r and "labels_ms" in r:
        from bench_onnx import report_rows

        rows += report_rows(r)
    rows += sources_rows(r)
    width = max(len(a) for a, _ in rows)
    lines = [f"| {'measurement'.ljust(width)} | result |", f"| {'-' * width} | --- |"]
    lines += [f"| {a.ljust(width)} | {b} |" for a, b in rows]
    return f"Machine: {r['machine']}\nModel: {r['model']}, torch threads {r['threads']}\n\n" + "\n".join(lines)


def report_core(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of sections a-h."""
    lab = {int(k): v for k, v in r["labels_ms"].items()}
    rows = [
        ("a. audio-tower forward per window (floor)", f"{r['a_forward_ms']:.1f} ms"),
        ("b. project per-window path (features, forward, scores; 10 labels)", f"{r['b_path_ms']:.1f} ms"),
        ("c. walkthrough pipeline() per window, 10 labels", f"{r['c_pipeline_ms']:.1f} ms"),
        ("d. project per window, 1 / 10 / 50 labels", f"{lab[1]:.1f} / {lab[10]:.1f} / {lab[50]:.1f} ms"),
        ("   per window at batch 4", f"{r['batch4_per_window_ms']:.1f} ms"),
        ("   mel features: torch / numpy extractor", f"{r['features_torch_ms']:.1f} / {r['features_numpy_ms']:.1f} ms"),
        ("**b / a** (target <= 1.15)", f"**{r['b_path_ms'] / r['a_forward_ms']:.3f}**"),
        ("**c / b** (target >= 3)", f"**{r['c_pipeline_ms'] / r['b_path_ms']:.2f}**"),
        ("**50 labels / 1 label**", f"**{lab[50] / lab[1]:.3f}**"),
        ("**50 labels / 10 labels** (target <= 1.05)", f"**{lab[50] / lab[10]:.3f}**"),
    ]
    for name, p in r["precision"].items():
        extra = "" if name == "fp32" else (
            f", embedding cosine min {p['cos_min']:.5f}, top label changed on {p['top1_changed']:.0%} of 16 windows"
            + (f", max score change {p['max_score_change']:.4f} (fp32 spread of scores "
               f"{p['fp32_score_spread']:.4f})" if "max_score_change" in p else ""))
        rows.append((f"   precision {name}", f"{p['ms']:.1f} ms{extra}"))
    rep = r["replay"]
    for key, v in rep.items():
        seconds, _, mode = str(key).partition("_")
        rows.append((f"e. replay of a {seconds} s file{', ' + mode if mode else ''}: steady / peak RSS",
                     f"{v['steady_mb']:.0f} / {max(v['peak_mb'], v['maxrss_mb']):.0f} MB "
                     f"({v['windows']} windows, {v['wall_s']:.1f} s wall, {v['cpu_s']:.1f} s CPU)"))
    rows.append(("g. replay marginal cost per window (90 s minus 30 s run)",
                 f"{r['replay_marginal_ms_per_window']:.1f} ms wall, "
                 f"{r['replay_marginal_cpu_ms_per_window']:.1f} ms CPU"))
    if "f_latency_ms" in r:
        f = r["f_latency_ms"]
        if f["p50"] is not None:
            rows.append(("f. end of window → event at subscriber, p50 / p95",
                         f"{f['p50']:.0f} / {f['p95']:.0f} ms ({f['events']} events; "
                         f"inference median {f['inference_median_ms']:.0f} ms)"))
        rows.append(("g. CPU-seconds per second of audio, hop 1 s (live-paced run)",
                     f"{r['g_cpu_s_per_audio_s']:.3f}"))
    if "h_fixed" in r:
        fx, ad = r["h_fixed"], r["h_adaptive"]
        rows.append(("h. 120 s mostly quiet: windows scored fixed / adaptive",
                     f"{fx['windows_scored']} / {ad['windows_scored']} "
                     f"(CPU {fx['cpu_s']:.1f} / {ad['cpu_s']:.1f} s)"))
        rows.append(("h. event at 90 s: first start window_end fixed / adaptive",
                     f"{fx['first_start_window_end']} / {ad['first_start_window_end']} s"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
