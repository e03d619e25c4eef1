"""A part downstream of detection that fails (a bug in a sink, a clip folder on a share that dropped) costs that
one call, never the run: every source goes on being scored and detected, and the failure is logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.feeds import feeds_for, loud, quiet, sources_config, windows_of
from support.runner import RunningMonitor
from support.scorers import TwoLabelScorer
from support.wait import wait_for

from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink


class BrokenSink(Sink):
    """Raises on every window and event, as a sink with a bug would."""

    def __init__(self) -> None:
        self.calls = 0

    def on_window(self, window: ScoredWindow) -> None:
        self.calls += 1
        raise RuntimeError("sink bug (window)")

    def on_event(self, event: Event) -> None:
        self.calls += 1
        raise OSError(5, "Input/output error")


def test_a_failing_sink_loses_its_calls_not_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = sources_config(tmp_path, [{"name": "a", "url": "rtsp://cam/a"}, {"name": "b", "url": "rtsp://cam/b"}])
    feeds, plans = feeds_for(cfg)
    run = RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer())
    broken = BrokenSink()
    run.monitor.sinks.insert(0, broken)  # first: the sinks after it still get every call
    with caplog.at_level(logging.INFO), run:
        for _ in range(3):
            feeds["a"].feed(loud(1.0), quiet(0.5))
            feeds["b"].feed(quiet(1.5))
        wait_for(lambda: len(windows_of(run, "a")) >= 6 and len(windows_of(run, "b")) >= 6,
                 message=lambda: f"{run.error!r} {len(run.windows)}")
        assert {(e.source, e.type) for e in run.events} >= {("a", "start")}
    assert run.finish() == 0
    assert broken.calls >= 13
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == [
        "BrokenSink.on_window failed: sink bug (window) (the monitor goes on; further such failures are logged at "
        "DEBUG)",
        "BrokenSink.on_event failed: [Errno 5] Input/output error (the monitor goes on; further such failures are "
        "logged at DEBUG)",
    ], failures
