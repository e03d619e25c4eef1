"""Clips when the disk says no: a folder that cannot be written, a write that fails half way, leftovers.

Every fault here is one that stops root too (the tests run as root, for whom permissions do not count): a
folder replaced by a file (ENOTDIR), and a file size limit (``RLIMIT_FSIZE``, EFBIG) in a real ``replay``
subprocess, which makes a write fail after part of the file was written, as a full disk does.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.audio import audio_file, beeps
from support.config import make_config, write_config
from support.runner import RunningMonitor
from support.scorers import LoudnessScorer
from support.wait import wait_for

from monitor.config import Config
from monitor.labels import LabelRegistry
from monitor.records import Event
from monitor.runstats import PipelineStats
from monitor.sinks.clips import ClipRecorder

RATE = 48000
REPO = Path(__file__).resolve().parents[2]
CLIP_BYTES = 384_044  # a 16-bit mono WAV of 1 s pre-roll + a 1 s window + 2 s post-roll


def clip_config(folder: Path, model: Path = Path("unused-model"), **clips: object) -> Config:
    return make_config(model, labels=[{"name": "beep", "threshold": 0.5}], background=["silence"],
                       detection={"min_hits": 1, "end_after_seconds": 1.0, "cooldown_seconds": 0.0},
                       clips={"enabled": True, "folder": str(folder), "pre_roll_seconds": 1.0,
                              "post_roll_seconds": 2.0, "format": "wav", **clips})


class Feeder:
    """Drives a recorder as the windowing thread and the detector would, one step at a time."""

    def __init__(self, rec: ClipRecorder) -> None:
        self.rec = rec
        self.pos = 0  # samples fed so far
        self.n = 0

    def feed_to(self, seconds: float) -> None:
        end = round(seconds * RATE)
        if end > self.pos:
            self.rec.on_audio(self.pos, np.full(end - self.pos, 0.25, np.float32))
            self.pos = end

    def start(self, at: float) -> Event:
        """An event start whose window is [at, at + 1]; the clip wants [at - 1, at + 3]."""
        self.n += 1
        event = Event("start", "beep", "beep", 0.9, 0.9, f"2026-01-02T03:04:{self.n:02d}.000Z", at, at + 1.0, "n")
        return self.rec.annotate(event)


def clip_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "monitor.sinks.clips" and r.levelno >= logging.ERROR]


def test_a_failed_write_is_logged_once_leaves_no_file_and_no_clip_is_named_until_a_write_succeeds(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from monitor.sinks.metrics import Metrics

    folder = tmp_path / "clips"
    rec = ClipRecorder(clip_config(folder))
    rec.start()
    feed = Feeder(rec)
    feed.feed_to(4.0)
    first = feed.start(1.0)
    wait_for(lambda: (folder / first.extra["clip"]).exists(), message="first clip not written")

    folder.rename(tmp_path / "away")
    folder.write_text("the folder is gone: a file took its place")  # every write now fails, even for root
    assert "clip" in feed.start(4.0).extra  # named: nothing has failed yet (its own failure comes later)
    feed.feed_to(8.0)
    wait_for(lambda: rec.failed == 1, message="the write did not fail")
    third = feed.start(8.0)
    assert "clip" not in third.extra  # the last write failed: no name a consumer would fetch in vain
    feed.feed_to(12.0)
    wait_for(lambda: rec.failed == 2, message="the second write did not fail")
    errors = clip_errors(caplog)
    assert len(errors) == 1 and "Not a directory" in errors[0].getMessage(), [r.getMessage() for r in errors]
    assert all(r.exc_info is None for r in caplog.records)  # one line, no traceback

    folder.unlink()
    (tmp_path / "away").rename(folder)
    assert "clip" not in feed.start(12.0).extra  # still unnamed: only a success proves writing works again
    feed.feed_to(16.0)
    wait_for(lambda: len(list(folder.glob("*.wav"))) == 2, message="writing did not resume")
    fifth = feed.start(16.0)
    assert "clip" in fifth.extra
    feed.feed_to(20.0)
    wait_for(lambda: (folder / fifth.extra["clip"]).exists(), message="fifth clip not written")
    rec.close()
    assert (folder / fifth.extra["clip"]).stat().st_size == CLIP_BYTES
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no partial or probe file left

    cfg = clip_config(folder)
    metrics = Metrics(lambda: PipelineStats(), lambda: (True, "ok"), LabelRegistry.from_config(cfg), cfg.model, "n",
                      clips=rec)
    text = metrics.render().decode()
    assert "sound_monitor_clips_failed_total 2.0" in text and "sound_monitor_clips_written_total 3.0" in text


def test_a_folder_that_cannot_be_written_turns_clips_off_and_the_monitor_keeps_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    wav, _ = beeps(tmp_path, at=[2.0, 6.0], length=9.0)
    run = RunningMonitor(clip_config(tmp_path / "a-file" / "clips"), wav, realtime=False, scorer=LoudnessScorer())
    assert run.start().finish() == 0
    starts = [e for e in run.events if e.type == "start"]
    assert len(starts) == 2 and all("clip" not in e.extra for e in starts)
    errors = clip_errors(caplog)
    assert len(errors) == 1 and "clips are off" in errors[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_leftover_partial_files_are_removed_at_start_and_count_toward_the_size_bound(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    crashed = folder / ".2000-01-01T00-00-00.000Z_beep.wav.part"  # a run killed while writing
    crashed.write_bytes(b"\0" * 300_000)
    foreign = folder / ".notes.part"  # not a clip's: neither removed nor counted
    foreign.write_text("someone else's")
    old = folder / "2000-01-01T00-00-01.000Z_beep.wav"
    old.write_bytes(b"\0" * 100_000)
    os.utime(old, (946684801, 946684801))
    rec = ClipRecorder(clip_config(folder, max_total_mb=0.8))  # 838,860 bytes
    rec.start()
    assert not crashed.exists() and foreign.exists() and old.exists()

    # A partial file that appears later (another writer killed) counts like a clip, oldest first.
    stale = folder / ".1999-12-31T23-59-59.000Z_beep.wav.part"
    stale.write_bytes(b"\0" * 500_000)
    os.utime(stale, (946684700, 946684700))
    feed = Feeder(rec)
    feed.feed_to(4.0)
    name = feed.start(1.0).extra["clip"]
    rec.close()  # waits for the writer
    # 100,000 + 500,000 + 384,044 is over the bound: the partial file, the oldest, goes first.
    assert not stale.exists() and old.exists() and (folder / name).exists() and foreign.exists()


def _limit_file_size() -> None:
    # Files may not grow past 100 kB: a clip's write fails half way with EFBIG (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_replay_with_writes_failing_half_way_logs_once_and_leaves_no_partial_file(tiny_model: Path,
                                                                                 tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / ".2000-01-01T00-00-00.000Z_dog_barking.wav.part").write_bytes(b"\0" * 1000)
    cfg = write_config(tmp_path / "c.yaml", tiny_model,
                       labels=[{"name": "dog barking", "threshold": 0.0}, {"name": "glass breaking", "threshold": 0.0}],
                       clips={"enabled": True, "folder": str(folder), "format": "wav", "pre_roll_seconds": 1.0,
                              "post_roll_seconds": 2.0})
    wav, _ = audio_file(tmp_path, 6)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "monitor", "replay", str(wav), "--config", str(cfg)],
                          capture_output=True, text=True, timeout=300, env=env, preexec_fn=_limit_file_size)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    starts = [ln for ln in proc.stdout.splitlines() if '"type":"start"' in ln.replace(" ", "")]
    assert len(starts) == 2, proc.stdout  # both labels start at the first window: two clips, both too big
    errors = [ln for ln in proc.stderr.splitlines() if "clips: cannot write" in ln]
    assert len(errors) == 1 and "File too large" in errors[0], proc.stderr
    assert list(folder.iterdir()) == []  # the partial files of both writes and the earlier run's are gone
