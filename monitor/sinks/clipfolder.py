"""The clips folder on disk: checked at start, each clip written whole, kept under its size bound.

Kept apart from :mod:`monitor.sinks.clips` (the recorder: taps, naming, the writer thread, fault reporting) so
that what touches the disk reads on its own. A clip is encoded in memory, written to a hidden ``.part`` file,
synced and renamed into place, so readers never see half a file. Only files this recorder writes (clips, and
partial files an interrupted write left) are counted against the bound or deleted; other files are left alone.
No thread or lock of its own: the recorder calls it at start and then only from its writer thread.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

CLIP_SUFFIXES = (".flac", ".wav")
PART_SUFFIX = ".part"  # a clip being written: ".<name>.part", renamed into place once complete


class ClipFolder:
    """Where clips go: ``folder``, as ``fmt`` (``flac`` or ``wav``) at ``rate``, at most ``max_bytes`` in all."""

    def __init__(self, folder: Path, fmt: str, rate: int, max_bytes: int) -> None:
        self.folder = folder
        self.format = fmt
        self.rate = rate
        self.max_bytes = max_bytes
        self._last_mtime_ns = 0

    def prepare(self) -> None:
        """Create the folder, prove it writable and remove partial files a killed run left (raises OSError)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        probe = self.folder / f".write-test-{os.getpid()}{PART_SUFFIX}"
        try:
            with open(probe, "wb") as f:
                f.write(b"sound-monitor")
                f.flush()
                os.fsync(f.fileno())
        finally:
            probe.unlink(missing_ok=True)
        for leftover in self.folder.glob(f".*{PART_SUFFIX}"):  # from a run killed while writing
            if not written_here(leftover.name):
                continue
            leftover.unlink(missing_ok=True)
            log.info("clips: removed the partial file %s left by an earlier run", leftover.name)

    def write(self, name: str, audio: np.ndarray) -> Path:
        """Write ``audio`` as the clip ``name``, whole or not at all (raises on failure, leaving no partial file)."""
        # Encoded in memory first: the file is then written by Python, whose errors carry the cause (full disk,
        # file too large), where libsndfile only says "system error".
        encoded = io.BytesIO()
        sf.write(encoded, np.clip(audio, -1.0, 1.0), self.rate, format=self.format.upper(), subtype="PCM_16")
        path = self.folder / name
        tmp = path.with_name(f".{path.name}{PART_SUFFIX}")
        try:
            with open(tmp, "wb") as f:
                f.write(encoded.getbuffer())
                f.flush()
                os.fsync(f.fileno())  # a full disk may only show here (delayed allocation)
            # Strictly increasing mtimes, so "oldest first" holds even for clips written within one clock tick.
            mtime = max(time.time_ns(), self._last_mtime_ns + 1)
            os.utime(tmp, ns=(mtime, mtime))
            self._last_mtime_ns = mtime
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # never leave a partial file behind
            raise
        return path

    def enforce_bound(self) -> None:
        """Delete the oldest files this recorder writes until they fit in ``max_bytes`` (raises OSError when the
        folder cannot be listed; a file that cannot be deleted is logged and skipped)."""
        files = []
        for p in self.folder.iterdir():
            if written_here(p.name) and p.is_file():
                st = p.stat()
                files.append((st.st_mtime_ns, p.name, st.st_size, p))
        files.sort()
        total = sum(f[2] for f in files)
        for _, _, size, p in files:
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
                log.info("clips: deleted %s (folder over %.1f MB)", p.name, self.max_bytes / 1024 / 1024)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("clips: cannot delete %s: %s", p.name, cause(exc))
                continue
            total -= size


def written_here(name: str) -> bool:
    """Whether a file name is one this recorder writes: a clip, or a hidden partial clip."""
    if name.startswith(".") and name.endswith(PART_SUFFIX):
        return name.removesuffix(PART_SUFFIX).lower().endswith(CLIP_SUFFIXES)
    return not name.startswith(".") and name.lower().endswith(CLIP_SUFFIXES)


def cause(exc: BaseException) -> str:
    """What went wrong, without the file name, so that one cause is logged once (e.g. "No space left on device")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
