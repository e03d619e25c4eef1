"""One monitoring run, wired: source → windowing → inference → detection → MQTT and stdout.

Each stage runs on its own thread and owns its own state; they talk only through bounded queues:

    source.read() ─▶ WindowStage ─▶ DropOldestQueue[Window] ─▶ InferenceWorker
                  ─▶ DropOldestQueue[ScoredWindow] ─▶ Monitor.run (this thread: Detector, publishing)

The factory methods (``make_scorer``, ``make_publisher``) are the seams where a caller swaps a part.
Extensions (Home Assistant discovery, metrics, clips...) attach through the listener lists and the
``on_started``/``on_stopping`` hooks, and change state owned by this thread through ``call_soon``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from monitor.config import Config
from monitor.core.detection import Detector, LabelRule
from monitor.core.queues import Closed, DropOldestQueue
from monitor.core.windowing import AudioSource, WindowStage
from monitor.inference.adaptive import AdaptiveHop
from monitor.inference.scorer import ClapScorer, LabelPrompts
from monitor.inference.worker import InferenceWorker
from monitor.mqtt.publisher import MqttPublisher
from monitor.records import Event, ScoredWindow, Window
from monitor.systemd import notify, watchdog_interval

log = logging.getLogger(__name__)

STALL_SECONDS = 15.0  # no progress for this long = unhealthy (watchdog stops, /healthz fails)
SHUTDOWN_SECONDS = 4.0  # SIGTERM to exit stays under systemd's and the 5 s


def scorer_labels(cfg: Config) -> list[LabelPrompts]:
    """Every label the model scores: the configured labels, then the background labels."""
    out = [LabelPrompts(lbl.name, tuple(cfg.label_prompts(lbl))) for lbl in cfg.labels]
    out += [LabelPrompts(b, (cfg.prompt_template.format(b),)) for b in cfg.background]
    return out


def detection_rules(cfg: Config) -> list[LabelRule]:
    """Detector rules for the configured (non-background) labels."""
    return [LabelRule(lbl.name, lbl.slug, cfg.label_threshold(lbl), lbl.enabled) for lbl in cfg.labels]


def adaptive_thresholds(rules: list[LabelRule]) -> dict[str, float]:
    """Thresholds the adaptive hop watches: labels that can fire."""
    return {r.name: r.threshold for r in rules if r.enabled}


class Monitor:
    """A monitoring run over one audio source."""

    def __init__(
        self,
        cfg: Config,
        source_factory: Callable[[], AudioSource],
        live: bool,
        on_scores: Callable[[ScoredWindow], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        scorer: ClapScorer | None = None,
    ) -> None:
        self.cfg = cfg
        self.live = live
        self.source_factory = source_factory
        self.scorer = scorer
        # Called on this (the main) thread for every scored window / event, in order.
        self.window_listeners: list[Callable[[ScoredWindow], None]] = [on_scores] if on_scores else []
        self.event_listeners: list[Callable[[Event], None]] = [on_event] if on_event else []
        # Called on the windowing thread with (first sample index, 48 kHz samples) of the resampled stream.
        self.audio_taps: list[Callable[[int, np.ndarray], None]] = []
        # Called once every stage exists (before audio flows) and when shutdown begins.
        self.on_started: list[Callable[[Monitor], None]] = []
        self.on_stopping: list[Callable[[Monitor], None]] = []
        self._calls: DropOldestQueue[Callable[[], None]] = DropOldestQueue(1000)
        self.publisher: MqttPublisher | None = None
        self.detector = Detector(
            detection_rules(cfg),
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

    # --- factories (seams) -------------------------------------------------------------------------
    def make_scorer(self) -> ClapScorer:
        """Load the model and encode the labels (the slow part of start-up)."""
        inf = self.cfg.inference
        scorer = ClapScorer(self.cfg.model, threads=inf.threads, precision=inf.precision)
        scorer.set_labels(scorer_labels(self.cfg))
        scorer.free_text_tower()
        return scorer

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
            thresholds=adaptive_thresholds(self.detector.rules),
        )

    def make_publisher(self) -> MqttPublisher | None:
        """The MQTT publisher, or None when the config has no ``mqtt`` section."""
        return MqttPublisher(self.cfg.mqtt) if self.cfg.mqtt is not None else None

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the main thread (the owner of the detector and the listeners), from any thread."""
        self._calls.put(fn, block=True, timeout=5)

    # --- lifecycle ---------------------------------------------------------------------------------
    def _window_dropped(self, window: Window) -> None:
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.warning("inference is behind: dropped window at %.1f s (%d dropped so far)", window.start,
                        self.windows.dropped)

    def healthy(self, now: float | None = None) -> bool:
        """Capture and inference are both making progress."""
        now = time.monotonic() if now is None else now
        stage, worker = self.stage, self.worker
        if stage is None or worker is None:
            return False
        return (
            now - stage.last_progress < STALL_SECONDS
            and worker.alive
            and not worker.stalled(now, STALL_SECONDS)
            and now - worker.last_progress < STALL_SECONDS
        )

    def run(self, stop: threading.Event) -> int:
        """Run until the source ends or ``stop`` is set; returns the process exit code."""
        if self.scorer is None:
            self.scorer = self.make_scorer()
        if stop.is_set():
            return 0
        self.publisher = self.make_publisher()
        if self.publisher is not None:
            for rule in self.detector.rules:  # a crash may have left a retained ON behind
                self.publisher.set_state(rule.label_id, False)
            self.publisher.start()
        source = self.source_factory()
        self.stage = WindowStage(
            source,
            self.windows,
            self.cfg.audio.window_seconds,
            self.cfg.audio.hop_seconds,
            live=self.live,
            taps=self.audio_taps,
        )
        self.worker = InferenceWorker(
            self.scorer, self.windows, self.results, min_dbfs=self.cfg.audio.min_dbfs,
            max_batch=self.cfg.inference.max_batch, adaptive=self.make_adaptive(),
        )
        for hook in self.on_started:
            hook(self)
        self.worker.start()
        self.stage.start()
        notify("READY=1")
        log.info("listening for: %s", ", ".join(r.name for r in self.detector.rules))
        try:
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
            self._run_calls()
            if stop.is_set() and stop_deadline is None:
                log.info("stopping")
                notify("STOPPING=1")
                for hook in self.on_stopping:
                    hook(self)
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
                self._handle(scored, now)
            if self.live:
                self.emit(self.detector.tick(now))
            if ping_every is not None and time.monotonic() - last_ping >= ping_every and self.healthy():
                notify("WATCHDOG=1")
                last_ping = time.monotonic()
        self.emit(self.detector.flush(time.monotonic() if self.live else clock))
        if self.stage.error is not None:
            return 1
        return 0

    def _run_calls(self) -> None:
        while True:
            fn = self._calls.get(timeout=0)
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a failing extension must not stop the monitor
                log.exception("deferred call failed")

    def _handle(self, scored: ScoredWindow, now: float) -> None:
        for listener in self.window_listeners:
            listener(scored)
        self.emit(self.detector.update(scored, now))

    def emit(self, events: list[Event]) -> None:
        """Log, hand to the listeners and publish events (main thread)."""
        for event in events:
            log.info("%s %s (score %.3f, peak %.3f)", event.type, event.label, event.score, event.peak_score)
            for listener in self.event_listeners:
                listener(event)
            if self.publisher is not None:
                self.publisher.publish_event(event)

    def _shutdown(self) -> None:
        if self.stage is not None:
            self.stage.stop()
            self.stage.join(1.0)
        self.windows.close()
        if self.worker is not None:
            self.worker.join(1.0)
        if self.publisher is not None:
            self.publisher.stop(timeout=2.0)
