"""End to end: `sound-monitor replay` on generated audio, scores against the pipeline, events on a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.audio import chirp, concat, noise, tone, write_wav
from support.broker import Broker
from support.config import BACKGROUND, PREFIX, REPLAY_LABELS, REPLAY_TIMING, write_config
from support.mqtt import MqttCollector
from transformers import pipeline


def replay(*args: str, timeout: float = 120) -> tuple[list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "monitor", "replay", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


@pytest.fixture(scope="module")
def audio_48k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    x = concat(tone(4, 48000, 440), chirp(4, 48000), noise(4, 48000, 0.2, seed=5))
    path = write_wav(tmp_path_factory.mktemp("wav") / "twelve.wav", x, 48000, subtype="FLOAT")
    return path, x


@pytest.fixture(scope="module")
def pipe(tiny_model: Path):
    return pipeline("zero-shot-audio-classification", model=str(tiny_model))


def test_replay_scores_match_pipeline_and_event_reaches_broker(
    tiny_model: Path, audio_48k: tuple[Path, np.ndarray], pipe, broker: Broker, tmp_path: Path
) -> None:
    wav, x = audio_48k
    ref = {r["label"]: r["score"] for r in pipe(x[:240000], candidate_labels=REPLAY_LABELS + BACKGROUND)}
    # Random weights: derive the threshold from the reference so that the first window is a hit.
    threshold = ref["dog barking"] - 1e-4
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, threshold, **REPLAY_TIMING)
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub:
        sub.wait_connected()
        lines, _ = replay(str(wav), "--config", str(cfg), "--scores")
        scores = [ln for ln in lines if ln["kind"] == "scores"]
        assert len(scores) == 8
        assert [(s["window_start"], s["window_end"]) for s in scores] == [(i, i + 5) for i in range(8)]
        for lbl, value in ref.items():
            assert abs(scores[0]["scores"][lbl] - value) < 1e-5
        events = [ln for ln in lines if ln["kind"] == "event"]
        starts = [e for e in events if e["type"] == "start" and e["label"] == "dog barking"]
        assert starts and starts[0]["window_start"] == 0 and starts[0]["window_end"] == 5
        dog_start = ("start", "dog barking")
        msg = sub.wait_for(f"{PREFIX}/events", lambda m: (m.json()["type"], m.json()["label"]) == dog_start)
        body = msg.json()
        for key in ("type", "label", "score", "peak_score", "timestamp", "window_start", "window_end", "node"):
            assert key in body
        assert body["label"] == "dog barking" and body["node"] == "test-node"
        assert abs(body["score"] - ref["dog barking"]) < 1e-5
        sub.wait_for(f"{PREFIX}/dog_barking/state", lambda m: m.text == "ON")
        sub.wait_for(f"{PREFIX}/availability", lambda m: m.text == "offline")
    # Retained topics as a newcomer sees them after the run: offline, and states (ended at end of file) OFF.
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as late:
        late.wait_for(f"{PREFIX}/availability", lambda m: m.retain and m.text == "offline")
        late.wait_for(f"{PREFIX}/dog_barking/state", lambda m: m.retain and m.text == "OFF")
        late.wait_for(f"{PREFIX}/glass_breaking/state", lambda m: m.retain and m.text == "OFF")


@pytest.mark.parametrize("rate,channels", [(44100, 2), (16000, 1)])
def test_replay_scores_do_not_depend_on_block_size(tiny_model: Path, tmp_path: Path, rate: int,
                                                   channels: int) -> None:
    x = concat(tone(3, rate, 300, channels=channels), noise(4, rate, 0.1, seed=2, channels=channels))
    wav = write_wav(tmp_path / "in.wav", x, rate)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, labels=REPLAY_LABELS, threshold=0.5, **REPLAY_TIMING)
    runs = [replay(str(wav), "--config", str(cfg), "--scores", "--block-size", str(b))[0] for b in (160, 4096, 10**6)]
    first = [ln for ln in runs[0] if ln["kind"] == "scores"]
    assert len(first) == 3  # 7 s, window 5, hop 1
    for other in runs[1:]:
        got = [ln for ln in other if ln["kind"] == "scores"]
        assert [(s["window_start"], s["window_end"]) for s in got] == [(s["window_start"], s["window_end"])
                                                                       for s in first]
        for a, b in zip(first, got, strict=True):
            for lbl in a["scores"]:
                assert abs(a["scores"][lbl] - b["scores"][lbl]) < 1e-5


def test_replay_bad_file_is_named(tmp_path: Path, tiny_model: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_model, labels=REPLAY_LABELS, threshold=0.5, **REPLAY_TIMING)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    proc = subprocess.run([sys.executable, "-m", "monitor", "replay", str(bad), "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "broken.wav" in proc.stderr
