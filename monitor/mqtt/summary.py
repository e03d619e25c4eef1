"""The retained ``<prefix>/config`` summary: what this node listens for right now."""

from __future__ import annotations

from typing import Any

from monitor import __version__
from monitor.config import Config
from monitor.core.sourcerules import source_labels
from monitor.labels import LabelSet


def config_summary(cfg: Config, labels: LabelSet) -> dict[str, Any]:
    """The retained ``<prefix>/config`` payload: what this node listens for right now (with ``sources``, what each
    source detects: its labels and their thresholds there; never a URL, which may hold a password)."""
    out: dict[str, Any] = {
        "node": cfg.node_name(),
        "version": __version__,
        "model": cfg.model,
        "labels": [lbl.summary() for lbl in labels.labels],
        "background": list(labels.background),
        "prompt_template": labels.template,
        "negatives": len(labels.negatives),  # top-level negatives; each label counts its examples and negatives
    }
    if cfg.sources:
        out["sources"] = [{"name": src.name, "kind": "device" if src.local else "url",
                           "labels": {lbl.name: lbl.threshold for lbl in source_labels(labels, src)}}
                          for src in cfg.sources]
    return out
