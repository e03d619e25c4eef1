"""Adaptive hop (policy driven by scripted scores, then the worker on the tiny model) and precision options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.core.queues import Closed, DropOldestQueue
from monitor.core.windowing import dbfs
from monitor.inference.adaptive import AdaptiveHop
from monitor.inference.scorer import ClapScorer, LabelPrompts, ModelLoadError, bf16_supported
from monitor.inference.worker import InferenceWorker
from monitor.labels import LabelRegistry, LabelSet
from monitor.records import ScoredWindow, Window


def test_policy_goes_idle_after_quiet_and_wakes_when_near() -> None:
    hop = AdaptiveHop(stride=4, margin=0.1, hold=3, thresholds={"dog": 0.5})
    scored = []
    script = {0: 0.1, 1: 0.1, 2: 0.1, 4: 0.1, 8: 0.45, 9: 0.2, 10: 0.2, 11: 0.2, 12: 0.2}
    for i in range(16):
        if hop.should_score(i):
            scored.append(i)
            hop.observe({"dog": script.get(i, 0.1)})
    # fine until 3 quiet windows (0,1,2), then every 4th; 8 is near (0.45 >= 0.5-0.1) → fine again for 3 quiet
    assert scored == [0, 1, 2, 4, 8, 9, 10, 11, 12]


def test_level_jump_wakes_an_idle_policy() -> None:
    hop = AdaptiveHop(stride=4, margin=0.1, hold=1, thresholds={"dog": 0.5}, level_jump_db=3.0)
    hop.observe({"dog": 0.1}, -40.0)
    assert hop.idle
    assert not hop.should_score(5, -38.0)  # a little louder: still waits for the coarse window
    assert hop.should_score(5, -36.5)  # 3.5 dB louder than the last scored window: scored now


def test_gated_windows_count_as_quiet() -> None:
    hop = AdaptiveHop(stride=2, margin=0.1, hold=2, thresholds={"dog": 0.5})
    hop.observe(None)
    hop.observe(None)
    assert hop.idle and not hop.should_score(3)
    hop.set_thresholds({"dog": 0.3})
    assert not hop.idle


class _Windows:
    """Windows of a fixed signal, cut at hop 1 s."""

    @staticmethod
    def make(n: int, loud_from: int | None = None) -> list[Window]:
        rng = np.random.default_rng(0)
        out = []
        t = np.arange(240_000) / 48_000
        for i in range(n):
            if loud_from is not None and i >= loud_from:
                x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            else:
                x = (0.01 * rng.standard_normal(240_000)).astype(np.float32)
            out.append(Window(i, float(i), i + 5.0, x, i + 5.0, dbfs(x)))
        return out


def run_worker(scorer: ClapScorer, windows: list[Window], adaptive: AdaptiveHop | None) -> list[ScoredWindow]:
    q: DropOldestQueue[Window] = DropOldestQueue(len(windows) + 1)
    results: DropOldestQueue[ScoredWindow] = DropOldestQueue(len(windows) + 1)
    for w in windows:
        q.put(w)
    q.close()
    registry = LabelRegistry(LabelSet(version=1, labels=()))  # unchanged during the run: no label sync
    worker = InferenceWorker(scorer, registry, q, results, max_batch=1, adaptive=adaptive)
    worker.start()
    assert worker.join(60)
    out = []
    with pytest.raises(Closed):
        while True:
            out.append(results.get(timeout=60))
    return out


@pytest.fixture(scope="module")
def scorer(tiny_model: Path) -> ClapScorer:
    s = ClapScorer(str(tiny_model), threads=2)
    names = ("dog", "glass", "silence", "a siren", "birds", "a bell")
    s.set_labels([LabelPrompts(n, (f"This is a sound of {n}.",)) for n in names])
    s.free_text_tower()
    return s


def test_worker_skips_idle_windows_and_returns_to_fine_hop(scorer: ClapScorer) -> None:
    windows = _Windows.make(12, loud_from=7)
    fixed = run_worker(scorer, windows, None)
    # Random weights: pick the label that best separates the tones from the noise in a fixed-hop run, and
    # put its threshold between them, so that the tones cross it and the noise stays far below.
    def gap(label: str) -> float:
        return min(w.scores[label] for w in fixed[7:]) - max(w.scores[label] for w in fixed[:7])

    label = max(scorer.labels, key=gap)
    assert gap(label) > 0.005, "the tiny model no longer separates tones from noise"
    ref = {w.index: w.scores[label] for w in fixed}
    quiet_max = max(ref[i] for i in range(7))
    threshold = min(ref[i] for i in range(7, 12)) - 1e-4
    margin = 0.5 * (threshold - quiet_max)
    adaptive = AdaptiveHop(stride=3, margin=margin, hold=2, thresholds={label: threshold})
    got = run_worker(scorer, windows, adaptive)
    assert [w.index for w in got] == list(range(12))  # every window reported, in order
    scored = [w.index for w in got if not w.skipped]
    idle = [w.index for w in got if w.skipped == "idle"]
    assert len([i for i in idle if i < 7]) >= 2  # quiet stretch scored at the coarse hop
    assert {9, 10, 11} <= set(scored)  # back to the fine hop once the sound arrives
    # the tones are much louder than the room: the level jump gets the first of them scored at once
    assert min(i for i in scored if i >= 7) == 7
    for w in got:
        if not w.skipped:
            assert abs(w.scores[label] - ref[w.index]) < 1e-6


def test_int8_agrees_with_fp32(tiny_model: Path) -> None:
    x = (0.2 * np.random.default_rng(1).standard_normal((3, 240_000))).astype(np.float32)
    fp32 = ClapScorer(str(tiny_model), threads=2)
    int8 = ClapScorer(str(tiny_model), threads=2, precision="int8")
    a, b = fp32.audio_embeddings(x), int8.audio_embeddings(x)
    cos = (a * b).sum(-1)
    assert float(cos.min()) > 0.95


def test_bf16_refused_clearly_without_cpu_support(tiny_model: Path) -> None:
    if bf16_supported():
        s = ClapScorer(str(tiny_model), threads=2, precision="bf16")
        s.set_labels([LabelPrompts("dog", ("a dog",)), LabelPrompts("cat", ("a cat",))])
        assert s.score(np.zeros((1, 240_000), np.float32)).shape == (1, 2)
    else:
        with pytest.raises(ModelLoadError, match="bf16 needs a CPU with AVX512-BF16 or AMX"):
            ClapScorer(str(tiny_model), threads=2, precision="bf16")
