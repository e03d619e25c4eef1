"""sound-monitor: an always-on, open-vocabulary sound monitor (CLAP zero-shot scores → MQTT events)."""

__version__ = "0.1.0"
