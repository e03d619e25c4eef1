"""Prometheus metrics (``/metrics``) and a health check (``/healthz``) on a small HTTP server thread.

Metrics use ``prometheus_client`` with a registry of their own (not the process-global one), all named
``sound_monitor_*``. Counters that other objects already keep (windows scored by the worker, windows dropped
by the queue, capture overruns counted by the audio source, MQTT state) are read at scrape time by a custom collector,
so nothing is counted twice; what only passes by (inference time per window, events, the latest level and
scores) is recorded by window and event listeners on the main thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.records import Event, ScoredWindow

if TYPE_CHECKING:
    from monitor.pipeline import Monitor

log = logging.getLogger(__name__)

INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


def health(monitor: Monitor, now: float | None = None) -> tuple[bool, str]:
    """``(healthy, reason)``: ``monitor.healthy()`` and, when it is false, which part is stuck."""
    from monitor.pipeline import STALL_SECONDS

    now = time.monotonic() if now is None else now
    if monitor.healthy(now):
        return True, "ok"
    stage, worker = monitor.stage, monitor.worker
    if stage is None or worker is None:
        return False, "starting: loading the model"
    if now - stage.last_progress >= STALL_SECONDS:
        return False, f"no audio from the input for {now - stage.last_progress:.0f} s"
    if not worker.alive:
        return False, "the inference thread has stopped"
    if worker.stalled(now, STALL_SECONDS):
        return False, f"one inference has been running for over {STALL_SECONDS:g} s"
    return False, f"inference has made no progress for {now - worker.last_progress:.0f} s"


class _MonitorCollector(Collector):
    """Reads the counters that live in the monitor's parts at scrape time."""

    def __init__(self, owner: Metrics) -> None:
        self.owner = owner

    def _capture_counts(self) -> tuple[int, int]:
        # A live source (ReopeningSource) sums them over every reopened capture; a file has none.
        source = getattr(self.owner.monitor.stage, "source", None)
        return getattr(source, "overruns", 0), getattr(source, "lost_samples", 0)

    def collect(self) -> Iterator[Metric]:
        m = self.owner.monitor
        worker, publisher = m.worker, m.publisher

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"sound_monitor_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"sound_monitor_{name}", doc, value=value)

        yield counter("windows_scored", "Windows scored by the model.", worker.scored if worker else 0)
        yield counter("windows_skipped", "Windows not scored: quieter than audio.min_dbfs (the loudness gate).",
                      worker.skipped if worker else 0)
        yield counter("windows_idle_skipped", "Windows not scored by the adaptive hop while all was quiet.",
                      getattr(worker, "idle_skipped", 0) if worker else 0)
        yield counter("windows_dropped", "Windows dropped because inference fell behind.", m.windows.dropped)
        yield counter("inference_errors", "Inference calls that failed.", worker.errors if worker else 0)
        overruns, lost = self._capture_counts()
        yield counter("capture_overruns", "Times the capture ring buffer overflowed (audio lost).", overruns)
        yield counter("capture_lost_samples", "Samples lost to capture ring buffer overflows.", lost)
        yield gauge("queue_depth", "Windows waiting for inference.", len(m.windows))
        yield gauge("mqtt_connected", "1 while connected to the MQTT broker.",
                    1.0 if publisher is not None and publisher.connected else 0.0)
        if publisher is not None:
            yield counter("mqtt_messages_dropped", "MQTT messages dropped from a full outbox.", publisher.dropped)
            yield gauge("mqtt_pending", "MQTT messages waiting in the outbox.", publisher.pending())
        yield gauge("healthy", "1 while capture and inference both make progress.", 1.0 if m.healthy() else 0.0)
        last = self.owner.last_window
        if last is not None:
            yield gauge("level_dbfs", "RMS level of the latest window (dBFS).", last.dbfs)
        scores = GaugeMetricFamily("sound_monitor_score", "Latest score of each label that can fire.",
                                   labels=["label"])
        for rule in m.detector.rules:
            if rule.name in self.owner.last_scores:
                scores.add_metric([rule.name], self.owner.last_scores[rule.name])
        yield scores
        thresholds = GaugeMetricFamily("sound_monitor_threshold", "Current threshold of each label.", labels=["label"])
        for rule in m.detector.rules:
            thresholds.add_metric([rule.name], rule.threshold)
        yield thresholds
        info = GaugeMetricFamily("sound_monitor_info", "Version, model and node.", labels=["version", "model", "node"])
        info.add_metric([__version__, m.cfg.model, m.cfg.node_name()], 1.0)
        yield info


class Metrics:
    """The metrics of one monitor run in their own registry."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.registry = CollectorRegistry(auto_describe=True)
        self.inference_seconds = Histogram(
            "sound_monitor_inference_seconds", "Model time per scored window (a batch's time shared out).",
            buckets=INFERENCE_BUCKETS, registry=self.registry,
        )
        self.events = Counter("sound_monitor_events", "Detection events.", ["label", "type"], registry=self.registry)
        self.last_window: ScoredWindow | None = None
        self.last_scores: dict[str, float] = {}
        self.registry.register(_MonitorCollector(self))

    def attach(self) -> None:
        """Listen to the monitor's windows and events (call before ``Monitor.run``)."""
        self.monitor.window_listeners.append(self.on_window)
        self.monitor.event_listeners.append(self.on_event)

    def on_window(self, sw: ScoredWindow) -> None:
        """Record one window (main thread)."""
        self.last_window = sw
        if not sw.skipped and sw.scores:
            self.inference_seconds.observe(sw.inference_seconds)
            self.last_scores = sw.scores

    def on_event(self, event: Event) -> None:
        """Count one event (main thread)."""
        self.events.labels(label=event.label, type=event.type).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, reason = health(self.server.metrics.monitor)
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
