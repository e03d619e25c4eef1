"""Small runtime helpers shared by the torch and ONNX backends, importable without either."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "default_threads"]


def default_threads() -> int:
    """Intra-op threads for this box: every core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_cache_dir() -> Path:
    """Where derived files (label embeddings) live when ``inference.cache_dir`` is not set.

    systemd's ``CacheDirectory=`` sets ``$CACHE_DIRECTORY`` for the service; otherwise the XDG cache folder.
    """
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sound-monitor"
