"""Telemetry over MQTT: the level on ``<prefix>/level`` (``mqtt.publish_level``) and each window's top scores on
``<prefix>/scores`` (``mqtt.publish_scores``), so thresholds can be tuned from a dashboard.

The level is thinned: published when it moved ``mqtt.level_deadband_db`` from the last value sent, and at
most once per ``mqtt.level_interval_seconds``. A sensor that changes every second fills Home Assistant's
recorder with ~86,000 rows a day; a dashboard needs the moves, not the jitter. The interval runs on the
stream clock (the windows' times), so a replay thins the same way as live audio, however fast it runs.
Each source is thinned on its own and published under its own topics (``<prefix>/<source>/level``).
"""

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
        self.level_deadband = cfg.level_deadband_db
        self.level_interval = cfg.level_interval_seconds
        self.publish_scores = cfg.publish_scores
        self.top_n = cfg.scores_top_n
        self._last_level: dict[str, tuple[float, float]] = {}  # source → (stream time, dBFS) of its last level sent

    def on_window(self, sw: ScoredWindow) -> None:
        """Publish this window's level and scores."""
        # Live readings are worthless late: never let them queue (and push events out of) the outbox while the
        # broker is away. QoS 0, not retained.
        if not self.publisher.connected:
            self._last_level.clear()  # the first window after a reconnect is sent whatever its level
            return
        if self.publish_level and self._level_due(sw):
            self._last_level[sw.source] = (sw.end, sw.dbfs)
            self.publisher.publish(self.topics.level_of(sw.source), f"{sw.dbfs:.1f}", qos=0)
        if self.publish_scores and sw.scores:
            top = sorted(sw.scores.items(), key=lambda kv: kv[1], reverse=True)[: self.top_n]
            self.publisher.publish(self.topics.scores_of(sw.source), {
                "window_start": round(sw.start, 3),
                "window_end": round(sw.end, 3),
                "level_dbfs": round(sw.dbfs, 2),
                "scores": {name: round(score, 4) for name, score in top},
            }, qos=0)

    def _level_due(self, sw: ScoredWindow) -> bool:
        """Whether this window's level is worth sending: the interval has passed and it moved past the deadband."""
        last = self._last_level.get(sw.source)
        if last is None:
            return True
        since, level = last
        elapsed = sw.end - since
        if elapsed < 0:  # a new stream clock (the source restarted): start over
            return True
        return elapsed >= self.level_interval and abs(sw.dbfs - level) >= self.level_deadband
