"""Running the real `sound-monitor` command in a subprocess and watching its output as it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def monitor_env() -> dict[str, str]:
    """Environment for ``python -m monitor`` run from another folder: this checkout's package first on the path
    (whatever is installed in the venv), and no ``SOUND_MONITOR_CONFIG`` from the caller."""
    env = {k: v for k, v in os.environ.items() if k != "SOUND_MONITOR_CONFIG"}
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}


class MonitorProcess:
    """``python -m monitor ARGS`` with stdout JSON lines and stderr lines collected by reader threads."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, is_json: bool) -> None:
        for line in stream:
            if is_json and line.strip():
                self.lines.append(json.loads(line))
            elif not is_json:
                self.log.append(line.rstrip("\n"))

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Event lines printed so far."""
        return [ln for ln in self.lines if ln["kind"] == "event" and (type_ is None or ln["type"] == type_)]

    def stderr(self) -> str:
        """Everything logged so far."""
        return "\n".join(self.log)

    def wait(self, timeout: float) -> int:
        """Exit code (raises subprocess.TimeoutExpired)."""
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return code

    def kill(self) -> None:
        """Kill it if still running (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> MonitorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


HOLD_FOLDER = Path(__file__).resolve().parent / "hold"


def hold_env(*holds: str) -> dict[str, str]:
    """Environment for :class:`MonitorProcess` that holds the process at a stage (``support/hold/sitecustomize.py``).

    ``holds``: ``"import:torch"``, ``"call:monitor.config.loading:load_config"``,
    ``"busy:monitor.inference.loading:load_scorer"``, ... Each prints ``test-hold: <hold>`` on stderr when reached.
    """
    path = os.pathsep.join(p for p in (str(HOLD_FOLDER), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SOUND_MONITOR_TEST_HOLD": ",".join(holds)}
