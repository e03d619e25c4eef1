"""How example files become vectors and scores: settings only, importable without torch (the onnx backend and
``classify`` name them without running the torch scorer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.config import Config


@dataclass(frozen=True)
class ExampleSettings:
    """How example files become vectors and scores (from the config's ``examples`` and ``audio`` sections)."""

    cache_folder: Path | None = None  # None: no disk cache
    max_cache_bytes: int = 20 * 1024 * 1024
    max_file_bytes: int = 20 * 1024 * 1024
    max_file_seconds: float = 120.0
    window_seconds: float = 5.0
    hop_seconds: float = 1.0
    sharpness: float = 5.5

    @classmethod
    def from_config(cls, cfg: Config) -> ExampleSettings:
        """Settings of ``cfg`` (the cache folder resolved as :func:`monitor.teaching.cache_folder` says)."""
        from monitor.teaching import cache_folder

        e = cfg.examples
        return cls(cache_folder(cfg), int(e.max_cache_mb * 1024 * 1024), int(e.max_file_mb * 1024 * 1024),
                   e.max_file_seconds, cfg.audio.window_seconds, cfg.audio.hop_seconds, e.sharpness)
