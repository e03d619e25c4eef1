"""Home Assistant MQTT discovery against a real mosquitto, checked with a real subscriber.

Monitors run in-process (``Monitor`` + ``attach_integrations`` over a ``FileSource``) with the tiny random model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from support.audio import audio_file
from support.broker import Broker
from support.config import NODE_ID, PREFIX, make_config
from support.mqtt import MqttCollector, late_view, retained
from support.runner import RunningMonitor
from support.wait import wait_for

DISCOVERY_TOPIC = re.compile(r"^homeassistant/(binary_sensor|event|sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")


def _check_common(payload: dict[str, Any], device: dict[str, Any] | None) -> None:
    assert payload["availability"] == [
        {"topic": f"{PREFIX}/availability", "payload_available": "online", "payload_not_available": "offline"}
    ]
    dev = payload["device"]
    assert dev["identifiers"] and all(isinstance(i, str) for i in dev["identifiers"])
    for key in ("name", "model", "manufacturer", "sw_version"):
        assert isinstance(dev[key], str) and dev[key], key
    if device is not None:
        assert dev == device  # one device for every entity of the node
    assert payload["origin"]["name"] == "sound-monitor"


def test_discovery_configs_carry_what_home_assistant_requires(tiny_model: Path, broker: Broker, tmp_path: Path
                                                              ) -> None:
    cfg = make_config(tiny_model, broker, labels=[
        {"name": "dog barking", "threshold": 0.0},  # every window is a hit: an event at the first window
        {"name": "Glass breaking!", "enabled": False},
    ])
    wav, _ = audio_file(tmp_path, 3)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as live:
        live.wait_connected()
        mon = RunningMonitor(cfg, wav, realtime=False).start()
        assert mon.finish() == 0
        live.wait_for(f"{PREFIX}/dog_barking/event", lambda m: m.json()["event_type"] == "start")
        live.wait_for(f"{PREFIX}/dog_barking/event", lambda m: m.json()["event_type"] == "end")
        assert live.wait_for(f"{PREFIX}/level").text.startswith("-")

    with late_view(broker, "homeassistant/#", f"{PREFIX}/#") as late:
        configs = {t: json.loads(p) for t, p in retained(late, "homeassistant/#").items()}
        states = retained(late, f"{PREFIX}/+/state")
    expected = {
        f"homeassistant/binary_sensor/{NODE_ID}/dog_barking/config",
        f"homeassistant/binary_sensor/{NODE_ID}/glass_breaking/config",
        f"homeassistant/event/{NODE_ID}/dog_barking/config",
        f"homeassistant/event/{NODE_ID}/glass_breaking/config",
        f"homeassistant/sensor/{NODE_ID}/level/config",
    }
    assert set(configs) == expected
    assert all(DISCOVERY_TOPIC.match(t) for t in configs)
    device = configs[f"homeassistant/sensor/{NODE_ID}/level/config"]["device"]
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", u) for u in unique_ids)

    for slug, name in (("dog_barking", "dog barking"), ("glass_breaking", "Glass breaking!")):
        bs = configs[f"homeassistant/binary_sensor/{NODE_ID}/{slug}/config"]
        assert bs["device_class"] == "sound"
        assert bs["name"] == name
        assert bs["state_topic"] == f"{PREFIX}/{slug}/state"
        assert (bs["payload_on"], bs["payload_off"]) == ("ON", "OFF")
        assert slug in bs["unique_id"] and NODE_ID in bs["unique_id"]
        _check_common(bs, device)
        ev = configs[f"homeassistant/event/{NODE_ID}/{slug}/config"]
        assert ev["event_types"] == ["start", "end"]
        assert ev["state_topic"] == f"{PREFIX}/{slug}/event"
        _check_common(ev, device)
        assert states[f"{PREFIX}/{slug}/state"] in (b"ON", b"OFF")
    level = configs[f"homeassistant/sensor/{NODE_ID}/level/config"]
    assert level["state_topic"] == f"{PREFIX}/level"
    assert level["state_class"] == "measurement" and level["unit_of_measurement"] == "dBFS"
    _check_common(level, device)
    assert device["identifiers"] == [f"sound_monitor_{NODE_ID}"]


def test_discovery_is_republished_when_home_assistant_comes_online(tiny_model: Path, broker: Broker,
                                                                   tmp_path: Path) -> None:
    cfg = make_config(tiny_model, broker)
    wav, _ = audio_file(tmp_path, 60)
    topics = {f"homeassistant/{c}/{NODE_ID}/{o}/config"
              for c in ("binary_sensor", "event") for o in ("dog_barking", "glass_breaking")}
    topics.add(f"homeassistant/sensor/{NODE_ID}/level/config")
    with MqttCollector(broker.host, broker.port, ["homeassistant/#"]) as ha, RunningMonitor(cfg, wav):
        ha.wait_connected()
        wait_for(lambda: topics <= {m.topic for m in ha.messages() if m.payload}, timeout=60,
                 message="no initial discovery")
        since = len(ha.messages())
        ha.client.publish("homeassistant/status", "offline", qos=1)
        ha.client.publish("homeassistant/status", "online", qos=1)
        wait_for(lambda: topics <= {m.topic for m in ha.messages()[since:] if m.payload}, timeout=20,
                 message=lambda: f"not republished; got {[m.topic for m in ha.messages()[since:]]}")


def test_label_taken_out_of_the_config_loses_its_entities(tiny_model: Path, broker: Broker, tmp_path: Path) -> None:
    wav, _ = audio_file(tmp_path, 2)
    first = make_config(tiny_model, broker, labels=["dog barking", "glass breaking"])
    assert RunningMonitor(first, wav, realtime=False).start().finish() == 0
    gone = {f"homeassistant/{c}/{NODE_ID}/glass_breaking/config" for c in ("binary_sensor", "event")}
    with late_view(broker, "homeassistant/#") as late:
        assert gone <= set(retained(late, "homeassistant/#"))

    second = make_config(tiny_model, broker, labels=["dog barking"], mqtt={"publish_level": False})
    with MqttCollector(broker.host, broker.port, ["homeassistant/#", f"{PREFIX}/#"]) as live:
        live.wait_connected()
        assert RunningMonitor(second, wav, realtime=False).start().finish() == 0
        for topic in gone | {f"homeassistant/sensor/{NODE_ID}/level/config"}:
            live.wait_for(topic, lambda m: m.payload == b"")
        live.wait_for(f"{PREFIX}/glass_breaking/state", lambda m: m.payload == b"")
    with late_view(broker, "homeassistant/#", f"{PREFIX}/#") as late:
        assert set(retained(late, "homeassistant/#")) == {
            f"homeassistant/binary_sensor/{NODE_ID}/dog_barking/config",
            f"homeassistant/event/{NODE_ID}/dog_barking/config",
        }
        assert f"{PREFIX}/glass_breaking/state" not in retained(late, f"{PREFIX}/#")
        # The retained summary names what the node listens for now.
        summary = json.loads(retained(late, f"{PREFIX}/config")[f"{PREFIX}/config"])
        assert [lbl["name"] for lbl in summary["labels"]] == ["dog barking"]


def test_discovery_off_publishes_no_configs(tiny_model: Path, broker: Broker, tmp_path: Path) -> None:
    wav, _ = audio_file(tmp_path, 2)
    cfg = make_config(tiny_model, broker, home_assistant={"discovery": False})
    assert RunningMonitor(cfg, wav, realtime=False).start().finish() == 0
    with late_view(broker, "homeassistant/#", f"{PREFIX}/#") as late:
        assert retained(late, "homeassistant/#") == {}
        assert retained(late, f"{PREFIX}/availability") == {f"{PREFIX}/availability": b"offline"}
