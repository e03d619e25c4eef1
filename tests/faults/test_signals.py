"""SIGTERM and SIGINT at every stage of the real CLI end in exit 0, with ``offline`` retained if ``online`` was.

Each test runs ``python -m monitor`` in a subprocess and signals it at one stage: the imports, the config, the
model load, running, a runtime label encoding in flight, the shutdown. A stage is reached when its log line
appears; stages that are over in a blink are held there by the test hook (``support/hold/sitecustomize.py``),
which blocks or keeps torch busy at that point until the process is signalled, so no test depends on timing.
The bound on the exit is the process wait's (generous) timeout; the benchmark measures the speed.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from support.audio import audio_file
from support.broker import Broker
from support.config import PREFIX, REPLAY_LABELS, REPLAY_TIMING, write_config
from support.mqtt import MqttCollector, late_view
from support.procs import MonitorProcess, hold_env
from support.wait import wait_for

EXIT_TIMEOUT = 30.0  # the wait's bound: generous, the point is that the process ends on its own with 0
AVAILABILITY = f"{PREFIX}/availability"


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    """A minute of audio: a realtime replay of it is still running whenever a test signals it."""
    return audio_file(tmp_path, 60)[0]


def _replay(cfg: Path, wav: Path, *holds: str) -> MonitorProcess:
    return MonitorProcess(["replay", str(wav), "--config", str(cfg), "--realtime"], env=hold_env(*holds))


def _wait_line(mon: MonitorProcess, text: str, timeout: float = 60.0) -> None:
    wait_for(lambda: text in mon.stderr() or mon.proc.poll() is not None, timeout=timeout,
             message=lambda: f"no {text!r} in the log: {mon.stderr()[-2000:]}")
    assert text in mon.stderr(), f"exited with {mon.proc.returncode} before {text!r}: {mon.stderr()[-2000:]}"


def _ends_with_zero(mon: MonitorProcess) -> None:
    code = mon.wait(timeout=EXIT_TIMEOUT)
    assert code == 0, f"exit {code}: {mon.stderr()[-3000:]}"
    assert "Traceback" not in mon.stderr()


@pytest.mark.parametrize(("hold", "sig"), [
    ("import:pydantic", signal.SIGTERM),  # the first imports (the config's), on the main thread
    ("call:monitor.config.loading:load_config", signal.SIGTERM),  # reading the config
    ("call:monitor.config.loading:load_config", signal.SIGINT),
    ("import:torch", signal.SIGTERM),  # torch's import (seconds on a small box)
])
def test_a_signal_while_starting_exits_zero(tiny_model: Path, tmp_path: Path, wav: Path, hold: str,
                                            sig: signal.Signals) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_model, labels=REPLAY_LABELS, **REPLAY_TIMING)
    with _replay(cfg, wav, hold) as mon:
        _wait_line(mon, f"test-hold: {hold}")
        mon.proc.send_signal(sig)
        _ends_with_zero(mon)
        assert not mon.lines


def test_sigterm_during_the_model_load_is_acted_on_at_once(tiny_model: Path, tmp_path: Path, wav: Path,
                                                           broker: Broker) -> None:
    """The load (held inside torch, as a slow load is) is abandoned: no waiting for it, nothing published."""
    hold = "busy:monitor.inference.loading:load_scorer"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, **REPLAY_TIMING)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub:
        sub.wait_connected()
        with _replay(cfg, wav, hold) as mon:
            _wait_line(mon, "loading")
            _wait_line(mon, f"test-hold: {hold}")
            mon.proc.terminate()
            _ends_with_zero(mon)
            assert "listening for" not in mon.stderr()
        assert not sub.messages(AVAILABILITY)  # never online, so no offline either


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_running_publishes_offline_and_exits_zero(tiny_model: Path, tmp_path: Path, wav: Path,
                                                                 broker: Broker, sig: signal.Signals) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, **REPLAY_TIMING)
    with MqttCollector(broker.host, broker.port, [AVAILABILITY]) as sub, _replay(cfg, wav) as mon:
        _wait_line(mon, "listening for")
        sub.wait_for(AVAILABILITY, lambda m: m.text == "online", timeout=30)
        mon.proc.send_signal(sig)
        _ends_with_zero(mon)
    _offline_is_retained(broker)


@pytest.mark.parametrize("signals", [1, 2], ids=["encoding", "encoding-then-shutdown"])
def test_sigterm_while_a_label_is_being_encoded(tiny_model: Path, tmp_path: Path, pulse, broker: Broker,
                                                signals: int) -> None:
    """``add_label`` keeps the command thread inside torch, encoding the prompts (held there); SIGTERM (and a
    second one during the shutdown) still ends in exit 0 with ``offline`` retained, not in an abort at exit."""
    hold = "busy:monitor.inference.text:TextEncoder._encode_with_loaded_tower"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, **REPLAY_TIMING)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub, MonitorProcess(
        ["run", "--config", str(cfg), "--device", pulse.device_name], env=hold_env(hold)
    ) as mon:
        _wait_line(mon, "listening for")
        sub.wait_for(AVAILABILITY, lambda m: m.text == "online", timeout=30)
        sub.client.publish(f"{PREFIX}/command", json.dumps({"action": "add_label", "name": "a bell"}), qos=1)
        _wait_line(mon, f"test-hold: {hold}")
        mon.proc.terminate()
        if signals == 2:
            _wait_line(mon, "stopping")
            mon.proc.terminate()
        _ends_with_zero(mon)
        # The command in flight was answered, not dropped.
        answer = sub.wait_for(f"{PREFIX}/command/response", timeout=60).json()
        assert answer["ok"] is False and "stopping" in answer["error"], answer
    _offline_is_retained(broker)


def _offline_is_retained(broker: Broker) -> None:
    with late_view(broker, AVAILABILITY) as view:
        last = view.last(AVAILABILITY)
        assert last is not None and last.retain and last.text == "offline"
