"""An in-process monitor with its integrations, run on a background thread over a file."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monitor.config import Config
from monitor.pipeline import SourcePlan
from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink
from monitor.sources.audiofile import FileSource
from monitor.wiring import build_monitor
from support.wait import wait_for

__all__ = ["RunningMonitor"]


class _Recorder(Sink):
    def __init__(self, owner: RunningMonitor, on_event: Callable[[Event], None] | None) -> None:
        self.owner = owner
        self.on_event_hook = on_event

    def on_window(self, window: ScoredWindow) -> None:
        self.owner.windows.append(window)

    def on_event(self, event: Event) -> None:
        self.owner.events.append(event)
        if self.on_event_hook is not None:
            self.on_event_hook(event)


class RunningMonitor:
    """A monitor built as the CLI builds it (``build_monitor``: every sink the config asks for), run on a
    background thread over a file (paced in real time or not), or over several sources (``plans``: a live run).

    ``windows`` and ``events`` collect what the sinks saw, in order (events with their clip names).
    """

    def __init__(self, cfg: Config, wav: Path | None = None, realtime: bool = True, scorer: Any = None,
                 on_event: Callable[[Event], None] | None = None, plans: Sequence[SourcePlan] | None = None) -> None:
        self.windows: list[ScoredWindow] = []
        self.events: list[Event] = []
        source: Any = plans if plans is not None else (lambda: FileSource(wav, realtime=realtime))
        self.monitor = build_monitor(cfg, source, live=plans is not None, scorer=scorer,
                                     extra_sinks=[_Recorder(self, on_event)], stdout=False)
        self.stop = threading.Event()
        self.rc: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-monitor", daemon=True)

    def _run(self) -> None:
        try:
            self.rc = self.monitor.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by finish()
            self.error = exc

    def start(self) -> RunningMonitor:
        self._thread.start()
        return self

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the run to end (the file ends, or after ``stop``); its exit code."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "monitor did not finish"
        if self.error is not None:
            raise self.error
        assert self.rc is not None
        return self.rc

    def wait_started(self, timeout: float = 60.0) -> RunningMonitor:
        """Wait until windows flow."""
        wait_for(lambda: self.windows or self.error, timeout=timeout, message="no window scored")
        if self.error is not None:
            raise self.error
        return self

    def __enter__(self) -> RunningMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.finish()
