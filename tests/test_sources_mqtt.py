"""Everything per source over a real mosquitto: events, states, availability, input, the retained summary, one
Home Assistant device per source (linked to the node), teaching buttons, ``/metrics`` series, ``/healthz``, clips,
and the sweep of a source taken out of the config. Sources are driven block by block (``support/feeds.py``) with a
scripted scorer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.broker import Broker, free_port
from support.config import NODE_ID, PREFIX
from support.fakes import MemoryPublisher
from support.feeds import feeds_for, loud, quiet, sources_config, windows_of
from support.http import http_get
from support.mqtt import MqttCollector, late_view, retained
from support.runner import RunningMonitor
from support.scorers import TwoLabelScorer
from support.wait import wait_for

from monitor.labels import LabelRegistry
from monitor.mqtt.homeassistant import Discovery
from monitor.mqtt.topics import Topics


def metric(text: str, name: str, source: str, label: str | None = None) -> float | None:
    labels = (f'label="{label}",' if label is not None else "") + f'source="{source}"'  # as the text sorts them
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return None


def test_every_source_has_its_events_states_availability_device_metrics_and_clips(
        tmp_path: Path, broker: Broker) -> None:
    port = free_port()
    cfg = sources_config(tmp_path, [
        {"name": "kitchen", "url": "rtsp://cam/kitchen"},
        {"name": "front-door", "url": "rtsp://cam/door", "labels": ["beep"], "thresholds": {"beep": 0.7}},
    ], broker, metrics={"port": port}, clips={"enabled": True, "folder": str(tmp_path / "clips"),
                                               "pre_roll_seconds": 0, "post_roll_seconds": 0})
    feeds, plans = feeds_for(cfg)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as sub:
        sub.wait_connected()
        run = RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer()).start()
        try:
            sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online")
            for name in ("kitchen", "front-door"):
                sub.wait_for(f"{PREFIX}/{name}/availability", lambda m: m.text == "online")
                feeds[name].feed(loud(1.0))
            kitchen = {sub.wait_for(f"{PREFIX}/kitchen/events", lambda m, lbl=lbl: m.json()["label"] == lbl).json()
                       ["label"]: 1 for lbl in ("beep", "buzz")}
            door = sub.wait_for(f"{PREFIX}/front-door/events").json()
            assert set(kitchen) == {"beep", "buzz"}
            assert (door["type"], door["label"], door["source"], door["node"]) == ("start", "beep", "front-door",
                                                                                   "test-node")
            assert door["clip"].endswith("_front-door_beep.flac")
            sub.wait_for(f"{PREFIX}/kitchen/buzz/state", lambda m: m.text == "ON")
            sub.wait_for(f"{PREFIX}/front-door/beep/state", lambda m: m.text == "ON")
            assert not sub.messages(f"{PREFIX}/front-door/buzz/#")  # not one of its labels
            assert not sub.messages(f"{PREFIX}/events") and not sub.messages(f"{PREFIX}/beep/#")

            # One source goes away: its own topics and the health say so, the other keeps going.
            feeds["front-door"].set_state("down", "connection refused")
            sub.wait_for(f"{PREFIX}/front-door/availability", lambda m: m.text == "offline")
            down = sub.wait_for(f"{PREFIX}/front-door/input", lambda m: m.json()["state"] == "down").json()
            assert (down["error"], down["source"]) == ("connection refused", "front-door")
            assert http_get(port, "/healthz") == (200, "degraded: front-door is down: connection refused\n")
            _, text = http_get(port, "/metrics")
            assert metric(text, "sound_monitor_source_up", "front-door") == 0.0
            assert metric(text, "sound_monitor_source_up", "kitchen") == 1.0
            assert metric(text, "sound_monitor_source_windows_total", "kitchen") == 1.0
            assert metric(text, "sound_monitor_source_windows_dropped_total", "kitchen") == 0.0
            assert metric(text, "sound_monitor_source_level_dbfs", "kitchen") == pytest.approx(-9.03, abs=0.01)
            # Each source's labels, with its own thresholds and its own latest scores.
            assert metric(text, "sound_monitor_threshold", "kitchen", "buzz") == 0.5
            assert metric(text, "sound_monitor_threshold", "front-door", "beep") == 0.7
            assert metric(text, "sound_monitor_threshold", "front-door", "buzz") is None
            assert metric(text, "sound_monitor_score", "front-door", "beep") is not None
            assert metric(text, "sound_monitor_score", "front-door", "buzz") is None
            seen = len(windows_of(run, "kitchen"))
            feeds["kitchen"].feed(quiet(0.5))
            wait_for(lambda: len(windows_of(run, "kitchen")) > seen, message="kitchen stopped with the door")
            mark = len(sub.messages())
            feeds["front-door"].set_state("up")
            sub.wait_for(f"{PREFIX}/front-door/availability", lambda m: m.text == "online", since=mark)
            wait_for(lambda: metric(http_get(port, "/metrics")[1], "sound_monitor_source_reconnects_total",
                                    "front-door") == 1.0)
            assert http_get(port, "/healthz") == (200, "ok\n")
            clips = sorted(p.name for p in wait_for(lambda: list((tmp_path / "clips").glob("*.flac"))))
            assert any(n.endswith("_front-door_beep.flac") for n in clips)
        finally:
            run.stop.set()
        assert run.finish() == 0
        for name in ("kitchen", "front-door"):
            sub.wait_for(f"{PREFIX}/{name}/availability", lambda m: m.text == "offline")
        sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "offline")
    clips = {p.name.split("_", 1)[1] for p in (tmp_path / "clips").glob("*.flac")}
    assert clips == {"kitchen_beep.flac", "kitchen_buzz.flac", "front-door_beep.flac"}
    with late_view(broker, f"{PREFIX}/#") as late:
        kept = {t.removeprefix(PREFIX + "/"): p for t, p in retained(late, f"{PREFIX}/#").items()}
    assert {t: p for t, p in kept.items() if t.endswith(("availability", "state"))} == {
        "availability": b"offline", "kitchen/availability": b"offline", "front-door/availability": b"offline",
        "kitchen/beep/state": b"OFF", "kitchen/buzz/state": b"OFF", "front-door/beep/state": b"OFF"}
    assert json.loads(kept["front-door/input"])["state"] == "up"
    assert json.loads(kept["config"])["sources"] == [
        {"name": "kitchen", "kind": "url", "labels": {"beep": 0.5, "buzz": 0.5}},
        {"name": "front-door", "kind": "url", "labels": {"beep": 0.7}}]


def test_a_source_taken_out_of_the_config_loses_its_entities_and_retained_topics(tmp_path: Path,
                                                                                 broker: Broker) -> None:
    both = sources_config(tmp_path, [{"name": "kitchen", "url": "rtsp://cam/k"},
                                     {"name": "garage", "url": "rtsp://cam/g"}], broker)
    one = sources_config(tmp_path, [{"name": "kitchen", "url": "rtsp://cam/k"}], broker)
    for cfg in (both, one):
        _, plans = feeds_for(cfg)
        with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub:
            run = RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer()).start()
            sub.wait_for(f"{PREFIX}/kitchen/input")  # up and running, the garage's input published too (if any)
            run.stop.set()
            assert run.finish() == 0
    with late_view(broker, f"{PREFIX}/#", "homeassistant/#") as late:
        kept = set(retained(late, f"{PREFIX}/#")) | set(retained(late, "homeassistant/#"))
    assert not [t for t in kept if "garage" in t], sorted(kept)
    assert f"homeassistant/binary_sensor/{NODE_ID}/kitchen--connectivity/config" in kept
    assert f"{PREFIX}/kitchen/beep/state" in kept


def test_home_assistant_gets_a_device_per_source_linked_to_the_node(tmp_path: Path, broker: Broker) -> None:
    cfg = sources_config(tmp_path, [
        {"name": "kitchen", "url": "rtsp://cam/kitchen"},
        {"name": "front-door", "url": "rtsp://cam/door", "labels": ["beep"]},
    ], broker)
    _, plans = feeds_for(cfg)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub, RunningMonitor(
            cfg, plans=plans, scorer=TwoLabelScorer()):
        sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online")  # discovery goes out before online
        with late_view(broker, "homeassistant/#") as late:
            configs = _discovery(late)
    node = f"sound_monitor_{NODE_ID}"
    assert sorted(configs) == sorted([
        "binary_sensor/kitchen-beep", "event/kitchen-beep", "binary_sensor/kitchen-buzz", "event/kitchen-buzz",
        "sensor/kitchen--level", "binary_sensor/kitchen--connectivity",
        "binary_sensor/front_door-beep", "event/front_door-beep", "sensor/front_door--level",
        "binary_sensor/front_door--connectivity", "binary_sensor/status",
    ])
    beep = configs["binary_sensor/front_door-beep"]
    assert beep["device"]["identifiers"] == [f"{node}-front_door"]
    assert beep["device"]["via_device"] == node
    assert beep["device"]["name"] == "Sound monitor test-node front-door"
    assert beep["state_topic"] == f"{PREFIX}/front-door/beep/state"
    assert beep["unique_id"] == f"{node}-front_door-beep_sound"
    assert beep["availability_mode"] == "all"
    assert [a["topic"] for a in beep["availability"]] == [f"{PREFIX}/availability", f"{PREFIX}/front-door/availability"]
    conn = configs["binary_sensor/kitchen--connectivity"]
    assert (conn["device_class"], conn["state_topic"], conn["payload_on"], conn["payload_off"]) == (
        "connectivity", f"{PREFIX}/kitchen/input", "up", "down")
    assert [a["topic"] for a in conn["availability"]] == [f"{PREFIX}/availability"]
    status = configs["binary_sensor/status"]
    assert status["device"]["identifiers"] == [node] and "via_device" not in status["device"]
    assert status["state_topic"] == f"{PREFIX}/availability" and "availability" not in status
    assert "binary_sensor/front_door-buzz" not in configs


def test_teaching_buttons_sit_once_per_label_on_the_nodes_device_and_follow_runtime_labels(tmp_path: Path) -> None:
    """Teaching changes a label everywhere, so with sources its buttons are the node's, not each source's."""
    cfg = sources_config(tmp_path, [{"name": "kitchen", "url": "rtsp://cam/k"},
                                    {"name": "porch", "url": "rtsp://cam/p", "labels": ["beep"]}],
                         mqtt={"host": "h", "topic_prefix": PREFIX}, clips={"enabled": True,
                                                                            "folder": str(tmp_path / "c")})
    registry = LabelRegistry.from_config(cfg)
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics, connected=False)
    discovery = Discovery(cfg, registry, pub, topics, input_entity=True)
    discovery.start()
    pub.connect()
    buttons = {m.topic.split("/")[3]: m.json() for m in pub.sent if m.topic.startswith("homeassistant/button/")}
    assert sorted(buttons) == ["beep_false_alarm", "beep_that_was_right", "buzz_false_alarm", "buzz_that_was_right"]
    assert {b["device"]["identifiers"][0] for b in buttons.values()} == {f"sound_monitor_{NODE_ID}"}
    assert json.loads(buttons["beep_false_alarm"]["payload_press"]) == {"action": "add_negative", "label": "beep",
                                                                       "clip": "last"}
    old = registry.applied()
    registry.remove("buzz")
    pub.sent.clear()
    discovery.labels_changed(old, registry.current())
    cleared = sorted(m.topic for m in pub.sent if not m.payload)
    ha = f"homeassistant/{{}}/{NODE_ID}/{{}}/config"
    assert cleared == sorted([
        ha.format("binary_sensor", "kitchen-buzz"), ha.format("event", "kitchen-buzz"), f"{PREFIX}/kitchen/buzz/state",
        ha.format("button", "buzz_false_alarm"), ha.format("button", "buzz_that_was_right"),
    ])


def _discovery(view: MqttCollector) -> dict[str, dict[str, Any]]:
    """``<component>/<object_id>`` → payload of this node's retained discovery configs."""
    out = {}
    for topic, payload in retained(view, f"homeassistant/+/{NODE_ID}/+/config").items():
        parts = topic.split("/")
        out[f"{parts[1]}/{parts[3]}"] = json.loads(payload)
    return out
