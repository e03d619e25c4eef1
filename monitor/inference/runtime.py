"""Small runtime helpers shared by the torch and ONNX backends, importable without either."""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

__all__ = ["default_cache_dir", "default_threads", "release_freed_memory"]


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


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> None:
    """Give memory that was freed but kept by glibc's allocator back to the kernel (``malloc_trim``).

    Called after a model is let go or loaded: glibc keeps freed heap memory for later use, so a released text
    model (hundreds of MB) would otherwise stay in the process's resident set for weeks. Not called per window:
    there it would only return the working set that the next window faults back in (measured: ~15 % more CPU
    per window for no lower peak; docs/BENCHMARKS.md). No-op without glibc.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
