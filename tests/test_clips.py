"""Event clips: the audio around each event start, named in the event, in a folder of bounded size.

Detection is driven by a scripted scorer (a loud window scores "beep" 0.9, a quiet one "silence" 0.9), so the
event times are known exactly and each clip can be compared sample by sample with the source file. Everything
else is real: the monitor, the windowing thread and its audio tap, the writer thread, soundfile, mosquitto.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from support.audio import beeps
from support.broker import Broker
from support.config import PREFIX, make_config
from support.mqtt import MqttCollector
from support.runner import RunningMonitor
from support.scorers import LoudnessScorer

from monitor.records import Event

RATE = 48000
"""The rate of :func:`support.audio.beeps` files and of the clips cut from them."""


def clip_config(model: Path, folder: Path, broker: Broker | None = None, **clips: object):
    return make_config(model, broker, labels=[{"name": "beep", "threshold": 0.5}], background=["silence"],
                       detection={"min_hits": 1, "end_after_seconds": 1.0, "cooldown_seconds": 0.0},
                       clips={"enabled": True, "folder": str(folder), "pre_roll_seconds": 1.0,
                              "post_roll_seconds": 2.0, **clips})


def test_clip_holds_pre_roll_event_and_post_roll_and_is_named_in_the_event(tiny_model: Path, broker: Broker,
                                                                           tmp_path: Path) -> None:
    wav, x = beeps(tmp_path, at=[3.0, 10.0], length=14.0)
    folder = tmp_path / "clips"
    cfg = clip_config(tiny_model, folder, broker)  # FLAC by default
    seen_by_listener: list[dict] = []
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/events"]) as mq:
        mq.wait_connected()
        # Like the CLI's stdout printer: a listener given to the Monitor sees the clip name too.
        run = RunningMonitor(cfg, wav, realtime=False, scorer=LoudnessScorer(),
                             on_event=lambda ev: seen_by_listener.append(ev.to_json_dict()))
        assert run.start().finish() == 0
        published = [m.json() for m in mq.messages()]
        starts = [e for e in run.events if e.type == "start"]
        # 1 s windows every 0.5 s: the first window touching each beep starts the event.
        assert [(e.window_start, e.window_end) for e in starts] == [(2.5, 3.5), (9.5, 10.5)]
        mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["type"] == "start" and "clip" in m.json())
    for event in starts:
        name = event.extra["clip"]
        assert name.endswith("_beep.flac") and "/" not in name and ":" not in name
        assert any(p.get("clip") == name for p in seen_by_listener)
        audio, rate = sf.read(str(folder / name), dtype="float32")
        assert rate == RATE
        lo, hi = round((event.window_start - 1.0) * RATE), round((event.window_end + 2.0) * RATE)
        assert len(audio) == hi - lo  # 1 s pre-roll + the event's window + 2 s post-roll
        assert np.max(np.abs(audio - x[lo:hi])) < 1e-4  # the very samples of the file
    assert {m["clip"] for m in published if m["type"] == "start"} == {e.extra["clip"] for e in starts}
    assert all("clip" not in e.extra for e in run.events if e.type == "end")
    assert sorted(p.name for p in folder.iterdir()) == sorted(e.extra["clip"] for e in starts)


def test_clip_cut_short_by_the_end_of_the_file_is_still_written(tiny_model: Path, tmp_path: Path) -> None:
    wav, x = beeps(tmp_path, at=[2.0], length=4.0)
    folder = tmp_path / "clips"
    cfg = clip_config(tiny_model, folder, format="wav", post_roll_seconds=10.0)
    run = RunningMonitor(cfg, wav, realtime=False, scorer=LoudnessScorer())
    assert run.start().finish() == 0
    start = next(e for e in run.events if e.type == "start")
    audio, _ = sf.read(str(folder / start.extra["clip"]), dtype="float32")
    lo = round((start.window_start - 1.0) * RATE)
    assert start.extra["clip"].endswith(".wav")
    assert len(audio) == len(x) - lo and np.max(np.abs(audio - x[lo:])) < 1e-4


def test_folder_stays_under_its_size_bound_oldest_deleted_first(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    old = folder / "2000-01-01T00-00-00.000Z_old.wav"
    old.write_bytes(b"\0" * 300_000)  # a clip from an earlier run, older than anything written now
    os.utime(old, (946684800, 946684800))
    unrelated = folder / "notes.txt"
    unrelated.write_text("not a clip: never deleted")
    # WAV, 16-bit: each clip is 1 + 1 + 2 = 4 s = 384,044 bytes; the bound (0.8 MiB) holds two of them.
    wav, _ = beeps(tmp_path, at=[2.0, 8.0, 14.0], length=20.0)
    bound = int(0.8 * 1024 * 1024)
    cfg = clip_config(tiny_model, folder, format="wav", max_total_mb=0.8)
    run = RunningMonitor(cfg, wav, realtime=False, scorer=LoudnessScorer())
    assert run.start().finish() == 0
    names = [e.extra["clip"] for e in run.events if e.type == "start"]
    assert len(names) == 3
    clips = [p for p in folder.iterdir() if p.suffix == ".wav"]
    assert {p.name for p in clips} == set(names[1:])  # the earlier run's clip and the oldest of this run went first
    assert sum(p.stat().st_size for p in clips) <= bound
    assert all(p.stat().st_size == 384_044 for p in clips)
    assert unrelated.exists()
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no half-written files left


def test_clip_name_is_unique_when_two_events_share_a_timestamp(tiny_model: Path, tmp_path: Path) -> None:
    from monitor.sinks.clips import ClipRecorder

    cfg = clip_config(tiny_model, tmp_path / "clips")
    rec = ClipRecorder(cfg)
    rec.folder.mkdir()
    rec.on_audio(0, np.zeros(RATE * 3, np.float32))

    def start() -> Event:
        return Event("start", "beep", "beep", 0.9, 0.9, "2026-01-02T03:04:05.678Z", 1.0, 2.0, "n")

    original = start()
    a, b = rec.annotate(original), rec.annotate(start())
    assert "clip" not in original.extra  # events are immutable: the clip name comes on a new one
    assert a.extra["clip"] == "2026-01-02T03-04-05.678Z_beep.flac"
    assert b.extra["clip"] == "2026-01-02T03-04-05.678Z_beep-2.flac"
