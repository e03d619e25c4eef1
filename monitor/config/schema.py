"""Configuration schema: one pydantic model per section.

The schema is a set of pydantic models that forbid unknown keys and bound every number, so a typo
(``mqtt.prot``) or an impossible value (``threshold: 1.5``) is reported with its key path instead of
being silently ignored. pydantic is used rather than hand-written checks because it reports every
problem at once with its location, which is exactly what ``check-config`` needs.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

DEFAULT_MODEL = "laion/clap-htsat-unfused"
DEFAULT_PROMPT_TEMPLATE = "This is a sound of {}."
DEFAULT_BACKGROUND = ["silence", "speech", "music", "ambient noise"]
MODEL_SAMPLE_RATE = 48_000


def slugify(name: str) -> str:
    """Turn a label name into an MQTT/Home Assistant safe id: lower case, ``[a-z0-9_]`` only."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return slug or "label"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LabelConfig(_Strict):
    """One sound to listen for."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    """Label name, used in events and topics (slugified there)."""
    prompts: list[Annotated[str, Field(min_length=1)]] | None = None
    """Texts describing the sound; each is formatted with ``prompt_template``. Default: ``[name]``."""
    threshold: Annotated[float, Ge(0.0), Le(1.0)] | None = None
    """Score above which a window counts as a hit. Default: ``detection.threshold``."""
    enabled: bool = True
    """A disabled label is still scored (it competes in the softmax) but never fires."""

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @property
    def slug(self) -> str:
        """Id used in MQTT topics and Home Assistant unique ids."""
        return slugify(self.name)


class AudioConfig(_Strict):
    """Where sound comes from and how it is cut into windows."""

    device: str | int | None = None
    """Input device: index, or a substring of its name; null = the system default input."""
    samplerate: Annotated[int, Ge(8000), Le(384000)] | None = None
    """Capture rate in Hz; null = the device's default rate. Resampled to 48 kHz for the model."""
    channels: Annotated[int, Ge(1), Le(32)] | None = None
    """Channels to open (downmixed to mono); null = 1 if the device allows it."""
    window_seconds: Annotated[float, Gt(0.5), Le(10.0)] = 5.0
    """Length of each scored window."""
    hop_seconds: Annotated[float, Ge(0.1), Le(10.0)] = 1.0
    """Time between the starts of consecutive windows."""
    min_dbfs: Annotated[float, Ge(-120.0), Le(0.0)] | None = None
    """Loudness gate: windows quieter than this (RMS dBFS) skip inference. null = score every window."""
    idle_hop_seconds: Annotated[float, Ge(0.1), Le(60.0)] | None = None
    """Adaptive hop: while every label is far below its threshold, score only every this many seconds;
    null = always score at ``hop_seconds``. Must be a multiple of ``hop_seconds``."""
    adaptive_margin: Annotated[float, Ge(0.0), Le(1.0)] = 0.2
    """Adaptive hop: a label within this distance of its threshold switches back to the fine hop."""
    adaptive_level_jump_db: Annotated[float, Ge(0.0), Le(60.0)] = 3.0
    """Adaptive hop: while idle, a window this many dB louder than the last scored one is scored at once."""

    @model_validator(mode="after")
    def _hop_not_longer_than_window(self) -> AudioConfig:
        if self.hop_seconds > self.window_seconds:
            raise ValueError("hop_seconds must not exceed window_seconds")
        if self.idle_hop_seconds is not None:
            ratio = self.idle_hop_seconds / self.hop_seconds
            if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
                raise ValueError("idle_hop_seconds must be a whole multiple of hop_seconds")
        return self


class DetectionConfig(_Strict):
    """Turning per-window scores into start/end events."""

    threshold: Annotated[float, Ge(0.0), Le(1.0)] = 0.5
    """Default score threshold for labels without their own."""
    min_hits: Annotated[int, Ge(1), Le(100)] = 2
    """Consecutive windows above threshold before an event starts."""
    end_after_seconds: Annotated[float, Gt(0.0), Le(3600.0)] = 10.0
    """An event ends once its label has not been heard for this long."""
    cooldown_seconds: Annotated[float, Ge(0.0), Le(86400.0)] = 10.0
    """After an event ends, the same label cannot start again for this long."""


class InferenceConfig(_Strict):
    """How the model runs."""

    backend: Literal["torch", "onnx"] = "torch"
    """torch (transformers checkpoints, hub ids) or onnx (ONNX Runtime on an exported folder; no torch)."""
    threads: Annotated[int, Ge(1), Le(256)] | None = None
    """Intra-op threads of torch or ONNX Runtime; null = all cores."""
    queue_size: Annotated[int, Ge(1), Le(1000)] = 4
    """Windows waiting for inference; when full, the oldest is dropped (and counted)."""
    max_batch: Annotated[int, Ge(1), Le(64)] = 4
    """Windows scored together when several are pending (cheaper per window than one by one)."""
    precision: Literal["fp32", "bf16", "int8", "auto"] = "fp32"
    """Audio tower precision: fp32 (reference), bf16 (torch, CPUs with AVX512-BF16/AMX), int8 (dynamic
    quantization; onnx: the quantized audio model), auto (bf16 where native, else fp32)."""
    providers: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """onnx: execution providers to use when installed, in order (e.g. OpenVINOExecutionProvider); CPU always."""
    cache_dir: Annotated[str, Field(min_length=1)] | None = None
    """onnx: folder of the label-embedding cache; null = $CACHE_DIRECTORY (systemd) or ~/.cache/sound-monitor."""

    @model_validator(mode="after")
    def _precision_fits_backend(self) -> InferenceConfig:
        if self.backend == "onnx" and self.precision == "bf16":
            raise ValueError("precision: bf16 is a torch-backend setting; the onnx backend has fp32, int8 and auto")
        return self


class MqttConfig(_Strict):
    """Broker connection and topics. Without this section nothing is published."""

    host: Annotated[str, Field(min_length=1)]
    """Broker host name or address."""
    port: Annotated[int, Ge(1), Le(65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    """Password in the file; prefer password_file or password_env."""
    password_file: Path | None = None
    """File whose first line is the password."""
    password_env: Annotated[str, Field(min_length=1)] | None = None
    """Environment variable holding the password."""
    tls: bool = False
    """Connect with TLS (system CA store unless ca_certs is set)."""
    ca_certs: Path | None = None
    client_id: str | None = None
    """MQTT client id; null = sound-monitor-<hostname>."""
    qos: Annotated[int, Ge(0), Le(2)] = 1
    topic_prefix: Annotated[str, Field(min_length=1)] | None = None
    """Root of all topics; null = sound-monitor/<hostname>."""
    keepalive: Annotated[int, Ge(5), Le(3600)] = 30
    max_pending: Annotated[int, Ge(1), Le(100000)] = 1000
    """Messages held while disconnected; past this the oldest is dropped (and logged)."""
    publish_level: bool = True
    """Publish each window's level (dBFS) on ``<prefix>/level``."""
    publish_scores: bool = False
    """Publish each window's top scores as JSON on ``<prefix>/scores`` (for tuning thresholds)."""
    scores_top_n: Annotated[int, Ge(1), Le(100)] = 5
    """How many labels ``<prefix>/scores`` carries (highest first)."""
    commands: bool = True
    """Accept runtime commands (JSON) on ``<prefix>/command``; answers go to ``<prefix>/command/response``."""

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttConfig:
        sources = [s for s in (self.password, self.password_file, self.password_env) if s is not None]
        if len(sources) > 1:
            raise ValueError("give only one of password, password_file, password_env")
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
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError("mqtt", [f"mqtt.password_file: cannot read {self.password_file}: {exc}"]) from exc
            return text.splitlines()[0] if text else ""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError("mqtt", [f"mqtt.password_env: environment variable {self.password_env} is not set"])
            return value
        return None


class HomeAssistantConfig(_Strict):
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


class MetricsConfig(_Strict):
    """Prometheus metrics and health endpoint."""

    port: Annotated[int, Ge(1), Le(65535)] | None = None
    """Serve ``/metrics`` and ``/healthz`` on this port; null = off."""
    bind: str = "0.0.0.0"
    """Address to listen on (127.0.0.1 keeps it local)."""


class ClipsConfig(_Strict):
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


class Config(_Strict):
    """The whole configuration file."""

    model: Annotated[str, Field(min_length=1)] = DEFAULT_MODEL
    """Hugging Face hub id or local folder of a CLAP checkpoint."""
    labels: Annotated[list[LabelConfig], Field(min_length=1)]
    """The sounds that fire events."""
    background: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: list(DEFAULT_BACKGROUND))
    """Labels that compete in the softmax but never fire (soaks up ordinary sounds)."""
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    """Template each prompt is formatted with; must contain ``{}``."""
    audio: AudioConfig = Field(default_factory=AudioConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    mqtt: MqttConfig | None = None
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    node: str | None = None
    """Node name in events; null = the host name."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("prompt_template")
    @classmethod
    def _template_has_slot(cls, value: str) -> str:
        if value.count("{}") != 1:
            raise ValueError("must contain '{}' exactly once")
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> Config:
        seen: dict[str, str] = {}
        for label in self.labels:
            if label.slug in seen:
                raise ValueError(f"labels: '{label.name}' and '{seen[label.slug]}' have the same id '{label.slug}'")
            seen[label.slug] = label.name
        clash = {b.strip().lower() for b in self.background} & {lbl.name.lower() for lbl in self.labels}
        if clash:
            raise ValueError(f"background: {sorted(clash)} also listed in labels")
        return self

    def node_name(self) -> str:
        """Name of this box in events and Home Assistant."""
        return self.node or host_name()

    def label_threshold(self, label: LabelConfig) -> float:
        """The threshold that applies to ``label``."""
        return label.threshold if label.threshold is not None else self.detection.threshold


def host_name() -> str:
    """Host name, used in the default topic prefix and client id."""
    return socket.gethostname().split(".")[0] or "sound-monitor"
