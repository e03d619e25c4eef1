"""The systemd unit, sd_notify, journald-friendly logging and the capture ring buffer."""

from __future__ import annotations

import configparser
import logging
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from monitor.sources.ring import RingBuffer
from monitor.systemd import notify, setup_logging, watchdog_interval

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "sound-monitor.service"


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # keep key case
    cp.read(UNIT)
    return cp


def test_unit_has_the_service_contract() -> None:
    svc = unit()["Service"]
    assert svc["Type"] == "notify"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "on-failure"
    assert "/etc/sound-monitor/config.yaml" in svc["ExecStart"] and " run " in svc["ExecStart"]
    assert svc["User"] == "sound-monitor" and "audio" in svc["SupplementaryGroups"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "DevicePolicy": "closed"}.items():
        assert svc[key] == value, key
    assert "char-alsa" in svc["DeviceAllow"]
    assert "AF_INET" in svc["RestrictAddressFamilies"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text().replace("/opt/sound-monitor/.venv/bin/sound-monitor", shutil.which("true") or "/bin/true")
    copy = tmp_path / "sound-monitor.service"
    copy.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_notify_sends_datagrams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert notify("READY=1")
    assert sock.recv(100) == b"READY=1"
    sock.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert watchdog_interval() == 10.0


def test_journald_lines_carry_priority(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    setup_logging("INFO")
    logging.getLogger("monitor.x").error("broker down")
    logging.getLogger("monitor.x").info("hello")
    err = capsys.readouterr().err.splitlines()
    assert "<3>monitor.x: broker down" in err and "<6>monitor.x: hello" in err


def test_ring_buffer_counts_samples_lost_to_a_slow_reader() -> None:
    ring = RingBuffer(1000)
    ring.write(np.arange(600, dtype=np.float32))
    np.testing.assert_array_equal(ring.read_new(), np.arange(600))
    ring.write(np.arange(600, 1400, dtype=np.float32))  # wraps around
    np.testing.assert_array_equal(ring.read_new(), np.arange(600, 1400))
    assert ring.overruns == 0
    for start in range(1400, 4200, 400):  # the reader falls 2800 samples behind a 1000-sample ring
        ring.write(np.arange(start, start + 400, dtype=np.float32))
    got = ring.read_new()
    np.testing.assert_array_equal(got, np.arange(3200, 4200))  # the newest ring-full survives
    assert ring.overruns == 1 and ring.lost_samples == 1800
