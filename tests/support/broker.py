"""A private mosquitto broker on a loopback port, and the port helpers it needs."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from support.wait import wait_for

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Broker", "find_mosquitto", "free_port", "port_open"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_mosquitto() -> str:
    """Path of the mosquitto binary (``/usr/sbin/mosquitto`` or on PATH); AssertionError if missing."""
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("mosquitto not found (apt-get install mosquitto); the MQTT tests need a real broker")


class Broker:
    """A private mosquitto on a loopback port, started and stopped on demand.

    The port is fixed at construction, so ``stop()`` then ``start()`` gives the same address; a test can also
    construct it without starting it (broker down at first) and start it later.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        workdir: str | Path | None = None,
        persistent: bool = False,
        extra_config: Sequence[str] = (),
    ) -> None:
        """Prepare (not start) a broker.

        Args:
            port: Loopback port; a free one if None.
            host: Address to listen on.
            workdir: Folder for the config, log and database; a temporary one (removed by :meth:`close`) if None.
            persistent: ``persistence true``: retained messages, persistent sessions (``clean_session=False``
                clients) and their queued messages survive :meth:`stop` + :meth:`start` (saved at SIGTERM, not
                after :meth:`kill`).
            extra_config: More lines for mosquitto's config, after the defaults (e.g. a second listener with TLS).
        """
        self.host = host
        self.persistent = persistent
        self.port = port if port is not None else free_port(host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mosquitto-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"mosquitto-{self.port}.conf"
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"
        # Started as root, mosquitto drops to the user "mosquitto", which cannot write into our (root-owned, 0700)
        # temporary folders: keep the current user instead. Ignored when not started as root.
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true", f"user {user}"]
        if persistent:
            lines += ["persistence true", f"persistence_location {self.workdir}/", f"persistence_file {self.port}.db"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stderr", *(f"log_type {t}" for t in ("error", "warning", "notice", "information"))]
        lines += extra_config
        self.config_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the mosquitto process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        """Start mosquitto and wait until the port accepts TCP connections. No-op if already running."""
        if self.running:
            return self
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}: {self.log()}")
            return port_open(self.host, self.port)

        wait_for(ready, timeout=timeout, message=lambda: f"mosquitto not listening on {self.port}: {self.log()}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM mosquitto and wait for it to exit (SIGKILL if it does not within ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL mosquitto (an abrupt broker death: no clean disconnects) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = 10.0) -> Broker:
        """Stop, then start again on the same port."""
        self.stop(timeout)
        return self.start(timeout)

    def log(self) -> str:
        """mosquitto's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the broker and remove its temporary folder."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __repr__(self) -> str:
        return f"Broker({self.host}:{self.port}, running={self.running})"

    def __enter__(self) -> Self:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
