"""The command line's output: one JSON line per event (and per window with ``--scores``) on stdout."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink
from monitor.strictjson import dumps


class StdoutSink(Sink):
    """Prints events, and every window's scores when ``scores`` is set, as JSON lines."""

    def __init__(self, scores: bool = False, out: TextIO | None = None) -> None:
        self.scores = scores
        self.out = out or sys.stdout

    def _print(self, obj: dict[str, Any]) -> None:
        self.out.write(dumps(obj, what="stdout line") + "\n")
        self.out.flush()

    def on_window(self, window: ScoredWindow) -> None:
        """One line of scores per window (``--scores``)."""
        if self.scores:
            line = {
                "kind": "scores",
                "window_start": round(window.start, 3),
                "window_end": round(window.end, 3),
                "level_dbfs": round(window.dbfs, 2),
                "skipped": window.skipped or False,
                "scores": window.scores,
            }
            if window.source:  # a named source's (the one source of a single-source run has no name)
                line["source"] = window.source
            self._print(line)

    def on_event(self, event: Event) -> None:
        """One line per event."""
        self._print({"kind": "event", **event.to_json_dict()})
