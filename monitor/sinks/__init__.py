"""Sinks: where the pipeline's output goes. The pipeline knows them only through :class:`Sink`.

Every method is called on the main thread (the pipeline's), in order: ``start`` once the stages exist and
before audio flows; ``on_labels`` with the label set the scorer applied (at start and after each change);
``on_window`` for every scored or skipped window; ``on_event`` for every event (after the explicit steps
that annotate it, e.g. the clip name); ``on_input`` with a live input's state (``up`` at start, then every
change: the microphone gone, back), once per source (``state.source``); ``stop`` once the stages have finished.
Windows and events name their source too (``source``: "" for the one source of a config without ``sources``).
"""

from __future__ import annotations

from monitor.labels import LabelSet
from monitor.records import Event, InputState, ScoredWindow


class Sink:
    """Base class with no-op methods; a sink overrides what it needs."""

    def start(self) -> None:
        """The run begins (stages built, no audio yet)."""

    def on_labels(self, labels: LabelSet) -> None:
        """The label set the scorer now applies."""

    def on_window(self, window: ScoredWindow) -> None:
        """One scored (or skipped) window."""

    def on_event(self, event: Event) -> None:
        """One event start or end."""

    def on_input(self, state: InputState) -> None:
        """The audio input's state changed (live sources only; a file has none)."""

    def stop(self) -> None:
        """The run is over: flush and release."""
