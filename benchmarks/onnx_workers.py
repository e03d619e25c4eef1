"""Worker processes of benchmarks/bench_onnx.py: one backend per process, so that an ONNX timing never has torch
in its process (as with the lean install) and every measurement starts from a fresh heap.

    python benchmarks/onnx_workers.py worker FOLDER THREADS VARIANT_JSON CACHE WORK REPEAT
    python benchmarks/onnx_workers.py torch-worker MODEL THREADS WORK REPEAT

Each prints one JSON line; embeddings and scores of ``WORK/windows.npy`` go to ``WORK/{emb,scores}-TAG.npy``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _rss(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _median_ms(fn: Any, repeat: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, min(times) * 1000


def worker(folder: str, threads: int, variant: dict[str, Any], cache: str, work: str, repeat: int) -> dict:
    """Runs in a subprocess that never imports torch: load the ONNX scorer, time batches, record RSS, save
    embeddings and scores of the windows in ``work/windows.npy`` (labels from ``work/labels.json``).

    ``variant``: ``precision``, and the settings compared: ``arena`` (ORT's CPU memory arena), ``spin`` (threads
    spinning after each run), ``trim`` (malloc_trim after each window)."""
    sys.path.insert(0, str(ROOT))
    from monitor.inference import onnx_session
    from monitor.inference.onnx_scorer import OnnxScorer
    from monitor.inference.runtime import release_freed_memory
    from monitor.labels import LabelPrompts

    if variant.get("spin"):
        plain = onnx_session.session_options

        def spinning(threads: int | None = None, arena: bool = False) -> Any:
            opts = plain(threads, arena)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
            return opts

        onnx_session.session_options = spinning
    x = np.load(Path(work) / "windows.npy")
    labels = [LabelPrompts(n, (p,)) for n, p in json.loads((Path(work) / "labels.json").read_text())]
    res: dict[str, Any] = {"rss_start_mb": _rss()}
    t0 = time.perf_counter()
    scorer = OnnxScorer(folder, threads=threads, precision=variant["precision"], cache_dir=Path(cache),
                        arena=bool(variant.get("arena")))
    scorer.set_labels(labels)
    res["load_s"] = time.perf_counter() - t0
    res["rss_loaded_mb"] = _rss()
    res["peak_at_load_mb"] = _rss("VmHWM")

    def score(batch: np.ndarray) -> None:
        scorer.score(batch)
        if variant.get("trim"):
            release_freed_memory()

    cpu0 = time.process_time()
    res["ms_batch1"], res["ms_batch1_min"] = _median_ms(lambda: score(x[:1]), repeat)
    res["cpu_ms_batch1"] = (time.process_time() - cpu0) * 1000 / (repeat + 2)
    res["rss_after_batch1_mb"] = _rss()
    res["ms_batch4_per_window"] = _median_ms(lambda: score(x[:4]), max(3, repeat // 3))[0] / 4
    res["rss_after_batch4_mb"] = _rss()
    _median_ms(lambda: score(x[:1]), repeat)
    res["rss_after_batch4_then_batch1_mb"] = _rss()
    res["features_ms"] = _median_ms(lambda: scorer.features(x[:1]), repeat)[0]
    res["peak_rss_mb"] = _rss("VmHWM")
    tag = variant_tag(variant)
    np.save(Path(work) / f"emb-{tag}.npy", np.concatenate([scorer.audio_embeddings(x[i : i + 4])
                                                           for i in range(0, len(x), 4)]))
    np.save(Path(work) / f"scores-{tag}.npy", scorer.score(x))
    res["torch_imported"] = "torch" in sys.modules
    return res


def torch_worker(model: str, threads: int, work: str, repeat: int) -> dict:
    """The torch baseline in its own process, on the same windows and labels as the onnx workers (fp32; bf16 too
    where the CPU has it, which is what ``precision: auto`` picks there)."""
    sys.path.insert(0, str(ROOT))
    from monitor.inference.scorer import ClapScorer, bf16_supported
    from monitor.labels import LabelPrompts

    x = np.load(Path(work) / "windows.npy")
    labels = [LabelPrompts(n, (p,)) for n, p in json.loads((Path(work) / "labels.json").read_text())]
    res: dict[str, Any] = {}
    scorer = ClapScorer(model, threads=threads)
    scorer.set_labels(labels)
    scorer.free_text_tower()
    cpu0 = time.process_time()
    res["ms_batch1"], res["ms_batch1_min"] = _median_ms(lambda: scorer.score(x[:1]), repeat)
    res["cpu_ms_batch1"] = (time.process_time() - cpu0) * 1000 / (repeat + 2)
    res["ms_batch4_per_window"] = _median_ms(lambda: scorer.score(x[:4]), max(3, repeat // 3))[0] / 4
    res["rss_after_batch1_mb"] = _rss()
    np.save(Path(work) / "emb-torch.npy", scorer.audio_embeddings(x).numpy())
    np.save(Path(work) / "scores-torch.npy", scorer.score(x))
    if bf16_supported():
        bf = ClapScorer(model, threads=threads, precision="bf16")
        bf._text, bf.labels = scorer._text, list(scorer.labels)  # the same text side
        res["bf16_ms_batch1"], res["bf16_ms_batch1_min"] = _median_ms(lambda: bf.score(x[:1]), repeat)
        np.save(Path(work) / "emb-bf16.npy", bf.audio_embeddings(x).float().numpy())
        np.save(Path(work) / "scores-bf16.npy", bf.score(x))
    return res


def variant_tag(variant: dict[str, Any]) -> str:
    """``fp32``, ``fp32-arena``, ``int8-spin``, ...: the precision and the settings switched on."""
    return "-".join([variant["precision"], *(k for k in ("arena", "spin", "trim") if variant.get(k))])


if __name__ == "__main__" and len(sys.argv) == 8 and sys.argv[1] == "worker":
    f, th, var, ca, wk, rp = sys.argv[2:8]
    print(json.dumps(worker(f, int(th), json.loads(var), ca, wk, int(rp))))
elif __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "torch-worker":
    print(json.dumps(torch_worker(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))))
