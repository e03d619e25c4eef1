"""Event clips: the audio around each event start, written as FLAC or WAV to a size-bounded folder.

An audio tap (windowing thread) keeps the last seconds of the resampled 48 kHz stream in a preallocated
ring, one per source (each has its own stream clock; :meth:`ClipRecorder.tap`). On an event start (main thread)
a clip of the event's source is opened covering ``[window_start - pre_roll, window_end + post_roll]`` on its
clock: the event's first window, with pre-roll before it and post-roll after the window that started the event.
What the ring already holds is copied at once; the tap appends the rest as it arrives, so no audio is missed
however far the model lags. A finished clip goes through a bounded queue to a writer thread, which hands it to
the folder (:mod:`monitor.sinks.clipfolder`): encoded in memory, written to a hidden ``.part`` file, synced and
renamed into place (readers never see half a file), then the oldest files deleted until the folder is under
``clips.max_total_mb``. Audio never leaves the device.

Faults: a folder that cannot be written at start turns clips off for the run (one error line; the monitor keeps
listening). A write that fails (full disk, file too large, folder gone) removes its partial file, is logged once
per cause and counted (``failed``); until a write succeeds again, events carry no ``clip`` name, so a consumer
is not sent to fetch files that are not being written. The clip is written after its event went out, so the one
event whose own clip failed still names it: that failure is what the log and the counter report.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from monitor.config import MODEL_SAMPLE_RATE, Config
from monitor.records import Event
from monitor.sinks import Sink
from monitor.sinks.clipaudio import AudioRing, Clip
from monitor.sinks.clipfolder import ClipFolder, cause

log = logging.getLogger(__name__)

MAX_OPEN_CLIPS = 4  # clips of one source collecting audio at once (each holds its audio in memory until written)
WRITE_QUEUE = 8  # finished clips waiting for the writer thread
LAG_MARGIN_SECONDS = 30.0  # how far detection may trail the windowing thread and still get full pre-roll


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
        self.rate = MODEL_SAMPLE_RATE
        self.files = ClipFolder(self.folder, c.format, self.rate, int(c.max_total_mb * 1024 * 1024))
        a, d = cfg.audio, cfg.detection
        # Back from the newest sample: pre-roll + the event's windows (min_hits of them) + detection lag.
        span = c.pre_roll_seconds + a.window_seconds + (d.min_hits - 1) * a.hop_seconds + LAG_MARGIN_SECONDS
        self._ring_samples = int(span * self.rate)
        self._rings: dict[str, AudioRing] = {}  # source → its ring; made by tap() before the run starts
        self._lock = threading.Lock()
        self._open: list[Clip] = []
        self._writes: queue.Queue[Clip | None] = queue.Queue(WRITE_QUEUE)
        self._thread = threading.Thread(target=self._write_loop, name="clips", daemon=True)
        self.written = 0  # clips written (a counter: a list of them would grow for as long as the service runs)
        self.failed = 0  # clips not written: write errors, and clips dropped because the writer was behind
        self.enabled = True  # False once the folder proved unwritable at start: no clip for the rest of the run
        self._naming = True  # False while the last write failed: events then carry no clip name
        self._causes_logged: set[str] = set()  # write-error causes already logged since the last success

    def start(self) -> None:
        """Create the folder and prove it writable, clear leftover partial files, apply the size bound (it may
        have been lowered) and start the writer thread. A folder that cannot be written turns clips off for this
        run with one error line; the monitor keeps listening."""
        try:
            self.files.prepare()
        except OSError as exc:
            self.enabled = False
            log.error("clips: cannot write to %s (%s); clips are off for this run", self.folder,
                      exc.strerror or exc)
            return
        self._enforce_bound()
        self._thread.start()

    def stop(self) -> None:
        """Write the clips still recording (end of file, shutdown), then stop the writer."""
        self.close()

    def tap(self, source: str = "") -> Callable[[int, np.ndarray], None]:
        """The audio tap of ``source`` (its windowing thread calls it with every resampled block); its ring is
        allocated now (main thread, while wiring), so the taps never allocate."""
        ring = self._ring(source)
        return lambda first, samples: self._on_audio(source, ring, first, samples)

    def _ring(self, source: str) -> AudioRing:
        with self._lock:
            ring = self._rings.get(source)
            if ring is None:
                ring = self._rings[source] = AudioRing(self._ring_samples)
            return ring

    # --- windowing thread(s) ------------------------------------------------------------------------
    def on_audio(self, first: int, samples: np.ndarray) -> None:
        """Audio tap of the unnamed source (a single-source run)."""
        self._on_audio("", self._ring(""), first, samples)

    def _on_audio(self, source: str, ring: AudioRing, first: int, samples: np.ndarray) -> None:
        """Keep ``source``'s ring, feed its open clips, hand finished ones to the writer."""
        if not self.enabled:
            return
        finished: list[Clip] = []
        with self._lock:
            ring.write(first, samples)
            if self._open:
                for clip in self._open:
                    if clip.source == source:
                        clip.take(first, samples)
                finished = [c for c in self._open if c.done]
                self._open = [c for c in self._open if not c.done]
        for clip in finished:
            self._queue(clip)

    # --- main thread -------------------------------------------------------------------------------
    def annotate(self, event: Event) -> Event:
        """On a start, open a clip and return the event with the clip's file name in its payload (left out while
        the last write failed: the clip is still recorded, to find out when writing works again)."""
        if event.type != "start" or not self.enabled:
            return event
        start = max(0, round((event.window_start - self.pre_roll) * self.rate))
        end = round((event.window_end + self.post_roll) * self.rate)
        with self._lock:
            ring = self._rings.get(event.source)
            if ring is None:  # no tap for this source: nothing to record
                return event
            name = self._file_name(event)
            if sum(c.source == event.source for c in self._open) >= MAX_OPEN_CLIPS:
                log.warning("clips: %d clips already recording; no clip for this %s event", MAX_OPEN_CLIPS,
                            event.label)
                return event
            if ring.start > start:
                log.warning("clips: detection lagged; %s pre-roll cut by %.1f s", name,
                            (ring.start - start) / self.rate)
            clip = Clip(name, start, end, next=max(start, ring.start), source=event.source)
            clip.take(clip.next, ring.read(clip.next, end))
            if not clip.done:
                self._open.append(clip)
        if clip.done:
            self._queue(clip)
        if not self._naming:
            return event
        return replace(event, extra={**event.extra, "clip": name})

    def _file_name(self, event: Event) -> str:
        # Called with the lock held (reads _open).
        # 2026-11-25T12:00:05.123Z → 2026-11-25T12-00-05.123Z (no colons: the folder may be shared over SMB)
        stamp = event.timestamp.replace(":", "-")
        base = f"{stamp}_{event.source}_{event.label_id}" if event.source else f"{stamp}_{event.label_id}"
        name = f"{base}.{self.format}"
        n = 1
        while _exists(self.folder / name) or any(c.name == name for c in self._open):
            n += 1
            name = f"{base}-{n}.{self.format}"
        return name

    def _queue(self, clip: Clip) -> None:
        try:
            self._writes.put_nowait(clip)
        except queue.Full:
            with self._lock:  # several windowing threads and the writer count here
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
            except Exception as exc:  # noqa: BLE001 - any failure: count it, log its cause once, keep going
                self._write_failed(clip, exc)
            else:
                if not self._naming:
                    log.info("clips: writing works again (%s); events name their clips again", clip.name)
                self._naming = True
                self._causes_logged.clear()
            self._enforce_bound()

    def _write_failed(self, clip: Clip, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
        self._naming = False
        why = cause(exc)
        if why in self._causes_logged:
            log.debug("clips: cannot write %s: %s", clip.name, why)
            return
        self._causes_logged.add(why)
        log.error("clips: cannot write %s: %s; events name no clip until a write succeeds (logged once per cause)",
                  clip.name, why)

    def _write(self, clip: Clip) -> None:
        audio = np.concatenate(clip.parts) if clip.parts else np.zeros(0, np.float32)
        if audio.size == 0:
            log.warning("clips: no audio for %s", clip.name)
            return
        path = self.files.write(clip.name, audio)
        self.written += 1
        log.info("clips: wrote %s (%.1f s)", path, audio.size / self.rate)

    def _enforce_bound(self) -> None:
        """Keep the folder under ``max_total_mb`` (:meth:`ClipFolder.enforce_bound`); a folder that cannot be
        listed is logged once per cause."""
        try:
            self.files.enforce_bound()
        except OSError as exc:
            why = cause(exc)
            if why not in self._causes_logged:
                self._causes_logged.add(why)
                log.error("clips: cannot list %s to keep it under its size bound: %s", self.folder, why)


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False when the folder cannot even be asked (a dropped network share raises EIO or
    ESTALE): the write then fails and is reported as every write failure is, and the monitor keeps listening."""
    try:
        return path.exists()
    except OSError:
        return False
