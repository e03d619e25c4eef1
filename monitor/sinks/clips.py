"""Event clips: the audio around each event start, written as FLAC or WAV to a size-bounded folder.

An audio tap (windowing thread) keeps the last seconds of the resampled 48 kHz stream in a preallocated
ring. On an event start (main thread) a clip is opened covering ``[window_start - pre_roll, window_end +
post_roll]`` on the stream clock: the event's first window, with pre-roll before it and post-roll after the
window that started the event. What the ring already holds is copied at once; the tap appends the rest as it
arrives, so no audio is missed however far the model lags. A finished clip goes through a bounded queue to a
writer thread, which encodes it (soundfile), renames it into place (readers never see half a file) and then
deletes the oldest clips until the folder is under ``clips.max_total_mb``. Audio never leaves the device.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from monitor.config import MODEL_SAMPLE_RATE, Config
from monitor.records import Event
from monitor.sinks import Sink

log = logging.getLogger(__name__)

MAX_OPEN_CLIPS = 4  # clips collecting audio at once (each holds its audio in memory until written)
WRITE_QUEUE = 8  # finished clips waiting for the writer thread
LAG_MARGIN_SECONDS = 30.0  # how far detection may trail the windowing thread and still get full pre-roll
CLIP_SUFFIXES = (".flac", ".wav")


class AudioRing:
    """The last ``capacity`` samples of a stream, addressed by absolute sample index. Not locked: callers lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    def write(self, first: int, samples: np.ndarray) -> None:
        """Store ``samples`` whose first sample has absolute index ``first``."""
        n = len(samples)
        if n == 0:
            return
        if n > self.capacity:
            first, samples, n = first + n - self.capacity, samples[-self.capacity :], self.capacity
        i = first % self.capacity
        k = min(n, self.capacity - i)
        self._buf[i : i + k] = samples[:k]
        self._buf[: n - k] = samples[k:]
        self.end = first + n

    def read(self, start: int, end: int) -> np.ndarray:
        """Copy of ``[start, end)`` clipped to what is held (may be shorter, or empty)."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        i, j = start % self.capacity, end % self.capacity
        if i < j:
            return self._buf[i:j].copy()
        return np.concatenate([self._buf[i:], self._buf[:j]])


@dataclass
class _Clip:
    name: str
    start: int  # absolute sample indexes of the wanted span
    end: int
    next: int  # the next sample the clip still needs
    parts: list[np.ndarray] = field(default_factory=list)

    def take(self, first: int, samples: np.ndarray) -> None:
        if first > self.next:  # a gap in the stream: skip it rather than wait forever
            self.next = min(first, self.end)
        lo = max(self.next, first)
        hi = min(self.end, first + len(samples))
        if hi > lo:
            self.parts.append(samples[lo - first : hi - first].copy())
            self.next = hi

    @property
    def done(self) -> bool:
        return self.next >= self.end


class ClipRecorder(Sink):
    """Writes a clip around every event start and names it in the event (``extra["clip"]``).

    Wiring: :meth:`on_audio` is an audio tap of the windowing stage, :meth:`annotate` an annotator of the
    pipeline (it runs before any sink sees the event), and the recorder is a sink for start and stop.
    """

    def __init__(self, cfg: Config) -> None:
        c = cfg.clips
        self.folder = Path(c.folder)
        self.format = c.format
        self.pre_roll = c.pre_roll_seconds
        self.post_roll = c.post_roll_seconds
        self.max_bytes = int(c.max_total_mb * 1024 * 1024)
        self.rate = MODEL_SAMPLE_RATE
        a, d = cfg.audio, cfg.detection
        # Back from the newest sample: pre-roll + the event's windows (min_hits of them) + detection lag.
        span = c.pre_roll_seconds + a.window_seconds + (d.min_hits - 1) * a.hop_seconds + LAG_MARGIN_SECONDS
        self._ring = AudioRing(int(span * self.rate))
        self._lock = threading.Lock()
        self._open: list[_Clip] = []
        self._writes: queue.Queue[_Clip | None] = queue.Queue(WRITE_QUEUE)
        self._thread = threading.Thread(target=self._write_loop, name="clips", daemon=True)
        self.written: list[Path] = []
        self._last_mtime_ns = 0
        self.failed = 0

    def start(self) -> None:
        """Create the folder, apply the size bound (it may have been lowered) and start the writer thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._enforce_bound()
        self._thread.start()

    def stop(self) -> None:
        """Write the clips still recording (end of file, shutdown), then stop the writer."""
        self.close()

    # --- windowing thread ----------------------------------------------------------------------------
    def on_audio(self, first: int, samples: np.ndarray) -> None:
        """Audio tap: keep the ring, feed open clips, hand finished ones to the writer."""
        finished: list[_Clip] = []
        with self._lock:
            self._ring.write(first, samples)
            if self._open:
                for clip in self._open:
                    clip.take(first, samples)
                finished = [c for c in self._open if c.done]
                self._open = [c for c in self._open if not c.done]
        for clip in finished:
            self._queue(clip)

    # --- main thread -------------------------------------------------------------------------------
    def annotate(self, event: Event) -> Event:
        """On a start, open a clip and return the event with the clip's file name in its payload."""
        if event.type != "start":
            return event
        start = max(0, round((event.window_start - self.pre_roll) * self.rate))
        end = round((event.window_end + self.post_roll) * self.rate)
        with self._lock:
            name = self._file_name(event)
            if len(self._open) >= MAX_OPEN_CLIPS:
                log.warning("clips: %d clips already recording; no clip for this %s event", MAX_OPEN_CLIPS,
                            event.label)
                return event
            if self._ring.start > start:
                log.warning("clips: detection lagged; %s pre-roll cut by %.1f s", name,
                            (self._ring.start - start) / self.rate)
            clip = _Clip(name, start, end, next=max(start, self._ring.start))
            clip.take(clip.next, self._ring.read(clip.next, end))
            if not clip.done:
                self._open.append(clip)
        if clip.done:
            self._queue(clip)
        return replace(event, extra={**event.extra, "clip": name})

    def _file_name(self, event: Event) -> str:
        # Called with the lock held (reads _open).
        # 2026-11-25T12:00:05.123Z → 2026-11-25T12-00-05.123Z (no colons: the folder may be shared over SMB)
        stamp = event.timestamp.replace(":", "-")
        base = f"{stamp}_{event.label_id}"
        name = f"{base}.{self.format}"
        n = 1
        while (self.folder / name).exists() or any(c.name == name for c in self._open):
            n += 1
            name = f"{base}-{n}.{self.format}"
        return name

    def _queue(self, clip: _Clip) -> None:
        try:
            self._writes.put_nowait(clip)
        except queue.Full:
            self.failed += 1
            log.warning("clips: writer is behind; %s not written", clip.name)

    def close(self, timeout: float = 5.0) -> None:
        """Write the clips still recording with the audio they have (end of file, shutdown), then stop."""
        with self._lock:
            pending, self._open = self._open, []
        for clip in pending:
            self._queue(clip)
        if self._thread.is_alive():
            try:
                self._writes.put(None, timeout=timeout)
            except queue.Full:
                log.warning("clips: writer did not drain in time")
                return
            self._thread.join(timeout)

    # --- writer thread -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            clip = self._writes.get()
            if clip is None:
                return
            try:
                self._write(clip)
                self._enforce_bound()
            except Exception:
                self.failed += 1
                log.exception("clips: cannot write %s", clip.name)

    def _write(self, clip: _Clip) -> None:
        audio = np.concatenate(clip.parts) if clip.parts else np.zeros(0, np.float32)
        if audio.size == 0:
            log.warning("clips: no audio for %s", clip.name)
            return
        path = self.folder / clip.name
        tmp = path.with_name(f".{path.name}.part")
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), self.rate, format=self.format.upper(), subtype="PCM_16")
        # Strictly increasing mtimes, so "oldest first" holds even for clips written within one clock tick.
        mtime = max(time.time_ns(), self._last_mtime_ns + 1)
        os.utime(tmp, ns=(mtime, mtime))
        self._last_mtime_ns = mtime
        os.replace(tmp, path)
        self.written.append(path)
        log.info("clips: wrote %s (%.1f s)", path, audio.size / self.rate)

    def _enforce_bound(self) -> None:
        """Delete the oldest clips until the folder's clips fit in ``max_total_mb``."""
        files = []
        for p in self.folder.iterdir():
            if p.suffix.lower() in CLIP_SUFFIXES and not p.name.startswith(".") and p.is_file():
                st = p.stat()
                files.append((st.st_mtime_ns, p.name, st.st_size, p))
        files.sort()
        total = sum(f[2] for f in files)
        for _, _, size, p in files:
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
                total -= size
                log.info("clips: deleted %s (folder over %.1f MB)", p.name, self.max_bytes / 1024 / 1024)
            except FileNotFoundError:
                total -= size
