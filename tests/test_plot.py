"""``sound-monitor replay FILE --plot out.png``: the real command writes a PNG; the figure shows the run's data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.image import imread
from support.audio import beeps
from support.config import make_config, write_config
from support.runner import RunningMonitor
from support.scorers import LoudnessScorer

from monitor.sinks.plot import TimelineRecorder, timeline_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_replay_plot_writes_a_png(tiny_model: Path, tmp_path: Path) -> None:
    wav, _ = beeps(tmp_path, at=[2.0], length=6.0)
    cfg_path = write_config(tmp_path / "c.yaml", tiny_model,
                            labels=[{"name": "dog barking", "threshold": 0.0}, "glass breaking"])
    out = tmp_path / "plots" / "timeline.png"
    proc = subprocess.run([sys.executable, "-m", "monitor", "replay", str(wav), "--config", str(cfg_path),
                           "--plot", str(out), "--scores"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert any(ln["kind"] == "scores" and "level_dbfs" in ln for ln in lines)  # replay --scores as before
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(str(out))
    assert image.shape[:2] == (650, 1200)
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50  # drawn on, not blank


def test_timeline_shows_scores_thresholds_events_and_level(tiny_model: Path, tmp_path: Path) -> None:
    wav, _ = beeps(tmp_path, at=[2.0, 6.0], length=9.0)
    cfg = make_config(tiny_model, labels=[{"name": "beep", "threshold": 0.5}], background=["silence"],
                      detection={"min_hits": 1, "end_after_seconds": 1.0, "cooldown_seconds": 0.0})
    run = RunningMonitor(cfg, wav, realtime=False, scorer=LoudnessScorer())
    recorder = TimelineRecorder()
    run.monitor.sinks.append(recorder)
    assert run.start().finish() == 0
    fig = timeline_figure(recorder.points, recorder.events)
    scores_ax, level_ax = fig.axes[:2]

    line = next(ln for ln in scores_ax.get_lines() if ln.get_label() == "beep")  # background labels left out
    assert [t.get_text() for t in scores_ax.get_legend().get_texts()] == ["beep"]
    x, y = line.get_data()
    assert list(x) == [(w.start + w.end) / 2 for w in run.windows]
    assert list(y) == [w.scores["beep"] for w in run.windows]
    threshold = next(ln for ln in scores_ax.get_lines() if ln.get_linestyle() == "--")
    assert set(threshold.get_ydata()) == {0.5}
    starts = [e for e in run.events if e.type == "start"]
    ends = [e for e in run.events if e.type == "end"]
    assert len(starts) == 2 == len(ends)
    shaded = [p for p in scores_ax.patches if p.get_facecolor()[:3] == to_rgba(line.get_color())[:3]]
    spans = sorted((round(p.get_x(), 3), round(p.get_x() + p.get_width(), 3)) for p in shaded)
    assert spans == [(s.window_start, e.window_end) for s, e in zip(starts, ends, strict=True)]
    level = level_ax.get_lines()[0].get_ydata()
    assert [round(v, 6) for v in level] == [round(w.dbfs, 6) for w in run.windows]
    assert not any(math.isnan(v) for v in y)
