"""Milliseconds per 5 s clip: transformers' ClapFeatureExtractor against monitor.features.TorchClapFeatures.

    .venv/bin/python benchmarks/bench_features.py [--threads 2] [--repeats 30]

Prints the minimum and the median over the repeats: the minimum is what the code costs, the median what it
cost on this machine while it ran (other processes on a 2-core box stretch it). Also prints the largest
difference from the extractor, in dB, for each precision.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from transformers import ClapFeatureExtractor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from monitor.inference.features import TorchClapFeatures
from monitor.testing.randommodel import FEATURE_EXTRACTOR_SETTINGS

SR = 48_000
CLIP_SAMPLES = 5 * SR  # the monitor's window


def clap_unfused_extractor() -> ClapFeatureExtractor:
    """The feature settings of laion/clap-htsat-unfused."""
    return ClapFeatureExtractor(**FEATURE_EXTRACTOR_SETTINGS)


def time_call(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(min, median) seconds of ``fn()`` after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per case (default 30)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    extractor = clap_unfused_extractor()
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SR
    # Noise and a pure tone: the tone's weak far bands are where FFT precision shows.
    clips = np.stack(
        [
            0.1 * rng.standard_normal(CLIP_SAMPLES),
            0.5 * np.sin(2 * np.pi * 1000.0 * t),
            0.1 * rng.standard_normal(CLIP_SAMPLES),
            0.3 * np.sin(2 * np.pi * 440.0 * t),
        ]
    ).astype(np.float32)

    def run_extractor(batch: int) -> None:
        extractor(list(clips[:batch]), sampling_rate=SR, return_tensors="pt")

    def ms_per_clip(fn: Callable[[], object], batch: int, repeats: int) -> tuple[float, float]:
        low, median = time_call(fn, repeats)
        return low * 1000 / batch, median * 1000 / batch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per clip of {CLIP_SAMPLES} samples")
    reference = extractor(list(clips), sampling_rate=SR, return_tensors="pt")["input_features"]
    variants = {
        "float64": TorchClapFeatures(extractor, torch.float64),
        "float32": TorchClapFeatures(extractor, torch.float32),
    }
    for name, features in variants.items():
        error = (features(clips)["input_features"] - reference).abs()
        print(f"torch {name}: max |diff| {error[[0, 2]].max():.2e} dB on noise, {error.max():.2e} dB with tones")

    print(f"{'batch':>5}  {'method':<18} {'min ms':>8} {'median ms':>10} {'speed-up (min)':>15}")
    for batch in (1, 4):
        base, base_median = ms_per_clip(partial(run_extractor, batch), batch, max(5, args.repeats // 4))
        print(f"{batch:>5}  {'extractor (numpy)':<18} {base:8.2f} {base_median:10.2f} {1.0:14.1f}x")
        for name, features in variants.items():
            fast, fast_median = ms_per_clip(partial(features, clips[:batch]), batch, args.repeats)
            print(f"{batch:>5}  {'torch ' + name:<18} {fast:8.2f} {fast_median:10.2f} {base / fast:14.1f}x")


if __name__ == "__main__":
    main()
