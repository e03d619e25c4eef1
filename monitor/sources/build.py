"""From a ``sources`` entry to an audio source: the one place that knows which class serves which kind of source.

* ``device``: a :class:`~monitor.sources.reopening.ReopeningSource` over a PortAudio :class:`Capture`, as
  ``audio.device`` has always been. In a run of several sources, a device missing at start does not stop the run:
  it is a :class:`DeferredSource`, reported down and opened (with backoff) once it appears, while the others listen.
* ``url``: :func:`open_url`, a :class:`~monitor.sources.stream.StreamSource` (one ffmpeg process per source,
  reconnecting with backoff and jitter, half-open detection; ``monitor/sources/stream.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial

import numpy as np

from monitor.config import AudioConfig, Config, SourceConfig
from monitor.core.windowing import AudioSource
from monitor.records import InputState, utc_now_iso
from monitor.sourcerun import SourcePlan
from monitor.sources.capture import Capture, CaptureError, rescan_devices

log = logging.getLogger(__name__)

__all__ = ["DeferredSource", "SourceError", "check_url_reader", "open_local", "open_url", "source_plans"]


NO_READER = "url sources need the network reader (monitor/sources/stream.py), which this build lacks"


class SourceError(Exception):
    """A source that cannot be built (one line, naming the source; never a password)."""


def open_capture(src: SourceConfig, audio: AudioConfig) -> Capture:
    """A started capture of ``src``'s device (its own rate and channels, else ``audio``'s)."""
    cap = Capture(src.device, src.samplerate or audio.samplerate, src.channels or audio.channels,
                  ring_seconds=audio.window_seconds * 2 + 2)
    cap.start()
    return cap


def open_local(src: SourceConfig, audio: AudioConfig) -> AudioSource:
    """``src``'s device as a reopening source (raises ``CaptureError`` when it cannot be opened now)."""
    from monitor.sources.reopening import ReopeningSource

    return ReopeningSource(partial(open_capture, src, audio))


def open_url(src: SourceConfig, audio: AudioConfig) -> AudioSource:
    """``src``'s URL as a :class:`~monitor.sources.stream.StreamSource` (one ffmpeg process at a time, reconnecting
    with backoff and jitter, half-open detection by ``timeout_seconds``, credentials from ``password_file`` or
    ``password_env`` never logged). A stream that is down at start is not an error: it is retried."""
    assert src.url is not None
    try:
        from monitor.sources.stream import StreamError, StreamSource
    except ImportError:  # a build without the network reader: one line, not a traceback
        raise SourceError(f"source {src.name}: {NO_READER}") from None
    try:
        return StreamSource(
            src.url, src.name, username=src.username,
            password_file=str(src.password_file) if src.password_file is not None else None,
            password_env=src.password_env, transport=src.transport, audio_only=src.audio_only,
            # ffmpeg's own socket timeout and the reader's no-data watchdog: both end a half-open connection
            io_timeout=src.timeout_seconds, no_data_timeout=src.timeout_seconds,
        )
    except StreamError as exc:  # one line, credentials redacted by the reader (no ffmpeg, a password missing)
        raise SourceError(f"source {src.name}: {exc}") from None


def check_url_reader(sources: list[SourceConfig]) -> None:
    """Raise :class:`SourceError` (one line) when a ``url`` source is configured and ffmpeg, which reads it, is not
    installed: said before the model loads, not after."""
    url = next((src for src in sources if not src.local), None)
    if url is None:
        return
    try:
        from monitor.sources.ffmpeg import find_ffmpeg
        from monitor.sources.stream import StreamError
    except ImportError:
        raise SourceError(f"source {url.name}: {NO_READER}") from None
    try:
        find_ffmpeg("ffmpeg")
    except StreamError as exc:
        raise SourceError(f"source {url.name}: {exc}") from None


class DeferredSource:
    """A local input that could not be opened at start, in a run of several sources: ``down`` (with why) until
    ``open_source`` succeeds, retried with backoff (1 s doubling to ``max_delay``) on the windowing thread; then
    the source it opened does the rest (reads, reopening, counters)."""

    lossless = False

    def __init__(self, name: str, open_source: Callable[[], AudioSource], error: str, rate: int,
                 max_delay: float = 30.0, rescan: Callable[[], object] | None = None) -> None:
        self.name = name
        self._open = open_source
        self._rescan = rescan  # before each try: PortAudio lists only the devices there when it started
        self.rate = rate  # a placeholder until opened: the windowing stage follows the real rate once it reads
        self.max_delay = max_delay
        self._inner: AudioSource | None = None
        self._delay = 1.0
        self._interrupted = threading.Event()
        self._state = InputState("down", error, utc_now_iso(), 1)

    @property
    def input_state(self) -> InputState:
        """``down`` (why) until opened; then the opened source's own state."""
        own = getattr(self._inner, "input_state", None)
        return own if isinstance(own, InputState) else self._state

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """The opened source's samples; while it cannot be opened, empty after a backoff wait (None once stopped)."""
        if self._interrupted.is_set():
            return None
        if self._inner is not None:
            return self._inner.read(timeout)
        if self._interrupted.wait(self._delay):
            return None
        try:
            if self._rescan is not None:
                self._rescan()
            inner = self._open()
        except CaptureError as exc:
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("source %s: %s; retrying in %.0f s", self.name, error, min(self._delay * 2, self.max_delay))
            if error != self._state.error:
                self._state = InputState("down", error, self._state.since, self._state.version + 1)
            self._delay = min(self._delay * 2, self.max_delay)
            return np.zeros(0, np.float32)
        if self._interrupted.is_set():
            inner.stop()
            return None
        self._inner = inner
        self.rate = inner.rate
        log.warning("source %s: the input is there now (%d Hz)", self.name, inner.rate)
        return np.zeros(0, np.float32)

    def __getattr__(self, name: str) -> object:
        # Counters and state of the opened source (input_state, reopens, overruns, ...) once there is one.
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def interrupt(self) -> None:
        """Wake a backoff wait or a blocked read."""
        self._interrupted.set()
        if self._inner is not None:
            self._inner.interrupt()

    def stop(self) -> None:
        """Close the opened source, if any; nothing is opened after this."""
        self._interrupted.set()
        if self._inner is not None:
            self._inner.stop()


def _open_tolerant(src: SourceConfig, audio: AudioConfig) -> AudioSource:
    try:
        return open_local(src, audio)
    except CaptureError as exc:
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.error("source %s: %s; the other sources go on, it is retried", src.name, error)
        return DeferredSource(src.name, partial(open_local, src, audio), error, src.samplerate or 48000,
                              rescan=rescan_devices)


def source_plans(cfg: Config) -> list[SourcePlan]:
    """One plan per configured source, opened when the run starts (after the model loaded)."""
    plans = []
    for src in cfg.source_configs():
        opener = _open_tolerant if src.local else open_url
        plans.append(SourcePlan(src, partial(opener, src, cfg.audio)))
    return plans
