"""``replay --plot``: a timeline of each label's score per window with its threshold, events shaded, and the level.

The recorder listens on the main thread while the replay runs (so a threshold changed at run time shows as a
step in its line); the figure is drawn with matplotlib's Agg canvas once the run is over (no display needed,
no pyplot global state). With several sources (``run --plot``) each source gets a figure of its own,
``<stem>-<source><suffix>`` beside ``path``, with its own thresholds; the recorder keeps the latest
:data:`MAX_POINTS` windows, so a long run's memory stays bounded.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config import SourceConfig
from monitor.core.sourcerules import source_thresholds
from monitor.labels import LabelSet
from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MAX_POINTS = 200_000  # windows kept for the plot (about 55 h of one source at a 1 s hop)


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise PlotUnavailable with an install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable("--plot needs matplotlib: .venv/bin/pip install 'sound-monitor[eval]'") from exc


@dataclass(frozen=True)
class WindowPoint:
    """One window on the timeline: its span, level, scores and the thresholds in force then."""

    start: float
    end: float
    dbfs: float
    scores: dict[str, float]
    thresholds: dict[str, float]
    source: str = ""


class TimelineRecorder(Sink):
    """Collects windows, events and thresholds of a run and draws the timeline to ``path`` when it stops (one file
    per named source)."""

    def __init__(self, path: str | Path | None = None, min_dbfs: float | None = None,
                 sources: Sequence[SourceConfig] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self.min_dbfs = min_dbfs
        self.sources = {src.name: src for src in sources}
        self.points: deque[WindowPoint] = deque(maxlen=MAX_POINTS)
        self.events: deque[Event] = deque(maxlen=MAX_POINTS)
        self._thresholds: dict[str, dict[str, float]] = {}  # named source → label → threshold in force
        self._all: dict[str, float] = {}  # every label's own threshold (the unnamed source's)

    def on_labels(self, labels: LabelSet) -> None:
        """Thresholds in force from now on, per source (a runtime change shows as a step in its line)."""
        self._all = {lbl.name: lbl.threshold for lbl in labels.labels}
        self._thresholds = {name: source_thresholds(labels, src) for name, src in self.sources.items() if name}

    def on_window(self, window: ScoredWindow) -> None:
        """Record one window with its source's current thresholds (main thread)."""
        thresholds = self._thresholds.get(window.source, self._all)
        self.points.append(WindowPoint(window.start, window.end, window.dbfs, dict(window.scores), thresholds,
                                       window.source))

    def on_event(self, event: Event) -> None:
        """Record one event."""
        self.events.append(event)

    def stop(self) -> None:
        """Draw the plot(s) (errors are logged: the run's results are already out)."""
        if self.path is None:
            return
        for source, path in self.paths().items():
            try:
                self.render(path, min_dbfs=self.gate(source), source=source)
                log.info("plot written to %s", path)
            except Exception:
                log.exception("cannot draw the plot %s", path)

    def gate(self, source: str) -> float | None:
        """The loudness gate drawn on ``source``'s plot: its own ``min_dbfs``, else ``audio.min_dbfs``."""
        own = self.sources[source].min_dbfs if source in self.sources else None
        return own if own is not None else self.min_dbfs

    def paths(self) -> dict[str, Path]:
        """Source → the file its plot goes to: ``path`` for the unnamed source, ``<stem>-<source><suffix>`` else."""
        assert self.path is not None
        names = list(dict.fromkeys([*self.sources, *(p.source for p in self.points)])) or [""]
        return {name: self.path if not name else self.path.with_name(f"{self.path.stem}-{name}{self.path.suffix}")
                for name in names}

    def render(self, path: str | Path, min_dbfs: float | None = None, source: str = "") -> Path:
        """Draw ``source``'s timeline to ``path`` (PNG, or any format matplotlib infers from the suffix)."""
        points = [p for p in self.points if p.source == source]
        events = [e for e in self.events if e.source == source]
        return render_timeline(points, events, path, min_dbfs=min_dbfs)


def _spans(events: Sequence[Event], end_of_data: float) -> dict[str, list[tuple[float, float]]]:
    """Per label: (start, end) of each event on the stream clock; an unfinished one runs to the end."""
    open_: dict[str, float] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        if ev.type == "start":
            open_[ev.label] = ev.window_start
        elif ev.label in open_:
            spans.setdefault(ev.label, []).append((open_.pop(ev.label), ev.window_end))
    for label, start in open_.items():
        spans.setdefault(label, []).append((start, end_of_data))
    return spans


def render_timeline(points: Sequence[WindowPoint], events: Sequence[Event], path: str | Path,
                    min_dbfs: float | None = None) -> Path:
    """Draw :func:`timeline_figure` to ``path`` (the format follows the suffix; PNG for ``.png``)."""
    path = Path(path)
    fig = timeline_figure(points, events, min_dbfs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def timeline_figure(points: Sequence[WindowPoint], events: Sequence[Event], min_dbfs: float | None = None) -> Figure:
    """Scores (top) and level (bottom) by window centre; each event's windows shaded in its label's colour."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels: list[str] = []
    for p in points:
        labels.extend(n for n in p.thresholds if n not in labels)
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_level = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    centres = [(p.start + p.end) / 2 for p in points]
    end_of_data = points[-1].end if points else 0.0
    spans = _spans(events, end_of_data)
    colours = [f"C{i % 10}" for i in range(len(labels))]
    for label, colour in zip(labels, colours, strict=True):
        # NaN where the label was not scored (gate, adaptive hop, not yet added): a gap, not a zero.
        ys = [p.scores.get(label, math.nan) for p in points]
        th = [p.thresholds.get(label, math.nan) for p in points]
        ax.plot(centres, ys, color=colour, linewidth=1.4, label=label, marker="." if len(points) < 60 else None)
        ax.step(centres, th, where="mid", color=colour, linestyle="--", linewidth=1.0, alpha=0.8)
        for s, e in spans.get(label, []):
            ax.axvspan(s, e, color=colour, alpha=0.15, linewidth=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("score")
    n_events = sum(len(v) for v in spans.values())
    ax.set_title(f"{len(points)} windows, {n_events} events (dashed: threshold; shaded: the windows of each event)")
    ax.grid(True, alpha=0.3)
    if labels:
        ax.legend(loc="upper right", fontsize="small")
    ax_level.plot(centres, [p.dbfs for p in points], color="0.3", linewidth=1.0)
    if min_dbfs is not None:
        ax_level.axhline(min_dbfs, color="tab:red", linestyle=":", linewidth=1.0, label="gate (min_dbfs)")
        ax_level.legend(loc="upper right", fontsize="small")
    ax_level.set_ylabel("level (dBFS)")
    ax_level.set_xlabel("time (s, window centre)")
    ax_level.grid(True, alpha=0.3)
    return fig
