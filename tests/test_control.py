"""Runtime control over MQTT: each command and its error answer, against a monitor that keeps running.

Every test runs a monitor in-process over a file paced in real time (so it is still listening when the commands
arrive), sends commands with a real MQTT client and checks the answer, the retained summary, the detector, the
scorer and what gets detected afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.audio import audio_file
from support.broker import Broker
from support.commands import Commander
from support.config import NODE_ID, PREFIX, make_config
from support.mqtt import MqttCollector, retained, sync
from support.runner import RunningMonitor
from support.wait import wait_for

from monitor.inference.scorer import ClapScorer, LabelPrompts


@pytest.fixture
def long_wav(tmp_path: Path) -> tuple[Path, np.ndarray]:
    return audio_file(tmp_path, 90)


def _labels(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lbl["name"]: lbl for lbl in summary["labels"]}


def test_threshold_enable_disable_change_detection_without_restart(tiny_model: Path, broker: Broker,
                                                                   long_wav: tuple[Path, np.ndarray]) -> None:
    cfg = make_config(tiny_model, broker, labels=[{"name": "dog barking", "threshold": 0.9, "enabled": False},
                                                  "glass breaking"])
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as mq, RunningMonitor(cfg, long_wav[0]) as run:
        mq.wait_connected()
        run.wait_started()
        cmd = Commander(mq)
        mq.wait_for(f"{PREFIX}/config")

        # Threshold 0: every window is a hit, but the label is disabled, so nothing fires yet.
        answer = cmd.send({"action": "set_threshold", "label": "dog barking", "threshold": 0.0})
        assert answer["ok"] is True and answer["action"] == "set_threshold" and answer["threshold"] == 0.0
        wait_for(lambda: _labels(cmd.summary())["dog barking"]["threshold"] == 0.0, message="summary not updated")
        assert {r.name: r.threshold for r in run.monitor.detector.rules}["dog barking"] == 0.0

        since = len(mq.messages())
        assert cmd.send({"action": "enable", "label": "dog_barking"})["ok"] is True  # by label id works too
        start = mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["label"] == "dog barking", since=since)
        assert start.json()["type"] == "start"
        mq.wait_for(f"{PREFIX}/dog_barking/state", lambda m: m.text == "ON", since=since)
        assert _labels(cmd.summary())["dog barking"]["enabled"] is True

        # Disabling an active label ends its event at once.
        since = len(mq.messages())
        assert cmd.send({"action": "disable", "label": "Dog Barking"})["ok"] is True
        end = mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["label"] == "dog barking", since=since)
        assert end.json()["type"] == "end"
        mq.wait_for(f"{PREFIX}/dog_barking/state", lambda m: m.text == "OFF", since=since)
        assert _labels(cmd.summary())["dog barking"]["enabled"] is False
        assert not run.monitor.detector.is_active("dog barking")


def test_add_and_remove_labels_at_run_time(tiny_model: Path, broker: Broker, long_wav: tuple[Path, np.ndarray]
                                           ) -> None:
    wav, x = long_wav
    cfg = make_config(tiny_model, broker, labels=["glass breaking"])
    new_prompts = ["a knock on the door", "knocking"]
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            RunningMonitor(cfg, wav) as run:
        mq.wait_connected()
        run.wait_started()
        cmd = Commander(mq)

        answer = cmd.send({"action": "add_label", "name": "door knock", "prompts": new_prompts, "threshold": 0.0})
        assert answer["ok"] is True and answer["label"] == "door knock" and answer["label_id"] == "door_knock"
        # It fires (threshold 0), gets its Home Assistant entities and appears in the summary.
        mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["label"] == "door knock" and m.json()["type"] == "start")
        bs = mq.wait_for(f"homeassistant/binary_sensor/{NODE_ID}/door_knock/config", lambda m: bool(m.payload)).json()
        assert bs["device_class"] == "sound" and bs["state_topic"] == f"{PREFIX}/door_knock/state"
        mq.wait_for(f"homeassistant/event/{NODE_ID}/door_knock/config", lambda m: bool(m.payload))
        wait_for(lambda: "door knock" in _labels(cmd.summary()), message="summary lacks the new label")
        assert _labels(cmd.summary())["door knock"]["prompts"] == new_prompts
        assert run.monitor.scorer.labels == ["glass breaking", "door knock", "silence", "speech"]

        # Scores with the added label equal a scorer built from scratch with the whole label set.
        window = wait_for(lambda: next((w for w in reversed(run.windows) if "door knock" in w.scores), None))
        fresh = ClapScorer(str(tiny_model), threads=2)
        fresh.set_labels([LabelPrompts(n, tuple(cfg.prompt_template.format(p) for p in ps))
                          for n, ps in (("glass breaking", ["glass breaking"]), ("door knock", new_prompts),
                                        ("silence", ["silence"]), ("speech", ["speech"]))])
        i = round(window.start * 48000)
        ref = dict(zip(fresh.labels, fresh.score(x[None, i : i + 48000])[0], strict=True))
        for name, value in ref.items():
            assert abs(window.scores[name] - value) < 1e-5, (name, window.scores, ref)

        # Removing a label: gone from the scorer, the detector, Home Assistant and the summary.
        since = len(mq.messages())
        answer = cmd.send({"action": "remove_label", "label": "glass breaking"})
        assert answer["ok"] is True
        for component in ("binary_sensor", "event"):
            mq.wait_for(f"homeassistant/{component}/{NODE_ID}/glass_breaking/config", lambda m: m.payload == b"",
                        since=since)
        wait_for(lambda: list(_labels(cmd.summary())) == ["door knock"], message="summary still lists it")
        assert run.monitor.scorer.labels == ["door knock", "silence", "speech"]
        assert [r.name for r in run.monitor.detector.rules] == ["door knock"]
        n = len(run.windows)
        wait_for(lambda: len(run.windows) > n + 1, message="no windows after the removal")
        assert "glass breaking" not in run.windows[-1].scores

        # The last label cannot go.
        answer = cmd.send({"action": "remove_label", "label": "door knock"})
        assert answer["ok"] is False and "last label" in answer["error"]
        assert [r.name for r in run.monitor.detector.rules] == ["door knock"]
    with MqttCollector(broker.host, broker.port, ["homeassistant/#", f"{PREFIX}/#"]) as late:
        late.wait_connected()
        sync(late)
        assert f"homeassistant/binary_sensor/{NODE_ID}/door_knock/config" in retained(late, "homeassistant/#")
        assert f"homeassistant/binary_sensor/{NODE_ID}/glass_breaking/config" not in retained(late, "homeassistant/#")


def test_invalid_commands_change_nothing_and_say_why(tiny_model: Path, broker: Broker,
                                                     long_wav: tuple[Path, np.ndarray]) -> None:
    cfg = make_config(tiny_model, broker, labels=[{"name": "dog barking", "threshold": 0.6}])
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as mq, RunningMonitor(cfg, long_wav[0]) as run:
        mq.wait_connected()
        run.wait_started()
        cmd = Commander(mq)
        before = mq.wait_for(f"{PREFIX}/config").json()
        rules_before = run.monitor.detector.rules
        scorer_before = list(run.monitor.scorer.labels)

        bad_json = cmd.press(b"{not json")
        assert bad_json["ok"] is False and "JSON" in bad_json["error"]
        not_object = cmd.press(b"[1, 2]")
        assert not_object["ok"] is False and "object" in not_object["error"]
        cases: list[tuple[dict[str, Any], str]] = [
            ({"action": "explode"}, "unknown action"),
            ({"label": "dog barking"}, "action"),
            ({"action": "set_threshold", "label": "cat purring", "threshold": 0.3}, "unknown label"),
            ({"action": "set_threshold", "label": "dog barking", "threshold": 1.5}, "between 0 and 1"),
            ({"action": "set_threshold", "label": "dog barking", "threshold": -0.1}, "between 0 and 1"),
            ({"action": "set_threshold", "label": "dog barking", "threshold": "high"}, "number"),
            ({"action": "set_threshold", "label": "dog barking", "threshold": True}, "number"),
            ({"action": "set_threshold", "label": "dog barking"}, "threshold"),
            ({"action": "set_threshold", "label": "dog barking", "treshold": 0.3}, "unknown key"),
            ({"action": "enable"}, "label"),
            ({"action": "disable", "label": "cat purring"}, "unknown label"),
            ({"action": "add_label", "name": "Dog Barking"}, "already exists"),
            ({"action": "add_label", "name": "silence"}, "background"),
            ({"action": "add_label", "name": "   "}, "name"),
            ({"action": "add_label", "name": "kettle", "prompts": []}, "prompts"),
            ({"action": "add_label", "name": "kettle", "prompts": "a kettle"}, "prompts"),
            ({"action": "add_label", "name": "kettle", "threshold": 2}, "between 0 and 1"),
            ({"action": "remove_label", "label": "dog barking"}, "last label"),
            ({"action": "remove_label", "label": "cat purring"}, "unknown label"),
        ]
        for command, reason in cases:
            answer = cmd.send(command)
            assert answer["ok"] is False, (command, answer)
            assert reason in answer["error"], (command, answer)
            assert answer["action"] == command.get("action")

        assert run.monitor.detector.rules == rules_before
        assert run.monitor.scorer.labels == scorer_before
        assert mq.last(f"{PREFIX}/config").json() == before

        got = cmd.send({"action": "get_config"})
        assert got["ok"] is True and got["config"] == before
        assert got["config"]["labels"] == [{"name": "dog barking", "label_id": "dog_barking", "threshold": 0.6,
                                            "enabled": True, "prompts": ["dog barking"], "examples": 0,
                                            "negatives": 0}]
        assert got["config"]["node"] == "test-node" and got["config"]["model"] == str(tiny_model)
        assert "version" in got["config"]
