"""A real HTTP audio server for the tests: a WAV stream that plays forever, stalls, or needs a password.

It runs on a thread of the test process (``http.server``), on a free loopback port. Paths:

* ``/live.wav``: a WAV header, then the audio looped forever, paced at real time (as an internet radio or a
  camera's HTTP audio endpoint sends it);
* ``/stall.wav``: a WAV header and the first ``stall_after`` seconds of audio at once, then nothing while the
  connection stays open (a half-open stream: a camera that froze, a NAT that lost the flow);
* ``/file.wav``: the whole file at once, then the connection closes (the stream ends);
* anything else: 404.

With ``user``/``password`` every path answers 401 (Basic) unless the request carries them.
"""

from __future__ import annotations

import base64
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import numpy as np

__all__ = ["HttpAudioServer", "wav_header"]

CHUNK_SECONDS = 0.1


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 16-bit mono WAV header; the default data size says "as long as it lasts" (streaming)."""
    return (
        b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )


class HttpAudioServer:
    """Serves ``samples`` (mono float32 at ``rate``) as 16-bit WAV over HTTP on ``127.0.0.1:port``."""

    def __init__(
        self,
        samples: np.ndarray,
        rate: int,
        stall_after: float = 1.0,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.rate = rate
        self.pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        self.stall_after = stall_after
        self.requests: list[str] = []  # paths asked for, in order
        self.closed = threading.Event()  # set by close(): releases stalled and paced responses
        expected = None
        if user is not None:
            expected = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, expected))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-audio", daemon=True)

    def url(self, path: str = "/live.wav", user: str | None = None, password: str | None = None) -> str:
        """The URL of ``path``, with ``user:password@`` when given."""
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def start(self) -> HttpAudioServer:
        """Start serving (returns self)."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and end every open response."""
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpAudioServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _handler(server: HttpAudioServer, expected_auth: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no keep-alive: one response per connection, the body ends with it

        def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read their own logs
            pass

        def do_GET(self) -> None:
            server.requests.append(self.path)
            if expected_auth is not None and self.headers.get("Authorization") != expected_auth:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path not in ("/live.wav", "/stall.wav", "/file.wav"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            if self.path == "/file.wav":
                self.send_header("Content-Length", str(44 + len(server.pcm)))
            self.end_headers()
            try:
                if self.path == "/file.wav":
                    self.wfile.write(wav_header(server.rate, len(server.pcm)) + server.pcm)
                elif self.path == "/stall.wav":
                    head = server.pcm[: 2 * round(server.stall_after * server.rate)]
                    self.wfile.write(wav_header(server.rate) + head)
                    self.wfile.flush()
                    server.closed.wait()  # hold the connection open, send nothing
                else:
                    self.wfile.write(wav_header(server.rate))
                    self._play_forever()
            except (BrokenPipeError, ConnectionResetError):  # the client went away: normal for a stream
                pass

        def _play_forever(self) -> None:
            # Pace the loop at real time, as a live source does; the server's own clock, not a test's timing.
            chunk = 2 * round(CHUNK_SECONDS * server.rate)
            start, sent, pos = time.monotonic(), 0, 0
            while not server.closed.is_set():
                piece = server.pcm[pos : pos + chunk] or server.pcm[:chunk]
                pos = (pos + len(piece)) % len(server.pcm)
                self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
                server.closed.wait(max(0.0, start + sent / (2 * server.rate) - CHUNK_SECONDS - time.monotonic()))

    return Handler
