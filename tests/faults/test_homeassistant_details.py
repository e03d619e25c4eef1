"""Home Assistant details: what the entities are called and carry, how often the level is written, how often
discovery is sent, and two monitors sharing a node name without deleting each other's entities.

Payloads and telemetry are checked with the in-memory publisher (fast, exact); what goes over a real broker
(message counts on a fresh subscriber, the stale sweep of two monitors) against mosquitto.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.audio import audio_file
from support.broker import Broker
from support.config import NODE_ID, PREFIX, make_config
from support.fakes import MemoryPublisher
from support.mqtt import MqttCollector, late_view, retained, sync
from support.runner import RunningMonitor

from monitor.config import Config, parse_config
from monitor.labels import LabelRegistry
from monitor.mqtt.homeassistant import Discovery
from monitor.mqtt.telemetry import Telemetry
from monitor.mqtt.topics import Topics
from monitor.records import ScoredWindow

OTHER_PREFIX = "test/other-monitor"


def unit_config(**sections: Any) -> Config:
    data: dict[str, Any] = {
        "model": "laion/clap-htsat-unfused",
        "labels": [{"name": "dog barking"}],
        "node": "kitchen",
        "mqtt": {"host": "127.0.0.1", "topic_prefix": "unit/kitchen"},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return parse_config(data)


def announced(cfg: Config) -> dict[str, dict[str, Any]]:
    """Discovery topic → payload, as published on connect."""
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics, connected=False)
    Discovery(cfg, LabelRegistry.from_config(cfg), pub, topics).start()
    pub.connect()
    return {m.topic: m.json() for m in pub.sent if m.topic.startswith("homeassistant/") and m.payload}


def test_level_sensor_is_a_diagnostic_in_dbfs_and_no_entity_repeats_the_device_name() -> None:
    configs = announced(unit_config())
    level = configs["homeassistant/sensor/kitchen/level/config"]
    assert level["unit_of_measurement"] == "dBFS"
    assert level["entity_category"] == "diagnostic"
    device = level["device"]["name"]
    assert device == "Sound monitor kitchen"
    for payload in configs.values():
        # Home Assistant shows "<device> <entity>": no word of the device's name again in the entity's.
        words = set(device.lower().split())
        assert not words & set(payload["name"].lower().split()), payload["name"]
    assert level["name"] == "Level"


@pytest.mark.parametrize(("model", "shown"), [
    ("laion/clap-htsat-unfused", "laion/clap-htsat-unfused"),  # a hub id says what it is
    ("/var/cache/sound-monitor/models/clap-small", "clap-small"),  # a folder: its name, not the box's layout
    ("./models/clap-small/", "clap-small"),
])
def test_device_model_names_the_model_not_a_local_path(model: str, shown: str) -> None:
    configs = announced(unit_config(model=model))
    for payload in configs.values():
        assert payload["device"]["model"] == f"CLAP zero-shot ({shown})"
        assert "/var/" not in json.dumps(payload) and "./" not in json.dumps(payload)


@pytest.mark.parametrize(("metrics", "url"), [
    (None, None),
    ({"port": 9100, "bind": "0.0.0.0"}, f"http://{socket.gethostname()}:9100/metrics"),  # all interfaces: host name
    ({"port": 9100}, None),  # the default bind is loopback
    ({"port": 9100, "bind": "192.168.1.5"}, "http://192.168.1.5:9100/metrics"),
    ({"port": 9100, "bind": "fd00::5"}, "http://[fd00::5]:9100/metrics"),
    ({"port": 9100, "bind": "127.0.0.1"}, None),  # only this box could follow it
])
def test_configuration_url_points_at_the_metrics_when_they_are_reachable(metrics: dict | None, url: str | None
                                                                         ) -> None:
    cfg = unit_config(**({"metrics": metrics} if metrics else {}))
    for payload in announced(cfg).values():
        assert payload["device"].get("configuration_url") == url


def window(end: float, dbfs: float) -> ScoredWindow:
    return ScoredWindow(index=int(end), start=end - 5, end=end, mono_end=end, dbfs=dbfs, scores={})


def test_level_is_published_on_change_past_the_deadband_and_at_most_once_per_interval() -> None:
    cfg = unit_config(mqtt={"level_deadband_db": 2.0, "level_interval_seconds": 5.0})
    assert cfg.mqtt is not None
    pub = MemoryPublisher(Topics.from_config(cfg))
    tel = Telemetry(cfg.mqtt, pub, Topics.from_config(cfg))
    # One window a second for 30 s: quiet with jitter, a loud stretch from 10 s, a dropout at 20 s.
    levels = {t: -60.0 + (0.5 if t % 2 else -0.5) for t in range(5, 35)}
    levels.update({t: -20.0 for t in range(12, 20)})
    levels[21] = -90.0
    for t in sorted(levels):
        if t == 25:
            pub.connected = False  # the broker goes away: nothing is sent, and the next window is sent at once
        if t == 27:
            pub.connected = True
        tel.on_window(window(float(t), levels[t]))
    sent = [float(m.payload) for m in pub.on("unit/kitchen/level")]
    # 5: first; 6-11 jitter, under the deadband; 12: loud, but the interval (from 5) has passed only at 10 → sent
    # at 12; 13-16 within the interval; 17 same level; 20: back to quiet, 8 s after → sent; 21 (-90) within 5 s of
    # 20 → held; 25 held; 27: first after the reconnect; 28-34 jitter, under the deadband.
    assert sent == [levels[5], -20.0, levels[20], levels[27]]
    assert all(m.qos == 0 and not m.retain for m in pub.on("unit/kitchen/level"))


def test_level_every_window_with_deadband_and_interval_zero() -> None:
    cfg = unit_config(mqtt={"level_deadband_db": 0, "level_interval_seconds": 0})
    assert cfg.mqtt is not None
    pub = MemoryPublisher(Topics.from_config(cfg))
    tel = Telemetry(cfg.mqtt, pub, Topics.from_config(cfg))
    for t in range(5, 15):
        tel.on_window(window(float(t), -30.0))
    assert len(pub.on("unit/kitchen/level")) == 10


def test_each_discovery_config_and_the_summary_are_published_once_at_start(tiny_model: Path, broker: Broker,
                                                                           tmp_path: Path) -> None:
    cfg = make_config(tiny_model, broker)
    wav, _ = audio_file(tmp_path, 2)
    with MqttCollector(broker.host, broker.port, ["homeassistant/#", f"{PREFIX}/#"]) as fresh:
        fresh.wait_connected()
        # Home Assistant set up with a retained birth message: the monitor finds "online" there as it connects,
        # which is no news (it announces on every connect anyway).
        fresh.client.publish("homeassistant/status", "online", qos=1, retain=True).wait_for_publish(10)
        assert RunningMonitor(cfg, wav, realtime=False).start().finish() == 0
        sync(fresh)  # everything the monitor sent has arrived
        counts = Counter(m.topic for m in fresh.messages() if m.payload and m.topic.endswith("/config"))
    expected = {f"homeassistant/{c}/{NODE_ID}/{o}/config" for c in ("binary_sensor", "event")
                for o in ("dog_barking", "glass_breaking")}
    expected |= {f"homeassistant/sensor/{NODE_ID}/level/config", f"{PREFIX}/config"}
    assert counts == dict.fromkeys(expected, 1)


def test_two_monitors_with_one_node_name_and_two_prefixes_keep_each_others_entities(
        tiny_model: Path, broker: Broker, tmp_path: Path) -> None:
    wav, _ = audio_file(tmp_path, 2)
    # Same node (so the same discovery topics' node id), other prefix, other labels; only the first has a level.
    first = make_config(tiny_model, broker, labels=["dog barking"])
    second = make_config(tiny_model, broker, labels=["glass breaking"],
                         mqtt={"topic_prefix": OTHER_PREFIX, "publish_level": False})
    firsts = {f"homeassistant/{c}/{NODE_ID}/dog_barking/config" for c in ("binary_sensor", "event")}
    firsts.add(f"homeassistant/sensor/{NODE_ID}/level/config")
    seconds = {f"homeassistant/{c}/{NODE_ID}/glass_breaking/config" for c in ("binary_sensor", "event")}

    for cfg in (first, second, first):  # each run sweeps at connect, seeing the other's retained configs
        assert RunningMonitor(cfg, wav, realtime=False).start().finish() == 0
    with late_view(broker, "homeassistant/#") as late:
        configs = {t: json.loads(p) for t, p in retained(late, "homeassistant/#").items()}
    assert set(configs) == firsts | seconds
    assert {configs[t]["availability"][0]["topic"] for t in seconds} == {f"{OTHER_PREFIX}/availability"}
    assert {configs[t]["availability"][0]["topic"] for t in firsts} == {f"{PREFIX}/availability"}

    # Its own stale entities are still swept: the first monitor without its level sensor removes it.
    assert RunningMonitor(make_config(tiny_model, broker, labels=["dog barking"], mqtt={"publish_level": False}),
                          wav, realtime=False).start().finish() == 0
    with late_view(broker, "homeassistant/#") as late:
        assert set(retained(late, "homeassistant/#")) == (firsts - {f"homeassistant/sensor/{NODE_ID}/level/config"}
                                                          ) | seconds


def test_a_retained_home_assistant_online_is_not_answered_a_live_one_is() -> None:
    cfg = unit_config()
    topics = Topics.from_config(cfg)
    pub = MemoryPublisher(topics, connected=False)
    Discovery(cfg, LabelRegistry.from_config(cfg), pub, topics).start()
    pub.connect()
    level = "homeassistant/sensor/kitchen/level/config"
    assert len(pub.on(level)) == 1
    pub.deliver("homeassistant/status", b"online", retained=True)  # replayed by the broker as we subscribed
    assert len(pub.on(level)) == 1
    pub.deliver("homeassistant/status", b"online")  # Home Assistant (re)started
    assert len(pub.on(level)) == 2
