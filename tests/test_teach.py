"""Teaching at run time over a real broker: ``add_example``, ``add_negative`` and the Home Assistant buttons take an
event clip, change the next windows' scores without a restart, show in the retained summary, survive a restart
(the taught folder), and bad clip names or files are refused with the reason.

The monitor runs in-process over a steady tone paced in real time, so every window sounds like every clip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from support.audio import tone, write_wav
from support.broker import Broker
from support.commands import Commander
from support.config import NODE_ID, PREFIX, make_config
from support.fewshot import Reference
from support.mqtt import MqttCollector
from support.runner import RunningMonitor
from support.wait import wait_for

from monitor.labels import labels_from_config

TIMING = {"audio": {"window_seconds": 5.0, "hop_seconds": 1.0},
          "detection": {"min_hits": 1, "end_after_seconds": 2.0, "cooldown_seconds": 0.0}}


@pytest.fixture
def setup(tiny_model: Path, tmp_path: Path, broker: Broker):
    x = tone(120, 48000, 440, 0.3)
    wav = write_wav(tmp_path / "tone.wav", x, 48000)
    text = Reference(tiny_model).text(x[: 5 * 48000], ["dog barking", "glass breaking", "silence", "speech"])
    cfg = make_config(
        tiny_model, broker,
        labels=[{"name": "dog barking", "threshold": text["dog barking"] - 1e-3},  # random weights: fires here
                {"name": "glass breaking", "threshold": 0.9}],  # never by its text
        clips={"enabled": True, "folder": str(tmp_path / "clips"), "pre_roll_seconds": 1.0,
               "post_roll_seconds": 1.0},
        examples={"folder": str(tmp_path / "taught"), "cache_folder": str(tmp_path / "cache"), "max_file_mb": 1.0},
        **TIMING)
    return cfg, wav, tmp_path


def scores_after(run: RunningMonitor, label: str, n: int = 2) -> list[float]:
    """``label``'s scores in the ``n`` windows that follow (scored after this call)."""
    seen = len(run.windows)
    wait_for(lambda: len(run.windows) >= seen + n, message="no windows after the command")
    return [w.scores[label] for w in run.windows[seen : seen + n]]


def test_teaching_changes_the_next_windows_without_a_restart(setup, broker: Broker) -> None:
    cfg, wav, tmp = setup
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            RunningMonitor(cfg, wav) as run:
        mq.wait_connected()
        cmd = Commander(mq)
        start = mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["label"] == "dog barking").json()
        clip = start["clip"]
        wait_for(lambda: (tmp / "clips" / clip).is_file(), message="the event clip was not written")

        # "that was right" for glass breaking, by the clip's name: it now scores like its example.
        before = scores_after(run, "glass breaking")
        answer = cmd.send({"action": "add_example", "label": "glass breaking", "clip": clip})
        assert answer["ok"] is True, answer
        assert answer["label"] == "glass breaking" and answer["examples"] == 1 and answer["added"] is True
        kept = Path(answer["file"])
        assert kept.parent == tmp / "taught" / "glass_breaking"
        assert kept.read_bytes() == (tmp / "clips" / clip).read_bytes()
        after = scores_after(run, "glass breaking")
        assert max(before) < 0.9 < min(after), (before, after)
        mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["label"] == "glass breaking")
        wait_for(lambda: cmd.summary()["labels"][1]["examples"] == 1, message="summary lacks the example")

        # The "false alarm" button of dog barking, as Home Assistant discovered it: its latest clip becomes a negative.
        button = mq.wait_for(f"homeassistant/button/{NODE_ID}/dog_barking_false_alarm/config",
                             lambda m: bool(m.payload)).json()
        assert button["command_topic"] == f"{PREFIX}/command"
        before = scores_after(run, "dog barking")
        answer = cmd.press(button["payload_press"])
        assert answer["ok"] is True and answer["action"] == "add_negative", answer
        assert answer["label"] == "dog barking" and answer["negatives"] == 1
        after = scores_after(run, "dog barking")
        assert max(after) < 0.05 * min(before), (before, after)
        mq.wait_for(f"{PREFIX}/events", lambda m: (m.json()["label"], m.json()["type"]) == ("dog barking", "end"))
        wait_for(lambda: cmd.summary()["labels"][0]["negatives"] == 1, message="summary lacks the negative")

        # A top-level negative: the same sound no longer fires any label.
        answer = cmd.send({"action": "add_negative", "clip": clip})
        assert answer["ok"] is True and answer["label"] is None and answer["negatives"] == 1, answer
        assert Path(answer["file"]).parent == tmp / "taught" / "_negatives" / "_all"
        assert max(scores_after(run, "glass breaking")) < 0.05
        wait_for(lambda: cmd.summary()["negatives"] == 1, message="summary lacks the top-level negative")

        # Teaching the same clip again changes nothing and says so.
        again = cmd.send({"action": "add_example", "label": "glass breaking", "clip": clip})
        assert again["ok"] is True and again["added"] is False and again["examples"] == 1
    # A restart finds what was taught in the taught folder.
    labels = labels_from_config(cfg)
    assert [len(lbl.examples) for lbl in labels.labels] == [0, 1]
    assert [len(lbl.negatives) for lbl in labels.labels] == [1, 0] and len(labels.negatives) == 1


def test_bad_clips_and_labels_are_refused(setup, broker: Broker) -> None:
    cfg, wav, tmp = setup
    clips = tmp / "clips"
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            RunningMonitor(cfg, wav) as run:
        mq.wait_connected()
        cmd = Commander(mq)
        clip = mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["label"] == "dog barking").json()["clip"]
        wait_for(lambda: (clips / clip).is_file(), message="the event clip was not written")
        (clips / "junk.flac").write_bytes(b"fLaC" + bytes(3000))
        write_wav(clips / "long.wav", np.zeros(48000 * 12, np.float32), 48000)  # 1.1 MB: over max_file_mb 1
        os.symlink(wav, clips / "link.wav")
        (tmp / "secret.flac").write_bytes((clips / clip).read_bytes())
        summary = cmd.summary()
        cases = [
            ({"action": "add_example", "label": "cat purring", "clip": clip}, "unknown label 'cat purring'"),
            ({"action": "add_example", "clip": clip}, "'label'"),
            ({"action": "add_example", "label": "dog barking"}, "'clip'"),
            ({"action": "add_example", "label": "dog barking", "clip": "../secret.flac"}, "plain file name"),
            ({"action": "add_example", "label": "dog barking", "clip": f"{clips}/{clip}"}, "plain file name"),
            ({"action": "add_example", "label": "dog barking", "clip": ".."}, "plain file name"),
            ({"action": "add_example", "label": "dog barking", "clip": "x" * 5000 + ".flac"}, "plain file name"),
            ({"action": "add_example", "label": "dog barking", "clip": "nope.flac"}, "no such clip"),
            ({"action": "add_example", "label": "dog barking", "clip": "link.wav"}, "no link"),
            ({"action": "add_example", "label": "dog barking", "clip": "junk.flac"}, "not a readable audio file"),
            ({"action": "add_example", "label": "dog barking", "clip": "long.wav"}, "examples.max_file_mb"),
            ({"action": "add_example", "label": "dog barking", "clip": "config.yaml"}, "not a clip"),
            ({"action": "add_example", "label": "dog barking", "clip": 7}, "'clip'"),
            ({"action": "add_negative", "clip": "last"}, "needs a label"),
            ({"action": "add_negative", "label": "glass breaking", "clip": "last"}, "no event clip"),
            ({"action": "add_negative", "label": "", "clip": clip}, "'label'"),
            ({"action": "add_negative", "label": "dog barking", "clip": clip, "file": "x"}, "unknown key"),
        ]
        for command, reason in cases:
            answer = cmd.send(command)
            assert answer["ok"] is False, (command, answer)
            assert reason in answer["error"], (command, answer)
            assert "\n" not in answer["error"] and len(answer["error"]) < 400
        assert cmd.summary() == summary
        assert not (tmp / "taught").exists()
        assert run.monitor.scorer.examples.layout is None


def test_teaching_commands_need_clips(tiny_model: Path, tmp_path: Path, broker: Broker) -> None:
    wav = write_wav(tmp_path / "tone.wav", tone(60, 48000, 440, 0.3), 48000)
    cfg = make_config(tiny_model, broker, labels=["dog barking"], **TIMING)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            RunningMonitor(cfg, wav) as run:
        mq.wait_connected()
        run.wait_started()
        answer = Commander(mq).send({"action": "add_negative", "label": "dog barking", "clip": "x.flac"})
        assert answer["ok"] is False and "clips.enabled" in answer["error"]
        # Without clips there is nothing for the buttons to teach from: none are announced.
        mq.wait_for(f"homeassistant/binary_sensor/{NODE_ID}/dog_barking/config")
        assert not [m for m in mq.messages() if m.topic.startswith("homeassistant/button/")]


def test_buttons_are_announced_per_label_and_withdrawn_with_it(setup, broker: Broker) -> None:
    cfg, wav, _ = setup
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            RunningMonitor(cfg, wav) as run:
        mq.wait_connected()
        run.wait_started()
        cmd = Commander(mq)
        for label_id in ("dog_barking", "glass_breaking"):
            for key, action in (("false_alarm", "add_negative"), ("that_was_right", "add_example")):
                cfgmsg = mq.wait_for(f"homeassistant/button/{NODE_ID}/{label_id}_{key}/config",
                                     lambda m: bool(m.payload)).json()
                assert json.loads(cfgmsg["payload_press"]) == {"action": action, "label": label_id, "clip": "last"}
                assert cfgmsg["unique_id"] == f"sound_monitor_{NODE_ID}_{label_id}_{key}"
                assert cfgmsg["availability"][0]["topic"] == f"{PREFIX}/availability"
        since = len(mq.messages())
        assert cmd.send({"action": "remove_label", "label": "glass breaking"})["ok"] is True
        for key in ("false_alarm", "that_was_right"):
            mq.wait_for(f"homeassistant/button/{NODE_ID}/glass_breaking_{key}/config", lambda m: m.payload == b"",
                        since=since)


def test_labels_added_beside_an_examples_only_label(tiny_model: Path, tmp_path: Path, broker: Broker) -> None:
    # The dispatcher encodes a burst's new prompts itself; a label without prompts has none to encode.
    wav = write_wav(tmp_path / "tone.wav", tone(60, 48000, 440, 0.3), 48000)
    example = write_wav(tmp_path / "ex" / "beep.wav", tone(2, 48000, 880, 0.3), 48000)
    cfg = make_config(tiny_model, broker, labels=[{"name": "beep", "prompts": [], "examples": [str(example)]}],
                      **TIMING)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as mq, RunningMonitor(cfg, wav) as run:
        mq.wait_connected()
        run.wait_started()
        answer = Commander(mq).send({"action": "add_label", "name": "door knock"})
        assert answer["ok"] is True, answer
        assert run.monitor.scorer.labels == ["beep", "door knock", "silence", "speech"]
        wait_for(lambda: "door knock" in run.windows[-1].scores, message="the new label is not scored")
