"""Reading audio files (any rate, channel count and common format) as mono float32.

soundfile (libsndfile) is used rather than hand-written parsing: it reads WAV, FLAC, OGG/Vorbis,
Opus and MP3 at any sample format, and streams long files block by block.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf

from monitor.core.resample import downmix

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf"}


class AudioFileError(Exception):
    """A file that cannot be read as audio; the message names the file."""


MIN_RATE, MAX_RATE = 1_000, 768_000  # plausible audio sample rates; a header outside them is broken or hostile


def check_path(path: str | Path) -> Path:
    """``path`` as a Path if it is a regular file; else :class:`AudioFileError` saying what it is.

    Checked before opening: opening a FIFO would block until someone writes to it.
    """
    p = Path(path)
    if p.is_dir():
        raise AudioFileError(f"{p}: is a directory, not an audio file")
    if not p.exists():
        raise AudioFileError(f"{p}: no such file")
    if not p.is_file():
        raise AudioFileError(f"{p}: is not a regular file (a FIFO, socket or device); give an audio file")
    return p


def check_rate(rate: int, name: str | Path) -> int:
    """``rate`` if it is a plausible sample rate, else :class:`AudioFileError` naming ``name``.

    A header claiming 1 Hz would make resampling to 48 kHz multiply the samples 48000-fold.
    """
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFileError(f"{name}: sample rate {rate} Hz is not plausible audio "
                             f"(expected {MIN_RATE}-{MAX_RATE} Hz)")
    return int(rate)


def _open(path: str | Path) -> sf.SoundFile:
    p = check_path(path)
    try:
        f = sf.SoundFile(str(p))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioFileError(f"{p}: not a readable audio file ({exc})") from None
    try:
        check_rate(f.samplerate, p)
    except AudioFileError:
        f.close()
        raise
    return f


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Whole file as mono float32 in [-1, 1] and its sample rate."""
    with _open(path) as f:
        try:
            data = f.read(dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001
            raise AudioFileError(f"{path}: cannot decode ({exc})") from None
        if data.shape[0] == 0:
            raise AudioFileError(f"{path}: contains no samples")
        return np.ascontiguousarray(downmix(data)), int(f.samplerate)


def find_audio_files(paths: list[str | Path]) -> list[Path]:
    """Expand folders recursively into their audio files (sorted); files are kept as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_EXTENSIONS))
        else:
            out.append(p)
    return out


class FileSource:
    """Replay a file as a stream of mono blocks, as fast as possible or paced in real time.

    Only one block is held at a time, so a file of any length is read in bounded memory (``replay``,
    ``classify``).
    """

    lossless = True  # replay wants every window: queues block rather than drop

    def __init__(self, path: str | Path, block_seconds: float = 0.1, realtime: bool = False,
                 blocksize: int | None = None) -> None:
        self.path = Path(path)
        self._file = _open(self.path)
        if self._file.frames == 0:
            self._file.close()
            raise AudioFileError(f"{self.path}: contains no samples")
        self.rate = int(self._file.samplerate)
        self.frames = int(self._file.frames)  # as the header says (approximate for some compressed formats)
        self.blocksize = blocksize or max(1, int(self.rate * block_seconds))
        self.realtime = realtime
        self._t0: float | None = None
        self._sent = 0

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """Next block, or None at the end of the file."""
        if self._file.closed:
            return None
        if self.realtime:
            if self._t0 is None:
                self._t0 = time.monotonic()
            # Pacing, not synchronisation: deliver no faster than the audio plays.
            ahead = self._t0 + self._sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(min(ahead, timeout))
                if self._t0 + self._sent / self.rate > time.monotonic():
                    return np.zeros(0, dtype=np.float32)
        try:
            block = self._file.read(self.blocksize, dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001
            raise AudioFileError(f"{self.path}: cannot decode ({exc})") from None
        if block.shape[0] == 0:
            self._file.close()
            return None
        self._sent += block.shape[0]
        return downmix(block)

    def interrupt(self) -> None:
        """Nothing to wake: a read waits at most its timeout (the realtime pacing)."""

    def stop(self) -> None:
        """Close the file."""
        self._file.close()
