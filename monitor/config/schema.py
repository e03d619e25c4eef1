"""Configuration schema: one pydantic model per section.

The schema is a set of pydantic models that forbid unknown keys and bound every number, so a typo
(``mqtt.prot``) or an impossible value (``threshold: 1.5``) is reported with its key path instead of
being silently ignored. pydantic is used rather than hand-written checks because it reports every
problem at once with its location, which is exactly what ``check-config`` needs.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from monitor.config import files
from monitor.config.base import Problem, Strict, checks_files, host_name, problems, slugify
from monitor.config.examples import ExamplesConfig
from monitor.config.integrations import ClipsConfig, HomeAssistantConfig, MetricsConfig, MqttConfig
from monitor.config.sources import MAX_SOURCES, SourceConfig, cross_source_problems

__all__ = [
    "DEFAULT_BACKGROUND", "DEFAULT_MODEL", "DEFAULT_PROMPT_TEMPLATE", "MODEL_SAMPLE_RATE", "AudioConfig",
    "ClipsConfig", "Config", "DetectionConfig", "ExamplesConfig", "HomeAssistantConfig", "InferenceConfig",
    "LabelConfig", "MetricsConfig", "MqttConfig", "SourceConfig", "host_name", "prompt_template_problem", "slugify",
]

DEFAULT_MODEL = "laion/clap-htsat-unfused"
DEFAULT_PROMPT_TEMPLATE = "This is a sound of {}."
DEFAULT_BACKGROUND = ["silence", "speech", "music", "ambient noise"]
MODEL_SAMPLE_RATE = 48_000


class LabelConfig(Strict):
    """One sound to listen for."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    """Label name, used in events and topics (slugified there)."""
    prompts: list[Annotated[str, Field(min_length=1)]] | None = None
    """Texts describing the sound; each is formatted with ``prompt_template``. Default: ``[name]``. ``[]`` (only
    with examples): the label is scored from its examples alone."""
    threshold: Annotated[float, Ge(0.0), Le(1.0)] | None = None
    """Score above which a window counts as a hit. Default: ``detection.threshold``."""
    enabled: bool = True
    """A disabled label is still scored (it competes in the softmax) but never fires."""
    examples: Annotated[list[Path], Field(max_length=1000)] = Field(default_factory=list)
    """Audio files or folders of clips that are this sound (see ``examples`` section, monitor/teaching.py)."""
    negatives: Annotated[list[Path], Field(max_length=1000)] = Field(default_factory=list)
    """Audio files or folders of clips that are NOT this sound (the TV, for this label only)."""

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


class AudioConfig(Strict):
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


class DetectionConfig(Strict):
    """Turning per-window scores into start/end events."""

    threshold: Annotated[float, Ge(0.0), Le(1.0)] = 0.5
    """Default score threshold for labels without their own."""
    min_hits: Annotated[int, Ge(1), Le(100)] = 2
    """Consecutive windows above threshold before an event starts."""
    end_after_seconds: Annotated[float, Gt(0.0), Le(3600.0)] = 10.0
    """An event ends once its label has not been heard for this long."""
    cooldown_seconds: Annotated[float, Ge(0.0), Le(86400.0)] = 10.0
    """After an event ends, the same label cannot start again for this long."""


class InferenceConfig(Strict):
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
    max_labels: Annotated[int, Ge(1), Le(1000)] = 50
    """Most labels (background excluded) the monitor scores, configured plus added at run time; every label
    costs scoring time and an embedding, so a flood of ``add_label`` commands stops here."""
    providers: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """onnx: execution providers to use when installed, in order (e.g. OpenVINOExecutionProvider); CPU always."""
    cache_dir: Annotated[str, Field(min_length=1)] | None = None
    """onnx: folder of the label-embedding cache; null = $CACHE_DIRECTORY (systemd) or ~/.cache/sound-monitor."""

    @model_validator(mode="after")
    def _precision_fits_backend(self) -> InferenceConfig:
        if self.backend == "onnx" and self.precision == "bf16":
            raise ValueError("precision: bf16 is a torch-backend setting; the onnx backend has fp32, int8 and auto")
        return self


class Config(Strict):
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
    sources: Annotated[list[SourceConfig], Field(min_length=1, max_length=MAX_SOURCES)] | None = None
    """Several inputs for one model (local devices, camera streams); null = the one input of ``audio.device``."""
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    mqtt: MqttConfig | None = None
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    negatives: Annotated[list[Path], Field(max_length=1000)] = Field(default_factory=list)
    """Audio files or folders of sounds that must never fire any label (the TV, the microwave beep)."""
    examples: ExamplesConfig = Field(default_factory=ExamplesConfig)
    node: str | None = None
    """Node name in events; null = the host name."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("model")
    @classmethod
    def _model_usable(cls, value: str, info: ValidationInfo) -> str:
        if checks_files(info) and (why := files.model_problem(value)):
            raise ValueError(why)
        return value

    @field_validator("prompt_template")
    @classmethod
    def _template_has_slot(cls, value: str) -> str:
        why = prompt_template_problem(value)
        if why:
            raise ValueError(why)
        return value

    # Field validators, not a model validator: they run even when another section is invalid, so these problems
    # are listed along with the rest, each at its own key path (labels[1].name, background[0]).
    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[LabelConfig]) -> list[LabelConfig]:
        seen: dict[str, str] = {}
        found: list[Problem] = []
        for i, label in enumerate(labels):
            if label.slug in seen:
                found.append(([i, "name"], f"'{label.name}' and '{seen[label.slug]}' have the same id '{label.slug}'",
                              label.name))
            seen.setdefault(label.slug, label.name)
        if found:
            raise problems("labels", found)
        return labels

    @field_validator("background")
    @classmethod
    def _background_not_a_label(cls, background: list[str], info: ValidationInfo) -> list[str]:
        names = {lbl.name.lower() for lbl in info.data.get("labels") or []}  # declared first: here when valid
        found: list[Problem] = [([i], f"'{b}' is also listed in labels", b)
                                for i, b in enumerate(background) if b.strip().lower() in names]
        if found:
            raise problems("background", found)
        return background

    # A wrap validator: names and label references are checked on the raw entries even when some entry has
    # problems of its own, so check-config lists every problem at once.
    @field_validator("sources", mode="wrap")
    @classmethod
    def _sources_consistent(cls, value: Any, handler: ValidatorFunctionWrapHandler,
                            info: ValidationInfo) -> list[SourceConfig] | None:
        own: ValidationError | None = None
        try:
            sources = handler(value)
        except ValidationError as exc:
            own, sources = exc, None
        known: set[str] = set()
        for lbl in info.data.get("labels") or []:  # declared first: here when valid
            known |= {lbl.name.casefold(), lbl.slug}
        found = cross_source_problems(value, known)
        if own is not None or found:
            raise problems("sources", found, carried=own)
        return sources

    @model_validator(mode="after")
    def _device_or_sources(self) -> Config:
        if self.sources is not None and self.audio.device is not None:
            raise problems("audio", [(["audio", "device"], "not used when sources are listed: give each source "
                                      "its own device", self.audio.device)])
        return self

    @field_validator("inference")
    @classmethod
    def _labels_within_max(cls, inference: InferenceConfig, info: ValidationInfo) -> InferenceConfig:
        labels = info.data.get("labels") or []  # declared first: here when valid
        if len(labels) > inference.max_labels:
            raise problems("inference", [(["max_labels"], f"{len(labels)} labels are configured, more than this "
                                          f"({inference.max_labels})", inference.max_labels)])
        return inference

    def node_name(self) -> str:
        """Name of this box in events and Home Assistant."""
        return self.node or host_name()

    def source_configs(self) -> list[SourceConfig]:
        """The sources of ``run``: ``sources``, else the one unnamed source of ``audio``."""
        return list(self.sources) if self.sources is not None else [self.unnamed_source()]

    def unnamed_source(self) -> SourceConfig:
        """The one source of a single-source run (``audio.device``, or ``replay``'s file): name "", so its topics
        have no source level, exactly as before sources existed."""
        a = self.audio
        return SourceConfig.model_construct(name="", device=a.device, samplerate=a.samplerate, channels=a.channels)

    def label_threshold(self, label: LabelConfig) -> float:
        """The threshold that applies to ``label``."""
        return label.threshold if label.threshold is not None else self.detection.threshold


def prompt_template_problem(template: str) -> str | None:
    """Why ``template.format(prompt)`` cannot work for every prompt, or None.

    The template must hold exactly one plain replacement field, ``{}`` (or ``{0}``), and write any other brace
    doubled (``{{``, ``}}``). Anything else (``{0} {1}``, ``{name}``, a lone ``{``, ``{}}``, a format spec that
    fails on some prompts) would pass the file and then crash scoring, so it is refused here.
    """
    usage = "must contain '{}' exactly once (write a literal brace as '{{' or '}}')"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"{usage}: {exc}"
    if len(fields) != 1:
        return f"{usage}; it has {len(fields)} replacement fields"
    name, spec, conv = fields[0]
    if name not in ("", "0") or spec or conv:
        return f"{usage}; '{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}' is not a plain '{{}}'"
    return None
