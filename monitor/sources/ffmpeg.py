"""One ffmpeg process that decodes a network stream (or anything ffmpeg reads) to mono 16-bit PCM on a pipe.

Why a subprocess and not PyAV (libav in-process): a decoder or a network read that hangs inside libav cannot be
interrupted from Python, but a process can always be killed and reaped; decoding runs outside our GIL, so a
busy stream never slows the windowing or inference threads; a crash in a codec takes down one reader, not the
monitor; and ffmpeg is a system package (Debian, Raspberry Pi OS) with every protocol and codec cameras use,
no wheel to build for ARM.

This module knows ffmpeg: its command line per protocol, its stderr, and the life of one process. The
reconnecting, the state and the counters are :class:`monitor.sources.stream.StreamSource`'s.
"""

from __future__ import annotations

import functools
import os
import re
import select
import shutil
import subprocess
from collections import deque
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from monitor.redaction import redact_query

__all__ = [
    "FfmpegProcess",
    "StreamError",
    "check_url",
    "condense",
    "ffmpeg_command",
    "is_network_error",
    "read_secret",
    "redact",
    "with_credentials",
]

NETWORK_SCHEMES = {"rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "tcp", "udp", "srt", "rtp", "tls"}
FILE_SCHEMES = {"file", "pipe"}
STDERR_LINES = 20  # the tail of ffmpeg's stderr kept per process (bounded)
STDERR_LINE_CHARS = 300
STDERR_LINE_BYTES = 8192  # a longer stderr line is dropped (no ffmpeg message is that long)

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_CONTEXT = re.compile(r"^\[(?P<name>[\w-]+) @ 0x[0-9a-f]+\]\s*")  # "[rtsp @ 0x55d0...] " -> "rtsp: "
_URL_PREFIX = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S*: ")  # "rtsp://cam/x: Connection refused": we name the source
_NOISE = re.compile(
    r"^(To ignore this|Conversion failed|Exiting normally|Guessed Channel Layout|Press \[q\]|"
    r"Error while (decoding|filtering)|size=|\s*$)"
)
_GENERIC = re.compile(r"Server returned 4XX Client Error, but not one of")  # the line before it says which
_NETWORK = re.compile(
    r"connection refused|timed out|no route to host|unreachable|name or service not known|"
    r"failure in name resolution|connection reset|broken pipe|end of file|\b40[134]\b|unauthorized|forbidden|"
    r"no answer",
    re.IGNORECASE,
)


class StreamError(Exception):
    """A stream that cannot be set up at all (bad URL, no ffmpeg); the message is one line, credentials redacted."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every ``scheme://user:pass@`` turned into ``scheme://***@``, every secret-looking query value
    (``?password=``) and every secret into ``***``."""
    text = redact_query(_USERINFO.sub(r"\g<scheme>***@", text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_url(url: str) -> str:
    """The URL's scheme (``""`` for a plain path); StreamError (one line, redacted) if ffmpeg could not use it."""
    if not url or url != url.strip() or "\n" in url:
        raise StreamError(f"bad stream URL {redact(url)!r}: empty, or has spaces or line breaks around it")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):  # a path (or a Windows drive letter)
        return ""
    if scheme not in NETWORK_SCHEMES | FILE_SCHEMES:
        raise StreamError(f"bad stream URL {redact(url)!r}: unsupported scheme {scheme!r}")
    if scheme in NETWORK_SCHEMES and not parts.hostname:
        raise StreamError(f"bad stream URL {redact(url)!r}: no host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise StreamError(f"bad stream URL {redact(url)!r}: bad port") from None
    return scheme


def is_file(scheme: str) -> bool:
    """Whether a URL of ``scheme`` (as :func:`check_url` returns it) names a file, which ends, rather than a stream."""
    return scheme in ("", "file")


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with ``username``/``password`` (percent-encoded) as its user info; unchanged if neither is given.
    A password written in the URL stays when only ``username`` is given (dropping it would be a silent 401)."""
    if username is None and password is None:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = quote(username, safe="") if username is not None else quote(unquote(parts.username or ""), safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    elif parts.password is not None:
        userinfo += ":" + parts.password  # as written (already percent-encoded)
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


@functools.lru_cache(maxsize=4)
def rtsp_timeout_option(ffmpeg: str) -> str:
    """The RTSP demuxer's socket timeout option: ``-timeout`` since ffmpeg 5, ``-stimeout`` before (where
    ``-timeout`` meant *listen*, which would turn the reader into a server)."""
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-h", "demuxer=rtsp"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "-timeout"
    return "-stimeout" if re.search(r"^\s*-stimeout\b", out, re.MULTILINE) else "-timeout"


def read_secret(password: str | None, password_file: str | None, password_env: str | None) -> str | None:
    """The password from the argument, a file (first line) or an environment variable; StreamError if missing."""
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise StreamError(f"cannot read the stream password file {password_file}: {exc.strerror}") from None
    if password_env is not None:
        if password_env not in os.environ:
            raise StreamError(f"the stream password variable {password_env} is not set")
        return os.environ[password_env]
    return password


def find_ffmpeg(ffmpeg: str) -> str:
    """The path of the ffmpeg executable; StreamError if it is not installed."""
    path = shutil.which(ffmpeg)
    if path is None:
        raise StreamError(f"{ffmpeg!r} not found: network streams are read by ffmpeg (apt-get install ffmpeg)")
    return path


def ffmpeg_command(
    ffmpeg: str, url: str, scheme: str, *, rate: int, audio_only: bool, transport: str | None, io_timeout: float,
    realtime: bool = False,
) -> list[str]:
    """ffmpeg's argv: read ``url``, decode only its first audio track, write mono s16le at ``rate`` to stdout.

    ``audio_only`` asks an RTSP server for the audio track alone (``-allowed_media_types audio``), so no video
    crosses the network; otherwise the full stream is read and the video packets are dropped undecoded
    (``-map 0:a:0 -vn``). ``io_timeout`` (s) bounds every socket read, so a half-open connection (a camera that
    rebooted behind a NAT) ends the process instead of hanging it. ``realtime`` (a file) reads at the audio's own
    pace (``-re``): a live run takes a file as a stand-in for a live input, not a dataset to race through.
    """
    micros = str(max(1, round(io_timeout * 1e6)))
    args = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning"]
    if scheme in ("rtsp", "rtsps"):
        if transport:
            args += ["-rtsp_transport", transport]
        if audio_only:
            args += ["-allowed_media_types", "audio"]
        args += [rtsp_timeout_option(ffmpeg), micros]
    elif scheme in NETWORK_SCHEMES:
        args += ["-rw_timeout", micros]
    if realtime:
        args += ["-re"]
    args += ["-i", url, "-map", "0:a:0", "-vn", "-sn", "-dn"]
    # -flush_packets: every decoded packet reaches the pipe at once (low latency; the no-data watchdog sees it).
    args += ["-ac", "1", "-ar", str(rate), "-f", "s16le", "-flush_packets", "1", "pipe:1"]
    return args


def condense(lines: list[str] | deque[str]) -> str:
    """ffmpeg's stderr reduced to its last meaningful line (``""`` if none), without pointer addresses."""
    useful = [_URL_PREFIX.sub("", _CONTEXT.sub(r"\g<name>: ", ln.strip())) for ln in lines if not _NOISE.match(ln)]
    if not useful:
        return ""
    last = useful[-1]
    if _GENERIC.search(last) and len(useful) > 1:
        last = useful[-2]
    if "matches no streams" in last:  # -map 0:a:0 found nothing to map
        last = "the stream has no audio track"
    return last[:STDERR_LINE_CHARS]


def is_network_error(message: str) -> bool:
    """Whether ``message`` says the server could not be reached or refused us (not that the stream is unusable)."""
    return bool(_NETWORK.search(message))


class FfmpegProcess:
    """One running ffmpeg: its PCM on stdout, the tail of its stderr, and a sure way to end it.

    Only the thread that created it may use it. ``secrets`` are redacted from the stderr lines it keeps.
    """

    def __init__(self, argv: list[str], secrets: tuple[str, ...] = ()) -> None:
        self.secrets = secrets
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._partial = b""
        self._overlong = False  # inside a stderr line longer than STDERR_LINE_BYTES
        # start_new_session: Ctrl-C in a terminal reaches the monitor, not ffmpeg, so that a shutdown is ours to
        # run (and is not mistaken for a failed stream). stdin is closed: ffmpeg must never wait for a key.
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out = self.proc.stdout.fileno()
        self._err = self.proc.stderr.fileno()

    def read(self, timeout: float, size: int = 65536) -> bytes | None:
        """PCM bytes that arrived within ``timeout`` (``b""`` if none), None once stdout has ended."""
        readable, _, _ = select.select([self._out, self._err], [], [], timeout)
        if self._err in readable:
            self._take_stderr(os.read(self._err, 4096))
        if self._out in readable:
            data = os.read(self._out, size)
            return data if data else None
        return b""

    def _take_stderr(self, data: bytes) -> None:
        lines = re.split(rb"[\r\n]", self._partial + data)
        rest = lines.pop()  # an unfinished line waits for its end
        if self._overlong:  # the end of a line too long to keep is dropped with it
            if lines:
                lines.pop(0)
                self._overlong = False
            else:
                rest = b""
        if len(rest) > STDERR_LINE_BYTES:
            # Dropped whole, not cut: a cut could split a password, and neither half would be redacted.
            rest, self._overlong = b"", True
        self._partial = rest
        for raw in lines:
            if raw.strip() and len(raw) <= STDERR_LINE_BYTES:  # redacted whole, then shortened (the same reason)
                line = redact(raw.decode("utf-8", "replace"), self.secrets)
                self.stderr_tail.append(line[:STDERR_LINE_CHARS])

    def error(self) -> str:
        """The last meaningful stderr line (redacted), ``""`` if ffmpeg said nothing useful."""
        return condense(self.stderr_tail)

    def close(self, grace: float) -> int:
        """End the process (SIGTERM, SIGKILL after ``grace`` s), reap it, collect the rest of stderr; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        # Closing our end of stdout makes a write that blocks ffmpeg fail at once (EPIPE) instead of after the grace.
        self.proc.stdout.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # ffmpeg is gone: the rest of stderr (its final error line) is in the pipe or at EOF, never blocking.
        while data := os.read(self._err, 65536):
            self._take_stderr(data)
        if self._partial.strip():
            self._take_stderr(b"\n")
        self.proc.stderr.close()  # type: ignore[union-attr]
        return self.proc.returncode
