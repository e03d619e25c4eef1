"""Everything beyond the core pipeline, attached to a Monitor according to the config.

* MQTT telemetry: each window's level on ``<prefix>/level`` (``mqtt.publish_level``) and its top scores on
  ``<prefix>/scores`` (``mqtt.publish_scores``), so thresholds can be tuned from a dashboard;
* the retained ``<prefix>/config`` summary and runtime commands on ``<prefix>/command`` (:mod:`.control`);
* Home Assistant MQTT discovery (:mod:`.homeassistant`);
* Prometheus ``/metrics`` and ``/healthz`` (:mod:`.metrics`);
* event clips (:mod:`.clips`);
* the ``replay --plot`` timeline (:mod:`.plot`).

Use it around a run; leaving the ``with`` block writes unfinished clips, draws the plot and stops the
HTTP server::

    with attach_integrations(monitor, cfg, plot="out.png"):
        monitor.run(stop)
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from monitor.config import Config
from monitor.mqtt.commands import Controller, LabelRegistry
from monitor.records import ScoredWindow

if TYPE_CHECKING:
    from monitor.mqtt.homeassistant import Discovery
    from monitor.pipeline import Monitor
    from monitor.sinks.clips import ClipRecorder
    from monitor.sinks.metrics import Metrics, MetricsServer
    from monitor.sinks.plot import TimelineRecorder

log = logging.getLogger(__name__)


class Telemetry:
    """Per-window level and top scores over MQTT (main thread; sent only while connected)."""

    def __init__(self, monitor: Monitor, cfg: Config) -> None:
        assert cfg.mqtt is not None
        self.monitor = monitor
        self.publish_level = cfg.mqtt.publish_level
        self.publish_scores = cfg.mqtt.publish_scores
        self.top_n = cfg.mqtt.scores_top_n
        prefix = cfg.mqtt.resolved_prefix()
        self.level_topic = f"{prefix}/level"
        self.scores_topic = f"{prefix}/scores"

    def on_window(self, sw: ScoredWindow) -> None:
        """Publish this window's level and scores."""
        publisher = self.monitor.publisher
        # Live readings are worthless late: never let them queue (and push events out of) the outbox while the
        # broker is away. QoS 0, not retained.
        if publisher is None or not publisher.connected:
            return
        if self.publish_level:
            publisher.publish(self.level_topic, f"{sw.dbfs:.1f}", qos=0)
        if self.publish_scores and sw.scores:
            top = sorted(sw.scores.items(), key=lambda kv: kv[1], reverse=True)[: self.top_n]
            publisher.publish(self.scores_topic, {
                "window_start": round(sw.start, 3),
                "window_end": round(sw.end, 3),
                "level_dbfs": round(sw.dbfs, 2),
                "scores": {name: round(score, 4) for name, score in top},
            }, qos=0)


class Integrations:
    """What :func:`attach_integrations` attached; a context manager whose exit finishes and stops them."""

    def __init__(self, monitor: Monitor, cfg: Config) -> None:
        self.monitor = monitor
        self.cfg = cfg
        self.registry = LabelRegistry.from_config(cfg)
        self.controller: Controller | None = None
        self.discovery: Discovery | None = None
        self.telemetry: Telemetry | None = None
        self.metrics: Metrics | None = None
        self.server: MetricsServer | None = None
        self.clips: ClipRecorder | None = None
        self.timeline: TimelineRecorder | None = None
        self.plot_path: Path | None = None

    def close(self) -> None:
        """Write unfinished clips, draw the plot, stop the HTTP server (idempotent)."""
        if self.clips is not None:
            self.clips.close()
            self.clips = None
        if self.timeline is not None and self.plot_path is not None:
            try:
                self.timeline.render(self.plot_path, min_dbfs=self.cfg.audio.min_dbfs)
                log.info("plot written to %s", self.plot_path)
            except Exception:
                log.exception("cannot draw the plot %s", self.plot_path)
            self.timeline = None
        if self.server is not None:
            self.server.close()
            self.server = None

    def __enter__(self) -> Integrations:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def attach_integrations(monitor: Monitor, cfg: Config, plot: str | Path | None = None) -> Integrations:
    """Attach telemetry, runtime control, discovery, metrics, clips and the plot recorder as ``cfg`` says.

    Call before ``monitor.run``; the returned object is a context manager to close after the run.
    """
    out = Integrations(monitor, cfg)
    if cfg.mqtt is not None:
        out.controller = Controller(monitor, cfg, out.registry)
        out.controller.attach()
        if cfg.mqtt.publish_level or cfg.mqtt.publish_scores:
            out.telemetry = Telemetry(monitor, cfg)
            monitor.window_listeners.append(out.telemetry.on_window)
        if cfg.home_assistant.discovery:
            from monitor.mqtt.homeassistant import Discovery

            out.discovery = Discovery(monitor, cfg, out.registry)
            out.discovery.attach()
    if cfg.metrics.port is not None:
        _attach_metrics(out, monitor, cfg)
    if cfg.clips.enabled:
        from monitor.sinks.clips import ClipRecorder

        recorder = ClipRecorder(cfg)
        try:
            recorder.attach(monitor)
            out.clips = recorder
        except OSError as exc:
            log.error("clips: cannot use %s (%s); no clips will be written", cfg.clips.folder, exc)
    if plot is not None:
        from monitor.sinks.plot import TimelineRecorder, require_matplotlib

        require_matplotlib()
        out.timeline = TimelineRecorder(monitor)
        out.timeline.attach()
        out.plot_path = Path(plot)
    return out


def _attach_metrics(out: Integrations, monitor: Monitor, cfg: Config) -> None:
    try:
        from monitor.sinks.metrics import Metrics, MetricsServer
    except ImportError as exc:
        log.error("metrics.port is set but prometheus_client is missing (%s): pip install 'sound-monitor[metrics]'",
                  exc)
        return
    metrics = Metrics(monitor)
    metrics.attach()
    out.metrics = metrics
    port = cfg.metrics.port
    assert port is not None
    try:
        out.server = MetricsServer(metrics, cfg.metrics.bind, port).start()
    except OSError as exc:
        # The monitor's job is listening; a taken port is reported loudly but does not stop it.
        log.error("metrics: cannot listen on %s:%s (%s); /metrics and /healthz are off", cfg.metrics.bind, port, exc)
