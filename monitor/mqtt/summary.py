"""The retained ``<prefix>/config`` summary: what this node listens for right now."""

from __future__ import annotations

from typing import Any

from monitor import __version__
from monitor.config import Config
from monitor.labels import LabelSet


def config_summary(cfg: Config, labels: LabelSet) -> dict[str, Any]:
    """The retained ``<prefix>/config`` payload: what this node listens for right now."""
    return {
        "node": cfg.node_name(),
        "version": __version__,
        "model": cfg.model,
        "labels": [lbl.summary() for lbl in labels.labels],
        "background": list(labels.background),
        "prompt_template": labels.template,
    }
