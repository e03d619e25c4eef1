"""The lean set-up (``bash scripts/install.sh --onnx``: ONNX Runtime, no torch) runs the monitor.

scripts/test.sh (what CI runs) creates that venv in ``.venv-lean`` and points ``SOUND_MONITOR_LEAN_PYTHON`` at its
python; without it these tests are skipped (run ``VENV=.venv-lean bash scripts/install.sh --onnx`` first).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.audio import chirp, concat, tone, write_wav
from support.config import BACKGROUND, REPLAY_LABELS, REPLAY_TIMING, write_config
from transformers import pipeline

LEAN = os.environ.get("SOUND_MONITOR_LEAN_PYTHON")
pytestmark = pytest.mark.skipif(not LEAN, reason="SOUND_MONITOR_LEAN_PYTHON is not set (scripts/test.sh sets it)")


def lean(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SOUND_MONITOR_CONFIG")}
    return subprocess.run([str(LEAN), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_the_lean_venv_has_no_torch() -> None:
    proc = lean("-c", "import importlib.util as u; print([m for m in ('torch', 'transformers') if u.find_spec(m)])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_lean_replay_matches_pipeline(tiny_model: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    x = concat(tone(5, 48000, 440), chirp(2, 48000))
    wav = write_wav(tmp_path / "seven.wav", x, 48000, subtype="FLOAT")
    cfg = write_config(tmp_path / "c.yaml", tiny_onnx, labels=REPLAY_LABELS, threshold=0.5,
                       inference={"backend": "onnx", "threads": 2, "cache_dir": str(tmp_path / "cache")},
                       **REPLAY_TIMING)
    proc = lean("-m", "monitor", "replay", str(wav), "--config", str(cfg), "--scores")
    assert proc.returncode == 0, proc.stderr
    scores = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(scores) == 3
    pipe = pipeline("zero-shot-audio-classification", model=str(tiny_model))
    ref = {r["label"]: r["score"] for r in pipe(x[:240000], candidate_labels=REPLAY_LABELS + BACKGROUND)}
    assert all(abs(scores[0]["scores"][lbl] - v) < 1e-5 for lbl, v in ref.items())
    assert np.isclose(sum(scores[0]["scores"].values()), 1.0, atol=1e-5)


def test_lean_says_what_torch_is_needed_for(tiny_onnx: Path, tmp_path: Path) -> None:
    proc = lean("-m", "monitor", "export", "some/model", str(tmp_path / "out"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "export needs torch, transformers and onnx" in proc.stderr
    wav = write_wav(tmp_path / "one.wav", tone(6, 48000, 440), 48000)
    cfg = write_config(tmp_path / "c.yaml", tiny_onnx, labels=REPLAY_LABELS, threshold=0.5, **REPLAY_TIMING)
    proc = lean("-m", "monitor", "replay", str(wav), "--config", str(cfg))  # the default backend: torch
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "inference.backend: torch needs torch and transformers" in proc.stderr
    assert "set inference.backend: onnx" in proc.stderr
