"""Home Assistant MQTT discovery: one device per node, a sound ``binary_sensor`` and an ``event`` per label,
and a ``sensor`` for the level.

Topics are ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (retained). ``node_id`` is the
node name's slug and ``object_id`` the label id, so ``unique_id``s stay the same across restarts. Discovery is
published when the run starts, after every reconnect, whenever Home Assistant announces ``online`` on
``<discovery_prefix>/status``, and for labels added at run time. Stale entities (a label taken out of the
config, or removed at run time) are deleted with an empty retained payload: on connect the monitor subscribes
to its own discovery topics, and any retained config the broker holds that no current label explains is removed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from paho.mqtt.client import topic_matches_sub

from monitor import __version__
from monitor.config import Config, slugify
from monitor.mqtt.commands import LabelRegistry, RuntimeLabel
from monitor.records import Event

if TYPE_CHECKING:
    from monitor.pipeline import Monitor

log = logging.getLogger(__name__)

LABEL_COMPONENTS = ("binary_sensor", "event")
LEVEL_OBJECT_ID = "level"


class Discovery:
    """Publishes and withdraws the Home Assistant discovery configs of one node."""

    def __init__(self, monitor: Monitor, cfg: Config, registry: LabelRegistry) -> None:
        assert cfg.mqtt is not None
        self.monitor = monitor
        self.cfg = cfg
        self.registry = registry
        self.prefix = cfg.mqtt.resolved_prefix()
        self.discovery_prefix = cfg.home_assistant.discovery_prefix
        self.node_id = slugify(cfg.node_name())
        self.status_topic = f"{self.discovery_prefix}/status"
        self.own_topics = f"{self.discovery_prefix}/+/{self.node_id}/+/config"
        self.availability_topic = f"{self.prefix}/availability"
        self.level_topic = f"{self.prefix}/level"

    # --- payloads ----------------------------------------------------------------------------------
    def config_topic(self, component: str, object_id: str) -> str:
        """``<discovery_prefix>/<component>/<node_id>/<object_id>/config``."""
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"

    def device(self) -> dict[str, Any]:
        """The device block every entity of this node shares (so Home Assistant groups them)."""
        return {
            "identifiers": [f"sound_monitor_{self.node_id}"],
            "name": f"Sound monitor {self.cfg.node_name()}",
            "model": f"CLAP zero-shot ({self.cfg.model})",
            "manufacturer": "sound-monitor",
            "sw_version": __version__,
        }

    def _common(self) -> dict[str, Any]:
        return {
            "availability": [
                {"topic": self.availability_topic, "payload_available": "online", "payload_not_available": "offline"}
            ],
            "device": self.device(),
            "origin": {"name": "sound-monitor", "sw_version": __version__},
            "qos": self.cfg.mqtt.qos if self.cfg.mqtt else 1,
        }

    def label_configs(self, label: RuntimeLabel) -> dict[str, dict[str, Any]]:
        """Discovery topic → payload for one label: a sound binary_sensor and an event entity."""
        base = f"sound_monitor_{self.node_id}_{label.label_id}"
        return {
            self.config_topic("binary_sensor", label.label_id): {
                "name": label.name,
                "unique_id": f"{base}_sound",
                "device_class": "sound",
                "state_topic": f"{self.prefix}/{label.label_id}/state",
                "payload_on": "ON",
                "payload_off": "OFF",
                **self._common(),
            },
            self.config_topic("event", label.label_id): {
                "name": f"{label.name} event",
                "unique_id": f"{base}_event",
                "state_topic": self.event_topic(label.label_id),
                "event_types": ["start", "end"],
                **self._common(),
            },
        }

    def level_config(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → payload of the level sensor (dBFS of each window)."""
        return {
            self.config_topic("sensor", LEVEL_OBJECT_ID): {
                "name": "Sound level",
                "unique_id": f"sound_monitor_{self.node_id}_level",
                "state_topic": self.level_topic,
                "unit_of_measurement": "dB",
                "state_class": "measurement",
                "suggested_display_precision": 1,
                "icon": "mdi:waveform",
                **self._common(),
            }
        }

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every discovery config this node should have right now."""
        out: dict[str, dict[str, Any]] = {}
        for label in self.registry.snapshot():
            out.update(self.label_configs(label))
        if self.cfg.mqtt is not None and self.cfg.mqtt.publish_level:
            out.update(self.level_config())
        return out

    def event_topic(self, label_id: str) -> str:
        """Where a label's event entity reads ``{"event_type": ...}``."""
        return f"{self.prefix}/{label_id}/event"

    # --- publishing --------------------------------------------------------------------------------
    def attach(self) -> None:
        """Hook into the monitor (call before ``Monitor.run``)."""
        self.monitor.on_started.append(self._started)
        self.monitor.event_listeners.append(self.on_event)
        self.registry.listeners.append(self.on_label_change)

    def _started(self, monitor: Monitor) -> None:
        publisher = monitor.publisher
        if publisher is None:
            return
        self.announce()
        publisher.on_connect(self.announce)  # a broker restarted without persistence has forgotten them
        publisher.add_message_handler(self._on_message)
        publisher.subscribe(self.status_topic)
        publisher.subscribe(self.own_topics)

    def announce(self) -> None:
        """Publish every current discovery config, retained."""
        publisher = self.monitor.publisher
        if publisher is None:
            return
        for topic, payload in self.configs().items():
            publisher.publish(topic, payload, retain=True)

    def on_label_change(self, kind: str, label: RuntimeLabel) -> None:
        """A label added at run time gets its entities; a removed one loses them (and its retained state)."""
        publisher = self.monitor.publisher
        if publisher is None:
            return
        if kind == "added":
            for topic, payload in self.label_configs(label).items():
                publisher.publish(topic, payload, retain=True)
        elif kind == "removed":
            self._withdraw(label.label_id)

    def _withdraw(self, label_id: str) -> None:
        publisher = self.monitor.publisher
        assert publisher is not None
        for component in LABEL_COMPONENTS:
            publisher.publish(self.config_topic(component, label_id), b"", retain=True)
        publisher.publish(f"{self.prefix}/{label_id}/state", b"", retain=True)

    def on_event(self, event: Event) -> None:
        """``{"event_type": "start"|"end", ...}`` on the label's event topic (for its event entity)."""
        if self.monitor.publisher is not None:
            self.monitor.publisher.publish(self.event_topic(event.label_id),
                                           {"event_type": event.type, **event.to_json_dict()})

    def _on_message(self, topic: str, payload: bytes) -> None:
        # Network thread. Publishing only goes through the publisher's (thread-safe) outbox.
        if topic == self.status_topic:
            if payload.strip().lower() == b"online":
                log.info("Home Assistant is online: republishing discovery")
                self.announce()
            return
        if not payload or not topic_matches_sub(self.own_topics, topic):
            return
        if topic in self.configs():
            return
        parts = topic.split("/")
        component, object_id = parts[-4], parts[-2]
        log.info("removing stale Home Assistant entity %s/%s", component, object_id)
        publisher = self.monitor.publisher
        assert publisher is not None
        publisher.publish(topic, b"", retain=True)
        if component in LABEL_COMPONENTS:
            publisher.publish(f"{self.prefix}/{object_id}/state", b"", retain=True)
