"""A real RTSP server (GStreamer, its own process) that a test can start, kill and start again on the same port;
and a TCP server that accepts connections and never answers (a half-open peer)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from types import TracebackType

from support.wait import wait_for

__all__ = ["SYSTEM_PYTHON", "RtspServer", "SilentServer"]

SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-gi and gst-rtsp-server's bindings; the venv has neither


class RtspServer:
    """``gst_rtsp_server.py`` serving ``wav`` on ``/audio``, ``/pcmu``, ``/av`` and ``/video`` on 127.0.0.1.

    The port is chosen by the first start and kept, so ``kill()`` then ``start()`` brings the same URLs back.
    ``setups`` lists the paths of every SETUP request the server answered (e.g. ``/av/stream=1``).
    """

    def __init__(self, wav: Path, user: str | None = None, password: str | None = None) -> None:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise AssertionError("/usr/bin/python3 missing: the RTSP tests run GStreamer's server with it")
        self.wav = wav
        self.user, self.password = user, password
        self.port = 0
        self.setups: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    def url(self, mount: str = "/audio", user: str | None = None, password: str | None = None) -> str:
        """``rtsp://[user:password@]127.0.0.1:PORT/mount``."""
        auth = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{mount}"

    def start(self) -> RtspServer:
        """Start (again) and wait until it listens; returns self."""
        args = [SYSTEM_PYTHON, str(SCRIPT), "--wav", str(self.wav), "--port", str(self.port)]
        if self.user is not None:
            args += ["--user", self.user, "--password", self.password or ""]
        self._output = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(self.proc, self._output), daemon=True).start()
        proc = self.proc
        ready = wait_for(
            lambda: next((ln for ln in self._output if ln.startswith("READY")), None) or proc.poll() is not None,
            message=lambda: f"RTSP server did not start: {self._output}",
        )
        if proc.poll() is not None:
            raise AssertionError(f"RTSP server exited with {proc.returncode}: {self._output}")
        self.port = int(str(ready).split()[1])
        return self

    def _read(self, proc: subprocess.Popen[str], output: list[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            if line.startswith("SETUP "):
                self.setups.append(line.split(maxsplit=1)[1].strip())

    def freeze(self) -> None:
        """SIGSTOP: the connections stay open (the kernel still ACKs) but nothing is sent: a camera that hung."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a camera losing power: no RTSP TEARDOWN, no TCP goodbye from the application."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(30)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.kill()


class SilentServer:
    """A TCP port that completes connections (the kernel does the handshake) but never reads or answers them:
    what a client sees of a camera that froze, or of a peer behind a NAT that forgot the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.sock.close()
