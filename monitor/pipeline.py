"""One monitoring run: source → windowing → inference → detection → sinks.

Each stage runs on its own thread and owns its own state; they talk only through bounded queues:

    source.read() ─▶ WindowStage ─▶ DropOldestQueue[Window] ─▶ InferenceWorker
                  ─▶ DropOldestQueue[ScoredWindow] ─▶ Monitor.run (this thread: Detector, sinks)

Labels come from the :class:`~monitor.labels.LabelRegistry`: the inference thread applies changes to the scorer,
and this thread, at the top of its loop, derives the detector's rules from the applied set and hands it to
the sinks; it follows a live source's ``input_state`` (microphone up or down) the same way. Sinks (stdout, MQTT,
metrics, clips, the plot) get what they need at construction; the pipeline
knows them only as :class:`~monitor.sinks.Sink`. An event passes through the ``annotators`` (e.g. the clip
recorder naming its clip) before any sink sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from monitor.config import Config
from monitor.core.detection import Detector, LabelRule
from monitor.core.queues import Closed, DropOldestQueue
from monitor.core.windowing import AudioSource, WindowStage
from monitor.inference.adaptive import AdaptiveHop
from monitor.inference.worker import InferenceWorker, Scorer
from monitor.labels import LabelRegistry, LabelSet
from monitor.lifecycle import call_unless_stopped
from monitor.records import Event, InputState, ScoredWindow, Window
from monitor.sinks import Sink
from monitor.systemd import notify, watchdog_interval

if TYPE_CHECKING:
    from monitor.inference.text import TextEncoder

log = logging.getLogger(__name__)

STALL_SECONDS = 15.0  # no progress for this long = unhealthy (watchdog stops, /healthz fails)
SHUTDOWN_SECONDS = 4.0  # SIGTERM to exit stays under systemd's and the 5 s

AudioTap = Callable[[int, np.ndarray], None]
Annotator = Callable[[Event], Event]


@dataclass(frozen=True)
class PipelineStats:
    """Counters of one run, read at any time from any thread (each a plain read of its owner's counter)."""

    windows_scored: int = 0
    windows_skipped: int = 0
    windows_idle_skipped: int = 0
    windows_dropped: int = 0
    inference_errors: int = 0
    queue_depth: int = 0
    capture_overruns: int = 0
    capture_lost_samples: int = 0
    windows_invalid: int = 0  # windows holding NaN/inf/absurd samples, not scored
    samples_clipped: int = 0  # samples beyond full scale clipped to ±1


def detection_rules(labels: LabelSet) -> list[LabelRule]:
    """Detector rules for a label set (background labels never fire)."""
    return [LabelRule(lbl.name, lbl.label_id, lbl.threshold, lbl.enabled) for lbl in labels.labels]


class Monitor:
    """A monitoring run over one audio source."""

    def __init__(
        self,
        cfg: Config,
        source_factory: Callable[[], AudioSource],
        registry: LabelRegistry,
        live: bool,
        sinks: Sequence[Sink] = (),
        scorer: Scorer | None = None,
        taps: Sequence[AudioTap] = (),
        annotators: Sequence[Annotator] = (),
        text: TextEncoder | None = None,
    ) -> None:
        self.cfg = cfg
        self.text = text  # the text encoder the scorer shares with the command dispatcher
        self.live = live
        self.registry = registry
        self.source_factory = source_factory
        self.scorer = scorer
        self.sinks = list(sinks)
        self.taps = list(taps)
        self.annotators = list(annotators)
        labels = registry.applied()
        self._labels_version = labels.version
        self._input_version = -1  # of the source's InputState last handed to the sinks
        self.detector = Detector(
            detection_rules(labels),
            node=cfg.node_name(),
            min_hits=cfg.detection.min_hits,
            end_after_seconds=cfg.detection.end_after_seconds,
            cooldown_seconds=cfg.detection.cooldown_seconds,
        )
        self.windows: DropOldestQueue[Window] = DropOldestQueue(cfg.inference.queue_size, on_drop=self._window_dropped)
        self.results: DropOldestQueue[ScoredWindow] = DropOldestQueue(256)
        self.stage: WindowStage | None = None
        self.worker: InferenceWorker | None = None
        self._last_drop_log = 0.0

    # --- parts -------------------------------------------------------------------------------------
    def make_scorer(self) -> Scorer:
        """Load the model with the registry's labels (the slow part of start-up)."""
        from monitor.inference.example_settings import ExampleSettings
        from monitor.inference.loading import load_scorer

        return load_scorer(self.cfg.model, self.cfg.inference, self.registry.current().scored(), text=self.text,
                           examples=ExampleSettings.from_config(self.cfg))

    def make_adaptive(self) -> AdaptiveHop | None:
        """The adaptive-hop policy, or None when ``audio.idle_hop_seconds`` is not set."""
        a = self.cfg.audio
        if a.idle_hop_seconds is None:
            return None
        return AdaptiveHop(
            stride=round(a.idle_hop_seconds / a.hop_seconds),
            margin=a.adaptive_margin,
            level_jump_db=a.adaptive_level_jump_db,
            hold=max(1, round(a.window_seconds / a.hop_seconds)),
            thresholds=self.registry.applied().thresholds(),
        )

    # --- state for other threads -------------------------------------------------------------------
    def health(self, now: float | None = None) -> tuple[bool, str]:
        """``(healthy, reason)``: capture and inference both making progress. Behind the systemd watchdog,
        ``/healthz`` and the health metric alike."""
        now = time.monotonic() if now is None else now
        stage, worker = self.stage, self.worker
        if stage is None or worker is None:
            return False, "starting: loading the model"
        source = _input_state(stage.source)
        if source is not None and source.state == "down":  # at once, not after STALL_SECONDS without audio
            return False, f"audio input is down: {source.error}"
        if now - stage.last_progress >= STALL_SECONDS:
            return False, f"no audio from the input for {now - stage.last_progress:.0f} s"
        if not worker.alive:
            return False, "the inference thread has stopped"
        if worker.stalled(now, STALL_SECONDS):
            return False, f"one inference has been running for over {STALL_SECONDS:g} s"
        if now - worker.last_progress >= STALL_SECONDS:
            return False, f"inference has made no progress for {now - worker.last_progress:.0f} s"
        return True, "ok"

    def stats(self) -> PipelineStats:
        """The run's counters now."""
        worker, stage = self.worker, self.stage
        source = stage.source if stage is not None else None
        overruns, lost = _capture_counts(source)
        if worker is None:
            return PipelineStats(windows_dropped=self.windows.dropped, queue_depth=len(self.windows))
        return PipelineStats(
            windows_scored=worker.scored,
            windows_skipped=worker.skipped,
            windows_idle_skipped=worker.idle_skipped,
            windows_dropped=self.windows.dropped,
            inference_errors=worker.errors,
            queue_depth=len(self.windows),
            capture_overruns=overruns,
            capture_lost_samples=lost,
            windows_invalid=stage.windows_invalid if stage is not None else 0,
            samples_clipped=stage.samples_clipped if stage is not None else 0,
        )

    # --- lifecycle ---------------------------------------------------------------------------------
    def _window_dropped(self, window: Window) -> None:
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.warning("inference is behind: dropped window at %.1f s (%d dropped so far)", window.start,
                        self.windows.dropped)

    def run(self, stop: threading.Event) -> int:
        """Run until the source ends or ``stop`` is set; returns the process exit code."""
        if self.scorer is None:
            log.info("loading %s", self.cfg.model)
            # On its own thread: a stop during the load (seconds on a Pi) is acted on at once, not after it.
            self.scorer = call_unless_stopped(self.make_scorer, stop, "model-loader")
        if stop.is_set() or self.scorer is None:
            return 0
        source = self.source_factory()
        self.stage = WindowStage(source, self.windows, self.cfg.audio.window_seconds, self.cfg.audio.hop_seconds,
                                 live=self.live, taps=self.taps)
        self.worker = InferenceWorker(
            self.scorer, self.registry, self.windows, self.results, min_dbfs=self.cfg.audio.min_dbfs,
            max_batch=self.cfg.inference.max_batch, adaptive=self.make_adaptive(),
        )
        try:
            for sink in self.sinks:
                sink.start()
            for sink in self.sinks:
                sink.on_labels(self.registry.applied())
            self.worker.start()
            self.stage.start()
            notify("READY=1")
            log.info("listening for: %s", ", ".join(r.name for r in self.detector.rules))
            return self._loop(stop)
        finally:
            self._shutdown()

    def _loop(self, stop: threading.Event) -> int:
        assert self.stage is not None and self.worker is not None
        ping_every = watchdog_interval()
        last_ping = 0.0
        clock = 0.0  # replay: the stream clock (end of the latest window)
        stop_deadline: float | None = None
        while True:
            now = time.monotonic() if self.live else clock
            self._pull_labels(now)
            self._pull_input()
            if stop.is_set() and stop_deadline is None:
                log.info("stopping")
                notify("STOPPING=1")
                stop_deadline = time.monotonic() + SHUTDOWN_SECONDS / 2
                self.stage.stop()
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                log.warning("inference did not finish in time; leaving %d window(s) unscored", len(self.windows))
                break
            try:
                scored = self.results.get(timeout=0.2)
            except Closed:
                break
            now = time.monotonic() if self.live else clock
            if scored is not None:
                if not self.live:
                    clock = now = scored.mono_end
                for sink in self.sinks:
                    sink.on_window(scored)
                self.emit(self.detector.update(scored, now))
            if self.live:
                self.emit(self.detector.tick(now))
            if ping_every is not None and time.monotonic() - last_ping >= ping_every and self.health()[0]:
                notify("WATCHDOG=1")
                last_ping = time.monotonic()
        self.emit(self.detector.flush(time.monotonic() if self.live else clock))
        return 1 if self.stage.error is not None else 0

    def _pull_labels(self, now: float) -> None:
        """Follow the registry's applied label set: detector rules first, then the sinks."""
        labels = self.registry.applied()
        if labels.version == self._labels_version:
            return
        self._labels_version = labels.version
        # Ending the events of labels removed or disabled publishes their OFF before the sinks drop them.
        self.emit(self.detector.set_rules(detection_rules(labels), now))
        for sink in self.sinks:
            sink.on_labels(labels)

    def _pull_input(self) -> None:
        """Hand a new state of the source's input (set on the windowing thread) to the sinks."""
        assert self.stage is not None
        state = _input_state(self.stage.source)
        if state is None or state.version == self._input_version:
            return
        self._input_version = state.version
        for sink in self.sinks:
            sink.on_input(state)

    def emit(self, events: list[Event]) -> None:
        """Annotate, log and hand events to the sinks (main thread)."""
        for event in events:
            for annotate in self.annotators:
                event = annotate(event)
            log.info("%s %s (score %.3f, peak %.3f)", event.type, event.label, event.score, event.peak_score)
            for sink in self.sinks:
                sink.on_event(event)

    def _shutdown(self) -> None:
        if self.stage is not None:
            self.stage.stop()
            self.stage.join(1.0)
        self.windows.close()
        if self.worker is not None:
            self.worker.join(1.0)
        for sink in self.sinks:
            try:
                sink.stop()
            except Exception:  # one sink failing to close must not keep the others from closing
                log.exception("closing %s failed", type(sink).__name__)


def _capture_counts(source: object) -> tuple[int, int]:
    """(overruns, lost samples) a source reports: a live source sums them over every capture it reopened;
    a file has none."""
    return getattr(source, "overruns", 0), getattr(source, "lost_samples", 0)


def _input_state(source: object) -> InputState | None:
    """A live source's input state (a plain read of the snapshot it swaps whole); None for a file."""
    return getattr(source, "input_state", None)
