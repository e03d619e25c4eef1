"""Every MQTT topic the monitor uses, spelled in one place and built from the config.

A source's own topics sit under ``<prefix>/<source>/`` (``<prefix>/<source>/events``,
``<prefix>/<source>/<label_id>/state``, ...); the unnamed source of a single-source config (name "") has them
directly under ``<prefix>/``, exactly as before sources existed. The node's own topics (availability, config,
commands) stay under ``<prefix>/`` either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.config import Config, slugify


@dataclass(frozen=True)
class Topics:
    """The topics of one monitor: its own under ``prefix``, Home Assistant's under ``discovery_prefix``."""

    prefix: str
    discovery_prefix: str = "homeassistant"
    node_id: str = "sound_monitor"

    @classmethod
    def from_config(cls, cfg: Config) -> Topics:
        """Topics for ``cfg`` (which must have an ``mqtt`` section)."""
        assert cfg.mqtt is not None
        return cls(cfg.mqtt.resolved_prefix(), cfg.home_assistant.discovery_prefix, slugify(cfg.node_name()))

    # --- the monitor's own -------------------------------------------------------------------------
    def base(self, source: str = "") -> str:
        """Where a source's topics sit: ``<prefix>/<source>``, or ``<prefix>`` for the unnamed source."""
        return f"{self.prefix}/{source}" if source else self.prefix

    @property
    def availability(self) -> str:
        """``online``/``offline``, retained; ``offline`` is also the Last Will."""
        return f"{self.prefix}/availability"

    @property
    def events(self) -> str:
        """One JSON message per event start or end (the unnamed source's; see :meth:`events_of`)."""
        return self.events_of("")

    def events_of(self, source: str) -> str:
        """A source's events: ``<prefix>/<source>/events``."""
        return f"{self.base(source)}/events"

    def source_availability(self, source: str) -> str:
        """A named source's retained ``online`` (audio flowing) / ``offline``: ``<prefix>/<source>/availability``."""
        return f"{self.base(source)}/availability"

    @property
    def config(self) -> str:
        """The retained summary of what this node listens for."""
        return f"{self.prefix}/config"

    @property
    def command(self) -> str:
        """Runtime commands (JSON) come in here."""
        return f"{self.prefix}/command"

    @property
    def response(self) -> str:
        """Every command is answered here."""
        return f"{self.prefix}/command/response"

    @property
    def level(self) -> str:
        """Each window's level in dBFS (the unnamed source's)."""
        return self.level_of("")

    def level_of(self, source: str) -> str:
        """A source's level: ``<prefix>/<source>/level``."""
        return f"{self.base(source)}/level"

    @property
    def scores(self) -> str:
        """Each window's top scores (JSON; the unnamed source's)."""
        return self.scores_of("")

    def scores_of(self, source: str) -> str:
        """A source's top scores: ``<prefix>/<source>/scores``."""
        return f"{self.base(source)}/scores"

    @property
    def input(self) -> str:
        """The audio input's retained state: JSON ``{"state": "up"|"down", "error": ..., "since": ...}``."""
        return self.input_of("")

    def input_of(self, source: str) -> str:
        """A source's retained input state: ``<prefix>/<source>/input``."""
        return f"{self.base(source)}/input"

    @property
    def discovery_sync(self) -> str:
        """A private topic for the round trip that tells when the broker's retained configs have all arrived."""
        return f"{self.prefix}/_discovery_sync"

    def state(self, label_id: str, source: str = "") -> str:
        """A label's retained ``ON``/``OFF`` (on a source: ``<prefix>/<source>/<label_id>/state``)."""
        return f"{self.base(source)}/{label_id}/state"

    def label_event(self, label_id: str, source: str = "") -> str:
        """``{"event_type": ...}`` for a label's Home Assistant event entity (per source like :meth:`state`)."""
        return f"{self.base(source)}/{label_id}/event"

    # --- Home Assistant ----------------------------------------------------------------------------
    @property
    def ha_status(self) -> str:
        """Home Assistant announces ``online`` here when it (re)starts."""
        return f"{self.discovery_prefix}/status"

    @property
    def own_discovery(self) -> str:
        """Filter matching every discovery config of this node."""
        return f"{self.discovery_prefix}/+/{self.node_id}/+/config"

    def discovery(self, component: str, object_id: str) -> str:
        """``<discovery_prefix>/<component>/<node_id>/<object_id>/config``."""
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"
