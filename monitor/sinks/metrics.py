"""Prometheus metrics (``/metrics``) and a health check (``/healthz``) on a small HTTP server thread.

Metrics use ``prometheus_client`` with a registry of their own (not the process-global one), all named
``sound_monitor_*``. Counters that other objects already keep (windows scored by the worker, windows dropped
by the queue, capture overruns in the ring buffer, MQTT state) are read at scrape time by a custom collector,
so nothing is counted twice; what only passes by (inference time per window, events, the latest level and
scores) is recorded by window and event listeners on the main thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.labels import LabelRegistry
from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink

if TYPE_CHECKING:
    from monitor.mqtt.publisher import MqttPublisher
    from monitor.pipeline import PipelineStats
    from monitor.sinks.clips import ClipRecorder

log = logging.getLogger(__name__)

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
        yield counter("capture_overruns", "Times the capture ring buffer overflowed (audio lost).", st.capture_overruns)
        yield counter("capture_lost_samples", "Samples lost to capture ring buffer overflows.", st.capture_lost_samples)
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
        last = o.last_window
        if last is not None:
            yield gauge("level_dbfs", "RMS level of the latest window (dBFS).", last.dbfs)
        labels = o.registry.applied()
        last_scores = o.last_scores
        scores = GaugeMetricFamily("sound_monitor_score", "Latest score of each label that can fire.",
                                   labels=["label"])
        thresholds = GaugeMetricFamily("sound_monitor_threshold", "Current threshold of each label.", labels=["label"])
        for lbl in labels.labels:
            if lbl.name in last_scores:
                scores.add_metric([lbl.name], last_scores[lbl.name])
            thresholds.add_metric([lbl.name], lbl.threshold)
        yield scores
        yield thresholds
        info = GaugeMetricFamily("sound_monitor_info", "Version, model and node.", labels=["version", "model", "node"])
        info.add_metric([__version__, o.model, o.node], 1.0)
        yield info


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
    ) -> None:
        self.stats = stats
        self.clips = clips
        self.health = health
        self.registry = registry
        self.model = model
        self.node = node
        self.publisher = publisher
        self.bind, self.port = bind, port
        self.server: MetricsServer | None = None
        self._tried = False
        self.prom = CollectorRegistry(auto_describe=True)
        self.inference_seconds = Histogram(
            "sound_monitor_inference_seconds", "Model time per scored window (a batch's time shared out).",
            buckets=INFERENCE_BUCKETS, registry=self.prom,
        )
        self.events = Counter("sound_monitor_events", "Detection events.", ["label", "type"], registry=self.prom)
        self.last_window: ScoredWindow | None = None
        self.last_scores: dict[str, float] = {}  # replaced whole (never mutated), so the HTTP thread reads it safely
        self.prom.register(_MonitorCollector(self))

    def start(self) -> None:
        """Serve ``/metrics`` and ``/healthz`` (a taken port is logged loudly; the monitor keeps listening).

        Idempotent: the wiring starts it before the model loads, the pipeline's start of sinks is then a no-op.
        """
        if self.port is None or self.server is not None or self._tried:
            return
        self._tried = True
        try:
            self.server = MetricsServer(self, self.bind or "127.0.0.1", self.port).start()
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%s (%s); /metrics and /healthz are off", self.bind, self.port, exc)

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
            self.last_scores = window.scores

    def on_event(self, event: Event) -> None:
        """Count one event (main thread)."""
        self.events.labels(label=event.label, type=event.type).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.prom)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, reason = self.server.metrics.health()
            self._send(200 if ok else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics http: " + format, *args)


class MetricsServer(ThreadingHTTPServer):
    """``/metrics`` and ``/healthz`` on ``bind:port``, served from a daemon thread."""

    daemon_threads = True

    def __init__(self, metrics: Metrics, bind: str, port: int) -> None:
        super().__init__((bind, port), _Handler)
        self.metrics = metrics
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        """Start serving."""
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", *self.server_address[:2])
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(2)
        self.server_close()
