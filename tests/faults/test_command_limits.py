"""Fast unit tests of the command dispatcher's bounds, with the in-memory publisher and a manual clock: rate,
size, depth, retained commands, bounded echoes, bursts applied as one version, the label count.

The same faults over a real broker and model are in ``test_commands.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from support.fakes import FakeInference, MemoryPublisher

from monitor.config import Config, ConfigError, parse_config
from monitor.labels import LabelRegistry
from monitor.mqtt.commands import ANSWER_BURST, COMMAND_BURST, COMMAND_RATE, CommandDispatcher
from monitor.mqtt.topics import Topics
from monitor.mqtt.validation import MAX_DEPTH, MAX_PAYLOAD, json_depth


class Clock:
    """A monotonic clock the test moves by hand (the rate limits never depend on real time here)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def config(**inference: Any) -> Config:
    return parse_config({
        "model": str(Path("no-model")),
        "labels": [{"name": "dog barking"}, {"name": "glass breaking"}],
        "background": ["silence"],
        "node": "unit-node",
        "inference": inference,
        "mqtt": {"host": "127.0.0.1", "topic_prefix": "unit/n"},
    })


class Rig:
    """A dispatcher (not started: the test drives both of its threads' entry points) on an in-memory publisher."""

    def __init__(self, **inference: Any) -> None:
        cfg = config(**inference)
        self.clock = Clock()
        self.registry = LabelRegistry.from_config(cfg)
        topics = Topics.from_config(cfg)
        self.pub = MemoryPublisher(topics)
        self.dispatcher = CommandDispatcher(cfg, self.registry, self.pub, topics, clock=self.clock)
        self.pub.handlers.append(self.dispatcher._on_message)
        self.command, self.response = topics.command, topics.response

    def answers(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.pub.on(self.response)]

    def raw_answers(self) -> list[bytes]:
        return [m.payload for m in self.pub.on(self.response)]

    def queued(self) -> int:
        return self.dispatcher._queue.qsize()

    def handle(self, *payloads: str | bytes) -> list[dict[str, Any]]:
        """Apply ``payloads`` as one burst (with an inference thread that applies versions); their answers."""
        before = len(self.answers())
        with FakeInference(self.registry):
            self.dispatcher.handle_burst([p.encode() if isinstance(p, str) else p for p in payloads])
        got = self.answers()[before:]
        assert len(got) == len(payloads), "every command gets exactly one answer"
        return got


def test_commands_over_the_rate_are_refused_and_the_refusals_themselves_bounded(caplog) -> None:
    rig = Rig()
    caplog.set_level(logging.INFO)
    for i in range(COMMAND_BURST + 10):
        rig.pub.deliver(rig.command, json.dumps({"action": "get_config", "id": i}))
    assert rig.queued() == COMMAND_BURST
    refused = rig.answers()
    assert [a["id"] for a in refused] == list(range(COMMAND_BURST, COMMAND_BURST + 10))
    assert all(not a["ok"] and "rate limited" in a["error"] for a in refused)

    # A flood: refusals are answered up to their own bucket, then only counted.
    for i in range(ANSWER_BURST):
        rig.pub.deliver(rig.command, json.dumps({"action": "get_config", "id": f"flood-{i}"}))
    assert len(rig.answers()) == ANSWER_BURST
    assert rig.dispatcher.unanswered == 10
    assert rig.queued() == COMMAND_BURST
    assert len([r for r in caplog.records if "refused before reading" in r.getMessage()]) == 1

    # The bucket refills with time: a second buys COMMAND_RATE commands.
    rig.dispatcher._queue.queue.clear()
    rig.clock.now += 1.0
    for i in range(int(COMMAND_RATE) + 1):
        rig.pub.deliver(rig.command, json.dumps({"action": "get_config", "id": f"later-{i}"}))
    assert rig.queued() == int(COMMAND_RATE)


def test_an_oversized_payload_is_refused_unread() -> None:
    rig = Rig()
    rig.pub.deliver(rig.command, json.dumps({"action": "get_config", "id": "big", "pad": "x" * MAX_PAYLOAD}))
    (answer,) = rig.answers()
    assert answer["ok"] is False and "too large" in answer["error"] and "id" not in answer
    assert rig.queued() == 0


def test_a_retained_command_is_refused_with_a_warning(caplog) -> None:
    rig = Rig()
    rig.pub.deliver(rig.command, '{"action": "remove_label", "label": "dog barking", "id": "r1"}', retained=True)
    (answer,) = rig.answers()
    assert answer["ok"] is False and answer["id"] == "r1" and "retained" in answer["error"]
    assert rig.queued() == 0 and rig.registry.current().names() == ["dog barking", "glass breaking"]
    assert any(r.levelno == logging.WARNING and "retained" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("payload", "error"), [
    ("[" * 100_000 + "]" * 100_000, "too large"),
    ('{"action": "get_config", "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper"),
    ('{"action": "get_config", "x": ' + "{\"a\": " * 9 + "1" + "}" * 9 + "}", "nested deeper"),
    ('{"action": "get_config", "id": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"action": "add_label", "name": "x", "prompts": ["' + "p" * 10_000 + '"]}', "at most 300"),
])
def test_hostile_payloads_get_one_bounded_answer(payload: str, error: str) -> None:
    rig = Rig()
    (answer,) = rig.handle(payload)
    assert answer["ok"] is False and error in answer["error"]
    assert len(rig.raw_answers()[-1]) < 600
    assert rig.registry.current().version == 1


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    assert json_depth('{"a": "[[[[[[[[[[[[[[\\"[[["}') == 1
    assert json_depth('{"a": [1, {"b": [2]}]}') == 4
    assert json_depth("[" * 100_000) == MAX_DEPTH + 1  # stops counting past the limit


@pytest.mark.parametrize(("cid", "echoed"), [
    ("abc", True), (7, True), (2.5, True), ("x" * 64, True),
    ("x" * 10_000, False), ({"nested": 1}, False), (True, False), (10**40, False), ([1, 2], False),
])
def test_an_id_is_echoed_only_when_short(cid: Any, echoed: bool) -> None:
    rig = Rig()
    (answer,) = rig.handle(json.dumps({"action": "get_config", "id": cid}))
    assert answer["ok"] is True
    if echoed:
        assert answer["id"] == cid
    else:
        assert "id" not in answer and answer["id_note"].startswith("id not echoed")
    assert len(rig.raw_answers()[-1]) < 2000  # the config summary, not the id


@pytest.mark.parametrize("command", [
    {"action": "set_threshold", "label": "k" * 10_000, "threshold": 0.5},
    {"action": "x" * 10_000},
    {"action": "set_threshold", "label": "dog barking", "threshold": ["v" * 10_000]},
    {"action": "set_threshold", "label": "dog barking", "threshold": "v" * 10_000},
    {"action": "enable", "label": "dog barking", **{f"key{i}" * 50: 1 for i in range(100)}},
])
def test_error_texts_quote_the_input_only_briefly(command: dict[str, Any]) -> None:
    rig = Rig()
    (answer,) = rig.handle(json.dumps(command))
    assert answer["ok"] is False and len(answer["error"]) <= 300
    assert len(rig.raw_answers()[-1]) < 600


def test_a_burst_is_applied_as_one_version_and_answered_in_order() -> None:
    rig = Rig()
    answers = rig.handle(
        '{"action": "add_label", "name": "door knock", "id": 1}',
        '{"action": "set_threshold", "label": "door knock", "threshold": 0.2, "id": 2}',
        '{"action": "add_label", "name": "Door Knock", "id": 3}',
        '{"action": "remove_label", "label": "dog barking", "id": 4}',
        '{"action": "get_config", "id": 5}',
    )
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]
    assert [a["ok"] for a in answers] == [True, True, False, True, True]
    assert "already exists" in answers[2]["error"]
    assert rig.registry.current().version == 2  # one change for the whole burst
    assert rig.registry.applied().names() == ["glass breaking", "door knock"]
    assert rig.registry.applied().find("door knock").threshold == 0.2
    assert [lbl["name"] for lbl in answers[4]["config"]["labels"]] == ["glass breaking", "door knock"]


def test_labels_are_bounded_by_max_labels() -> None:
    rig = Rig(max_labels=3)
    answers = rig.handle('{"action": "add_label", "name": "a"}', '{"action": "add_label", "name": "b"}')
    assert answers[0]["ok"] is True
    assert answers[1]["ok"] is False and "already 3 labels" in answers[1]["error"]
    assert "max_labels" in answers[1]["error"]
    with pytest.raises(ConfigError, match="max_labels"):
        parse_config({"model": "m", "labels": [{"name": n} for n in "abc"], "inference": {"max_labels": 2}})
