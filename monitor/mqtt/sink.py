"""The MQTT sink: events, retained per-label states, telemetry, the config summary, discovery and commands.

The pipeline sees only a :class:`~monitor.sinks.Sink`; everything MQTT is built here at construction from
the config, the label registry and one publisher, and nothing here holds the pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from monitor.config import Config, SourceConfig
from monitor.core.sourcerules import source_labels
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
    """Everything the monitor publishes and receives over MQTT.

    Per source (``sources``; default: the config's): its labels' states, events, telemetry and input state under
    ``<prefix>/<source>/``, and for a named source ``<prefix>/<source>/availability`` (``online`` while its audio
    flows). The unnamed source of a single-source config publishes directly under ``<prefix>/`` as it always did.
    """

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher | None = None,
                 input_entity: bool = False, text: TextEncoder | None = None,
                 sources: Sequence[SourceConfig] | None = None) -> None:
        assert cfg.mqtt is not None
        self.cfg = cfg
        self.registry = registry
        self.sources = list(sources) if sources is not None else cfg.source_configs()
        self.topics = Topics.from_config(cfg)
        self.publisher = publisher or MqttPublisher(cfg.mqtt, self.topics)
        m = cfg.mqtt
        self.telemetry = Telemetry(m, self.publisher, self.topics) if m.publish_level or m.publish_scores else None
        self.commands = CommandDispatcher(cfg, registry, self.publisher, self.topics, text) if m.commands else None
        self.discovery = (Discovery(cfg, registry, self.publisher, self.topics, input_entity=input_entity,
                                    sources=self.sources)
                          if cfg.home_assistant.discovery else None)
        self._labels = registry.applied()
        self._inputs: dict[str, InputState] = {}  # source → its latest input state
        self._input_lock = threading.Lock()  # the network thread republishes them: never an older one after a newer
        # (source, label_id) → ON, as last published. The lock keeps a state change (main thread) and the
        # republishing on connect (network thread) in one order in the outbox, so a reconnect never republishes a
        # stale state.
        self._states = {(src.name, lbl.label_id): False for src in self.sources
                        for lbl in source_labels(self._labels, src)}
        self._states_lock = threading.Lock()

    def start(self) -> None:
        """Hook the states, the summary, the input state, discovery and commands to every connect; connect."""
        # On every connect, before `online`: every label's state (at start all OFF, replacing an ON a crash may
        # have left retained; after a reconnect what a broker restarted without persistence forgot), the summary
        # and the input's state (the same).
        self.publisher.on_connect(self.publish_states)
        self.publisher.on_connect(self.publish_summary)
        self.publisher.on_connect(self._republish_inputs)
        if self.discovery is not None:
            self.discovery.start()
        if self.commands is not None:
            self.commands.start()
        self.publisher.start()

    def publish_states(self) -> None:
        """Every label's current retained ``ON``/``OFF`` (network thread, on connect)."""
        with self._states_lock:
            for (source, label_id), on in self._states.items():
                self.publisher.set_state(label_id, on, source)

    def publish_summary(self) -> None:
        """Retained ``<prefix>/config``: labels with thresholds, enabled and prompts; model; node; version."""
        self.publisher.publish(self.topics.config, config_summary(self.cfg, self.registry.applied()), retain=True)

    def on_labels(self, labels: LabelSet) -> None:
        """Labels changed at run time: new ones start OFF, discovery follows, the summary is republished."""
        old, self._labels = self._labels, labels
        if old.version == labels.version:
            return
        with self._states_lock:
            for src in self.sources:
                known = {lbl.label_id for lbl in source_labels(old, src)}
                now = source_labels(labels, src)
                for label in now:
                    if label.label_id not in known:
                        self._states[(src.name, label.label_id)] = False
                        self.publisher.set_state(label.label_id, False, src.name)
                for label_id in known - {lbl.label_id for lbl in now}:
                    self._states.pop((src.name, label_id), None)  # its retained state is cleared with its entities
        if self.discovery is not None:
            self.discovery.labels_changed(old, labels)
        self.publish_summary()

    def on_input(self, state: InputState) -> None:
        """A source's input went down or came back: retained JSON on ``<prefix>[/<source>]/input``, and for a
        named source ``online``/``offline`` on ``<prefix>/<source>/availability``."""
        with self._input_lock:
            self._inputs[state.source] = state
            self._publish_input(state)

    def _publish_input(self, state: InputState) -> None:
        self.publisher.publish(self.topics.input_of(state.source), state.to_json_dict(), retain=True)
        if state.source:
            self.publisher.publish(self.topics.source_availability(state.source),
                                   "online" if state.state == "up" else "offline", retain=True)

    def _republish_inputs(self) -> None:
        with self._input_lock:
            for state in self._inputs.values():
                self._publish_input(state)

    def on_window(self, window: ScoredWindow) -> None:
        """Level and scores telemetry."""
        if self.telemetry is not None:
            self.telemetry.on_window(window)

    def on_event(self, event: Event) -> None:
        """The event JSON, the label's state, and its Home Assistant event entity."""
        with self._states_lock:
            self._states[(event.source, event.label_id)] = event.type == "start"
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
        with self._input_lock:  # the node's `offline` (its Last Will too) covers them; a source's own topic says so
            for source in self._inputs:
                if source:
                    self.publisher.publish(self.topics.source_availability(source), "offline", retain=True)
        self.publisher.stop(timeout=2.0)
