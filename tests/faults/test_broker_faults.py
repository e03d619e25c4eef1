"""A broker killed (SIGKILL) mid-run and started again: no event is lost or reordered.

The probe behind the reliability issue counted events over broker kills with a persistent subscriber; this keeps
it runnable. Events are scripted (a loud window is "beep"), so which events exist is known; the subscriber's
session is persistent and the broker saves on every change, so what the monitor delivers after the restart
reaches the subscriber whenever it reconnects. Every step waits on a condition, never on time.
"""

from __future__ import annotations

from pathlib import Path

from support.audio import beeps
from support.broker import Broker
from support.config import PREFIX, make_config
from support.mqtt import MqttCollector
from support.runner import RunningMonitor
from support.scorers import LoudnessScorer
from support.wait import wait_for

EVENTS = f"{PREFIX}/events"


def _key(event: dict) -> tuple:
    return event["type"], event["label"], event["window_start"], event["window_end"], event["timestamp"]


def test_broker_sigkill_and_restart_lose_no_event_and_keep_the_order(tiny_model: Path, broker_factory,
                                                                       tmp_path: Path) -> None:
    broker: Broker = broker_factory(persistent=True, extra_config=["autosave_interval 1", "autosave_on_changes true"])
    wav, _ = beeps(tmp_path, at=[1.0 + 2.0 * i for i in range(14)], length=30.0)
    cfg = make_config(tiny_model, broker, labels=[{"name": "beep", "threshold": 0.5}], background=["silence"],
                      detection={"min_hits": 1, "end_after_seconds": 0.5, "cooldown_seconds": 0.0},
                      mqtt={"publish_level": False}, home_assistant={"discovery": False})
    with MqttCollector(broker.host, broker.port, [EVENTS], client_id="event-counter", clean_session=False) as sub:
        sub.wait_connected()
        run = RunningMonitor(cfg, wav, realtime=True, scorer=LoudnessScorer()).start()

        def received() -> list[dict]:
            return [m.json() for m in sub.messages(EVENTS)]

        wait_for(lambda: len(run.events) >= 4, message="no events before the kill")
        wait_for(lambda: len(received()) >= 4, message="the first events did not arrive")
        broker.kill()
        at_kill = len(run.events)
        wait_for(lambda: len(run.events) >= at_kill + 4, message="no events while the broker was down")
        broker.start()
        # Everything detected so far arrives, while the monitor is still running.
        wait_for(lambda: len(received()) >= len(run.events) >= at_kill + 4,
                 message=lambda: f"{len(received())} of {len(run.events)} events arrived")
        assert run.finish(timeout=120) == 0
        wait_for(lambda: len(received()) >= len(run.events), message="events of the last seconds did not arrive")
        got = received()
    want = [ev.to_json_dict() for ev in run.events]
    assert len(want) >= at_kill + 4
    assert [_key(e) for e in got] == [_key(e) for e in want]  # none lost, none twice, in order
