"""Per-window telemetry over MQTT: the level on ``<prefix>/level`` (``mqtt.publish_level``) and the top scores on
``<prefix>/scores`` (``mqtt.publish_scores``), so thresholds can be tuned from a dashboard."""

from __future__ import annotations

from monitor.config import MqttConfig
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.topics import Topics
from monitor.records import ScoredWindow


class Telemetry:
    """Publishes each window's level and top scores (main thread; only while connected)."""

    def __init__(self, cfg: MqttConfig, publisher: MqttPublisher, topics: Topics) -> None:
        self.publisher = publisher
        self.topics = topics
        self.publish_level = cfg.publish_level
        self.publish_scores = cfg.publish_scores
        self.top_n = cfg.scores_top_n

    def on_window(self, sw: ScoredWindow) -> None:
        """Publish this window's level and scores."""
        # Live readings are worthless late: never let them queue (and push events out of) the outbox while the
        # broker is away. QoS 0, not retained.
        if not self.publisher.connected:
            return
        if self.publish_level:
            self.publisher.publish(self.topics.level, f"{sw.dbfs:.1f}", qos=0)
        if self.publish_scores and sw.scores:
            top = sorted(sw.scores.items(), key=lambda kv: kv[1], reverse=True)[: self.top_n]
            self.publisher.publish(self.topics.scores, {
                "window_start": round(sw.start, 3),
                "window_end": round(sw.end, 3),
                "level_dbfs": round(sw.dbfs, 2),
                "scores": {name: round(score, 4) for name, score in top},
            }, qos=0)
