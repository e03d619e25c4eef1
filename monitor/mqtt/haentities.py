"""The Home Assistant discovery configs of one node: which entities, on which devices, with which topics.

Pure: built from the config, the topics, the sources and a label set; :mod:`monitor.mqtt.homeassistant`
publishes, refreshes and sweeps them.

* **One unnamed source** (a single-source config): one device, ``Sound monitor <node>``, exactly as before
  sources existed: per label a sound ``binary_sensor`` and an ``event`` (object id ``<label_id>``), the ``Level``
  sensor, and (``run``) the ``Audio input`` problem sensor (``audio-input``).
* **Named sources**: the node's device keeps one entity, a ``Monitor`` connectivity ``binary_sensor`` on
  ``<prefix>/availability`` (object id ``status``), and each source gets a device of its own,
  ``Sound monitor <node> <source>``, linked to it by ``via_device``, holding that source's labels (object ids
  ``<source_id>-<label_id>``), its level (``<source_id>--level``) and a ``Connection`` connectivity
  ``binary_sensor`` on ``<prefix>/<source>/input`` (``<source_id>--connectivity``). Its label and level entities
  are available only while both the node and the source are (``availability_mode: all``); the connection sensor
  follows the node only, so it can show the source disconnected.

Label ids and source ids never hold ``-``, so a source's label entity (one ``-``) never meets its own entities
(``--``), a label of the unnamed source (none) or another source's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from monitor import __version__
from monitor.config import Config, SourceConfig
from monitor.core.sourcerules import source_labels
from monitor.labels import Label, LabelSet
from monitor.mqtt.topics import Topics

LABEL_COMPONENTS = ("binary_sensor", "event")
# Teaching buttons per label (with clips and commands on): the label's latest event clip becomes a negative / example.
# Teaching changes the label everywhere, so with named sources they sit on the node's device, once per label.
TEACH_BUTTONS = (("false_alarm", "false alarm", "add_negative", "mdi:thumb-down-outline"),
                 ("that_was_right", "that was right", "add_example", "mdi:thumb-up-outline"))
LEVEL_OBJECT_ID = "level"
INPUT_OBJECT_ID = "audio-input"  # a "-" never appears in a label id, so no label's binary_sensor can take it
NODE_OBJECT_ID = "status"  # the node's connectivity sensor when sources are named
CONNECTIVITY = "connectivity"  # a named source's connection sensor: "<source_id>--connectivity"

Configs = dict[str, dict[str, Any]]


class Entities:
    """Builds the discovery topic → payload map of a node (see the module docstring for the layout)."""

    def __init__(self, cfg: Config, topics: Topics, sources: Sequence[SourceConfig], device: dict[str, Any],
                 publish_level: bool, input_entity: bool, teach_buttons: bool = False) -> None:
        self.cfg = cfg
        self.topics = topics
        self.sources = list(sources)
        self.named = any(src.name for src in self.sources)
        self.node_device = device
        self.publish_level = publish_level
        self.input_entity = input_entity
        self.teach_buttons = teach_buttons
        self.qos = cfg.mqtt.qos if cfg.mqtt is not None else 1

    # --- devices and shared blocks -----------------------------------------------------------------
    def device(self, source: SourceConfig | None = None) -> dict[str, Any]:
        """The device block of the node (``source`` None or unnamed) or of a named source (linked to the node)."""
        if source is None or not source.name:
            return self.node_device
        node_ids = self.node_device["identifiers"]
        return {
            # '-' is in neither a node id nor a source id, so (node, source) pairs never share an identifier.
            "identifiers": [f"{node_ids[0]}-{source.source_id}"],
            "name": f"{self.node_device['name']} {source.name}",
            "model": self.node_device["model"],
            "manufacturer": self.node_device["manufacturer"],
            "sw_version": __version__,
            "via_device": node_ids[0],
        }

    def _availability(self, source: SourceConfig | None) -> dict[str, Any]:
        node = {"topic": self.topics.availability, "payload_available": "online", "payload_not_available": "offline"}
        if source is None or not source.name:
            return {"availability": [node]}
        own = {"topic": self.topics.source_availability(source.name), "payload_available": "online",
               "payload_not_available": "offline"}
        return {"availability": [node, own], "availability_mode": "all"}

    def _common(self, source: SourceConfig | None, availability: bool = True) -> dict[str, Any]:
        return {
            **(self._availability(source) if availability else self._availability(None)),
            "device": self.device(source),
            "origin": {"name": "sound-monitor", "sw_version": __version__},
            "qos": self.qos,
        }

    def object_id(self, key: str, source: SourceConfig | None, own: bool = False) -> str:
        """The object id of ``source``'s entity for label id ``key`` (``<source_id>-<label_id>``), or of its own
        entity ``key`` (``own``: ``<source_id>--level``); ``key`` itself for the unnamed source."""
        if source is None or not source.name:
            return key
        return f"{source.source_id}{'--' if own else '-'}{key}"

    def _unique(self, key: str, source: SourceConfig | None) -> str:
        # A named source's ids join with '-', which no node, source or label id contains: with '_', source
        # "front" + label "door bell" and source "front-door" + label "bell" would share one unique_id.
        if source is None or not source.name:
            return f"sound_monitor_{self.topics.node_id}_{key}"
        return f"sound_monitor_{self.topics.node_id}-{source.source_id}-{key}"

    # --- entities ----------------------------------------------------------------------------------
    def label_configs(self, label: Label, source: SourceConfig | None = None) -> Configs:
        """A sound binary_sensor and an event entity for ``label`` (on ``source``); on the unnamed source also its
        teaching buttons."""
        name = source.name if source is not None else ""
        oid = self.object_id(label.label_id, source)
        return {
            self.topics.discovery("binary_sensor", oid): {
                "name": label.name,
                "unique_id": self._unique(f"{label.label_id}_sound", source),
                "device_class": "sound",
                "state_topic": self.topics.state(label.label_id, name),
                "payload_on": "ON",
                "payload_off": "OFF",
                **self._common(source),
            },
            self.topics.discovery("event", oid): {
                "name": f"{label.name} event",
                "unique_id": self._unique(f"{label.label_id}_event", source),
                "state_topic": self.topics.label_event(label.label_id, name),
                "event_types": ["start", "end"],
                **self._common(source),
            },
            **(self.button_configs(label) if self.teach_buttons and not name else {}),
        }

    def button_configs(self, label: Label) -> Configs:
        """The label's teaching buttons (node device): each press sends a command teaching its latest event clip."""
        return {
            self.topics.discovery("button", f"{label.label_id}_{key}"): {
                "name": f"{label.name} {title}",
                "unique_id": f"sound_monitor_{self.topics.node_id}_{label.label_id}_{key}",
                "command_topic": self.topics.command,
                "payload_press": json.dumps({"action": action, "label": label.label_id, "clip": "last"}),
                "icon": icon,
                **self._common(None),
            }
            for key, title, action, icon in TEACH_BUTTONS
        }

    def level_config(self, source: SourceConfig | None = None) -> Configs:
        """The level sensor (dBFS of each window) of the node's one source or of ``source``."""
        return {
            self.topics.discovery("sensor", self.object_id(LEVEL_OBJECT_ID, source, own=True)): {
                "name": "Level",
                "unique_id": self._unique("level", source),
                "state_topic": self.topics.level_of(source.name if source is not None else ""),
                "unit_of_measurement": "dBFS",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "suggested_display_precision": 1,
                "icon": "mdi:waveform",
                **self._common(source),
            }
        }

    def input_config(self) -> Configs:
        """The unnamed source's ``Audio input`` problem sensor (on while the microphone is gone)."""
        return {
            self.topics.discovery("binary_sensor", INPUT_OBJECT_ID): {
                "name": "Audio input",
                "unique_id": f"sound_monitor_{self.topics.node_id}_input",
                "device_class": "problem",
                "entity_category": "diagnostic",
                "state_topic": self.topics.input,
                "value_template": "{{ value_json.state }}",
                "payload_on": "down",
                "payload_off": "up",
                "json_attributes_topic": self.topics.input,
                **self._common(None),
            }
        }

    def connectivity_config(self, source: SourceConfig) -> Configs:
        """A named source's ``Connection`` sensor: on while its audio flows, with ``error`` and ``since``."""
        topic = self.topics.input_of(source.name)
        return {
            self.topics.discovery("binary_sensor", self.object_id(CONNECTIVITY, source, own=True)): {
                "name": "Connection",
                "unique_id": self._unique(CONNECTIVITY, source),
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": topic,
                "value_template": "{{ value_json.state }}",
                "payload_on": "up",
                "payload_off": "down",
                "json_attributes_topic": topic,
                **self._common(source, availability=False),  # it must show "disconnected", not "unavailable"
            }
        }

    def node_config(self) -> Configs:
        """With named sources, the node's own entity (so that the sources' ``via_device`` has a device to name)."""
        return {
            self.topics.discovery("binary_sensor", NODE_OBJECT_ID): {
                "name": "Monitor",
                "unique_id": self._unique(NODE_OBJECT_ID, None),
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": self.topics.availability,
                "payload_on": "online",
                "payload_off": "offline",
                "device": self.node_device,
                "origin": {"name": "sound-monitor", "sw_version": __version__},
                "qos": self.qos,
            }
        }

    def configs(self, labels: LabelSet) -> Configs:
        """Every discovery config this node should have for ``labels``."""
        out: Configs = {}
        for source in self.sources:
            src = source if source.name else None
            for label in source_labels(labels, source):
                out.update(self.label_configs(label, src))
            if self.publish_level:
                out.update(self.level_config(src))
            if self.input_entity:
                out.update(self.connectivity_config(source) if source.name else self.input_config())
        if self.named:
            out.update(self.node_config())
            if self.teach_buttons:
                for label in labels.labels:
                    out.update(self.button_configs(label))
        return out

    # --- what a withdrawn entity leaves behind -----------------------------------------------------
    def leftovers(self, component: str, object_id: str) -> list[str]:
        """The retained topics to clear with a withdrawn entity: a label's state, a source's input and
        availability. Read from the object id alone: the entity may belong to a label or source no longer
        configured."""
        if "--" in object_id:  # a source's own entity
            source_id, _, key = object_id.partition("--")
            name = self._source_name(source_id)
            return [self.topics.input_of(name), self.topics.source_availability(name)] if key == CONNECTIVITY else []
        if component not in LABEL_COMPONENTS or object_id in (INPUT_OBJECT_ID, NODE_OBJECT_ID):
            return []
        source_id, dash, label_id = object_id.partition("-")
        if not dash:
            return [self.topics.state(object_id)]
        return [self.topics.state(label_id, self._source_name(source_id))]

    def _source_name(self, source_id: str) -> str:
        """The source name behind an id (``front_door`` → ``front-door`` when configured; else the id itself)."""
        return next((s.name for s in self.sources if s.name and s.source_id == source_id), source_id)
