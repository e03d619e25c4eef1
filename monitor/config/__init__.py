"""Configuration: the schema, one model per section (:mod:`.schema`); YAML loading and readable errors
(:mod:`.loading`)."""

from monitor.config.loading import ConfigError, format_validation_error, load_config, parse_config
from monitor.config.schema import (
    DEFAULT_BACKGROUND,
    DEFAULT_MODEL,
    DEFAULT_PROMPT_TEMPLATE,
    MODEL_SAMPLE_RATE,
    AudioConfig,
    ClipsConfig,
    Config,
    DetectionConfig,
    ExamplesConfig,
    HomeAssistantConfig,
    InferenceConfig,
    LabelConfig,
    MetricsConfig,
    MqttConfig,
    SourceConfig,
    host_name,
    slugify,
)

__all__ = [
    "DEFAULT_BACKGROUND", "DEFAULT_MODEL", "DEFAULT_PROMPT_TEMPLATE", "MODEL_SAMPLE_RATE", "AudioConfig",
    "ClipsConfig", "Config", "ConfigError", "DetectionConfig", "ExamplesConfig", "HomeAssistantConfig",
    "InferenceConfig", "LabelConfig", "MetricsConfig", "MqttConfig", "SourceConfig", "format_validation_error",
    "host_name", "load_config", "parse_config", "slugify",
]
