"""The on-disk cache of example embeddings: one small ``.npy`` per audio file, by model and file content.

Embedding an example costs one audio-tower forward (about 0.3 s on a Pi-class CPU with the real model); with a few
hundred examples that would be minutes at every start. So each embedding is kept under
``<cache folder>/<model key>/<sha256 of the file's bytes>.npy``:

* the **model key** hashes everything the vector depends on besides the audio: the model id, its hub commit or
  its weight files' sizes and times, its config, the precision, the feature front end, the window and hop (which
  pick the window of a long file) and :data:`CACHE_VERSION`; another model or setting never reads a stale vector;
* the **content hash** means a file edited in place gets a new entry, and a renamed or copied file reuses its
  old one.

The folder is bounded (``examples.max_cache_mb``): after a sync adds entries, the least recently used ones (file
modification time, refreshed on every read) are deleted until the whole cache folder fits. A cache that cannot
be written (read-only disk, no permission) is logged once and the monitor goes on without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the way a file becomes a vector changes
MAX_VECTOR = 65_536  # floats; a larger .npy in the cache folder is not one of ours


def model_key(model_id: str, parts: Sequence[object]) -> str:
    """A short stable key for ``model_id`` and what else the embeddings depend on (``parts``).

    A local model folder adds its weight files' names, sizes and modification times, so a checkpoint replaced
    under the same path gets a new key without hashing hundreds of MB at every start.
    """
    items = [f"v{CACHE_VERSION}", model_id, *map(str, parts)]
    folder = Path(model_id)
    if folder.is_dir():
        for f in sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")]):
            st = f.stat()
            items.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:20]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EmbeddingCache:
    """Vectors by content hash under ``root/key``; ``root`` None keeps nothing (every lookup misses)."""

    def __init__(self, root: Path | None, key: str, max_bytes: int) -> None:
        self.root = root
        self.dir = root / key if root is not None else None
        self.max_bytes = max_bytes
        self.writable = root is not None
        self.hits = 0
        self.writes = 0

    def _path(self, digest: str) -> Path:
        assert self.dir is not None
        return self.dir / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        """The cached vector of a file with this content hash, or None (a damaged entry is deleted)."""
        if self.dir is None:
            return None
        path = self._path(digest)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("embedding cache: %s is damaged (%s); computing it again", path, exc)
            path.unlink(missing_ok=True)
            return None
        if vec.ndim != 1 or not 0 < vec.size <= MAX_VECTOR or not np.all(np.isfinite(vec)):
            log.warning("embedding cache: %s does not hold an embedding; computing it again", path)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used: the bound deletes the least recently used first
        except OSError:
            pass
        self.hits += 1
        return vec.astype(np.float32, copy=False)

    def put(self, digest: str, vec: np.ndarray) -> None:
        """Keep ``vec`` for files with this content hash (written whole under a temporary name, then renamed)."""
        if self.dir is None or not self.writable:
            return
        path = self._path(digest)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(vec, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
            self.writes += 1
        except OSError as exc:
            self.writable = False
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            log.warning("embedding cache: cannot write to %s (%s); example embeddings will be computed again at "
                        "every start", self.dir, exc.strerror or exc)

    def enforce_bound(self) -> None:
        """Delete the least recently used entries (of every model) until the cache folder fits ``max_bytes``."""
        if self.root is None or not self.root.is_dir():
            return
        files = []
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.suffix == ".npy" and f.is_file():
                    st = f.stat()
                    files.append((st.st_mtime_ns, str(f), st.st_size))
        files.sort()
        total = sum(size for _, _, size in files)
        for _, name, size in files:
            if total <= self.max_bytes:
                break
            try:
                Path(name).unlink()
            except OSError:
                continue
            total -= size
        for sub in self.root.iterdir():  # empty folders of models no longer used
            if sub.is_dir() and sub != self.dir and not any(sub.iterdir()):
                sub.rmdir()
