"""One monitoring run: sources → windowing (one thread per source) → inference (one thread) → detection → sinks.

Each stage runs on its own thread and owns its own state; they talk only through bounded queues:

    source.read() ─▶ WindowStage (per source) ─▶ FairQueue[Window] ─▶ InferenceWorker
                  ─▶ DropOldestQueue[ScoredWindow] ─▶ Monitor.run (this thread: a Detector per source, sinks)

Every source's windows go through the one model, batched together when several are pending; the fair queue takes
them round-robin and, when inference falls behind, drops from the source with the most pending, counted per
source. :mod:`monitor.sourcerun` holds what is per source (stage, detector, input state, health, counters).

Labels come from the :class:`~monitor.labels.LabelRegistry`: the inference thread applies changes to the scorer,
and this thread, at the top of its loop, derives each source's detector rules from the applied set (that source's
subset and threshold overrides) and hands the set to the sinks; it follows each live source's input state (up or
down) the same way. Sinks (stdout, MQTT, metrics, clips, the plot) get what they need at construction; the pipeline
knows them only as :class:`~monitor.sinks.Sink`. An event passes through the ``annotators`` (e.g. the clip
recorder naming its clip) before any sink sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from monitor.config import Config
from monitor.core.detection import Detector
from monitor.core.queues import Closed, DropOldestQueue, FairQueue
from monitor.core.sourcerules import detection_rules, source_thresholds
from monitor.core.windowing import AudioSource
from monitor.inference.adaptive import AdaptiveHop
from monitor.inference.worker import InferenceWorker, Scorer
from monitor.labels import LabelRegistry
from monitor.lifecycle import call_unless_stopped
from monitor.records import Event, ScoredWindow, Window
from monitor.runstats import PipelineStats, total_stats
from monitor.sinks import Sink
from monitor.sourcerun import STALL_SECONDS, AudioTap, SourcePlan, SourceRun, run_health
from monitor.systemd import notify, watchdog_interval

if TYPE_CHECKING:
    from monitor.inference.text import TextEncoder

log = logging.getLogger(__name__)

__all__ = ["STALL_SECONDS", "Annotator", "AudioTap", "Monitor", "SourcePlan", "detection_rules"]

SHUTDOWN_SECONDS = 4.0  # SIGTERM to exit stays under systemd's and the 5 s
DROP_LOG_SECONDS = 10.0  # at most one "inference is behind" line per source this often

Annotator = Callable[[Event], Event]
Taps = Sequence[AudioTap] | Callable[[str], Sequence[AudioTap]]


class Monitor:
    """A monitoring run over one or several audio sources."""

    def __init__(
        self,
        cfg: Config,
        source_factory: Callable[[], AudioSource] | Sequence[SourcePlan],
        registry: LabelRegistry,
        live: bool,
        sinks: Sequence[Sink] = (),
        scorer: Scorer | None = None,
        taps: Taps = (),
        annotators: Sequence[Annotator] = (),
        text: TextEncoder | None = None,
    ) -> None:
        self.cfg = cfg
        self.text = text  # the text encoder the scorer shares with the command dispatcher
        self.live = live
        self.registry = registry
        self.scorer = scorer
        self.sinks = list(sinks)
        self.annotators = list(annotators)
        # A bare factory is the one unnamed source of a single-source config (replay, or `run` without `sources`).
        plans = ([SourcePlan(cfg.unnamed_source(), source_factory)] if callable(source_factory)
                 else list(source_factory))
        labels = registry.applied()
        self._labels_version = labels.version
        self.sources = [SourceRun(p, cfg, labels, live, taps(p.config.name) if callable(taps) else taps)
                        for p in plans]
        self._by_name = {run.name: run for run in self.sources}
        # Per source, the same bound as one source had alone: latency stays that of `queue_size` windows a source.
        self.windows: FairQueue[Window] = FairQueue(cfg.inference.queue_size * len(self.sources),
                                                    on_drop=self._window_dropped)
        self.results: DropOldestQueue[ScoredWindow] = DropOldestQueue(256)
        self.worker: InferenceWorker | None = None
        self._drop_log_lock = threading.Lock()  # windowing threads of different sources report drops
        self._last_drop_log: dict[str, float] = {}
        self._sink_errors: set[tuple[str, str, str]] = set()  # (part, method, error type) already logged (main)

    @property
    def detector(self) -> Detector:
        """The first (in a single-source run: the only) source's detector."""
        return self.sources[0].detector

    # --- parts -------------------------------------------------------------------------------------
    def make_scorer(self) -> Scorer:
        """Load the model with the registry's labels (the slow part of start-up)."""
        from monitor.inference.example_settings import ExampleSettings
        from monitor.inference.loading import load_scorer

        return load_scorer(self.cfg.model, self.cfg.inference, self.registry.current().scored(), text=self.text,
                           examples=ExampleSettings.from_config(self.cfg))

    def make_adaptive(self) -> dict[str, AdaptiveHop] | None:
        """Each source's adaptive-hop policy (watching its own thresholds), or None when ``audio.idle_hop_seconds``
        is not set."""
        a = self.cfg.audio
        if a.idle_hop_seconds is None:
            return None
        labels = self.registry.applied()
        return {run.name: AdaptiveHop(
            stride=round(a.idle_hop_seconds / a.hop_seconds),
            margin=a.adaptive_margin,
            level_jump_db=a.adaptive_level_jump_db,
            hold=max(1, round(a.window_seconds / a.hop_seconds)),
            thresholds=source_thresholds(labels, run.config),
        ) for run in self.sources}

    # --- state for other threads -------------------------------------------------------------------
    def health(self, now: float | None = None, watchdog: bool = False) -> tuple[bool, str]:
        """``(healthy, reason)``: behind ``/healthz``, the health metric and (``watchdog``) the systemd watchdog (see
        :func:`monitor.sourcerun.run_health`: degraded, not failing, while only some sources are down)."""
        return run_health(self.sources, self.worker, time.monotonic() if now is None else now, watchdog)

    def stats(self) -> PipelineStats:
        """The run's counters now."""
        return total_stats([run.stats(self.windows) for run in self.sources], self.windows, self.worker)

    # --- lifecycle ---------------------------------------------------------------------------------
    def _window_dropped(self, source: str, window: Window) -> None:
        # On the windowing thread of whichever source put: one line per source at most every DROP_LOG_SECONDS.
        now = time.monotonic()
        with self._drop_log_lock:
            if now - self._last_drop_log.get(source, -DROP_LOG_SECONDS) < DROP_LOG_SECONDS:
                return
            self._last_drop_log[source] = now
        where = f" of {source}" if source else ""
        log.warning("inference is behind: dropped window%s at %.1f s (%d dropped%s so far)", where, window.start,
                    self.windows.dropped_by(source), where)

    def run(self, stop: threading.Event) -> int:
        """Run until every source ends or ``stop`` is set; returns the process exit code."""
        if self.scorer is None:
            log.info("loading %s", self.cfg.model)
            # On its own thread: a stop during the load (seconds on a Pi) is acted on at once, not after it.
            self.scorer = call_unless_stopped(self.make_scorer, stop, "model-loader")
        if stop.is_set() or self.scorer is None:
            return 0
        configs = {run.name: run.config for run in self.sources}
        self.worker = InferenceWorker(
            self.scorer, self.registry, self.windows, self.results,
            min_dbfs={run.name: run.min_dbfs for run in self.sources},
            max_batch=self.cfg.inference.max_batch, adaptive=self.make_adaptive(),
            thresholds=lambda source, labels: source_thresholds(labels, configs.get(source)),
        )
        try:
            for run in self.sources:  # opened before the sinks start, as the one source always was
                run.open(self.windows)
            for sink in self.sinks:
                sink.start()
            self._deliver("on_labels", self.registry.applied())
            self.worker.start()
            for run in self.sources:
                run.start()
            notify("READY=1")
            names = ", ".join(r.name for r in self.sources[0].detector.rules)
            if len(self.sources) > 1 or self.sources[0].name:
                names += f" on {len(self.sources)} source(s): " + ", ".join(run.name for run in self.sources)
            log.info("listening for: %s", names)
            return self._loop(stop)
        finally:
            self._shutdown()

    def _loop(self, stop: threading.Event) -> int:
        assert self.worker is not None
        ping_every = watchdog_interval()
        last_ping = 0.0
        clock = 0.0  # replay: the stream clock (end of the latest window)
        stop_deadline: float | None = None
        while True:
            now = time.monotonic() if self.live else clock
            self._pull_labels(now)
            self._pull_inputs()
            if stop.is_set() and stop_deadline is None:
                log.info("stopping")
                notify("STOPPING=1")
                stop_deadline = time.monotonic() + SHUTDOWN_SECONDS / 2
                for run in self.sources:
                    run.stop()
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
                self._deliver("on_window", scored)
                run = self._by_name.get(scored.source)
                if run is not None:
                    self.emit(run.detector.update(scored, now))
            if self.live:
                for run in self.sources:
                    self.emit(run.detector.tick(now))
            if ping_every is not None and time.monotonic() - last_ping >= ping_every and self.health(watchdog=True)[0]:
                notify("WATCHDOG=1")
                last_ping = time.monotonic()
        end = time.monotonic() if self.live else clock
        for run in self.sources:
            self.emit(run.detector.flush(end))
        return 1 if any(run.stage is not None and run.stage.error is not None for run in self.sources) else 0

    def _pull_labels(self, now: float) -> None:
        """Follow the registry's applied label set: each source's detector rules first, then the sinks."""
        labels = self.registry.applied()
        if labels.version == self._labels_version:
            return
        self._labels_version = labels.version
        # Ending the events of labels removed or disabled publishes their OFF before the sinks drop them.
        for run in self.sources:
            self.emit(run.detector.set_rules(detection_rules(labels, run.config), now))
        self._deliver("on_labels", labels)

    def _pull_inputs(self) -> None:
        """Hand each source's new input state (set on its windowing thread) to the sinks."""
        for run in self.sources:
            state = run.poll_input()
            if state is not None:
                self._deliver("on_input", state)

    def emit(self, events: list[Event]) -> None:
        """Annotate, log and hand events to the sinks (main thread)."""
        for event in events:
            for annotate in self.annotators:
                try:
                    event = annotate(event)
                except Exception as exc:  # noqa: BLE001 - the event goes out without that annotation
                    self._sink_failed(annotate, "annotate", exc)
            where = f" on {event.source}" if event.source else ""
            log.info("%s %s%s (score %.3f, peak %.3f)", event.type, event.label, where, event.score,
                     event.peak_score)
            self._deliver("on_event", event)

    def _deliver(self, method: str, arg: object) -> None:
        """Call ``method`` of every sink with ``arg``; a sink that raises loses this one call, never the run (a
        failing clip folder or a plot bug must not stop every source's detection)."""
        for sink in self.sinks:
            try:
                getattr(sink, method)(arg)
            except Exception as exc:  # noqa: BLE001 - see above; logged once per sink, method and error type
                self._sink_failed(sink, method, exc)

    def _sink_failed(self, part: object, method: str, exc: Exception) -> None:
        key = (type(part).__name__, method, type(exc).__name__)
        if key not in self._sink_errors:
            self._sink_errors.add(key)
            log.error("%s.%s failed: %s (the monitor goes on; further such failures are logged at DEBUG)",
                      key[0], method, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        else:
            log.debug("%s.%s failed again: %s", key[0], method, exc)

    def _shutdown(self) -> None:
        for run in self.sources:  # all asked first, so their threads wind down together
            run.stop()
        deadline = time.monotonic() + 1.0
        for run in self.sources:
            if run.stage is not None:
                run.stage.join(max(0.05, deadline - time.monotonic()))
        self.windows.close()
        if self.worker is not None:
            self.worker.join(1.0)
        for sink in self.sinks:
            try:
                sink.stop()
            except Exception:  # one sink failing to close must not keep the others from closing
                log.exception("closing %s failed", type(sink).__name__)

