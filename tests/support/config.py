"""The one config builder of the tests: a validated ``Config`` in process, or a YAML file for the CLI.

Defaults (the in-process tests' config): the tiny model given, labels :data:`LABELS`, background
:data:`BACKGROUND`, 1 s windows every 0.5 s (a quick first window), ``min_hits`` 1, events ending 2 s after the
last hit, no cooldown, 2 inference threads, node ``test-node``, and MQTT on ``broker`` under :data:`PREFIX`
when one is given. The replay and service tests use :data:`REPLAY_LABELS` and :data:`REPLAY_TIMING` instead.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from monitor.config import Config, parse_config

if TYPE_CHECKING:
    from support.broker import Broker

__all__ = [
    "BACKGROUND",
    "LABELS",
    "NODE",
    "NODE_ID",
    "PREFIX",
    "REPLAY_LABELS",
    "REPLAY_TIMING",
    "config_data",
    "make_config",
    "write_config",
]

PREFIX = "test/sound-monitor"
"""MQTT topic prefix of every test monitor."""
NODE = "test-node"
"""The monitors' node name."""
NODE_ID = "test_node"
"""The node name as it appears in Home Assistant discovery topics and ids."""
LABELS = ["dog barking", "glass breaking"]
"""Default labels."""
BACKGROUND = ["silence", "speech"]
"""Background labels (scored, never events)."""
REPLAY_LABELS = ["glass breaking", "dog barking"]
"""Labels of the replay and service tests, in the order their pipeline references list the candidates."""
REPLAY_TIMING: dict[str, Any] = {
    "audio": {"window_seconds": 5.0, "hop_seconds": 1.0},
    "detection": {"min_hits": 1, "end_after_seconds": 3.0, "cooldown_seconds": 5.0},
}
"""5 s windows every 1 s (the shape of a deployed monitor) and their event timing: pass as ``**REPLAY_TIMING``."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def config_data(model: Path, broker: Broker | None = None, labels: list[Any] | None = None,
                threshold: float | None = None, **sections: Any) -> dict[str, Any]:
    """The raw config mapping (see the module docstring for the defaults).

    Args:
        model: The model folder (or hub id).
        broker: When given, ``mqtt`` points at it with ``topic_prefix`` :data:`PREFIX`.
        labels: Names or label dicts; :data:`LABELS` if None.
        threshold: Given to every label given by name (labels given as dicts keep what they say).
        sections: Merged into the defaults; nested dicts merge key by key, anything else replaces.
    """
    names = labels if labels is not None else LABELS
    as_dicts = []
    for lbl in names:
        if isinstance(lbl, str):
            as_dicts.append({"name": lbl} if threshold is None else {"name": lbl, "threshold": threshold})
        else:
            as_dicts.append(lbl)
    data: dict[str, Any] = {
        "model": str(model),
        "labels": as_dicts,
        "background": list(BACKGROUND),
        "audio": {"window_seconds": 1.0, "hop_seconds": 0.5},
        "detection": {"min_hits": 1, "end_after_seconds": 2.0, "cooldown_seconds": 0.0},
        "inference": {"threads": 2},
        "node": NODE,
    }
    if broker is not None:
        data["mqtt"] = {"host": broker.host, "port": broker.port, "topic_prefix": PREFIX}
    return _merge(data, copy.deepcopy(sections))


def make_config(model: Path, broker: Broker | None = None, labels: list[Any] | None = None,
                threshold: float | None = None, **sections: Any) -> Config:
    """A validated config built by :func:`config_data` (same arguments)."""
    return parse_config(config_data(model, broker, labels, threshold, **sections))


def write_config(path: Path, model: Path, broker: Broker | None = None, labels: list[Any] | None = None,
                 threshold: float | None = None, **sections: Any) -> Path:
    """Write the config of :func:`config_data` (same arguments) as YAML to ``path``, for the CLI; return ``path``.

    It is validated first, so a mistake in a test's config fails here and not inside the subprocess.
    """
    data = config_data(model, broker, labels, threshold, **sections)
    parse_config(copy.deepcopy(data))
    path.write_text(yaml.safe_dump(data))
    return path
