"""A live input that survives its device going away: reopen with backoff, keep the counters.

A USB microphone that is unplugged (or a PulseAudio source that is unloaded) ends the PortAudio stream and
:meth:`Capture.read` raises :class:`CaptureError`. :class:`ReopeningSource` catches that, closes the capture and
opens a new one (after a PortAudio device rescan) with exponential backoff, so the consumer only ever sees
blocks. While the device is gone ``read()`` blocks in the backoff: no audio flows. ``input_state`` says so at
once (``down``, with the error), for ``/healthz`` and the watchdog (``Monitor.health()``) and for the sinks, which
the main loop hands every new state to (MQTT ``<prefix>/input``). Each failed attempt is one short log line: the
error's first line, and ALSA's and PortAudio's own prints are kept out of stderr (:mod:`monitor.sources.quiet`).
``interrupt()`` ends the wait at once for a prompt shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from monitor.records import InputState, utc_now_iso
from monitor.sources.capture import Capture, CaptureError, rescan_devices
from monitor.sources.quiet import quiet_stderr, silence_alsa

log = logging.getLogger(__name__)

OVERRUN_LOG_SECONDS = 10.0  # at most one overrun warning this often
MAX_ERROR_CHARS = 300  # of an error in the log and on MQTT: its first line (no device listing), this long at most


class _Totals(NamedTuple):
    """Counters of the captures already closed, to add to the current capture's."""

    overruns: int = 0
    lost_samples: int = 0
    input_overflows: int = 0
    callback_errors: int = 0


class ReopeningSource:
    """An :class:`~monitor.core.windowing.AudioSource` over a :class:`Capture` that reopens it when it fails.

    ``open_capture`` returns a started Capture; it is called once here (a CaptureError propagates: the
    device is missing at start-up) and again, after ``rescan``, every time the device must be reopened.
    Other threads may read ``input_state``, ``state``, ``last_error``, ``reopens``, ``rate`` and the counter
    properties at any time; the counters add up every capture opened so far, so they never go backwards.
    """

    lossless = False  # live audio: drop the oldest window when inference is behind

    def __init__(
        self,
        open_capture: Callable[[], Capture],
        rescan: Callable[[], None] | None = rescan_devices,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
    ) -> None:
        self._open = open_capture
        self._rescan = rescan
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._interrupted = threading.Event()
        silence_alsa()
        capture = open_capture()
        # The current capture and the totals of the closed ones, swapped as one tuple so that a reader on
        # another thread never sees a closed capture counted twice or not at all.
        self._current: tuple[Capture | None, _Totals] = (capture, _Totals())
        self.rate: int = capture.rate
        self.input_state = InputState("up")  # swapped whole on every change (see _set_state)
        self.last_error: str | None = None
        self.reopens = 0
        self._reported_overruns = 0
        self._last_overrun_log = 0.0

    @property
    def state(self) -> Literal["up", "down"]:
        """``up`` while a capture is open, ``down`` from a failure until the device is reopened."""
        return self.input_state.state

    @property
    def capture(self) -> Capture | None:
        """The open capture, None while the device is gone."""
        return self._current[0]

    def _totals(self) -> _Totals:
        capture, done = self._current
        if capture is None:
            return done
        ring = capture.ring
        return _Totals(
            done.overruns + ring.overruns,
            done.lost_samples + ring.lost_samples,
            done.input_overflows + capture.input_overflows,
            done.callback_errors + capture.callback_errors,
        )

    @property
    def overruns(self) -> int:
        """Times the consumer fell a ring buffer behind (audio lost), over all captures."""
        return self._totals().overruns

    @property
    def lost_samples(self) -> int:
        """Samples lost to those overruns, over all captures."""
        return self._totals().lost_samples

    @property
    def input_overflows(self) -> int:
        """Input overflows the device reported (samples lost before they reached us), over all captures."""
        return self._totals().input_overflows

    @property
    def callback_errors(self) -> int:
        """Exceptions swallowed in the audio callback, over all captures."""
        return self._totals().callback_errors

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """New samples (possibly empty after ``timeout``); None once interrupted or stopped.

        When the device fails this reopens it, blocking (without regard to ``timeout``) until it is back,
        then returns an empty block; ``rate`` may have changed by then.
        """
        capture = self._current[0]
        if self._interrupted.is_set() or capture is None:
            return None
        try:
            block = capture.read(timeout)
        except CaptureError as exc:
            log.error("%s; reopening the input device", short_error(exc))
            self._close(capture, short_error(exc))
            return self._reopen()
        self._report_overruns()
        return block

    def interrupt(self) -> None:
        """End the stream from any thread: a blocked ``read()`` (or backoff) returns None at once, as do later reads."""
        self._interrupted.set()
        capture = self._current[0]
        if capture is not None:
            capture.interrupt()

    def stop(self) -> None:
        """Close the device; nothing is reopened after this."""
        self._interrupted.set()
        capture = self._current[0]
        if capture is not None:
            self._close(capture, None)

    def _close(self, capture: Capture, error: str | None) -> None:
        if error is not None:
            self._set_state("down", error)
        capture.stop()  # the callback no longer runs: its counters are final
        self._current = (None, self._totals())

    def _reopen(self) -> np.ndarray | None:
        delay = self.first_delay
        while not self._interrupted.is_set():
            try:
                with quiet_stderr():  # PortAudio prints a dozen lines per failed open: one log line is enough
                    if self._rescan is not None:  # a device plugged back in is invisible until PortAudio rescans
                        self._rescan()
                    capture = self._open()
            except CaptureError as err:
                self._set_state("down", short_error(err))
                log.warning("%s; retrying in %.0f s", short_error(err), delay)
                self._interrupted.wait(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if self._interrupted.is_set():  # interrupted while opening: do not hand out a new stream
                capture.stop()
                break
            self.rate = capture.rate
            self._current = (capture, self._current[1])
            self.reopens += 1
            self._set_state("up", None)
            log.warning("audio input is back (reopened %d time(s)), %d Hz", self.reopens, capture.rate)
            return np.zeros(0, dtype=np.float32)
        return None

    def _set_state(self, state: Literal["up", "down"], error: str | None) -> None:
        # A new snapshot only on a change (a retry failing the same way is none); "since" moves on up/down only.
        old = self.input_state
        if error is not None:
            self.last_error = error
        if (state, error) == (old.state, old.error):
            return
        since = old.since if state == old.state else utc_now_iso()
        self.input_state = InputState(state, error, since, old.version + 1)

    def _report_overruns(self) -> None:
        # Counted in the audio callback and the ring buffer; logged here, at a limited rate.
        totals = self._totals()
        count = totals.overruns + totals.input_overflows
        now = time.monotonic()
        if count > self._reported_overruns and now - self._last_overrun_log >= OVERRUN_LOG_SECONDS:
            log.warning(
                "audio overrun: %d so far (%d samples lost to a slow consumer, %d device input overflows)",
                count, totals.lost_samples, totals.input_overflows,
            )
            self._reported_overruns = count
            self._last_overrun_log = now


def short_error(exc: BaseException) -> str:
    """An error's first line, at most :data:`MAX_ERROR_CHARS` long: one log line per failure, never a listing."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
