"""Several sources, one model: the real pipeline (windowing threads, fair queue, inference worker, detectors, sinks)
over sources the test drives block by block (``support/feeds.py``) and scripted scorers, so which window fires is
known exactly and nothing waits on a clock: per-source labels and thresholds, isolation (a source that fails,
stalls or floods), health, the plot. What each source shows over MQTT is ``test_sources_mqtt.py``; the config and
the fair queue ``test_sources_config.py``; real microphones and streams ``test_sources_live.py`` and
``test_sources_network.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.feeds import FailingSource, StallingSource, feeds_for, loud, quiet, sources_config, windows_of
from support.notify import NotifySocket
from support.runner import RunningMonitor
from support.scorers import TwoLabelScorer
from support.wait import wait_for

from monitor.sinks.plot import TimelineRecorder


# --- one model, detection per source ---------------------------------------------------------------------------
def test_each_source_detects_its_own_labels_with_its_own_thresholds(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [
        {"name": "all", "url": "rtsp://cam/a"},
        {"name": "only-beep", "url": "rtsp://cam/b", "labels": ["beep"]},
        {"name": "strict", "url": "rtsp://cam/c", "thresholds": {"Beep": 0.9}},
    ])
    feeds, plans = feeds_for(cfg)
    with RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer()) as run:
        for feed in feeds.values():
            feed.feed(loud(1.0), quiet(0.5))
        # Each source's windows are detected in order, so once its second window is seen its first one's events
        # are out: the set of starts is complete.
        wait_for(lambda: all(len(windows_of(run, name)) >= 2 for name in feeds), message=lambda: str(run.windows))
        starts = {(e.source, e.label) for e in run.events if e.type == "start"}
        assert starts == {("all", "beep"), ("all", "buzz"), ("only-beep", "beep"), ("strict", "buzz")}
        rules = {r.name: ([x.name for x in r.detector.rules], [x.threshold for x in r.detector.rules])
                 for r in run.monitor.sources}
        assert rules == {"all": (["beep", "buzz"], [0.5, 0.5]), "only-beep": (["beep"], [0.5]),
                         "strict": (["beep", "buzz"], [0.9, 0.5])}
        assert {w.source for w in run.windows} == set(feeds)
        assert all(e.to_json_dict()["source"] == e.source for e in run.events)


class GatedScorer(TwoLabelScorer):
    """Blocks its first call until ``gate`` is set: inference "falls behind" exactly when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def score(self, windows: np.ndarray) -> np.ndarray:
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait()
        return super().score(windows)


def test_a_source_that_fails_stalls_or_floods_never_touches_another_sources_windows(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [
        {"name": "good", "url": "rtsp://cam/good"},
        {"name": "flood", "url": "rtsp://cam/flood"},
        {"name": "stall", "url": "rtsp://cam/stall"},
        {"name": "fail", "url": "rtsp://cam/fail"},
    ], inference={"queue_size": 2, "max_batch": 4})
    stall = StallingSource()
    feeds, plans = feeds_for(cfg, stall=stall, fail=FailingSource().feed(loud(1.0)))
    scorer = GatedScorer()
    run = RunningMonitor(cfg, plans=plans, scorer=scorer).start()
    try:
        queue = run.monitor.windows
        feeds["good"].feed(loud(1.0))
        wait_for(scorer.waiting.is_set, message="inference never started")
        # Inference is stuck; one source floods the queue (30 s of audio at once, as a stream does after a hiccup).
        feeds["flood"].feed(loud(30.0))
        wait_for(lambda: queue.dropped_by("flood") > 0, message="the flood never filled the queue")
        feeds["good"].feed(quiet(0.5), loud(0.5), quiet(0.5))
        wait_for(lambda: queue.depth("good") + len(windows_of(run, "good")) >= 3, message="good's windows lost")
        assert queue.dropped_by("good") == 0
        assert len(queue) <= queue.capacity == 2 * 4
        scorer.gate.set()
        wait_for(lambda: len(windows_of(run, "good")) == 4, message=lambda: f"good: {windows_of(run, 'good')}")
        assert windows_of(run, "good") == [0, 1, 2, 3]  # every window, in order: no gap
        assert max(scorer.calls) == 4  # what was pending went through the one model as one batch
        wait_for(lambda: not run.monitor.sources[3].stage.alive)
        stats = {s.name: s for s in run.monitor.stats().sources}
        assert stats["good"].dropped == 0 and stats["flood"].dropped > 0
        assert run.monitor.stats().windows_dropped == stats["flood"].dropped
        assert stats["fail"].state == "down" and stats["good"].state == "up"
        assert stall.entered.is_set() and not windows_of(run, "stall")
        ok, reason = run.monitor.health()
        assert ok and reason.startswith("degraded: "), reason
        assert "fail is down: stopped: scripted source failure" in reason and "good" not in reason
        by_name = {r.name: r for r in run.monitor.sources}
        stalled = by_name["stall"]
        assert stalled.stage is not None
        # 20 s after its last read returned, the hung source counts as stalled (no clock is waited on).
        assert stalled.problem(stalled.stage.last_progress + 20) == "stall: no audio for 20 s"
        assert by_name["good"].problem(time.monotonic()) is None
    finally:
        scorer.gate.set()
        run.stop.set()
    assert run.finish() == 1  # a source thread that crashed is an error of the run, reported at its end


def test_the_plot_draws_one_timeline_per_source(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [{"name": "a", "url": "rtsp://cam/a"},
                                    {"name": "b", "url": "rtsp://cam/b", "thresholds": {"beep": 0.9}, "min_dbfs": -30}])
    feeds, plans = feeds_for(cfg)
    run = RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer())
    recorder = TimelineRecorder(tmp_path / "plots" / "timeline.png", min_dbfs=-60, sources=cfg.sources or [])
    run.monitor.sinks.append(recorder)
    with run:
        feeds["a"].feed(loud(1.0), quiet(0.5))
        feeds["b"].feed(quiet(1.5))
        wait_for(lambda: len(windows_of(run, "a")) >= 2 and len(windows_of(run, "b")) >= 2)
    a = [p for p in recorder.points if p.source == "a"]
    b = [p for p in recorder.points if p.source == "b"]
    assert len(a) >= 2 and len(b) >= 2
    assert a[0].thresholds == {"beep": 0.5, "buzz": 0.5} and b[0].thresholds == {"beep": 0.9, "buzz": 0.5}
    assert {e.source for e in recorder.events} == {"a"}
    assert (recorder.gate("a"), recorder.gate("b")) == (-60, -30)  # each plot draws its source's loudness gate
    for name in ("a", "b"):  # drawn when the run stopped
        assert (tmp_path / "plots" / f"timeline-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plots" / "timeline.png").exists()


def test_health_fails_only_when_every_source_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = sources_config(tmp_path, [{"name": "a", "url": "rtsp://cam/a"}, {"name": "b", "url": "rtsp://cam/b"}])
    feeds, plans = feeds_for(cfg)
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with notify, RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer()) as run:
        wait_for(lambda: run.monitor.health() == (True, "ok"), message=lambda: str(run.monitor.health()))
        feeds["a"].set_state("down", "connection refused")
        assert run.monitor.health() == (True, "degraded: a is down: connection refused")
        feeds["b"].set_state("connecting")
        assert run.monitor.health() == (False, "all sources are down: a is down: connection refused; "
                                               "b is down: connecting")
        # /healthz fails, yet the systemd watchdog is still pinged: the sources reconnect on their own, and a
        # restart of the service (a model reload, every backoff reset) would not bring a camera back any sooner.
        pings = notify.messages.count("WATCHDOG=1")
        wait_for(lambda: notify.messages.count("WATCHDOG=1") >= pings + 2, message="the watchdog stopped")
        assert run.monitor.health()[0] is False
        feeds["a"].set_state("up")
        assert run.monitor.health() == (True, "degraded: b is down: connecting")
