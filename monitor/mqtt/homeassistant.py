"""Home Assistant MQTT discovery: one device per node, a sound ``binary_sensor`` and an ``event`` per label,
and a ``sensor`` for the level.

Topics are ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (retained). ``node_id`` is the
node name's slug and ``object_id`` the label id, so ``unique_id``s stay the same across restarts. Discovery is
published after every connect, whenever Home Assistant announces ``online`` on ``<discovery_prefix>/status``,
and for labels added at run time; a label removed at run time loses its entities.

Stale entities (a label taken out of the config) are deleted with an empty retained payload. On every
connect the monitor subscribes to its own discovery topics, collects the retained configs the broker holds,
and then makes a round trip: it publishes a token on a private topic it also subscribes to. The broker
delivers in order, so when the token comes back every retained config has arrived; what no current label
explains is then deleted. Shutdown waits for that sweep (:meth:`Discovery.wait_swept`), so even a run
shorter than a second cleans up, and nothing depends on how long anything takes.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

from paho.mqtt.client import topic_matches_sub

from monitor import __version__
from monitor.config import Config
from monitor.labels import Label, LabelRegistry, LabelSet
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.topics import Topics
from monitor.records import Event

log = logging.getLogger(__name__)

LABEL_COMPONENTS = ("binary_sensor", "event")
# Teaching buttons per label (with clips and commands on): the label's latest event clip becomes a negative / example.
TEACH_BUTTONS = (("false_alarm", "false alarm", "add_negative", "mdi:thumb-down-outline"),
                 ("that_was_right", "that was right", "add_example", "mdi:thumb-up-outline"))
LEVEL_OBJECT_ID = "level"


class Discovery:
    """Publishes and withdraws the Home Assistant discovery configs of one node."""

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher, topics: Topics) -> None:
        assert cfg.mqtt is not None
        self.cfg = cfg
        self.registry = registry
        self.publisher = publisher
        self.topics = topics
        self.publish_level = cfg.mqtt.publish_level
        self.teach_buttons = cfg.mqtt.commands and cfg.clips.enabled
        self.qos = cfg.mqtt.qos
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # retained discovery topics of this node received since the last connect
        self._token = ""
        self._swept = threading.Event()

    # --- payloads ----------------------------------------------------------------------------------
    def device(self) -> dict[str, Any]:
        """The device block every entity of this node shares (so Home Assistant groups them)."""
        return {
            "identifiers": [f"sound_monitor_{self.topics.node_id}"],
            "name": f"Sound monitor {self.cfg.node_name()}",
            "model": f"CLAP zero-shot ({self.cfg.model})",
            "manufacturer": "sound-monitor",
            "sw_version": __version__,
        }

    def _common(self) -> dict[str, Any]:
        return {
            "availability": [
                {"topic": self.topics.availability, "payload_available": "online", "payload_not_available": "offline"}
            ],
            "device": self.device(),
            "origin": {"name": "sound-monitor", "sw_version": __version__},
            "qos": self.qos,
        }

    def label_configs(self, label: Label) -> dict[str, dict[str, Any]]:
        """Discovery topic → payload for one label: a sound binary_sensor and an event entity."""
        base = f"sound_monitor_{self.topics.node_id}_{label.label_id}"
        return {
            self.topics.discovery("binary_sensor", label.label_id): {
                "name": label.name,
                "unique_id": f"{base}_sound",
                "device_class": "sound",
                "state_topic": self.topics.state(label.label_id),
                "payload_on": "ON",
                "payload_off": "OFF",
                **self._common(),
            },
            self.topics.discovery("event", label.label_id): {
                "name": f"{label.name} event",
                "unique_id": f"{base}_event",
                "state_topic": self.topics.label_event(label.label_id),
                "event_types": ["start", "end"],
                **self._common(),
            },
            **(self.button_configs(label) if self.teach_buttons else {}),
        }

    def button_configs(self, label: Label) -> dict[str, dict[str, Any]]:
        """The label's teaching buttons: each press sends a command that teaches its latest event clip."""
        return {
            self.topics.discovery("button", f"{label.label_id}_{key}"): {
                "name": f"{label.name} {name}",
                "unique_id": f"sound_monitor_{self.topics.node_id}_{label.label_id}_{key}",
                "command_topic": self.topics.command,
                "payload_press": json.dumps({"action": action, "label": label.label_id, "clip": "last"}),
                "icon": icon,
                **self._common(),
            }
            for key, name, action, icon in TEACH_BUTTONS
        }

    def level_config(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → payload of the level sensor (dBFS of each window)."""
        return {
            self.topics.discovery("sensor", LEVEL_OBJECT_ID): {
                "name": "Sound level",
                "unique_id": f"sound_monitor_{self.topics.node_id}_level",
                "state_topic": self.topics.level,
                "unit_of_measurement": "dB",
                "state_class": "measurement",
                "suggested_display_precision": 1,
                "icon": "mdi:waveform",
                **self._common(),
            }
        }

    def configs(self, labels: LabelSet | None = None) -> dict[str, dict[str, Any]]:
        """Every discovery config this node should have for ``labels`` (default: the applied set)."""
        labels = labels if labels is not None else self.registry.applied()
        out: dict[str, dict[str, Any]] = {}
        for label in labels.labels:
            out.update(self.label_configs(label))
        if self.publish_level:
            out.update(self.level_config())
        return out

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Listen for Home Assistant's status and this node's retained configs (call before connecting)."""
        self.publisher.add_message_handler(self._on_message)
        self.publisher.on_connect(self._connected)
        for topic in (self.topics.ha_status, self.topics.own_discovery, self.topics.discovery_sync):
            self.publisher.subscribe(topic)

    def _connected(self) -> None:
        # Network thread, after the subscriptions were sent: announce, then start the sweep's round trip.
        self.announce()
        with self._lock:
            self._seen.clear()
            self._token = uuid.uuid4().hex
            self._swept.clear()
            token = self._token
        self.publisher.publish(self.topics.discovery_sync, token, qos=1)

    def announce(self) -> None:
        """Publish every current discovery config, retained."""
        for topic, payload in self.configs().items():
            self.publisher.publish(topic, payload, retain=True)

    def labels_changed(self, old: LabelSet, new: LabelSet) -> None:
        """A label added at run time gets its entities; a removed one loses them (and its retained state)."""
        before = {lbl.label_id for lbl in old.labels}
        after = {lbl.label_id for lbl in new.labels}
        for label in new.labels:
            if label.label_id not in before:
                for topic, payload in self.label_configs(label).items():
                    self.publisher.publish(topic, payload, retain=True)
        for label in old.labels:
            if label.label_id not in after:
                for topic in self.label_configs(label):
                    self.publisher.publish(topic, b"", retain=True)
                self.publisher.publish(self.topics.state(label.label_id), b"", retain=True)

    def on_event(self, event: Event) -> None:
        """``{"event_type": "start"|"end", ...}`` on the label's event topic (for its event entity)."""
        self.publisher.publish(self.topics.label_event(event.label_id),
                               {"event_type": event.type, **event.to_json_dict()})

    def wait_swept(self, timeout: float) -> bool:
        """Wait until the stale-entity sweep of the current connection is done (False after ``timeout``)."""
        return self._swept.wait(timeout)

    # --- network thread ----------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.ha_status:
            if payload.strip().lower() == b"online":
                log.info("Home Assistant is online: republishing discovery")
                self.announce()
        elif topic == self.topics.discovery_sync:
            with self._lock:
                if payload.decode(errors="replace") != self._token:
                    return
                seen = set(self._seen)
            self._sweep(seen)
            self._swept.set()
        elif payload and topic_matches_sub(self.topics.own_discovery, topic):
            with self._lock:
                self._seen.add(topic)

    def _sweep(self, seen: set[str]) -> None:
        for topic in sorted(seen - set(self.configs())):
            parts = topic.split("/")
            component, object_id = parts[-4], parts[-2]
            log.info("removing stale Home Assistant entity %s/%s", component, object_id)
            self.publisher.publish(topic, b"", retain=True)
            if component in LABEL_COMPONENTS:
                self.publisher.publish(self.topics.state(object_id), b"", retain=True)
