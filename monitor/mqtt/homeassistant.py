"""Home Assistant MQTT discovery: one device per node (and one per named source, linked to it), a sound
``binary_sensor`` and an ``event`` per label, a ``sensor`` for the level, (``run``) a sensor for each input, and
(with clips and commands on) per label two teaching ``button``s that send ``add_negative`` / ``add_example`` for its
latest event clip. Which entities, on which device, is :mod:`monitor.mqtt.haentities`; this module publishes,
refreshes and sweeps them.

Topics are ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (retained). ``node_id`` is the
node name's slug and ``object_id`` the label id, so ``unique_id``s stay the same across restarts. Discovery is
published after every connect, whenever Home Assistant announces ``online`` on ``<discovery_prefix>/status``,
and for labels added at run time; a label removed at run time loses its entities.

Stale entities (a label taken out of the config) are deleted with an empty retained payload. On every
connect the monitor subscribes to its own discovery topics, collects the retained configs the broker holds,
and then makes a round trip: it publishes a token on a private topic it also subscribes to. The broker
delivers in order, so when the token comes back every retained config has arrived; what no current label
explains is then deleted. Shutdown waits for that sweep (:meth:`Discovery.wait_swept`), so even a run
shorter than a second cleans up, and nothing depends on how long anything takes. Only configs whose topics
(availability, state) lie under this monitor's own ``<prefix>`` are its own: another monitor announcing the
same node name under another prefix is never swept.

Names: Home Assistant shows an entity as "<device name> <entity name>", so entity names never repeat the
device's ("Sound monitor kitchen" + "Level", not "... Sound level").
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paho.mqtt.client import topic_matches_sub

from monitor import __version__
from monitor.config import Config, SourceConfig
from monitor.core.sourcerules import source_labels
from monitor.labels import Label, LabelRegistry, LabelSet
from monitor.mqtt.haentities import Configs, Entities
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.topics import Topics
from monitor.records import Event

log = logging.getLogger(__name__)


class Discovery:
    """Publishes and withdraws the Home Assistant discovery configs of one node."""

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher, topics: Topics,
                 input_entity: bool = False, sources: Sequence[SourceConfig] | None = None) -> None:
        assert cfg.mqtt is not None
        self.cfg = cfg
        self.registry = registry
        self.publisher = publisher
        self.topics = topics
        self.publish_level = cfg.mqtt.publish_level
        self.teach_buttons = cfg.mqtt.commands and cfg.clips.enabled
        self.input_entity = input_entity  # a live input (run), whose state is published; a file has none
        self.qos = cfg.mqtt.qos
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # retained discovery topics of this node received since the last connect
        self._token = ""
        self._swept = threading.Event()
        self.sources = list(sources) if sources is not None else cfg.source_configs()
        self.entities = Entities(cfg, topics, self.sources, self.device(), self.publish_level, input_entity,
                                 teach_buttons=self.teach_buttons)

    # --- payloads ----------------------------------------------------------------------------------
    def device(self) -> dict[str, Any]:
        """The device block every entity of this node shares (so Home Assistant groups them)."""
        device = {
            "identifiers": [f"sound_monitor_{self.topics.node_id}"],
            "name": f"Sound monitor {self.cfg.node_name()}",
            "model": f"CLAP zero-shot ({model_name(self.cfg.model)})",
            "manufacturer": "sound-monitor",
            "sw_version": __version__,
        }
        url = configuration_url(self.cfg)
        if url is not None:
            device["configuration_url"] = url
        return device

    def label_configs(self, label: Label, source: SourceConfig | None = None) -> Configs:
        """Discovery topic → payload for one label (on ``source``): a sound binary_sensor and an event entity."""
        return self.entities.label_configs(label, source)

    def level_config(self) -> Configs:
        """Discovery topic → payload of the unnamed source's level sensor (dBFS of each window)."""
        return self.entities.level_config()

    def button_configs(self, label: Label) -> Configs:
        """The label's teaching buttons: each press sends a command that teaches its latest event clip."""
        return self.entities.button_configs(label)

    def input_config(self) -> Configs:
        """Discovery topic → payload of the audio input's problem sensor (on while the microphone is gone)."""
        return self.entities.input_config()

    def configs(self, labels: LabelSet | None = None) -> Configs:
        """Every discovery config this node should have for ``labels`` (default: the applied set)."""
        return self.entities.configs(labels if labels is not None else self.registry.applied())

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
        """A label added at run time gets its entities (on each source that detects it, and its teaching buttons); a
        removed one loses them (and its retained states)."""
        for source in self.sources:
            src = source if source.name else None
            before = {lbl.label_id: lbl for lbl in source_labels(old, source)}
            after = {lbl.label_id: lbl for lbl in source_labels(new, source)}
            for label_id, label in after.items():
                if label_id not in before:
                    for topic, payload in self.label_configs(label, src).items():
                        self.publisher.publish(topic, payload, retain=True)
            for label_id, label in before.items():
                if label_id not in after:
                    for topic in self.label_configs(label, src):
                        self.publisher.publish(topic, b"", retain=True)
                    self.publisher.publish(self.topics.state(label_id, source.name), b"", retain=True)
        if self.entities.named and self.entities.teach_buttons:  # on the node's device, once per label
            old_ids, new_ids = {lbl.label_id for lbl in old.labels}, {lbl.label_id for lbl in new.labels}
            for label in new.labels:
                if label.label_id not in old_ids:
                    for topic, payload in self.button_configs(label).items():
                        self.publisher.publish(topic, payload, retain=True)
            for label in old.labels:
                if label.label_id not in new_ids:
                    for topic in self.button_configs(label):
                        self.publisher.publish(topic, b"", retain=True)

    def on_event(self, event: Event) -> None:
        """``{"event_type": "start"|"end", ...}`` on the label's event topic (for its event entity)."""
        self.publisher.publish(self.topics.label_event(event.label_id, event.source),
                               {"event_type": event.type, **event.to_json_dict()})

    def wait_swept(self, timeout: float) -> bool:
        """Wait until the stale-entity sweep of the current connection is done (False after ``timeout``)."""
        return self._swept.wait(timeout)

    # --- network thread ----------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if topic == self.topics.ha_status:
            # Live status only: a retained "online" (Home Assistant can retain its birth message) comes with every
            # subscription, right after the connect announced everything; answering it would send each config twice.
            if not retained and payload.strip().lower() == b"online":
                log.info("Home Assistant is online: republishing discovery")
                self.announce()
        elif topic == self.topics.discovery_sync:
            with self._lock:
                if payload.decode(errors="replace") != self._token:
                    return
                seen = set(self._seen)
            self._sweep(seen)
            self._swept.set()
        elif payload and topic_matches_sub(self.topics.own_discovery, topic) and self._is_own(payload):
            with self._lock:
                self._seen.add(topic)

    def _is_own(self, payload: bytes) -> bool:
        """Whether a retained discovery config is this monitor's: its topics lie under this monitor's prefix.

        The discovery topic holds only the node id, which two monitors may share (same ``node``, different
        ``topic_prefix``); the payload tells them apart. What cannot be read is not ours to delete.
        """
        try:
            config = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(config, dict):
            return False
        topics = [config.get(k) for k in ("state_topic", "stat_t", "availability_topic", "avty_t")]
        for entry in config.get("availability") or config.get("avty") or []:
            if isinstance(entry, dict):
                topics += [entry.get("topic"), entry.get("t")]
        own = f"{self.topics.prefix}/"
        return any(isinstance(t, str) and t.startswith(own) for t in topics)

    def _sweep(self, seen: set[str]) -> None:
        for topic in sorted(seen - set(self.configs())):
            parts = topic.split("/")
            component, object_id = parts[-4], parts[-2]
            log.info("removing stale Home Assistant entity %s/%s", component, object_id)
            self.publisher.publish(topic, b"", retain=True)
            for leftover in self.entities.leftovers(component, object_id):
                self.publisher.publish(leftover, b"", retain=True)


def model_name(model: str) -> str:
    """The model as Home Assistant shows it: a hub id as is, a local folder by its last component only (the
    box's folder layout is no business of the dashboard)."""
    try:
        local = model.startswith(("/", ".", "~")) or Path(model).expanduser().exists()
    except (OSError, ValueError):
        local = False
    if not local:
        return model
    path = Path(model).expanduser()
    return path.name or path.resolve().name or model


def configuration_url(cfg: Config) -> str | None:
    """``http://<host>:<port>/metrics`` when metrics are served where another box can reach them, else None.

    A wildcard bind is reached through this box's host name; a loopback bind is left out, because Home
    Assistant, on another box as a rule, would only get a dead link.
    """
    port, bind = cfg.metrics.port, cfg.metrics.bind.strip()
    if port is None or bind.lower() == "localhost":
        return None
    if bind in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    else:
        try:
            ip = ipaddress.ip_address(bind)
        except ValueError:
            host = bind  # a host name
        else:
            if ip.is_loopback:
                return None
            host = f"[{bind}]" if ip.version == 6 else bind
    return f"http://{host}:{port}/metrics"
