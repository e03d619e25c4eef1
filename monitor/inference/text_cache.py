"""Label-prompt embeddings kept on disk, so that a restart with unchanged labels runs no text model at all.

The text tower is four times the size of the audio tower, and on a Pi loading it and encoding a dozen prompts
takes longer than everything else at start-up. Its output depends only on the model and the prompt text (the
prompt template is already applied), so the unit-norm embedding of every prompt is stored in one ``.npz``
file per model folder, next to the model's own fingerprint:

- the file is named after the model folder and its text-model file (a hash of both);
- it records the text model's fingerprint (size, modification time, hash of its first and last MiB); when the
  text model is present and its fingerprint differs (a re-export into the same folder), the stored
  embeddings are dropped. When the text model has been deleted to save space, they are trusted;
- it may also hold the logit scale derived for a folder whose audio model does not carry it.

Writes are atomic (a temporary file, then ``os.replace``). A cache that cannot be read or written is logged and
ignored: it saves time, never changes a score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "file_fingerprint"]

log = logging.getLogger(__name__)

_EDGE = 1 << 20  # bytes hashed at each end of a model file
MAX_ENTRIES = 4096  # prompts kept per model: far more than any label set, small on disk (2 kB each)


def file_fingerprint(path: Path) -> str:
    """Size, modification time and a hash of the first and last MiB: cheap on a 500 MB file, and changed by
    any re-export (new weights, new mtime)."""
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as f:
        digest.update(f.read(_EDGE))
        if stat.st_size > 2 * _EDGE:
            f.seek(-_EDGE, os.SEEK_END)
            digest.update(f.read(_EDGE))
    return digest.hexdigest()[:32]


class EmbeddingCache:
    """Prompt → unit-norm text embedding for one model folder, persisted in ``folder/<key>.npz``."""

    def __init__(self, folder: Path | None, model_dir: Path, text_model: Path) -> None:
        """``folder``: the cache folder (None: memory only). ``text_model``: the file whose outputs are cached."""
        key = hashlib.sha256(f"{model_dir.resolve()}\0{text_model.name}".encode()).hexdigest()[:24]
        self.path = folder / f"text-embeddings-{key}.npz" if folder is not None else None
        self.fingerprint = file_fingerprint(text_model) if text_model.is_file() else None
        self.entries: dict[str, np.ndarray] = {}
        self.meta: dict[str, object] = {}
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                prompts, embeddings = data["prompts"], data["embeddings"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable embedding cache, ignored (%s)", self.path, exc)
            return
        stored = meta.get("text_fingerprint")
        if self.fingerprint is not None and stored != self.fingerprint:
            log.info("%s: the text model changed since these embeddings were stored; they are dropped", self.path)
            self.meta = {k: v for k, v in meta.items() if k != "text_fingerprint"}
            return
        self.meta = meta
        self.entries = {str(p): e.astype(np.float32) for p, e in zip(prompts, embeddings, strict=True)}

    def get(self, prompt: str) -> np.ndarray | None:
        """The stored embedding of ``prompt``, or None."""
        return self.entries.get(prompt)

    def put(self, embeddings: dict[str, np.ndarray]) -> None:
        """Store new prompt embeddings (and write the file)."""
        self.entries.update({p: np.asarray(e, dtype=np.float32) for p, e in embeddings.items()})
        while len(self.entries) > MAX_ENTRIES:  # oldest first: dicts keep insertion order
            self.entries.pop(next(iter(self.entries)))
        self.save()

    def save(self) -> None:
        """Write the cache atomically; a failure is logged once and otherwise ignored."""
        if self.path is None:
            return
        meta = {**self.meta, "text_fingerprint": self.fingerprint or self.meta.get("text_fingerprint")}
        prompts = list(self.entries)
        embeddings = np.stack([self.entries[p] for p in prompts]) if prompts else np.zeros((0, 0), np.float32)
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.path.parent)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)), prompts=np.array(prompts, dtype=str),
                         embeddings=embeddings)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            log.warning("cannot write the embedding cache %s (%s); labels will be encoded again at the next start",
                        self.path, exc)
            self.path = None
