"""The ``examples`` section: taught clips, the embedding cache and the bounds on example files.

Kept apart from :mod:`.schema` (which imports it) so that the teaching feature's keys sit together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from annotated_types import Ge, Gt, Le

from monitor.config.base import Strict


class ExamplesConfig(Strict):
    """Audio examples and negatives: where taught clips are kept, the embedding cache, the bounds."""

    folder: Path | None = None
    """Taught clips (``enroll``, ``add_example``, ``add_negative``): ``<folder>/<label_id>/`` holds a label's examples,
    ``<folder>/_negatives/<label_id>/`` its negatives, ``<folder>/_negatives/_all/`` the top-level negatives.
    null = ``examples`` next to ``clips.folder``."""
    cache_folder: Path | None = None
    """Audio embeddings of example files, by model and file content; null = ``$CACHE_DIRECTORY/embeddings`` (set
    by systemd) or ``~/.cache/sound-monitor/embeddings``."""
    max_cache_mb: Annotated[float, Gt(0.0), Le(10_000.0)] = 20.0
    """Bound on the cache folder; the least recently used embeddings are deleted first (one is about 2 kB)."""
    max_files: Annotated[int, Ge(1), Le(1000)] = 100
    """Most files per label's examples, per label's negatives, and in the top-level negatives."""
    max_file_mb: Annotated[float, Gt(0.0), Le(1000.0)] = 20.0
    """Largest example or negative file accepted."""
    max_file_seconds: Annotated[float, Gt(0.0), Le(3600.0)] = 120.0
    """Longest example or negative file accepted (only its loudest window is used)."""
    sharpness: Annotated[float, Gt(0.0), Le(100.0)] = 5.5
    """beta of the example score exp(-beta * (1 - cosine)): 1 = identical to an example, 0.5 at cosine
    1 - ln 2 / beta (0.874 at 5.5). Higher = only closer sounds count."""
