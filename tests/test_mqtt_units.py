"""Fast unit tests of the MQTT layer with an in-memory publisher: command validation and answers, discovery
payloads and the stale sweep, telemetry. What goes over a real wire is tested against mosquitto elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakes import FakeInference, MemoryPublisher

from monitor.config import Config, parse_config
from monitor.labels import Label, LabelRegistry
from monitor.mqtt.commands import QUEUE_SIZE, CommandDispatcher
from monitor.mqtt.homeassistant import Discovery
from monitor.mqtt.telemetry import Telemetry
from monitor.mqtt.topics import Topics
from monitor.records import ScoredWindow


def config(**mqtt: object) -> Config:
    return parse_config({
        "model": str(Path("no-model")),
        "labels": [{"name": "dog barking"}, {"name": "glass breaking", "threshold": 0.7}],
        "background": ["silence"],
        "node": "unit-node",
        "mqtt": {"host": "127.0.0.1", "topic_prefix": "unit/n", **mqtt},
    })


@pytest.fixture
def rig() -> tuple[CommandDispatcher, MemoryPublisher, LabelRegistry]:
    cfg = config()
    registry = LabelRegistry.from_config(cfg)
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics)
    return CommandDispatcher(cfg, registry, pub, topics), pub, registry


def answer(rig: tuple[CommandDispatcher, MemoryPublisher, LabelRegistry], payload: str | bytes) -> dict:
    dispatcher, pub, registry = rig
    before = len(pub.on(dispatcher.topics.response))
    with FakeInference(registry):
        dispatcher.handle(payload.encode() if isinstance(payload, str) else payload)
    sent = pub.on(dispatcher.topics.response)
    assert len(sent) == before + 1, "every command gets exactly one answer"
    return sent[-1].json()


@pytest.mark.parametrize(("payload", "error"), [
    (b"\xff\xfe", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"id": 3}', "'action' must be one of"),
    ('{"action": "reboot"}', "unknown action 'reboot'"),
    ('{"action": "set_threshold", "label": "dog barking", "threshold": 1.5}', "between 0 and 1"),
    ('{"action": "set_threshold", "label": "dog barking", "threshold": true}', "must be a number"),
    ('{"action": "set_threshold", "label": "dog barking"}', "'threshold' is required"),
    ('{"action": "set_threshold", "label": "cat", "threshold": 0.5}', "unknown label 'cat'"),
    ('{"action": "enable", "label": "dog barking", "colour": 1}', "unknown key(s) for enable: colour"),
    ('{"action": "add_label", "name": "Dog Barking!"}', "already exists"),
    ('{"action": "add_label", "name": "silence"}', "background label"),
    ('{"action": "add_label", "name": "x", "prompts": []}', "'prompts' must be a list"),
    ('{"action": "add_label", "name": "x", "enabled": "yes"}', "'enabled' must be true or false"),
    ('{"action": "add_label", "name": "' + "n" * 101 + '"}', "longer than 100"),
])
def test_bad_commands_are_refused_with_the_reason_and_change_nothing(rig, payload, error) -> None:
    before = rig[2].current()
    body = answer(rig, payload)
    assert body["ok"] is False
    assert error in body["error"]
    assert rig[2].current().labels == before.labels


def test_commands_change_the_registry_and_answer_once_applied(rig) -> None:
    _, _, registry = rig
    body = answer(rig, '{"action": "set_threshold", "label": "Glass Breaking", "threshold": 0.25, "id": "a"}')
    assert body == {"ok": True, "action": "set_threshold", "id": "a", "label": "glass breaking", "threshold": 0.25}
    assert registry.applied().find("glass_breaking").threshold == 0.25

    body = answer(rig, '{"action": "add_label", "name": "door knock", "prompts": ["knocking on a door"]}')
    assert body["ok"] and body["label_id"] == "door_knock" and body["threshold"] == 0.5
    assert registry.applied().find("door knock").prompts == ("knocking on a door",)

    assert answer(rig, '{"action": "disable", "label": "door_knock"}')["enabled"] is False
    assert registry.applied().find("door knock").enabled is False
    assert "door knock" not in registry.applied().thresholds()

    assert answer(rig, '{"action": "remove_label", "label": "dog barking"}')["ok"]
    assert registry.applied().names() == ["glass breaking", "door knock"]


def test_a_label_whose_prompts_cannot_be_encoded_is_refused_and_left_out(rig) -> None:
    _, _, registry = rig
    body = answer(rig, '{"action": "add_label", "name": "broken", "prompts": ["this will fail"]}')
    assert body["ok"] is False and "scripted failure" in body["error"]
    assert registry.applied().find("broken") is None and registry.current().find("broken") is None


def test_the_last_label_cannot_be_removed(rig) -> None:
    assert answer(rig, '{"action": "remove_label", "label": "dog barking"}')["ok"]
    body = answer(rig, '{"action": "remove_label", "label": "glass breaking"}')
    assert body["ok"] is False and "last label" in body["error"]


def test_get_config_answers_and_republishes_the_summary(rig) -> None:
    dispatcher, pub, _ = rig
    body = answer(rig, '{"action": "get_config", "id": 7}')
    assert body["ok"] and body["id"] == 7
    assert [lbl["name"] for lbl in body["config"]["labels"]] == ["dog barking", "glass breaking"]
    summary = pub.on(dispatcher.topics.config)[-1]
    assert summary.retain and summary.json() == body["config"]


def test_a_full_command_queue_answers_busy_instead_of_dropping() -> None:
    cfg = config()
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics)
    clock = [0.0]
    dispatcher = CommandDispatcher(cfg, LabelRegistry.from_config(cfg), pub, topics, clock=lambda: clock[0])
    for i in range(QUEUE_SIZE):  # not started: nothing takes commands off the queue
        clock[0] += 1.0  # slower than the rate limit, so only the queue's bound applies
        dispatcher._on_message(dispatcher.topics.command, f'{{"action": "get_config", "id": {i}}}'.encode())
    assert pub.on(dispatcher.topics.response) == []
    clock[0] += 1.0
    dispatcher._on_message(dispatcher.topics.command, b'{"action": "get_config", "id": "late"}')
    (busy,) = pub.on(dispatcher.topics.response)
    assert busy.json()["ok"] is False and busy.json()["id"] == "late" and "busy" in busy.json()["error"]


def discovery_rig(**mqtt: object) -> tuple[Discovery, MemoryPublisher, LabelRegistry]:
    cfg = config(**mqtt)
    registry = LabelRegistry.from_config(cfg)
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics, connected=False)
    disc = Discovery(cfg, registry, pub, topics)
    disc.start()
    return disc, pub, registry


def test_discovery_payloads() -> None:
    _, pub, _ = discovery_rig()
    pub.connect()
    configs = {m.topic: m.json() for m in pub.sent if m.topic.startswith("homeassistant/") and m.retain}
    assert set(configs) == {
        "homeassistant/binary_sensor/unit_node/dog_barking/config",
        "homeassistant/event/unit_node/dog_barking/config",
        "homeassistant/binary_sensor/unit_node/glass_breaking/config",
        "homeassistant/event/unit_node/glass_breaking/config",
        "homeassistant/sensor/unit_node/level/config",
    }
    bs = configs["homeassistant/binary_sensor/unit_node/dog_barking/config"]
    assert bs["state_topic"] == "unit/n/dog_barking/state" and bs["device_class"] == "sound"
    assert bs["availability"][0]["topic"] == "unit/n/availability"
    event = configs["homeassistant/event/unit_node/glass_breaking/config"]
    assert event["state_topic"] == "unit/n/glass_breaking/event"
    assert {"homeassistant/status", "homeassistant/+/unit_node/+/config"} <= set(pub.subscriptions)


def test_stale_entities_are_removed_only_after_the_round_trip() -> None:
    disc, pub, _ = discovery_rig(publish_level=False)
    pub.connect()
    (token,) = pub.on(disc.topics.discovery_sync)
    stale = "homeassistant/binary_sensor/unit_node/old_label/config"
    own = b'{"name": "%s", "availability": [{"topic": "unit/n/availability"}]}'  # this monitor's, by its prefix
    pub.deliver(stale, own % b"old")
    pub.deliver("homeassistant/sensor/unit_node/level/config", own % b"level")
    pub.deliver("homeassistant/event/unit_node/dog_barking/config", own % b"current")
    assert not disc.wait_swept(0) and pub.on(stale) == []  # nothing removed before the round trip
    pub.deliver(disc.topics.discovery_sync, b"someone else's token")
    assert not disc.wait_swept(0)
    pub.deliver(disc.topics.discovery_sync, token.payload)
    assert disc.wait_swept(0)
    assert [m.payload for m in pub.on(stale)] == [b""]
    assert [m.payload for m in pub.on("homeassistant/sensor/unit_node/level/config")] == [b""]
    assert [m.payload for m in pub.on("unit/n/old_label/state")] == [b""]
    assert all(m.payload for m in pub.on("homeassistant/event/unit_node/dog_barking/config"))


def test_runtime_label_changes_add_and_withdraw_entities() -> None:
    disc, pub, registry = discovery_rig()
    old = registry.applied()
    with FakeInference(registry):
        registry.remove("dog barking")
        version = registry.add(Label("door knock", "door_knock", ("door knock",), 0.5))
        assert registry.wait_applied(version, 30)
    disc.labels_changed(old, registry.applied())
    assert pub.on("homeassistant/binary_sensor/unit_node/door_knock/config")[0].json()["name"] == "door knock"
    assert [m.payload for m in pub.on("homeassistant/binary_sensor/unit_node/dog_barking/config")] == [b""]
    assert [m.payload for m in pub.on("unit/n/dog_barking/state")] == [b""]


def window(scores: dict[str, float]) -> ScoredWindow:
    return ScoredWindow(index=0, start=1.0, end=6.0, mono_end=6.0, dbfs=-23.456, scores=scores)


def test_telemetry_publishes_only_while_connected_and_the_top_scores() -> None:
    cfg = config(publish_scores=True, scores_top_n=2)
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics, connected=False)
    assert cfg.mqtt is not None
    tel = Telemetry(cfg.mqtt, pub, topics)
    tel.on_window(window({"a": 0.1, "b": 0.7, "c": 0.2}))
    assert pub.sent == []  # live readings are never queued while the broker is away
    pub.connected = True
    tel.on_window(window({"a": 0.1, "b": 0.7, "c": 0.2}))
    assert [m.payload for m in pub.on("unit/n/level")] == [b"-23.5"]
    (scores,) = pub.on("unit/n/scores")
    assert scores.json()["scores"] == {"b": 0.7, "c": 0.2} and scores.qos == 0 and not scores.retain
