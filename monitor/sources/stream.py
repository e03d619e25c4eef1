"""A network audio stream (an IP camera's RTSP, an HTTP stream, anything ffmpeg reads) as an audio source.

One :class:`StreamSource` runs one ffmpeg process at a time (``monitor/sources/ffmpeg.py`` says why a process)
and one thread of its own, the *reader*, which owns that process: it starts ffmpeg, moves the PCM from the pipe
into a bounded buffer, watches for a stream that stops sending (a half-open TCP connection after a camera
reboots never errors by itself), and when ffmpeg ends or stalls it kills and reaps it, waits a backoff with
jitter, and starts the next one. The consumer (the windowing thread) only takes audio from the buffer, so a
stream's trouble never blocks anything but its own reader.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import numpy as np

from monitor.records import InputState, utc_now_iso
from monitor.redaction import query_secrets
from monitor.sources.backoff import backoff_delay
from monitor.sources.ffmpeg import (
    FfmpegProcess,
    StreamError,
    check_url,
    ffmpeg_command,
    find_ffmpeg,
    is_file,
    is_network_error,
    read_secret,
    redact,
    with_credentials,
)
from monitor.sources.streambuffer import SampleBuffer

log = logging.getLogger(__name__)

__all__ = ["StreamError", "StreamSource"]

State = Literal["connecting", "up", "down"]

BATCH_SECONDS = 0.1  # ffmpeg writes every packet (~20 ms); a pipe (64 KiB) holds 0.68 s of 48 kHz s16 mono
READ_BYTES = 65536
DROP_LOG_SECONDS = 10.0  # at most one "fell behind" warning this often
STOP_MARGIN_SECONDS = 10.0  # stop() waits this long past the kill grace for the reader thread to end


class StreamSource:
    """An :class:`~monitor.core.windowing.AudioSource` reading ``url`` through ffmpeg, reconnecting forever (a
    file, a path or ``file:``, is read once at its own pace and ends: ``reconnect`` None means "not for a file").

    Other threads may read ``input_state`` (an :class:`~monitor.records.InputState` snapshot, up or down, as
    ReopeningSource has it for ``/healthz`` and MQTT), ``state`` (``connecting`` until the first audio, ``up``,
    ``down`` between attempts), ``last_error`` (one line, credentials redacted), ``reopens`` (times the stream
    came back after a failure), ``failures`` (attempts that failed in a row), ``media`` (``audio``: only the
    audio track is requested; ``full``: the whole stream is read and its video dropped undecoded), ``pid`` (the
    running ffmpeg, or None), ``processes_started``, ``bytes_received``, ``samples_received``,
    ``dropped_samples`` and ``drops`` (audio the consumer did not take in time, dropped oldest first), and
    ``last_data`` (monotonic time of the last audio).

    Credentials: ``username`` and a password from ``password``, ``password_file`` or ``password_env`` replace
    any user info in the URL. They go into ffmpeg's command line only (ffmpeg takes no URL from elsewhere) and
    are redacted from everything logged or kept. Raises :class:`StreamError` (one line) for a URL ffmpeg cannot
    use, a missing ffmpeg or a missing password; a stream that is down at start is not an error: it is retried.
    """

    lossless = False  # live audio: drop the oldest when the consumer is behind

    def __init__(
        self,
        url: str,
        name: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        password_file: str | None = None,
        password_env: str | None = None,
        rate: int = 48000,
        transport: str | None = "tcp",
        audio_only: bool = True,
        audio_only_attempts: int = 2,
        io_timeout: float = 10.0,
        start_timeout: float = 30.0,
        no_data_timeout: float = 15.0,
        first_delay: float = 1.0,
        max_delay: float = 120.0,
        jitter: float = 0.2,
        stable_seconds: float = 30.0,
        buffer_seconds: float = 10.0,
        kill_grace: float = 2.0,
        reconnect: bool | None = None,
        wait_while_down: bool = True,
        ffmpeg: str = "ffmpeg",
    ) -> None:
        self.scheme = check_url(url)
        password = read_secret(password, password_file, password_env)
        if not (0 < first_delay <= max_delay and 0 <= jitter < 1 and min(io_timeout, start_timeout,
                                                                          no_data_timeout, buffer_seconds) > 0):
            raise ValueError("stream delays and timeouts must be positive, first_delay <= max_delay, jitter in [0, 1)")
        self._url = with_credentials(url, username, password)
        in_url = urlsplit(self._url).password  # percent-encoded as written
        secrets = {password, in_url, in_url and unquote(in_url), password and quote(password, safe=""),
                   *query_secrets(self._url)}
        self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))  # longest first
        self.url = redact(self._url, self._secrets)  # safe to show
        self.name = name or self.url
        self._ffmpeg = find_ffmpeg(ffmpeg)
        self.rate = rate
        self.transport = transport
        self.audio_only_attempts = audio_only_attempts
        self.io_timeout, self.start_timeout, self.no_data_timeout = io_timeout, start_timeout, no_data_timeout
        self.first_delay, self.max_delay, self.jitter = first_delay, max_delay, jitter
        self.stable_seconds, self.kill_grace = stable_seconds, kill_grace
        self.is_file = is_file(self.scheme)
        self.reconnect = not self.is_file if reconnect is None else reconnect
        self.wait_while_down = wait_while_down
        self.media: Literal["audio", "full"] = "audio" if audio_only and self.scheme in ("rtsp", "rtsps") else "full"
        self._media_proven = False  # the current media mode has delivered audio: never fall back from it
        self._media_failures = 0
        self.state: State = "connecting"
        # What health checks and sinks follow, as for the microphone: up or down (connecting counts as down: no
        # audio), swapped whole, a new version only when the state or its reason changes (never per retry).
        self.input_state = InputState("down", "connecting (no audio yet)")
        self.last_error: str | None = None
        self.reopens = self.failures = self.processes_started = 0
        self.bytes_received = self.samples_received = 0
        self.pid: int | None = None
        self.last_data: float | None = None
        self.retry_delay = 0.0
        self._ever_up = False
        self._reported: State | None = None  # the state last logged: one line per change, not per retry
        self._logged_error: str | None = None
        self._buffer = SampleBuffer(max(1, round(buffer_seconds * rate)))
        self._drops_logged = (0, -DROP_LOG_SECONDS)  # (drops, when) last logged, by read()'s thread
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream {self.name}", daemon=True)
        self._thread.start()

    @property
    def dropped_samples(self) -> int:
        """Samples dropped because the consumer fell ``buffer_seconds`` behind."""
        return self._buffer.dropped_samples

    @property
    def drops(self) -> int:
        """Times audio was dropped for a slow consumer."""
        return self._buffer.drops

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """The audio received since the last call, as mono float32 at ``rate``; None once stopped or ended.

        Waits at most ``timeout`` for audio and returns an empty block while the stream is up. While it is
        connecting or down, it keeps waiting (like a microphone being reopened) when ``wait_while_down``, so a
        stall check on the reading thread's progress sees the outage; ``interrupt()`` ends that wait at once.
        """
        while True:
            block = self._buffer.take(timeout)
            drops, now = self._buffer.drops, time.monotonic()
            if drops > self._drops_logged[0] and now - self._drops_logged[1] >= DROP_LOG_SECONDS:
                log.warning("stream %s: fell behind, the oldest audio dropped %d time(s) so far (%.1f s)", self.name,
                            drops, self._buffer.dropped_samples / self.rate)
                self._drops_logged = (drops, now)
            if block is None or block.size or not self.wait_while_down or self.state == "up":
                return block

    def interrupt(self) -> None:
        """From any thread: end the stream; a blocked ``read()`` returns None at once, the reader stops ffmpeg."""
        self._stopping.set()
        self._buffer.close()

    def stop(self) -> None:
        """Interrupt and wait until ffmpeg is ended and reaped (SIGTERM, then SIGKILL after ``kill_grace``)."""
        self.interrupt()
        if threading.current_thread() is self._thread:
            return
        # Bounded: a process stuck in the kernel survives even SIGKILL, and a shutdown must not hang on it.
        self._thread.join(self.kill_grace + STOP_MARGIN_SECONDS)
        if self._thread.is_alive():
            log.error("stream %s: ffmpeg (pid %s) did not end after SIGKILL; leaving it", self.name, self.pid)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                error = self._attempt()
                if self._stopping.is_set():
                    break
                self._failed(error)
                if not self.reconnect:
                    break
                self._stopping.wait(self.retry_delay)
        except Exception as exc:  # noqa: BLE001 - a bug must end this stream with a line, not a silent thread
            self._set_down(f"stream reader failed: {exc!r}")
        finally:
            self.pid = None
            self._buffer.finish()  # after interrupt() it is closed already: nothing more is handed out

    def _attempt(self) -> str:
        """Run one ffmpeg until it ends, stalls or we stop; the reason it ended."""
        argv = ffmpeg_command(self._ffmpeg, self._url, self.scheme, rate=self.rate, audio_only=self.media == "audio",
                              transport=self.transport, io_timeout=self.io_timeout, realtime=self.is_file)
        try:
            proc = FfmpegProcess(argv, self._secrets)
        except OSError as exc:
            return f"cannot start ffmpeg: {exc.strerror or exc}"
        self.pid, self.processes_started = proc.pid, self.processes_started + 1
        if self.state == "down":
            self.state = "connecting"
        started = time.monotonic()
        got = 0  # samples from this process
        odd = b""  # a byte of a sample split across two pipe reads
        reason = ""
        try:
            pause = False
            while not self._stopping.is_set():
                if pause:  # let packets gather in the pipe: one wakeup per BATCH_SECONDS, not per ~20 ms packet
                    self._stopping.wait(BATCH_SECONDS)
                    pause = False
                data = proc.read(0.1, READ_BYTES)
                now = time.monotonic()
                if data is None:
                    break
                if data:
                    pause = len(data) < READ_BYTES  # caught up with the pipe
                    data, odd = odd + data, b""
                    if len(data) % 2:
                        data, odd = data[:-1], data[-1:]
                    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
                    self._buffer.put(samples)  # first: a reader that sees the counters can take these samples
                    got += samples.size
                    self.bytes_received += len(data)
                    self.samples_received += samples.size
                    self.last_data = now
                    if self.state != "up":
                        self._set_up()
                    if got >= self.stable_seconds * self.rate:  # a connection that lasted: back off from 1 s again
                        self.failures = 0
                elif got == 0 and now - started > self.start_timeout:
                    reason = f"no audio {self.start_timeout:g} s after starting (server not answering?)"
                    break
                elif got and self.last_data is not None and now - self.last_data > self.no_data_timeout:
                    reason = f"no data for {self.no_data_timeout:g} s (connection stalled?)"
                    break
        finally:
            code = proc.close(self.kill_grace)
            self.pid = None
        if reason or self._stopping.is_set():
            return reason
        said = proc.error()
        if got == 0 and time.monotonic() - started >= self.io_timeout:
            said = f"{said or 'ffmpeg gave up'} (no answer for {self.io_timeout:g} s)"  # ffmpeg's timeout is vague
        if got == 0 and self.media == "audio" and not self._media_proven and not is_network_error(said):
            self._media_failures += 1
        ended = "the file ended" if self.is_file else "the stream ended"
        return said or (ended if code == 0 else f"ffmpeg exited with code {code}")

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.retry_delay = backoff_delay(self.failures, self.first_delay, self.max_delay, self.jitter, random.random())
        self._set_down(error)
        if self.media == "audio" and self._media_failures >= self.audio_only_attempts:
            self.media = "full"
            log.warning("stream %s: asking for the audio track alone failed %d times; reading the full stream "
                        "from now on (its video is dropped, not decoded)", self.name, self._media_failures)

    def _set_up(self) -> None:
        self._media_proven = True
        self.state = "up"
        what = "audio track only" if self.media == "audio" else "full stream, video not decoded"
        if self._ever_up:
            self.reopens += 1
            log.warning("stream %s: up again after %d failed attempt(s) (%s)", self.name, self.failures, what)
        elif self.failures:
            log.warning("stream %s: up after %d failed attempt(s) (%s, %d Hz)", self.name, self.failures, what,
                        self.rate)
        else:
            log.info("stream %s: up (%s, %d Hz)", self.name, what, self.rate)
        self._ever_up, self._reported, self._logged_error = True, "up", None
        self._set_input("up", None)

    def _set_down(self, error: str) -> None:
        error = redact(error, self._secrets)
        self.last_error, self.state = error, "down"
        if not self.reconnect:
            log.warning("stream %s: ended: %s", self.name, error)
        elif self._reported != "down":
            log.error("stream %s: down: %s; retrying with backoff (%g s up to %g s)", self.name, error,
                      self.first_delay, self.max_delay)
        elif error != self._logged_error:  # a new reason is news; the same one again is just another retry
            log.warning("stream %s: still down: %s", self.name, error)
        else:
            log.debug("stream %s: attempt %d failed: %s", self.name, self.failures, error)
        self._reported, self._logged_error = "down", error
        self._set_input("down", error)

    def _set_input(self, state: Literal["up", "down"], error: str | None) -> None:
        old = self.input_state
        if (state, error) != (old.state, old.error):
            since = old.since if state == old.state else utc_now_iso()
            self.input_state = InputState(state, error, since, old.version + 1)
