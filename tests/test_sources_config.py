"""Several sources: the ``sources`` config (every problem at its key path, never a password) and the fair queue
that several sources share (round-robin batches, drops from the source with the most pending)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.config import PREFIX, make_config

from monitor.config import ConfigError, parse_config
from monitor.core.queues import Closed, FairQueue
from monitor.mqtt.topics import Topics

SECRET = "hunter2-secret"


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
        {"name": "yard", "url": "http://cam/a b.wav"},
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
    assert "  sources[8].url: has a space in it (write a space in a URL as %20)" in lines
    assert "  sources[1].name: 'cam' is used twice" in lines  # what spans entries is listed along, not after

    # What spans entries: duplicate names and ids, labels that do not exist, a label given twice or outside the
    # source's subset; keys of the other kind; audio.device beside sources.
    cross = write_raw(tmp_path / "cross.yaml", [
        {"name": "cam", "url": f"rtsp://admin:{SECRET}@cam.local/stream"},
        {"name": "cam", "device": 1},
        {"name": "front-door", "url": "rtsp://cam2/x", "labels": ["beep", "cat"], "thresholds": {"dog": 0.2}},
        {"name": "front_door", "device": None},
        {"name": "yard", "url": "rtsp://cam3/x", "labels": ["BEEP"], "thresholds": {"Beep": 0.2, "beep": 0.3}},
        {"name": "gate", "url": "rtsp://cam4/x", "labels": ["beep"], "thresholds": {"BUZZ": 0.2}},
    ])
    lines = check_config(cross).stderr.splitlines()
    assert lines[1:] == [
        "  sources[1].name: 'cam' is used twice",
        "  sources[2].labels[1]: 'cat' is not one of the labels",
        "  sources[2].thresholds.dog: 'dog' is not one of the labels",
        "  sources[3].name: 'front_door' and 'front-door' have the same id 'front_door'",
        "  sources[4].thresholds.beep: the same label as 'Beep'",
        "  sources[5].thresholds.BUZZ: 'BUZZ' is not in this source's labels",
    ]
    kinds = write_raw(tmp_path / "kinds.yaml", [
        {"name": "mic", "device": 1, "transport": "udp", "password_env": "PATH"},
        {"name": "cam", "url": "rtsp://cam/x", "samplerate": 16000},
        {"name": "web", "url": "http://cam/a.wav", "transport": "udp"},
    ])
    assert check_config(kinds).stderr.splitlines()[1:] == [
        "  sources[0].transport: only for url sources",
        "  sources[0].password_env: only for url sources",
        "  sources[1].samplerate: only for device sources",
        "  sources[2].transport: only for rtsp:// URLs",
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
        {"name": "gate", "url": f"http://cam3/cgi?cmd=Snap&user=admin&password={SECRET}"},  # Reolink's way
    ])
    proc = check_config(ok)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "  source driveway: rtsp://admin:***@cam.local:554/stream1",
        "  source porch: rtsp://cam2.local/audio",
        "  source kitchen: device 'pulse'",
        "  source gate: http://cam3/cgi?cmd=Snap&user=admin&password=***",
    ]
    # As run does before loading the model: a stream needs ffmpeg; without it, one line and exit 1.
    proc = check_config(ok, env={**os.environ, "PATH": str(tmp_path)})
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"{ok}: source driveway: 'ffmpeg' not found: network streams are read by ffmpeg " \
                          "(apt-get install ffmpeg)\n"
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
    data = {"model": "laion/clap-htsat-unfused", "labels": [{"name": "beep"}, {"name": "buzz"}],
            "sources": sources, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "check-config", str(path)], capture_output=True,
                          text=True, timeout=120, env=env)


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
