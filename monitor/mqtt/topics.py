"""Every MQTT topic the monitor uses, spelled in one place and built from the config."""

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
    @property
    def availability(self) -> str:
        """``online``/``offline``, retained; ``offline`` is also the Last Will."""
        return f"{self.prefix}/availability"

    @property
    def events(self) -> str:
        """One JSON message per event start or end."""
        return f"{self.prefix}/events"

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
        """Each window's level in dBFS."""
        return f"{self.prefix}/level"

    @property
    def scores(self) -> str:
        """Each window's top scores (JSON)."""
        return f"{self.prefix}/scores"

    @property
    def input(self) -> str:
        """The audio input's retained state: JSON ``{"state": "up"|"down", "error": ..., "since": ...}``."""
        return f"{self.prefix}/input"

    @property
    def discovery_sync(self) -> str:
        """A private topic for the round trip that tells when the broker's retained configs have all arrived."""
        return f"{self.prefix}/_discovery_sync"

    def state(self, label_id: str) -> str:
        """A label's retained ``ON``/``OFF``."""
        return f"{self.prefix}/{label_id}/state"

    def label_event(self, label_id: str) -> str:
        """``{"event_type": ...}`` for a label's Home Assistant event entity."""
        return f"{self.prefix}/{label_id}/event"

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
