"""Live capture through real PortAudio from a PulseAudio null sink, and `sound-monitor run` as a service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.audio import concat, silence, tone, write_wav
from support.broker import Broker
from support.config import BACKGROUND, PREFIX, REPLAY_LABELS, REPLAY_TIMING, write_config
from support.mqtt import MqttCollector
from support.notify import NotifySocket
from support.procs import MonitorProcess
from support.wait import wait_for

from monitor.sources.capture import Capture, CaptureError, resolve_input_device


@pytest.fixture(scope="module")
def pipe_reference(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A long 48 kHz file and a threshold just under the pipeline's 'dog barking' score on its first window."""
    from transformers import pipeline

    x = concat(tone(5, 48000, 440), tone(55, 48000, 880, 0.2))
    wav = write_wav(tmp_path_factory.mktemp("held") / "long.wav", x, 48000, subtype="FLOAT")
    pipe = pipeline("zero-shot-audio-classification", model=str(tiny_model))
    ref = {r["label"]: r["score"] for r in pipe(x[:240000], candidate_labels=[*REPLAY_LABELS, *BACKGROUND])}
    return wav, ref["dog barking"] - 1e-4


def test_capture_records_the_virtual_microphone(pulse, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav", concat(tone(3, 48000, 1000, 0.5), silence(0.5, 48000)), 48000)
    cap = Capture(device=pulse.device_name, samplerate=48000)
    cap.start()
    try:
        pulse.play(wav)
        got: list[np.ndarray] = []

        def loud_samples() -> int:
            got.append(cap.read(0.2))
            x = np.concatenate(got)
            return int(np.sum(np.abs(x) > 0.2))

        wait_for(lambda: loud_samples() > 48000, timeout=20, message="no loud audio captured from the null sink")
    finally:
        cap.stop()
    x = np.concatenate(got)
    loud = x[np.abs(x) > 0.05]
    seg = x[np.argmax(np.abs(x) > 0.2):][:48000]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    peak_hz = np.argmax(spectrum) * 48000 / len(seg)
    assert abs(peak_hz - 1000) < 10, peak_hz
    assert 0.3 < np.max(np.abs(loud)) <= 1.0
    assert cap.callback_errors == 0


def test_unknown_device_lists_inputs(pulse) -> None:
    with pytest.raises(CaptureError) as info:
        resolve_input_device("no-such-microphone-xyz")
    assert "no input device matching 'no-such-microphone-xyz'" in str(info.value)
    assert "pulse" in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "monitor", "devices"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "pulse" in proc.stdout


def test_run_with_missing_device_fails_clearly(tiny_model: Path, tmp_path: Path, pulse) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_model, labels=REPLAY_LABELS, threshold=0.5, **REPLAY_TIMING)
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg), "--device", "no-such-microphone-xyz"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "no-such-microphone-xyz" in proc.stderr and "Input devices" in proc.stderr


def test_run_service_lifecycle(tiny_model: Path, tmp_path: Path, pulse, broker: Broker) -> None:
    """READY after load, watchdog pings while audio flows, scores from the microphone, clean SIGTERM."""
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, 0.5, **REPLAY_TIMING)
    notify = NotifySocket(tmp_path / "notify.sock")
    wav = write_wav(tmp_path / "tone.wav", tone(20, 48000, 700, 0.5), 48000)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    try:
        with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub, MonitorProcess(
            ["run", "--config", str(cfg), "--device", pulse.device_name, "--scores"], env=env
        ) as mon:
            wait_for(lambda: "READY=1" in notify.messages, timeout=60, message="no READY=1")
            sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=20)
            pulse.play(wav)
            wait_for(lambda: any(ln["kind"] == "scores" and ln["level_dbfs"] > -12 for ln in mon.lines),
                     timeout=30, message="no loud window scored from the microphone")
            wait_for(lambda: notify.messages.count("WATCHDOG=1") >= 2, timeout=60, message="no watchdog pings")
            scored = [ln for ln in mon.lines if ln["kind"] == "scores"]
            assert all(abs(sum(ln["scores"].values()) - 1) < 1e-4 for ln in scored)
            assert all(ln["window_end"] - ln["window_start"] == 5.0 for ln in scored)
            mon.proc.terminate()
            # Exit code 0 and the goodbye are the contract here; how fast it goes is the benchmark's business
            # (a test that times a shutdown fails on a busy machine).
            assert mon.wait(timeout=60) == 0, mon.stderr()
            assert "STOPPING=1" in notify.messages
            sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "offline", timeout=60)
    finally:
        notify.close()


def test_broker_down_at_start_events_held_then_delivered(
    tiny_model: Path, tmp_path: Path, broker_factory, pipe_reference
) -> None:
    """The broker is down when the monitor starts; the events it detects arrive, in order, once it is up."""
    broker: Broker = broker_factory(persistent=True)
    wav, threshold = pipe_reference
    # A persistent subscriber session, so that nothing published while we reconnect can be missed.
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"], client_id="held-events", clean_session=False) as sub:
        sub.wait_connected()
        broker.stop()
        cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, threshold, **REPLAY_TIMING)
        with MonitorProcess(["replay", str(wav), "--config", str(cfg), "--realtime"]) as mon:
            wait_for(lambda: mon.events("start"), timeout=60, message="no start event while the broker is down")
            assert "cannot reach broker" in mon.stderr()
            broker.start()
            msg = sub.wait_for(f"{PREFIX}/events", lambda m: m.json()["type"] == "start", timeout=45)
            assert msg.json()["label"] == mon.events("start")[0]["label"]
            sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=60)
            mon.proc.terminate()
            assert mon.wait(timeout=60) == 0
        # The first message that arrived on events is the first event detected (order kept).
        first = next(m.json() for m in sub.messages(f"{PREFIX}/events"))
        assert first["type"] == "start" and first["window_start"] == 0


def test_last_will_says_offline_when_the_process_dies(
    tiny_model: Path, tmp_path: Path, broker: Broker, pipe_reference
) -> None:
    """A crash (SIGKILL: no clean shutdown) still leaves `offline` retained, through the Last Will."""
    wav, _ = pipe_reference
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, 0.5, **REPLAY_TIMING)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/availability"]) as sub, MonitorProcess(
        ["replay", str(wav), "--config", str(cfg), "--realtime"]
    ) as mon:
        sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=60)
        mon.proc.kill()
        mon.wait(timeout=60)
        sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "offline", timeout=60)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/availability"]) as late:
        late.wait_for(f"{PREFIX}/availability", lambda m: m.retain and m.text == "offline")
