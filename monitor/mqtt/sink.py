"""The MQTT sink: events, retained per-label states, telemetry, the config summary, discovery and commands.

The pipeline sees only a :class:`~monitor.sinks.Sink`; everything MQTT is built here at construction from
the config, the label registry and one publisher, and nothing here holds the pipeline.
"""

from __future__ import annotations

from monitor.config import Config
from monitor.labels import LabelRegistry, LabelSet
from monitor.mqtt.commands import CommandDispatcher, config_summary
from monitor.mqtt.homeassistant import Discovery
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.telemetry import Telemetry
from monitor.mqtt.topics import Topics
from monitor.records import Event, ScoredWindow
from monitor.sinks import Sink

CONNECT_WAIT_SECONDS = 2.0  # at shutdown, how long a run that never connected waits for the broker


class MqttSink(Sink):
    """Everything the monitor publishes and receives over MQTT."""

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher | None = None) -> None:
        assert cfg.mqtt is not None
        self.cfg = cfg
        self.registry = registry
        self.topics = Topics.from_config(cfg)
        self.publisher = publisher or MqttPublisher(cfg.mqtt, self.topics)
        m = cfg.mqtt
        self.telemetry = Telemetry(m, self.publisher, self.topics) if m.publish_level or m.publish_scores else None
        self.commands = CommandDispatcher(cfg, registry, self.publisher, self.topics) if m.commands else None
        self.discovery = (Discovery(cfg, registry, self.publisher, self.topics)
                          if cfg.home_assistant.discovery else None)
        self._labels = registry.applied()

    def start(self) -> None:
        """Reset label states, hook discovery and commands, and start connecting."""
        for label in self._labels.labels:  # a crash may have left a retained ON behind
            self.publisher.set_state(label.label_id, False)
        self.publisher.on_connect(self.publish_summary)  # a broker restarted without persistence forgets it
        if self.discovery is not None:
            self.discovery.start()
        if self.commands is not None:
            self.commands.start()
        self.publisher.start()

    def publish_summary(self) -> None:
        """Retained ``<prefix>/config``: labels with thresholds, enabled and prompts; model; node; version."""
        self.publisher.publish(self.topics.config, config_summary(self.cfg, self.registry.applied()), retain=True)

    def on_labels(self, labels: LabelSet) -> None:
        """Labels changed at run time: new ones start OFF, discovery follows, the summary is republished."""
        old, self._labels = self._labels, labels
        if old.version == labels.version:
            return
        known = {lbl.label_id for lbl in old.labels}
        for label in labels.labels:
            if label.label_id not in known:
                self.publisher.set_state(label.label_id, False)
        if self.discovery is not None:
            self.discovery.labels_changed(old, labels)
        self.publish_summary()

    def on_window(self, window: ScoredWindow) -> None:
        """Level and scores telemetry."""
        if self.telemetry is not None:
            self.telemetry.on_window(window)

    def on_event(self, event: Event) -> None:
        """The event JSON, the label's state, and its Home Assistant event entity."""
        self.publisher.publish_event(event)
        if self.commands is not None:
            self.commands.teacher.note_event(event)  # "clip": "last" of add_example / add_negative
        if self.discovery is not None:
            self.discovery.on_event(event)

    def stop(self) -> None:
        """Stop taking commands, let the discovery sweep finish, deliver what is queued, go ``offline``."""
        if self.commands is not None:
            self.commands.stop()
        if self.discovery is not None and self.publisher.wait_connected(CONNECT_WAIT_SECONDS):
            self.discovery.wait_swept(CONNECT_WAIT_SECONDS)
        self.publisher.stop(timeout=2.0)
