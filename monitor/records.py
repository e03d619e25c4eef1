"""Small typed records that pass between the stages (capture → windows → scorer → detector → publisher)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np


def utc_now_iso() -> str:
    """Current time as UTC ISO 8601 with milliseconds and a ``Z`` suffix."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Window:
    """A window of 48 kHz mono audio, exactly ``window_seconds * 48000`` samples.

    ``start``/``end`` are seconds on the stream clock (from the start of capture or of the file);
    ``mono_end`` is ``time.monotonic()`` when the window was cut (live) or equal to ``end`` (replay),
    the clock detection runs on. ``valid`` is False when the window held samples that are not audio (NaN, ±inf,
    far beyond full scale; replaced by silence before resampling): it is not scored. A file shorter than one
    window gives one shorter window.
    """

    index: int
    start: float
    end: float
    samples: np.ndarray
    mono_end: float
    dbfs: float
    valid: bool = True
    source: str = ""  # the source's name; "" for the one unnamed source of a single-source config


@dataclass(frozen=True, slots=True)
class ScoredWindow:
    """A window's scores: label name → softmax score over all labels and background labels.

    ``skipped`` names why a window was not scored (scores then empty): ``"gate"`` (quieter than
    ``audio.min_dbfs``), ``"idle"`` (adaptive hop while all labels are far below threshold) or ``"invalid"`` (the
    window held samples that are not audio); "" if scored.
    """

    index: int
    start: float
    end: float
    mono_end: float
    dbfs: float
    scores: dict[str, float]
    skipped: str = ""
    inference_seconds: float = 0.0
    source: str = ""  # as the window's


@dataclass(frozen=True, slots=True)
class Event:
    """A detection start or end, as published on ``<prefix>/events``."""

    type: Literal["start", "end"]
    label: str
    label_id: str
    score: float
    peak_score: float
    timestamp: str
    window_start: float
    window_end: float
    node: str
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the source it was heard on; "" (and left out of the payload) for a single-source config

    def to_json_dict(self) -> dict[str, Any]:
        """Payload fields, in a stable order (``source`` after ``node``, only for a named source)."""
        out: dict[str, Any] = {
            "type": self.type,
            "label": self.label,
            "label_id": self.label_id,
            "score": round(self.score, 6),
            "peak_score": round(self.peak_score, 6),
            "timestamp": self.timestamp,
            "window_start": round(self.window_start, 3),
            "window_end": round(self.window_end, 3),
            "node": self.node,
        }
        if self.source:
            out["source"] = self.source
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class InputState:
    """The audio input as a live source sees it, as published on ``<prefix>/input``.

    A source swaps a new one in whole on every change; ``version`` grows with each, so the main loop tells a
    change from the state it already handed to the sinks (as it does for label sets).
    """

    state: Literal["up", "down"]
    error: str | None = None  # why it is down (the last failure while it stays down); None when up
    since: str = field(default_factory=utc_now_iso)  # UTC ISO 8601 time of the last up/down change
    version: int = 0
    source: str = ""  # whose input: set by the main loop when it hands the state to the sinks

    def to_json_dict(self) -> dict[str, Any]:
        """Payload fields: ``state``, ``error``, ``since`` (and ``source`` for a named source)."""
        out: dict[str, Any] = {"state": self.state, "error": self.error, "since": self.since}
        if self.source:
            out["source"] = self.source
        return out
