"""``sound-monitor run`` with network sources against real servers the test starts: GStreamer's RTSP server (a
camera with a video track and one without, its password from the environment), an HTTP WAV stream, an HTTP
stream that goes silent with its connection open (half-open), beside a local PulseAudio microphone; the cameras'
server is killed and started again mid-run.

Every step waits on what it expects (a message, a line, a process), never on a clock.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.audio import tone, write_wav
from support.broker import Broker, free_port
from support.config import PREFIX, write_config
from support.http import http_get
from support.httpstream import HttpAudioServer
from support.mqtt import MqttCollector
from support.procs import MonitorProcess
from support.rtsp import RtspServer
from support.wait import wait_for

SECRET = "s3cret-cam-pw"
HOP = 0.5  # the test config's hop


class FfmpegWatch:
    """Samples the monitor's ffmpeg children on a thread: the most alive at once per URL, and every pid seen."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.most: dict[str, int] = defaultdict(int)
        self.pids: dict[str, set[int]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            now: dict[str, int] = defaultdict(int)
            try:
                children = self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    if child.name() != "ffmpeg" or child.status() == psutil.STATUS_ZOMBIE:
                        continue
                    url = next(a for a in child.cmdline() if "://" in a)
                except (psutil.NoSuchProcess, StopIteration):
                    continue
                key = url.rsplit("/", 1)[-1]  # the mount or path: av, live.wav, stall.wav
                now[key] += 1
                self.pids[key].add(child.pid)
            for key, count in now.items():
                self.most[key] = max(self.most[key], count)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def starts(lines: list[dict[str, Any]], source: str) -> list[float]:
    """``window_start`` of every scored window of ``source`` on stdout, in order."""
    return [ln["window_start"] for ln in list(lines) if ln["kind"] == "scores" and ln.get("source") == source]


def gaps(values: list[float]) -> list[tuple[float, float]]:
    """Neighbours that are not one hop apart: windows that never reached the model."""
    return [(a, b) for a, b in itertools.pairwise(values) if abs(b - a - HOP) > 1e-6]


@pytest.fixture
def long_wav(tmp_path: Path) -> Path:
    """Ten minutes of tone: the RTSP server plays the file from its start for each client, and must not end first."""
    return write_wav(tmp_path / "tone.wav", tone(600, 16000, 600, 0.5), 16000)


def test_two_network_sources_and_a_local_one_with_a_camera_killed_and_back(
        tiny_model: Path, tmp_path: Path, pulse, broker: Broker, long_wav: Path) -> None:
    port = free_port()
    http = HttpAudioServer(tone(60, 16000, 900, 0.5), 16000, stall_after=1.0).start()
    rtsp = RtspServer(long_wav, user="cam", password=SECRET).start()
    try:
        # Threshold 0: every window is a hit, so each source's first window starts an event under its name.
        cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, threshold=0.0, metrics={"port": port}, sources=[
            {"name": "driveway", "url": rtsp.url("/av"), "username": "cam", "password_env": "DRIVEWAY_PASSWORD"},
            {"name": "porch", "url": rtsp.url("/audio", user="cam", password=SECRET)},  # no video; password inline
            {"name": "garden", "url": http.url("/live.wav")},
            {"name": "shed", "url": http.url("/stall.wav"), "timeout_seconds": 3},
            {"name": "kitchen", "device": pulse.device_name},
        ])
        with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub, MonitorProcess(
                ["run", "--config", str(cfg), "--scores"], env={"DRIVEWAY_PASSWORD": SECRET}) as mon:
            watch = FfmpegWatch(mon.proc.pid)
            try:
                sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=120)
                for name in ("driveway", "porch", "garden", "kitchen"):
                    sub.wait_for(f"{PREFIX}/{name}/availability", lambda m: m.text == "online")
                    assert sub.wait_for(f"{PREFIX}/{name}/events").json()["source"] == name
                # The audio track only: the video never left the camera.
                assert sorted(rtsp.setups) == ["/audio/stream=0", "/av/stream=1"]

                # Half-open: the shed's server keeps the connection and stops sending; the reader's timeout says so.
                # (It was down, "connecting", until its first audio, then up.)
                sub.wait_for(f"{PREFIX}/shed/input", lambda m: m.json()["state"] == "up")
                # Whichever of the two timeouts fires first: the reader's no-data watchdog or ffmpeg's own.
                sub.wait_for(f"{PREFIX}/shed/input", lambda m: any(
                    why in (m.json()["error"] or "") for why in ("no data for 3 s", "Connection timed out")))
                sub.wait_for(f"{PREFIX}/shed/availability", lambda m: m.text == "offline")

                # The driveway camera loses power.
                mark, seen = len(sub.messages()), len(starts(mon.lines, "garden"))
                rtsp.kill()
                sub.wait_for(f"{PREFIX}/driveway/availability", lambda m: m.text == "offline", since=mark)
                sub.wait_for(f"{PREFIX}/driveway/events", lambda m: m.json()["type"] == "end", since=mark)
                health = wait_for(lambda: http_get(port, "/healthz"))
                assert health[0] == 200 and health[1].startswith("degraded: ") and "driveway is down" in health[1]
                # It is retried (a new ffmpeg each time, one at a time) while the others go on scoring. The camera
                # stays off for about 30 s: the first run and five retries, after backoffs of 1, 2, 4, 8 and 16 s
                # (each less up to 20 % jitter), counted as processes, not timed.
                wait_for(lambda: len(watch.pids["av"]) >= 6, timeout=180,
                         message=lambda: f"ffmpeg runs: {dict(watch.pids)}")
                wait_for(lambda: len(starts(mon.lines, "garden")) >= seen + 8, message="the garden stopped")

                mark = len(sub.messages())
                rtsp.start()  # the same port: the camera is back, found at the next retry (32 s of backoff at most)
                for name in ("driveway", "porch"):
                    sub.wait_for(f"{PREFIX}/{name}/availability", lambda m: m.text == "online", since=mark, timeout=180)
                    again = sub.wait_for(f"{PREFIX}/{name}/events", lambda m: m.json()["type"] == "start", since=mark)
                    assert again.json()["source"] == name  # its detection resumed, no restart of the monitor
                wait_for(lambda: "driveway" not in (http_get(port, "/healthz") or (0, "driveway"))[1])
            finally:
                watch.close()
            assert dict(watch.most) and max(watch.most.values()) == 1, dict(watch.most)  # never two per source
            for name in ("garden", "kitchen"):  # every window of the healthy sources, through it all
                assert starts(mon.lines, name) and not gaps(starts(mon.lines, name)), name
            mon.proc.terminate()
            assert mon.wait(timeout=60) == 0, mon.stderr()[-3000:]
            assert "Traceback" not in mon.stderr()
            everything = mon.stderr() + str(mon.lines) + "".join(m.payload.decode() for m in sub.messages())
            assert SECRET not in everything
            assert watch.root.is_running() is False or not [c for c in watch.root.children() if c.name() == "ffmpeg"]
    finally:
        rtsp.kill()
        http.close()
