"""Several sources, one model: the config, the fair queue, isolation between sources, and everything per source
(events, states, availability, Home Assistant devices, metrics, health, clips) against a real mosquitto.

The pipeline is the real one (windowing threads, fair queue, inference worker, detectors, sinks) over sources the
test drives block by block (``support/feeds.py``) and scripted scorers, so which window fires is known exactly and
nothing waits on a clock. Local microphones through PulseAudio, and network streams, are in
``test_sources_live.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.broker import Broker, free_port
from support.config import NODE_ID, PREFIX, make_config
from support.fakes import MemoryPublisher
from support.feeds import FailingSource, FeedSource, StallingSource, loud, quiet
from support.mqtt import MqttCollector, late_view, retained
from support.runner import RunningMonitor
from support.scorers import TwoLabelScorer
from support.wait import wait_for

from monitor.config import Config, ConfigError, parse_config
from monitor.core.queues import Closed, FairQueue
from monitor.labels import LabelRegistry
from monitor.mqtt.homeassistant import Discovery
from monitor.mqtt.topics import Topics
from monitor.pipeline import SourcePlan
from monitor.sinks.plot import TimelineRecorder

SECRET = "hunter2-secret"


def sources_config(model: Path, sources: list[dict[str, Any]], broker: Broker | None = None,
                   **sections: Any) -> Config:
    """Labels beep and buzz (background silence), for :class:`TwoLabelScorer`, over ``sources``."""
    return make_config(model, broker, labels=["beep", "buzz"], background=["silence"], sources=sources, **sections)


def feeds_for(cfg: Config, **special: FeedSource) -> tuple[dict[str, FeedSource], list[SourcePlan]]:
    """A fed source per configured source (``special`` ones by name), and the plans that open them."""
    assert cfg.sources is not None
    feeds = {s.name: special.get(s.name.replace("-", "_")) or FeedSource() for s in cfg.sources}
    return feeds, [SourcePlan(s, lambda f=feeds[s.name]: f) for s in cfg.sources]


def windows_of(run: RunningMonitor, source: str) -> list[int]:
    """Indexes of ``source``'s windows the sinks saw, in order."""
    return [w.index for w in list(run.windows) if w.source == source]


# --- config ----------------------------------------------------------------------------------------------------
def test_check_config_reports_sources_at_their_key_paths_and_never_a_password(tmp_path: Path) -> None:
    bad = write_raw(tmp_path / "bad.yaml", [
        {"name": "cam", "url": f"rtsp://admin:{SECRET}@cam.local/stream"},
        {"name": "cam", "device": 1},
        {"name": "Garden", "url": f"ftp://admin:{SECRET}@cam.local/x"},
        {"name": "porch", "url": f"rtsp://admin:{SECRET}@/x"},
        {"name": "door", "url": f"rtsp://admin:{SECRET}@cam.local:99999/x"},
        {"name": "attic", "device": 2, "url": "rtsp://cam/x"},
        {"name": "shed"},
        {"name": "events", "url": str(tmp_path / "missing.wav")},
    ])
    proc = check_config(bad)
    assert proc.returncode == 2
    assert SECRET not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert "  sources[2].name: must be 1-40 characters of a-z, 0-9, '_' and '-', starting with a letter or digit " \
           "(it becomes part of MQTT topics and Home Assistant ids)" in lines
    assert any(ln.startswith("  sources[2].url: scheme 'ftp' is not allowed") for ln in lines)
    assert "  sources[3].url: a rtsp URL needs a host (rtsp://host[:port]/path)" in lines
    assert any(ln.startswith("  sources[4].url: is not a valid URL") for ln in lines)
    assert "  sources[5]: give either device (a local input) or url (a stream or file), not both" in lines
    assert "  sources[6]: needs device (a local input) or url (a stream or file)" in lines
    assert "  sources[7].name: 'events' is reserved (a topic of the node itself); choose another name" in lines
    assert f"  sources[7].url: no such file: {tmp_path / 'missing.wav'}" in lines

    # Once each entry is right on its own, what spans them: duplicate names and ids, labels that do not exist,
    # keys of the other kind, audio.device beside sources.
    cross = write_raw(tmp_path / "cross.yaml", [
        {"name": "cam", "url": f"rtsp://admin:{SECRET}@cam.local/stream"},
        {"name": "cam", "device": 1},
        {"name": "front-door", "url": "rtsp://cam2/x", "labels": ["beep", "cat"], "thresholds": {"dog": 0.2}},
        {"name": "front_door", "device": None},
    ])
    lines = check_config(cross).stderr.splitlines()
    assert lines[1:] == [
        "  sources[1].name: 'cam' is used twice",
        "  sources[2].labels[1]: 'cat' is not one of the labels",
        "  sources[2].thresholds.dog: 'dog' is not one of the labels",
        "  sources[3].name: 'front_door' and 'front-door' have the same id 'front_door'",
    ]
    kinds = write_raw(tmp_path / "kinds.yaml", [
        {"name": "mic", "device": 1, "transport": "udp", "password_env": "PATH"},
        {"name": "cam", "url": "rtsp://cam/x", "samplerate": 16000},
    ])
    assert check_config(kinds).stderr.splitlines()[1:] == [
        "  sources[0].transport: only for url sources",
        "  sources[0].password_env: only for url sources",
        "  sources[1].samplerate: only for device sources",
    ]
    both = write_raw(tmp_path / "both.yaml", [{"name": "cam", "url": "rtsp://cam/x"}], audio={"device": 3})
    assert check_config(both).stderr.splitlines()[1:] == [
        "  audio.device: not used when sources are listed: give each source its own device"]


def test_check_config_lists_sources_with_the_password_redacted(tmp_path: Path) -> None:
    password = tmp_path / "cam-password"
    password.write_text(SECRET + "\n")
    ok = write_raw(tmp_path / "ok.yaml", [
        {"name": "driveway", "url": f"rtsp://admin:{SECRET}@cam.local:554/stream1"},
        {"name": "porch", "url": "rtsp://cam2.local/audio", "username": "admin", "password_file": str(password)},
        {"name": "kitchen", "device": "pulse", "labels": ["beep"], "thresholds": {"beep": 0.7}, "min_dbfs": -60},
    ])
    proc = check_config(ok)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "  source driveway: rtsp://admin:***@cam.local:554/stream1",
        "  source porch: rtsp://cam2.local/audio",
        "  source kitchen: device 'pulse'",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config({"labels": [{"name": "beep"}], "sources": [
            {"name": "cam", "url": f"rtsp://u:{SECRET}@cam/x", "password_env": "CAM_PASSWORD"}]})
    assert info.value.problems == ["sources[0].url: holds a password and password_file/password_env is set too: "
                                   "keep one"]


def test_a_config_without_sources_is_one_unnamed_source_with_todays_topics(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, audio={"device": "pulse"}, mqtt={"host": "h", "topic_prefix": PREFIX})
    (only,) = cfg.source_configs()
    assert (only.name, only.device) == ("", "pulse")
    topics = Topics.from_config(cfg)
    assert [topics.state("beep", only.name), topics.events_of(only.name), topics.input_of(only.name),
            topics.level_of(only.name), topics.label_event("beep", only.name)] == [
        f"{PREFIX}/beep/state", f"{PREFIX}/events", f"{PREFIX}/input", f"{PREFIX}/level", f"{PREFIX}/beep/event"]
    assert [topics.state("beep", "cam"), topics.events_of("cam"), topics.source_availability("cam")] == [
        f"{PREFIX}/cam/beep/state", f"{PREFIX}/cam/events", f"{PREFIX}/cam/availability"]


def write_raw(path: Path, sources: list[dict[str, Any]], **sections: Any) -> Path:
    import yaml

    data = {"model": "laion/clap-htsat-unfused", "labels": [{"name": "beep"}, {"name": "buzz"}],
            "sources": sources, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "check-config", str(path)], capture_output=True,
                          text=True, timeout=120)


# --- the fair queue --------------------------------------------------------------------------------------------
def test_fair_queue_takes_batches_round_robin_and_drops_from_the_source_with_most_pending() -> None:
    dropped: list[tuple[str, int]] = []
    q: FairQueue[int] = FairQueue(6, on_drop=lambda source, item: dropped.append((source, item)))
    flood, calm = q.producer("flood"), q.producer("calm")
    calm.put(1000)  # the oldest item of all, and it stays: the flood, with the most pending, pays for the flood
    for i in range(100):
        flood.put(i)
    assert len(q) == 6 and q.dropped_by("flood") == 95 and q.dropped_by("calm") == 0
    assert dropped[-1] == ("flood", 94)
    calm.put(1001)
    assert (q.depth("flood"), q.depth("calm"), q.dropped_by("calm")) == (4, 2, 0)
    assert q.get_batch(3) == [96, 1000, 97]  # round-robin, oldest first within a source
    assert q.get_batch(3) == [1001, 98, 99]  # the next batch starts after the last source served
    for i in range(3):
        calm.put(2000 + i)
    flood.put(5)
    flood.put(6)
    flood.put(7)
    # Full at 3 + 3: a tie for most pending costs the putting source its own oldest.
    flood.put(8)
    calm.put(2003)
    assert (q.dropped_by("calm"), q.dropped_by("flood")) == (1, 97)
    assert q.get_batch(6) == [2001, 6, 2002, 7, 2003, 8]
    assert q.dropped == 95 + 1 + 1 + 1


def test_fair_queue_closes_once_every_producer_finished_and_blocks_for_lossless_puts() -> None:
    q: FairQueue[int] = FairQueue(1)
    a, b = q.producer("a"), q.producer("b")
    a.put(1)
    done = threading.Event()

    def lossless() -> None:
        b.put(2, block=True)
        done.set()

    threading.Thread(target=lossless, daemon=True).start()
    assert not done.wait(0.2)  # no room: the lossless put waits (and drops nothing)
    assert q.get_batch(5) == [1]
    assert done.wait(30)
    a.close()
    assert q.get_batch(5, timeout=0) == [2]
    assert q.get_batch(5, timeout=0) == []  # b is still open: not closed yet
    b.close()
    with pytest.raises(Closed):
        q.get_batch(5, timeout=0)
    assert q.dropped == 0


# --- one model, detection per source ---------------------------------------------------------------------------
def test_each_source_detects_its_own_labels_with_its_own_thresholds(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [
        {"name": "all", "url": "rtsp://cam/a"},
        {"name": "only-beep", "url": "rtsp://cam/b", "labels": ["beep"]},
        {"name": "strict", "url": "rtsp://cam/c", "thresholds": {"Beep": 0.9}},
    ])
    feeds, plans = feeds_for(cfg)
    with RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer()) as run:
        for feed in feeds.values():
            feed.feed(loud(1.0), quiet(0.5))
        # Each source's windows are detected in order, so once its second window is seen its first one's events
        # are out: the set of starts is complete.
        wait_for(lambda: all(len(windows_of(run, name)) >= 2 for name in feeds), message=lambda: str(run.windows))
        starts = {(e.source, e.label) for e in run.events if e.type == "start"}
        assert starts == {("all", "beep"), ("all", "buzz"), ("only-beep", "beep"), ("strict", "buzz")}
        rules = {r.name: ([x.name for x in r.detector.rules], [x.threshold for x in r.detector.rules])
                 for r in run.monitor.sources}
        assert rules == {"all": (["beep", "buzz"], [0.5, 0.5]), "only-beep": (["beep"], [0.5]),
                         "strict": (["beep", "buzz"], [0.9, 0.5])}
        assert {w.source for w in run.windows} == set(feeds)
        assert all(e.to_json_dict()["source"] == e.source for e in run.events)


class GatedScorer(TwoLabelScorer):
    """Blocks its first call until ``gate`` is set: inference "falls behind" exactly when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def score(self, windows: np.ndarray) -> np.ndarray:
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait()
        return super().score(windows)


def test_a_source_that_fails_stalls_or_floods_never_touches_another_sources_windows(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [
        {"name": "good", "url": "rtsp://cam/good"},
        {"name": "flood", "url": "rtsp://cam/flood"},
        {"name": "stall", "url": "rtsp://cam/stall"},
        {"name": "fail", "url": "rtsp://cam/fail"},
    ], inference={"queue_size": 2, "max_batch": 4})
    stall = StallingSource()
    feeds, plans = feeds_for(cfg, stall=stall, fail=FailingSource().feed(loud(1.0)))
    scorer = GatedScorer()
    run = RunningMonitor(cfg, plans=plans, scorer=scorer).start()
    try:
        queue = run.monitor.windows
        feeds["good"].feed(loud(1.0))
        wait_for(scorer.waiting.is_set, message="inference never started")
        # Inference is stuck; one source floods the queue (30 s of audio at once, as a stream does after a hiccup).
        feeds["flood"].feed(loud(30.0))
        wait_for(lambda: queue.dropped_by("flood") > 0, message="the flood never filled the queue")
        feeds["good"].feed(quiet(0.5), loud(0.5), quiet(0.5))
        wait_for(lambda: queue.depth("good") + len(windows_of(run, "good")) >= 3, message="good's windows lost")
        assert queue.dropped_by("good") == 0
        assert len(queue) <= queue.capacity == 2 * 4
        scorer.gate.set()
        wait_for(lambda: len(windows_of(run, "good")) == 4, message=lambda: f"good: {windows_of(run, 'good')}")
        assert windows_of(run, "good") == [0, 1, 2, 3]  # every window, in order: no gap
        assert max(scorer.calls) == 4  # what was pending went through the one model as one batch
        wait_for(lambda: not run.monitor.sources[3].stage.alive)
        stats = {s.name: s for s in run.monitor.stats().sources}
        assert stats["good"].dropped == 0 and stats["flood"].dropped > 0
        assert run.monitor.stats().windows_dropped == stats["flood"].dropped
        assert stats["fail"].state == "down" and stats["good"].state == "up"
        assert stall.entered.is_set() and not windows_of(run, "stall")
        ok, reason = run.monitor.health()
        assert ok and reason.startswith("degraded: "), reason
        assert "fail is down: stopped: scripted source failure" in reason and "good" not in reason
        by_name = {r.name: r for r in run.monitor.sources}
        stalled = by_name["stall"]
        assert stalled.stage is not None
        # 20 s after its last read returned, the hung source counts as stalled (no clock is waited on).
        assert stalled.problem(stalled.stage.last_progress + 20) == "stall: no audio for 20 s"
        assert by_name["good"].problem(time.monotonic()) is None
    finally:
        scorer.gate.set()
        run.stop.set()
    assert run.finish() == 1  # a source thread that crashed is an error of the run, reported at its end


def test_the_plot_draws_one_timeline_per_source(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [{"name": "a", "url": "rtsp://cam/a"},
                                    {"name": "b", "url": "rtsp://cam/b", "thresholds": {"beep": 0.9}}])
    feeds, plans = feeds_for(cfg)
    run = RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer())
    recorder = TimelineRecorder(tmp_path / "plots" / "timeline.png", sources=cfg.sources or [])
    run.monitor.sinks.append(recorder)
    with run:
        feeds["a"].feed(loud(1.0), quiet(0.5))
        feeds["b"].feed(quiet(1.5))
        wait_for(lambda: len(windows_of(run, "a")) >= 2 and len(windows_of(run, "b")) >= 2)
    a = [p for p in recorder.points if p.source == "a"]
    b = [p for p in recorder.points if p.source == "b"]
    assert len(a) >= 2 and len(b) >= 2
    assert a[0].thresholds == {"beep": 0.5, "buzz": 0.5} and b[0].thresholds == {"beep": 0.9, "buzz": 0.5}
    assert {e.source for e in recorder.events} == {"a"}
    for name in ("a", "b"):  # drawn when the run stopped
        assert (tmp_path / "plots" / f"timeline-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plots" / "timeline.png").exists()


def test_health_fails_only_when_every_source_is_down(tmp_path: Path) -> None:
    cfg = sources_config(tmp_path, [{"name": "a", "url": "rtsp://cam/a"}, {"name": "b", "url": "rtsp://cam/b"}])
    feeds, plans = feeds_for(cfg)
    with RunningMonitor(cfg, plans=plans, scorer=TwoLabelScorer()) as run:
        wait_for(lambda: run.monitor.health() == (True, "ok"), message=lambda: str(run.monitor.health()))
        feeds["a"].set_state("down", "connection refused")
        assert run.monitor.health() == (True, "degraded: a is down: connection refused")
        feeds["b"].set_state("connecting")
        assert run.monitor.health() == (False, "all sources are down: a is down: connection refused; "
                                               "b is down: connecting")
        feeds["a"].set_state("up")
        assert run.monitor.health() == (True, "degraded: b is down: connecting")


# --- visible per source: MQTT, Home Assistant, metrics, health, clips -------------------------------------------
def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def metric(text: str, name: str, source: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f'{name}{{source="{source}"}} '):
            return float(line.split()[-1])
    return None


def test_every_source_has_its_events_states_availability_device_metrics_and_clips(
        tmp_path: Path, broker: Broker) -> None:
    port = free_port()
    cfg = sources_config(tmp_path, [
        {"name": "kitchen", "url": "rtsp://cam/kitchen"},
        {"name": "front-door", "url": "rtsp://cam/door", "labels": ["beep"]},
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
        {"name": "front-door", "kind": "url", "labels": {"beep": 0.5}}]


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
    assert beep["device"]["identifiers"] == [f"{node}_front_door"]
    assert beep["device"]["via_device"] == node
    assert beep["device"]["name"] == "Sound monitor test-node front-door"
    assert beep["state_topic"] == f"{PREFIX}/front-door/beep/state"
    assert beep["unique_id"] == f"{node}_front_door_beep_sound"
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
