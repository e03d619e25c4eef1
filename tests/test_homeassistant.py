"""Home Assistant MQTT discovery against a real mosquitto, checked with a real subscriber.

Monitors run in-process (``Monitor`` + ``attach_integrations`` over a ``FileSource``) with the tiny random model.
Also home of the small helpers the other integration tests share (``make_config``, ``RunningMonitor``, ``sync``).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from helpers import Broker, MqttCollector, concat, noise, tone, wait_for, write_wav

from monitor.config import Config, parse_config
from monitor.mqtt.telemetry import Integrations, attach_integrations
from monitor.pipeline import Monitor
from monitor.records import Event, ScoredWindow
from monitor.sources.audiofile import FileSource

PREFIX = "test/ha-node"
NODE_ID = "test_node"
DISCOVERY_TOPIC = re.compile(r"^homeassistant/(binary_sensor|event|sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")


# ------------------------------------------------------------------------------------------------ shared helpers


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def make_config(model: Path, broker: Broker | None = None, labels: list[Any] | None = None,
                **sections: Any) -> Config:
    """A validated config: 1 s windows every 0.5 s (quick first window), min_hits 1, the tiny model.

    ``labels`` holds names or label dicts; ``sections`` are merged into the defaults (nested dicts merge).
    """
    labels = labels if labels is not None else ["dog barking", "glass breaking"]
    data: dict[str, Any] = {
        "model": str(model),
        "labels": [{"name": lbl} if isinstance(lbl, str) else lbl for lbl in labels],
        "background": ["silence", "speech"],
        "audio": {"window_seconds": 1.0, "hop_seconds": 0.5},
        "detection": {"min_hits": 1, "end_after_seconds": 2.0, "cooldown_seconds": 0.0},
        "inference": {"threads": 2},
        "node": "test-node",
    }
    if broker is not None:
        data["mqtt"] = {"host": broker.host, "port": broker.port, "topic_prefix": PREFIX}
    return parse_config(_merge(data, sections))


def audio_file(folder: Path, seconds: float, name: str = "in.wav") -> tuple[Path, np.ndarray]:
    """A 48 kHz float WAV of alternating tone and noise (windows are then bit-identical to its samples)."""
    parts, t = [], 0.0
    while t < seconds:
        parts += [tone(2, 48000, 440 + 100 * len(parts), 0.3), noise(2, 48000, 0.1, seed=len(parts))]
        t += 4
    x = concat(*parts)[: round(seconds * 48000)]
    return write_wav(folder / name, x, 48000, subtype="FLOAT"), x


class RunningMonitor:
    """``Monitor.run`` with its integrations on a background thread, over a file (paced in real time or not).

    ``windows`` and ``events`` collect what the monitor's listeners saw, in order.
    """

    def __init__(self, cfg: Config, wav: Path, realtime: bool = True, scorer: Any = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.windows: list[ScoredWindow] = []
        self.events: list[Event] = []

        def record(ev: Event) -> None:
            self.events.append(ev)
            if on_event is not None:
                on_event(ev)

        self.monitor = Monitor(cfg, lambda: FileSource(wav, realtime=realtime), live=False,
                               on_scores=self.windows.append, on_event=record, scorer=scorer)
        self.integrations: Integrations = attach_integrations(self.monitor, cfg)
        self.stop = threading.Event()
        self.rc: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-monitor", daemon=True)

    def _run(self) -> None:
        try:
            with self.integrations:
                self.rc = self.monitor.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by finish()
            self.error = exc

    def start(self) -> RunningMonitor:
        self._thread.start()
        return self

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the run to end (the file ends, or after ``stop``); its exit code."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "monitor did not finish"
        if self.error is not None:
            raise self.error
        assert self.rc is not None
        return self.rc

    def wait_started(self, timeout: float = 60.0) -> RunningMonitor:
        """Wait until windows flow."""
        wait_for(lambda: self.windows or self.error, timeout=timeout, message="no window scored")
        if self.error is not None:
            raise self.error
        return self

    def __enter__(self) -> RunningMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.finish()


def sync(collector: MqttCollector, topic: str = f"{PREFIX}/_test_sync") -> None:
    """Round trip through the broker: everything the broker had queued for ``collector`` before has arrived.

    The broker handles one client's packets in order, so once our own message comes back, the retained messages
    for our earlier subscriptions have been delivered too. ``topic`` must match one of the collector's filters.
    """
    token = uuid.uuid4().hex.encode()
    collector.client.publish(topic, token, qos=1)
    collector.wait_for(topic, lambda m: m.payload == token)


def retained(collector: MqttCollector, pattern: str) -> dict[str, bytes]:
    """Latest retained payload per topic matching ``pattern`` (empty payloads = deleted, left out)."""
    out: dict[str, bytes] = {}
    for m in collector.messages(pattern):
        if m.retain:
            out[m.topic] = m.payload
    return {t: p for t, p in out.items() if p}


def late_view(broker: Broker, *filters: str) -> MqttCollector:
    """A fresh subscriber that has received every retained message under ``filters`` (close it after use)."""
    c = MqttCollector(broker.host, broker.port, [*filters, f"{PREFIX}/_test_sync"])
    c.wait_connected()
    sync(c)
    return c


# ------------------------------------------------------------------------------------------------------- tests


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
    assert level["state_class"] == "measurement" and level["unit_of_measurement"] == "dB"
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
