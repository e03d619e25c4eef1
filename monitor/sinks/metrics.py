"""Prometheus metrics (``/metrics``) and a health check (``/healthz``) on a small HTTP server thread.

Metrics use ``prometheus_client`` with a registry of their own (not the process-global one), all named
``sound_monitor_*``. Counters that other objects already keep (windows scored by the worker, windows dropped
by the queue, capture overruns in the ring buffer, MQTT state) are read at scrape time by a custom collector,
so nothing is counted twice; what only passes by (inference time per window, events, the latest level and
scores) is recorded by window and event listeners on the main thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.config import SourceConfig
from monitor.core.sourcerules import source_labels
from monitor.labels import LabelRegistry
from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink
from monitor.sinks.http import TEXT, HttpServer

if TYPE_CHECKING:
    from monitor.mqtt.publisher import MqttPublisher
    from monitor.runstats import PipelineStats
    from monitor.sinks.clips import ClipRecorder

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "default"  # the `source` label of the unnamed source of a single-source config
INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class _MonitorCollector(Collector):
    """Reads the counters that live in the pipeline's parts at scrape time (HTTP thread: snapshots only)."""

    def __init__(self, owner: Metrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        o = self.owner
        st = o.stats()
        publisher = o.publisher

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"sound_monitor_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"sound_monitor_{name}", doc, value=value)

        yield counter("windows_scored", "Windows scored by the model.", st.windows_scored)
        yield counter("windows_skipped", "Windows not scored: quieter than audio.min_dbfs (the loudness gate).",
                      st.windows_skipped)
        yield counter("windows_idle_skipped", "Windows not scored by the adaptive hop while all was quiet.",
                      st.windows_idle_skipped)
        yield counter("windows_dropped", "Windows dropped because inference fell behind.", st.windows_dropped)
        yield counter("windows_invalid", "Windows not scored: they held NaN, inf or samples beyond ±1000 full scale.",
                      st.windows_invalid)
        yield counter("samples_clipped", "Samples beyond full scale clipped to ±1.", st.samples_clipped)
        yield counter("inference_errors", "Inference calls that failed.", st.inference_errors)
        yield counter("capture_overruns", "Times audio was lost to a slow consumer (capture ring or stream buffer).",
                      st.capture_overruns)
        yield counter("capture_lost_samples", "Samples lost to a slow consumer (capture ring or stream buffer).",
                      st.capture_lost_samples)
        yield gauge("queue_depth", "Windows waiting for inference.", st.queue_depth)
        yield gauge("mqtt_connected", "1 while connected to the MQTT broker.",
                    1.0 if publisher is not None and publisher.connected else 0.0)
        if publisher is not None:
            yield counter("mqtt_messages_dropped", "MQTT messages dropped from a full outbox.", publisher.dropped)
            yield gauge("mqtt_pending", "MQTT messages waiting in the outbox.", publisher.pending())
        if o.clips is not None:
            yield counter("clips_written", "Event clips written.", o.clips.written)
            yield counter("clips_failed", "Event clips not written (write errors, writer behind).", o.clips.failed)
        yield gauge("healthy", "1 while capture and inference both make progress.", 1.0 if o.health()[0] else 0.0)
        yield from _source_series(st)
        last = o.last_window
        if last is not None:
            yield gauge("level_dbfs", "RMS level of the latest window of any source (dBFS).", last.dbfs)
        yield from _label_series(o)
        info = GaugeMetricFamily("sound_monitor_info", "Version, model and node.", labels=["version", "model", "node"])
        info.add_metric([__version__, o.model, o.node], 1.0)
        yield info


def _label_series(o: Metrics) -> Iterator[Metric]:
    """Latest score and threshold of each label a source can fire on (label ``source`` and ``label``): a source
    detects its own subset with its own threshold overrides."""
    labels = o.registry.applied()
    last_scores = o.last_scores
    scores = GaugeMetricFamily("sound_monitor_score", "Latest score of each label that can fire, per source.",
                               labels=["source", "label"])
    thresholds = GaugeMetricFamily("sound_monitor_threshold", "Current threshold of each label, per source.",
                                   labels=["source", "label"])
    for src in o.sources:
        name = src.name or DEFAULT_SOURCE
        latest = last_scores.get(name, {})
        for lbl in source_labels(labels, src):
            if lbl.name in latest:
                scores.add_metric([name, lbl.name], latest[lbl.name])
            thresholds.add_metric([name, lbl.name], lbl.threshold)
    yield scores
    yield thresholds


def _source_series(st: PipelineStats) -> Iterator[Metric]:
    """One series per source (label ``source``): up, reconnects, windows, drops, queue depth, level."""
    up = GaugeMetricFamily("sound_monitor_source_up", "1 while the source delivers audio.", labels=["source"])
    reconnects = CounterMetricFamily("sound_monitor_source_reconnects", "Times the source came back after a failure.",
                                     labels=["source"])
    windows = CounterMetricFamily("sound_monitor_source_windows", "Windows cut from the source.", labels=["source"])
    dropped = CounterMetricFamily("sound_monitor_source_windows_dropped",
                                  "Windows of the source dropped because inference fell behind.", labels=["source"])
    depth = GaugeMetricFamily("sound_monitor_source_queue_depth", "Windows of the source waiting for inference.",
                              labels=["source"])
    level = GaugeMetricFamily("sound_monitor_source_level_dbfs", "RMS level of the source's latest window (dBFS).",
                              labels=["source"])
    for src in st.sources:
        name = [src.name or DEFAULT_SOURCE]
        up.add_metric(name, 1.0 if src.state == "up" else 0.0)
        reconnects.add_metric(name, src.reconnects)
        windows.add_metric(name, src.windows)
        dropped.add_metric(name, src.dropped)
        depth.add_metric(name, src.queue_depth)
        if src.level_dbfs is not None:
            level.add_metric(name, src.level_dbfs)
    yield from (up, reconnects, windows, dropped, depth, level)


class Metrics(Sink):
    """The metrics of one monitor run in their own registry, served with ``/healthz`` while the run lasts."""

    def __init__(
        self,
        stats: Callable[[], PipelineStats],
        health: Callable[[], tuple[bool, str]],
        registry: LabelRegistry,
        model: str,
        node: str,
        publisher: MqttPublisher | None = None,
        bind: str | None = None,
        port: int | None = None,
        clips: ClipRecorder | None = None,
        sources: Sequence[SourceConfig] = (),
        timeout: float = 5.0,
        max_connections: int = 256,
    ) -> None:
        self.stats = stats
        self.clips = clips
        self.sources = list(sources)  # whose labels and thresholds /metrics shows (the configs: static)
        self.health = health
        self.registry = registry
        self.model = model
        self.node = node
        self.publisher = publisher
        self.bind, self.port = bind, port
        self.timeout, self.max_connections = timeout, max_connections
        self.server: HttpServer | None = None
        self._tried = False
        self.prom = CollectorRegistry(auto_describe=True)
        self.inference_seconds = Histogram(
            "sound_monitor_inference_seconds", "Model time per scored window (a batch's time shared out).",
            buckets=INFERENCE_BUCKETS, registry=self.prom,
        )
        self.events = Counter("sound_monitor_events", "Detection events.", ["label", "type"], registry=self.prom)
        self.source_events = Counter("sound_monitor_source_events", "Detection events per source.",
                                     ["source", "label", "type"], registry=self.prom)
        self.last_window: ScoredWindow | None = None
        # source name -> its latest scores; replaced whole (never mutated), so the HTTP thread reads it safely
        self.last_scores: dict[str, dict[str, float]] = {}
        self.prom.register(_MonitorCollector(self))

    def start(self) -> None:
        """Serve ``/metrics`` and ``/healthz`` (a taken port is logged loudly; the monitor keeps listening).

        Idempotent: the wiring starts it before the model loads, the pipeline's start of sinks is then a no-op.
        """
        if self.port is None or self.server is not None or self._tried:
            return
        self._tried = True
        try:
            server = HttpServer(self.answer, self.bind or "127.0.0.1", self.port, timeout=self.timeout,
                                max_connections=self.max_connections, name="metrics")
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%s (%s); /metrics and /healthz are off", self.bind, self.port, exc)
            return
        self.server = server.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", *server.server_address)

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def on_window(self, window: ScoredWindow) -> None:
        """Record one window (main thread)."""
        self.last_window = window
        if not window.skipped and window.scores:
            self.inference_seconds.observe(window.inference_seconds)
            self.last_scores = {**self.last_scores, window.source or DEFAULT_SOURCE: window.scores}

    def on_event(self, event: Event) -> None:
        """Count one event (main thread)."""
        self.events.labels(label=event.label, type=event.type).inc()
        self.source_events.labels(source=event.source or DEFAULT_SOURCE, label=event.label, type=event.type).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.prom)

    def answer(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for a GET of ``path`` (on the HTTP server's thread)."""
        if path == "/metrics":
            return 200, self.render(), CONTENT_TYPE_LATEST
        if path == "/healthz":
            ok, reason = self.health()
            return (200 if ok else 503), (reason + "\n").encode(), TEXT
        return 404, b"not found: try /metrics or /healthz\n", TEXT
