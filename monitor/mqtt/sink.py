"""The MQTT sink: events, retained per-label states, telemetry, the config summary, discovery and commands.

The pipeline sees only a :class:`~monitor.sinks.Sink`; everything MQTT is built here at construction from
the config, the label registry and one publisher, and nothing here holds the pipeline.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from monitor.config import Config
from monitor.labels import LabelRegistry, LabelSet
from monitor.mqtt.commands import CommandDispatcher
from monitor.mqtt.homeassistant import Discovery
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.summary import config_summary
from monitor.mqtt.telemetry import Telemetry
from monitor.mqtt.topics import Topics
from monitor.records import Event, InputState, ScoredWindow
from monitor.sinks import Sink

if TYPE_CHECKING:
    from monitor.inference.text import TextEncoder

CONNECT_WAIT_SECONDS = 2.0  # at shutdown, how long a run that never connected waits for the broker


class MqttSink(Sink):
    """Everything the monitor publishes and receives over MQTT."""

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher | None = None,
                 input_entity: bool = False, text: TextEncoder | None = None) -> None:
        assert cfg.mqtt is not None
        self.cfg = cfg
        self.registry = registry
        self.topics = Topics.from_config(cfg)
        self.publisher = publisher or MqttPublisher(cfg.mqtt, self.topics)
        m = cfg.mqtt
        self.telemetry = Telemetry(m, self.publisher, self.topics) if m.publish_level or m.publish_scores else None
        self.commands = CommandDispatcher(cfg, registry, self.publisher, self.topics, text) if m.commands else None
        self.discovery = (Discovery(cfg, registry, self.publisher, self.topics, input_entity=input_entity)
                          if cfg.home_assistant.discovery else None)
        self._labels = registry.applied()
        self._input: InputState | None = None
        self._input_lock = threading.Lock()  # the network thread republishes it: never an older one after a newer
        # label_id → ON, as last published. The lock keeps a state change (main thread) and the republishing on
        # connect (network thread) in one order in the outbox, so a reconnect never republishes a stale state.
        self._states = {lbl.label_id: False for lbl in self._labels.labels}
        self._states_lock = threading.Lock()

    def start(self) -> None:
        """Hook the states, the summary, the input state, discovery and commands to every connect; connect."""
        # On every connect, before `online`: every label's state (at start all OFF, replacing an ON a crash may
        # have left retained; after a reconnect what a broker restarted without persistence forgot), the summary
        # and the input's state (the same).
        self.publisher.on_connect(self.publish_states)
        self.publisher.on_connect(self.publish_summary)
        self.publisher.on_connect(self._republish_input)
        if self.discovery is not None:
            self.discovery.start()
        if self.commands is not None:
            self.commands.start()
        self.publisher.start()

    def publish_states(self) -> None:
        """Every label's current retained ``ON``/``OFF`` (network thread, on connect)."""
        with self._states_lock:
            for label_id, on in self._states.items():
                self.publisher.set_state(label_id, on)

    def publish_summary(self) -> None:
        """Retained ``<prefix>/config``: labels with thresholds, enabled and prompts; model; node; version."""
        self.publisher.publish(self.topics.config, config_summary(self.cfg, self.registry.applied()), retain=True)

    def on_labels(self, labels: LabelSet) -> None:
        """Labels changed at run time: new ones start OFF, discovery follows, the summary is republished."""
        old, self._labels = self._labels, labels
        if old.version == labels.version:
            return
        known = {lbl.label_id for lbl in old.labels}
        with self._states_lock:
            for label in labels.labels:
                if label.label_id not in known:
                    self._states[label.label_id] = False
                    self.publisher.set_state(label.label_id, False)
            for label_id in known - {lbl.label_id for lbl in labels.labels}:
                self._states.pop(label_id, None)  # its retained state is cleared with its entities
        if self.discovery is not None:
            self.discovery.labels_changed(old, labels)
        self.publish_summary()

    def on_input(self, state: InputState) -> None:
        """The audio input went down or came back: retained JSON on ``<prefix>/input``."""
        with self._input_lock:
            self._input = state
            self.publisher.publish(self.topics.input, state.to_json_dict(), retain=True)

    def _republish_input(self) -> None:
        with self._input_lock:
            if self._input is not None:
                self.publisher.publish(self.topics.input, self._input.to_json_dict(), retain=True)

    def on_window(self, window: ScoredWindow) -> None:
        """Level and scores telemetry."""
        if self.telemetry is not None:
            self.telemetry.on_window(window)

    def on_event(self, event: Event) -> None:
        """The event JSON, the label's state, and its Home Assistant event entity."""
        with self._states_lock:
            self._states[event.label_id] = event.type == "start"
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
