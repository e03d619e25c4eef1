"""The config sections of where the output goes: ``mqtt``, ``home_assistant``, ``metrics``, ``clips``.

Split from :mod:`.schema` (which keeps labels, audio, detection, inference and the whole file) to keep both
readable. Fields that name a file, a folder or an environment variable are checked only under the
:data:`~monitor.config.base.CHECK_FILES` context (see :mod:`.base`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from monitor.config import files
from monitor.config.base import PasswordEnv, PasswordFile, Strict, checked_outside, checks_files, host_name, problems


class MqttConfig(Strict):
    """Broker connection and topics. Without this section nothing is published."""

    host: Annotated[str, Field(min_length=1)]
    """Broker host name or address."""
    port: Annotated[int, Ge(1), Le(65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    """Password in the file; prefer password_file or password_env."""
    password_file: PasswordFile | None = None
    """File whose first line is the password."""
    password_env: PasswordEnv | None = None
    """Environment variable holding the password."""
    tls: bool = False
    """Connect with TLS (system CA store unless ca_certs is set)."""
    ca_certs: Annotated[Path, checked_outside(files.ca_file_problem)] | None = None
    client_id: str | None = None
    """MQTT client id; null = sound-monitor-<hostname>."""
    qos: Annotated[int, Ge(0), Le(2)] = 1
    topic_prefix: Annotated[str, Field(min_length=1)] | None = None
    """Root of all topics; null = sound-monitor/<hostname>."""
    keepalive: Annotated[int, Ge(5), Le(3600)] = 30
    max_pending: Annotated[int, Ge(1), Le(100000)] = 1000
    """Messages held while disconnected; past this the oldest is dropped (and logged)."""
    publish_level: bool = True
    """Publish the level (dBFS) on ``<prefix>/level``, thinned by the two settings below."""
    level_deadband_db: Annotated[float, Ge(0.0), Le(60.0)] = 2.0
    """The level is published again only once it moved this many dB from the last value published."""
    level_interval_seconds: Annotated[float, Ge(0.0), Le(3600.0)] = 10.0
    """...and at most once per this many seconds (of audio), so a recorder is not written every second."""
    publish_scores: bool = False
    """Publish each window's top scores as JSON on ``<prefix>/scores`` (for tuning thresholds)."""
    scores_top_n: Annotated[int, Ge(1), Le(100)] = 5
    """How many labels ``<prefix>/scores`` carries (highest first)."""
    commands: bool = True
    """Accept runtime commands (JSON) on ``<prefix>/command``; answers go to ``<prefix>/command/response``."""

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        sources = [k for k in ("password", "password_file", "password_env") if getattr(self, k) is not None]
        if len(sources) > 1:
            raise problems("mqtt", [([sources[1]], "give only one of password, password_file, password_env", None)])
        if self.ca_certs is not None and not self.tls:
            raise problems("mqtt", [(["ca_certs"], "is set but mqtt.tls is false (set tls: true to use it)", None)])
        return self

    @field_validator("topic_prefix")
    @classmethod
    def _no_wildcards(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "#+\0"):
            raise ValueError("must not contain '#', '+' or NUL")
        return value.rstrip("/") if value else value

    def resolved_prefix(self) -> str:
        """The topic prefix with its default filled in."""
        return self.topic_prefix or f"sound-monitor/{host_name()}"

    def resolved_client_id(self) -> str:
        """The client id with its default filled in."""
        return self.client_id or f"sound-monitor-{host_name()}"

    def resolved_password(self) -> str | None:
        """The password from whichever source is configured (never logged)."""
        from monitor.config.loading import ConfigError

        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            why = files.password_file_problem(self.password_file)  # it may have changed since the config check
            if why:
                raise ConfigError("mqtt", [f"mqtt.password_file: {why}"])
            text = files.read_text_file(self.password_file)
            return text.splitlines()[0] if text else ""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError("mqtt", [f"mqtt.password_env: environment variable {self.password_env} is not set"])
            return value
        return None


class HomeAssistantConfig(Strict):
    """Home Assistant MQTT discovery."""

    discovery: bool = True
    """Publish retained discovery configs (only when ``mqtt`` is configured)."""
    discovery_prefix: Annotated[str, Field(min_length=1)] = "homeassistant"
    """Home Assistant's discovery prefix; it announces itself on ``<discovery_prefix>/status``."""

    @field_validator("discovery_prefix")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if any(c in value for c in "#+\0"):
            raise ValueError("must not contain '#', '+' or NUL")
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty")
        return value


class MetricsConfig(Strict):
    """Prometheus metrics and health endpoint."""

    port: Annotated[int, Ge(1), Le(65535)] | None = None
    """Serve ``/metrics`` and ``/healthz`` on this port; null = off."""
    bind: str = "127.0.0.1"
    """Address to listen on: 127.0.0.1 keeps it on this box; 0.0.0.0 (or ::) exposes it on every interface."""
    timeout_seconds: Annotated[float, Gt(0.0), Le(300.0)] = 5.0
    """A client must send its request and take the answer within this time of connecting, or is disconnected."""
    max_connections: Annotated[int, Ge(1), Le(1024)] = 256
    """Connections open at once; past it, the one idle longest is closed (an fd each, no thread)."""


class ClipsConfig(Strict):
    """Audio clips written around event starts. Audio never leaves the box unless you configure it."""

    enabled: bool = False
    folder: Path = Path("/var/lib/sound-monitor/clips")
    """Where clips are written (created if missing)."""
    pre_roll_seconds: Annotated[float, Ge(0.0), Le(30.0)] = 5.0
    """Audio kept from before the start of the event's first window."""
    post_roll_seconds: Annotated[float, Ge(0.0), Le(60.0)] = 5.0
    """Audio recorded after the event start."""
    format: Literal["flac", "wav"] = "flac"
    max_total_mb: Annotated[float, Gt(0.0), Le(1_000_000.0)] = 500.0
    """Bound on the folder's total size; the oldest clips are deleted first."""

    @field_validator("folder")
    @classmethod
    def _folder_usable(cls, value: Path, info: ValidationInfo) -> Path:
        # `enabled` is declared first, so it is in info.data when it was valid.
        if info.data.get("enabled") and checks_files(info) and (why := files.folder_problem(value)):
            raise ValueError(why)
        return value
