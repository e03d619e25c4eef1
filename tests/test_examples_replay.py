"""Examples and negatives through the whole pipeline: a replay detects what a label was taught, and a negative
silences it. Monitors are built as the CLI builds them and run in-process over files; thresholds come from an
independent computation (transformers' pipeline objects and numpy), never from the code under test."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.audio import write_wav
from support.config import make_config, write_config
from support.fewshot import Reference, rule, sound
from support.runner import RunningMonitor

from monitor.offline import classify

TIMING = {"audio": {"window_seconds": 5.0, "hop_seconds": 1.0},
          "detection": {"min_hits": 1, "end_after_seconds": 3.0, "cooldown_seconds": 0.0}}
W = 5 * 48000


@pytest.fixture(scope="module")
def ref(tiny_model: Path) -> Reference:
    return Reference(tiny_model)


def clip(folder: Path, cls: str, take: int, seconds: float = 7.0) -> tuple[Path, np.ndarray]:
    path = write_wav(folder / f"{cls}-{take}.wav", sound(cls, take, seconds), 48000)
    return path, sf.read(str(path), dtype="float32")[0]  # what the monitor reads: the 16-bit values


def windows(x: np.ndarray) -> list[np.ndarray]:
    return [x[s : s + W] for s in range(0, len(x) - W + 1, 48000)]


def replay(cfg, wav: Path) -> RunningMonitor:
    run = RunningMonitor(cfg, wav, realtime=False).start()
    run.finish()
    return run


def starts(run: RunningMonitor, label: str) -> list:
    return [e for e in run.events if e.type == "start" and e.label == label]


def test_a_label_with_only_examples_fires_on_its_sound_and_not_on_others(tiny_model: Path, tmp_path: Path,
                                                                        ref: Reference) -> None:
    taught = [clip(tmp_path / "taught", "square_waves", k, 5.0)[0] for k in range(3)]
    heard = {cls: clip(tmp_path / "heard", cls, 5) for cls in ("square_waves", "tones", "noise")}
    vectors = [ref.embed_file(p) for p in taught]

    def expected(x: np.ndarray) -> list[float]:
        return [float(rule(0.0, max(float(ref.embed(w) @ v) for v in vectors), -np.inf)) for w in windows(x)]

    own = expected(heard["square_waves"][1])
    others = expected(heard["tones"][1]) + expected(heard["noise"][1])
    assert max(others) < min(own), (others, own)  # the synthetic classes are separable by their examples
    threshold = (max(others) + min(own)) / 2
    labels = [{"name": "my sound", "prompts": [], "examples": [str(tmp_path / "taught")], "threshold": threshold},
              {"name": "dog barking", "enabled": False}]  # scored, never fires
    cfg = make_config(tiny_model, labels=labels, **TIMING)

    run = replay(cfg, heard["square_waves"][0])
    assert [w.scores["my sound"] for w in run.windows] == pytest.approx(own, abs=2e-4)
    assert len(starts(run, "my sound")) == 1
    for cls in ("tones", "noise"):
        run = replay(cfg, heard[cls][0])
        assert run.windows and not starts(run, "my sound"), cls

    # classify --config scores the label as the monitor does
    out = io.StringIO()
    config = write_config(tmp_path / "c.yaml", tiny_model, labels=labels, **TIMING)
    assert classify.run([str(heard["square_waves"][0])], None, config, True, as_json=True, out=out) == 0
    rows = json.loads(out.getvalue())["files"][0]["windows"]
    assert [r["scores"]["my sound"] for r in rows] == pytest.approx(own, abs=2e-4)


@pytest.mark.parametrize("where", ["label", "top-level"])
def test_a_negative_stops_a_label_firing_on_that_sound(tiny_model: Path, tmp_path: Path, ref: Reference,
                                                       where: str) -> None:
    wav, x = clip(tmp_path, "tones", 5)
    negative = write_wav(tmp_path / "neg" / "tv.wav", x[:W], 48000)
    labels = ["dog barking", "glass breaking"]
    text = [ref.text(w, [*labels, "silence", "speech"])["dog barking"] for w in windows(x)]
    threshold = min(text) - 1e-3  # random weights: a threshold the text score is sure to cross on this sound
    plain = make_config(tiny_model, labels=labels, threshold=threshold, **TIMING)
    assert starts(replay(plain, wav), "dog barking")

    dog = {"name": "dog barking", "threshold": threshold}
    if where == "label":
        taught = make_config(tiny_model, labels=[{**dog, "negatives": [str(negative)]}, "glass breaking"], **TIMING)
    else:
        taught = make_config(tiny_model, labels=[dog, "glass breaking"], negatives=[str(tmp_path / "neg")],
                             **TIMING)
    run = replay(taught, wav)
    assert len(run.windows) == 3 and not starts(run, "dog barking")
    v = ref.embed_file(negative)
    for w, t, got in zip(windows(x), text, run.windows, strict=True):
        assert got.scores["dog barking"] == pytest.approx(float(rule(t, -np.inf, float(ref.embed(w) @ v))),
                                                          abs=2e-4)
        assert got.scores["dog barking"] < 0.05 * t  # a window like the negative keeps almost nothing
