"""``sound-monitor run`` with several real sources: two PulseAudio null sinks as two local microphones read
through real PortAudio, and a microphone that is not there; everything per source over a real mosquitto.

Every test waits on what it expects (a line, a message, an answer), never on a clock.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.audio import tone, write_wav
from support.broker import Broker, free_port
from support.config import PREFIX, write_config
from support.http import http_get
from support.mqtt import MqttCollector, late_view, retained
from support.procs import MonitorProcess
from support.wait import wait_for


def test_two_local_microphones_and_a_missing_one(tiny_model: Path, tmp_path: Path, pulse, broker: Broker) -> None:
    """Each microphone's audio reaches its own windows, events and topics; the missing one is reported down
    (and the monitor healthy, degraded) while the other two listen."""
    mic2 = pulse.add_microphone("mic2", tmp_path / "xdg")
    port = free_port()
    try:
        # Threshold 0: every window is a hit, so each source's first window starts an event under its name.
        cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, threshold=0.0, metrics={"port": port}, sources=[
            {"name": "living-room", "device": pulse.device_name},
            {"name": "hall", "device": mic2.device_name},
            {"name": "attic", "device": "no-such-microphone-xyz"},
        ])
        loud = write_wav(tmp_path / "tone.wav", tone(30, 48000, 700, 0.5), 48000)
        with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub, MonitorProcess(
                ["run", "--config", str(cfg), "--scores"], env=mic2.env) as mon:
            sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=120)
            for name in ("living-room", "hall"):
                sub.wait_for(f"{PREFIX}/{name}/availability", lambda m: m.text == "online")
                event = sub.wait_for(f"{PREFIX}/{name}/events", lambda m: m.json()["type"] == "start").json()
                assert event["source"] == name
                sub.wait_for(f"{PREFIX}/{name}/dog_barking/state", lambda m: m.text == "ON")
            down = sub.wait_for(f"{PREFIX}/attic/input").json()
            assert down["state"] == "down" and "no-such-microphone-xyz" in down["error"]
            sub.wait_for(f"{PREFIX}/attic/availability", lambda m: m.text == "offline")
            assert wait_for(lambda: http_get(port, "/healthz")) == (
                200, f"degraded: attic is down: {down['error']}\n")

            mic2.play(loud)  # into the hall's microphone only
            wait_for(lambda: any(ln["kind"] == "scores" and ln.get("source") == "hall" and ln["level_dbfs"] > -12
                                 for ln in mon.lines), timeout=60, message="the tone never reached the hall")
            levels = [ln["level_dbfs"] for ln in mon.lines if ln["kind"] == "scores"
                      and ln.get("source") == "living-room"]
            assert levels and max(levels) < -60  # nothing of the hall's tone in the living room's windows
            assert "Traceback" not in mon.stderr()
            mon.proc.terminate()
            assert mon.wait(timeout=60) == 0, mon.stderr()[-3000:]
        with late_view(broker, f"{PREFIX}/#") as late:
            kept = retained(late, f"{PREFIX}/+/availability")
            attic = json.loads(retained(late, f"{PREFIX}/attic/input")[f"{PREFIX}/attic/input"])
        assert kept == {f"{PREFIX}/{n}/availability": b"offline" for n in ("living-room", "hall", "attic")}
        assert attic["state"] == "down"
    finally:
        mic2.remove()
