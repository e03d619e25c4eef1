"""Windowing and resampling: a continuous stream at any rate in, fixed 48 kHz windows out.

Resampling runs on the continuous stream (:class:`monitor.core.resample.StreamResampler`), never window
by window. Windows are cut at fixed sample offsets of the
resampled stream, so they (and their scores) do not depend on the block size the device delivers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from monitor.config import MODEL_SAMPLE_RATE
from monitor.core.sanitize import AudioGuard
from monitor.records import Window

log = logging.getLogger(__name__)

SILENCE_DBFS = -120.0


def dbfs(samples: np.ndarray) -> float:
    """RMS level of ``samples`` in dB relative to full scale (floored at -120 dB)."""
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


class Windower:
    """Cut a 48 kHz stream into windows of ``window`` samples every ``hop`` samples.

    Owns a fixed buffer of ``window + hop`` samples; each emitted window is a fresh copy, so the
    consumer may keep it while the buffer moves on.
    """

    def __init__(self, window_seconds: float, hop_seconds: float, rate: int = MODEL_SAMPLE_RATE) -> None:
        self.rate = rate
        self.window = round(window_seconds * rate)
        self.hop = round(hop_seconds * rate)
        if not 0 < self.hop <= self.window:
            raise ValueError("hop must be positive and not longer than the window")
        self._buf = np.zeros(self.window + self.hop, dtype=np.float32)
        self._filled = 0
        self._buf_start = 0  # stream sample index of _buf[0]
        self._index = 0

    @property
    def samples_seen(self) -> int:
        """Total samples pushed so far."""
        return self._buf_start + self._filled

    def push(self, samples: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """Feed samples; yield ``(index, start_sample, window_samples)`` for every window completed."""
        pos = 0
        n_total = len(samples)
        while pos < n_total:
            n = min(n_total - pos, len(self._buf) - self._filled)
            self._buf[self._filled : self._filled + n] = samples[pos : pos + n]
            self._filled += n
            pos += n
            while self._filled >= self.window:
                yield self._index, self._buf_start, self._buf[: self.window].copy()
                self._index += 1
                # Slide by one hop; numpy handles the overlapping copy correctly.
                self._buf[: self._filled - self.hop] = self._buf[self.hop : self._filled]
                self._filled -= self.hop
                self._buf_start += self.hop

    def partial(self) -> np.ndarray | None:
        """A copy of everything pushed when that never filled a window (a clip shorter than one), else None.

        Such a clip is scored as it is, like ``classify`` does: the feature extractor repeat-pads it.
        """
        if self._index or not self._filled:
            return None
        return self._buf[: self._filled].copy()


class AudioSource(Protocol):
    """A stream of mono float32 blocks: a microphone (``monitor.sources``: ``Capture``, ``ReopeningSource``) or a file.

    ``rate`` may change between reads (a microphone reopened at another rate); the next block is at the new rate.
    """

    rate: int
    lossless: bool  # True: never drop windows (file replay); False: drop the oldest when behind (live)

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """Next samples (possibly empty), None at the end of the stream."""
        ...

    def interrupt(self) -> None:
        """Wake a blocked ``read()`` from another thread so that shutdown is immediate (may be a no-op)."""
        ...

    def stop(self) -> None:
        """Release the device or file."""
        ...


class WindowQueue(Protocol):
    """Where a stage puts its windows: a :class:`~monitor.core.queues.DropOldestQueue`, or one source's
    :class:`~monitor.core.queues.Producer` of the fair queue that several sources share."""

    def put(self, item: Window, block: bool = False, timeout: float | None = None) -> bool:
        """Queue a window (``block``: wait for room instead of dropping the oldest)."""
        ...

    def close(self) -> None:
        """This stage puts no more."""
        ...


class WindowStage:
    """The windowing thread: reads a source, resamples, cuts windows, queues them for inference.

    A live source that loses its device (USB microphone unplugged) reopens it itself; while it is gone its
    ``read()`` blocks, no windows flow, and the watchdog and ``/healthz`` report the stall.

    Every block passes the :class:`~monitor.core.sanitize.AudioGuard` before the resampler: samples that are not
    audio (NaN, ±inf, far beyond full scale) never reach the resampler's state or the model; the windows that held
    them go out marked invalid (``Window.valid`` False) and are counted in ``windows_invalid``. A file shorter
    than one window (``live`` False) gives one short window at its end, scored as it is.

    With several sources each has its own stage (thread ``windowing <name>``): a source that stalls, fails or
    floods holds up only its own thread; its windows carry its ``name``.
    """

    def __init__(
        self,
        source: AudioSource,
        windows: WindowQueue,
        window_seconds: float,
        hop_seconds: float,
        live: bool = True,
        taps: list[Callable[[int, np.ndarray], None]] | None = None,
        name: str = "",
    ) -> None:
        self.source = source
        self.name = name
        self.windows = windows
        self.window_seconds = window_seconds
        self.hop_seconds = hop_seconds
        self.live = live
        self.taps = taps if taps is not None else []
        self.error: BaseException | None = None
        self.windows_invalid = 0  # windows holding invalid samples (not scored)
        self.windows_cut = 0  # windows cut (scored, skipped or dropped later)
        self.last_dbfs: float | None = None  # level of the latest window (read by the metrics thread)
        self.last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"windowing {name}" if name else "windowing",
                                        daemon=True)
        self._windower = Windower(window_seconds, hop_seconds)
        label = f"source {name}" if name else str(getattr(source, "path", "audio input"))
        self._guard = AudioGuard(source.rate, name=label)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish (it closes the window queue), waking a read blocked in the source."""
        self._stop.set()
        self.source.interrupt()

    @property
    def alive(self) -> bool:
        """Whether the thread runs (False before start and once the source ended or failed)."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def samples_clipped(self) -> int:
        """Samples beyond full scale clipped to ±1 so far."""
        return self._guard.clipped_samples

    def _window(self, index: int, start: int, samples: np.ndarray) -> Window:
        rate = self._windower.rate
        t, end = start / rate, (start + len(samples)) / rate
        valid = self._guard.clean(start, start + len(samples))
        self.windows_invalid += not valid
        self.windows_cut += 1
        level = dbfs(samples)
        self.last_dbfs = level
        return Window(index=index, start=t, end=end, samples=samples,
                      mono_end=time.monotonic() if self.live else end, dbfs=level, valid=valid, source=self.name)

    def _emit(self, samples: np.ndarray) -> None:
        w = self._windower
        for tap in self.taps:
            tap(w.samples_seen, samples)
        for index, start, win in w.push(samples):
            self.windows.put(self._window(index, start, win), block=self.source.lossless)

    def _finish(self) -> None:
        """End of the stream: flush the resampler; a file shorter than a window is one short window."""
        self._emit(self._guard.process(np.zeros(0, np.float32), last=True))
        short = None if self.live else self._windower.partial()
        if short is not None:
            self.windows.put(self._window(0, 0, short), block=self.source.lossless)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                block = self.source.read(0.5)
                if block is None:
                    self._finish()
                    break
                self.last_progress = time.monotonic()
                if block.size:
                    if self.source.rate != self._guard.in_rate:  # reopened at another rate
                        self._guard.set_rate(self.source.rate, self._windower.samples_seen)
                    self._emit(self._guard.process(block))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which exits non-zero
            self.error = exc
            log.error("%s", exc)
        finally:
            self.source.stop()
            self.windows.close()
