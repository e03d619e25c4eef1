"""Detector driven by scripted scores: threshold, consecutive hits, end after silence, cooldown."""

from __future__ import annotations

from monitor.core.detection import Detector, LabelRule
from monitor.records import ScoredWindow


def window(i: float, score: float, label: str = "dog") -> ScoredWindow:
    return ScoredWindow(index=int(i), start=i, end=i + 5, mono_end=i + 5, dbfs=-20.0, scores={label: score})


def run(det: Detector, scores: list[float], label: str = "dog") -> list[tuple[str, float]]:
    out = []
    for i, s in enumerate(scores):
        out += [(e.type, i) for e in det.update(window(i, s, label))]
    return out


def make(min_hits: int = 2, end_after: float = 3.0, cooldown: float = 5.0, threshold: float = 0.5) -> Detector:
    return Detector([LabelRule("dog", "dog", threshold)], node="test", min_hits=min_hits,
                    end_after_seconds=end_after, cooldown_seconds=cooldown)


def test_needs_consecutive_hits() -> None:
    det = make(min_hits=3)
    assert run(det, [0.9, 0.9, 0.1, 0.9, 0.9]) == []
    det = make(min_hits=3)
    assert run(det, [0.9, 0.9, 0.9]) == [("start", 2)]


def test_threshold_is_inclusive_and_per_label() -> None:
    det = Detector([LabelRule("dog", "dog", 0.7), LabelRule("cat", "cat", 0.2)], node="n", min_hits=1)
    sw = ScoredWindow(0, 0.0, 5.0, 5.0, -20.0, {"dog": 0.69, "cat": 0.2})
    events = det.update(sw)
    assert [(e.type, e.label) for e in events] == [("start", "cat")]


def test_event_ends_after_silence_and_carries_peak() -> None:
    det = make(min_hits=1, end_after=3.0)
    events = []
    for i, s in enumerate([0.6, 0.95, 0.7, 0.1, 0.1, 0.1, 0.1]):
        events += det.update(window(i, s))
    assert [e.type for e in events] == ["start", "end"]
    start, end = events
    assert start.score == 0.6 and start.window_start == 0 and start.window_end == 5
    assert end.peak_score == 0.95
    assert end.window_start == 0 and end.window_end == 2 + 5  # last hit window
    assert end.timestamp.endswith("Z")


def test_tick_ends_event_without_windows() -> None:
    det = make(min_hits=1, end_after=10.0)
    assert [e.type for e in det.update(window(0, 0.9))] == ["start"]
    assert det.tick(14.9) == []
    assert [e.type for e in det.tick(15.0)] == ["end"]
    assert not det.is_active("dog")


def test_cooldown_blocks_restart() -> None:
    det = make(min_hits=1, end_after=1.0, cooldown=5.0)
    evs = run(det, [0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    # start at 0; end at window 1 (mono 6 - last hit 5 >= 1) → cooldown until 11 → restart at window 6 (mono 11)
    assert evs == [("start", 0), ("end", 1), ("start", 6)]


def test_disabled_label_never_fires_and_removal_ends_event() -> None:
    det = Detector([LabelRule("dog", "dog", 0.5, enabled=False)], node="n", min_hits=1)
    assert det.update(window(0, 0.99)) == []
    det.set_rules([LabelRule("dog", "dog", 0.5)])
    assert [e.type for e in det.update(window(1, 0.99))] == ["start"]
    ended = det.set_rules([], now=7.0)
    assert [(e.type, e.label) for e in ended] == [("end", "dog")]


def test_skipped_window_breaks_a_hit_run() -> None:
    det = make(min_hits=2)
    det.update(window(0, 0.9))
    det.update(ScoredWindow(1, 1.0, 6.0, 6.0, -90.0, {}, skipped=True))
    assert det.update(window(2, 0.9)) == []


def test_flush_ends_active_events() -> None:
    det = make(min_hits=1)
    det.update(window(0, 0.9))
    assert [e.type for e in det.flush(5.5)] == ["end"]
    assert det.flush(6.0) == []
