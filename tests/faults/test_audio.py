"""Bad audio in the live path (``replay`` and the pipeline): NaN, ±inf, absurd values, clipping, short files and
paths that are not audio files. The corpus is generated at test time; every JSON line and MQTT payload is parsed
strictly (NaN and Infinity refused). Offline ``classify``/``evaluate`` on the same files: test_audio_offline.py.

Float WAV carries non-finite samples; FLAC (integer samples only) cannot hold NaN or inf, so it is not in the
corpus of non-finite files.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.audio import concat, noise, tone, write_wav
from support.broker import Broker
from support.config import PREFIX, make_config, write_config
from support.mqtt import MqttCollector, sync

from monitor.config import Config
from monitor.core.detection import Detector, LabelRule
from monitor.records import ScoredWindow
from monitor.sinks.metrics import Metrics
from monitor.sinks.stdout import StdoutSink
from monitor.sources.audiofile import FileSource
from monitor.wiring import build_monitor

RATE = 44100  # not 48 kHz: the streaming resampler (whose state NaN would poison) is in the path
PLAIN = {b"ON", b"OFF", b"online", b"offline"}  # the only payloads that are not JSON


def json_payloads(sub: MqttCollector) -> list[bytes]:
    """Every payload received but states, availability and the tests' own sync tokens (topics ``.../_*``)."""
    return [m.payload for m in sub.messages() if m.payload not in PLAIN and not m.topic.rsplit("/", 1)[-1][:1] == "_"]
# kind → (value, first and last second holding it, what the log names)
SPRINKLED = {"nan": (np.nan, "NaN"), "posinf": (np.inf, "+inf"), "neginf": (-np.inf, "-inf"),
             "huge": (1e30, "beyond ±1000")}


def strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as strict parsers (jq, browsers) do."""
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def good_audio(seconds: float, rate: int = RATE) -> np.ndarray:
    """Alternating tone and noise, within full scale."""
    half = seconds / 2
    return concat(tone(half, rate, 440, 0.3), noise(seconds - half, rate, 0.1, seed=3))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float, float]]:
    """name → (float WAV at 44.1 kHz, first and last second of its invalid samples)."""
    folder = tmp_path_factory.mktemp("bad-audio")
    out: dict[str, tuple[Path, float, float]] = {}
    for kind, (value, _) in SPRINKLED.items():
        x = good_audio(6.0)
        x[round(2.2 * RATE): round(2.6 * RATE): 101] = value
        bad = np.flatnonzero(~np.isfinite(x) | (np.abs(x) > 1000))
        out[kind] = (write_wav(folder / f"{kind}.wav", x, RATE, "FLOAT"), bad[0] / RATE, bad[-1] / RATE)
    out["nan_only"] = (write_wav(folder / "nan_only.wav", np.full(4 * RATE, np.nan, np.float32), RATE, "FLOAT"),
                       0.0, 4.0)
    x = good_audio(6.0)
    x[round(3.2 * RATE): round(3.7 * RATE)] = np.nan  # one NaN block in the middle of good audio
    out["nan_block"] = (write_wav(folder / "nan_block.wav", x, RATE, "FLOAT"), 3.2, 3.7 - 1 / RATE)
    x[round(3.2 * RATE): round(3.7 * RATE)] = 0.0  # the same file with silence where the NaN were
    out["zero_block"] = (write_wav(folder / "zero_block.wav", x, RATE, "FLOAT"), math.inf, -math.inf)
    return out


def run_file(cfg: Config, path: Path) -> tuple[Any, list[dict[str, Any]]]:
    """Run the monitor (built as the CLI builds it) over ``path`` in this thread; its stdout lines, parsed strictly."""
    buf = io.StringIO()
    monitor = build_monitor(cfg, lambda: FileSource(path), live=False, stdout=False,
                            extra_sinks=[StdoutSink(scores=True, out=buf)])
    assert monitor.run(threading.Event()) == 0
    return monitor, [strict(line) for line in buf.getvalue().splitlines()]


def overlaps(line: dict[str, Any], first: float, last: float) -> bool:
    return line["window_start"] <= last and line["window_end"] > first


@pytest.mark.parametrize("kind", [*SPRINKLED, "nan_only", "nan_block"])
def test_invalid_samples_skip_their_windows_counted_never_published(
    kind: str, corpus: dict[str, tuple[Path, float, float]], tiny_model: Path, broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, first, last = corpus[kind]
    cfg = make_config(tiny_model, broker, threshold=0.5, mqtt={"publish_scores": True})
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub:
        sub.wait_connected()
        monitor, lines = run_file(cfg, path)
        sync(sub)
        payloads = json_payloads(sub)
        assert payloads and all(strict(p) is not None for p in payloads)  # events, scores, level, config, discovery
        assert all(math.isfinite(v) for m in sub.messages(f"{PREFIX}/scores") for v in strict(m.payload)["scores"]
                   .values())
    windows = [ln for ln in lines if ln["kind"] == "scores"]
    invalid = [w for w in windows if w["skipped"] == "invalid"]
    assert windows and invalid
    # Exactly the windows that hold a bad sample are skipped; every other one is scored with finite numbers.
    assert [w["skipped"] == "invalid" for w in windows] == [overlaps(w, first, last) for w in windows]
    for w in windows:
        assert all(isinstance(v, float) and math.isfinite(v) for v in w["scores"].values())
        assert bool(w["scores"]) == (w["skipped"] is False)
    for e in (ln for ln in lines if ln["kind"] == "event"):
        assert not overlaps(e, first, last) or e["type"] == "end", e  # no event starts from a garbage window
    assert monitor.stats().windows_invalid == len(invalid)
    metrics = Metrics(monitor.stats, monitor.health, monitor.registry, cfg.model, cfg.node_name())
    assert f"sound_monitor_windows_invalid_total {float(len(invalid))}" in metrics.render().decode()
    text = SPRINKLED[kind][1] if kind in SPRINKLED else "NaN"
    logged = [r.getMessage() for r in caplog.records if "invalid audio" in r.getMessage()]
    assert logged and f"{path}:" in logged[0] and text in logged[0]


def test_replay_nan_block_cli_strict_json_and_resampler_not_poisoned(
    corpus: dict[str, tuple[Path, float, float]], tiny_model: Path, broker: Broker, tmp_path: Path
) -> None:
    """``replay --scores`` with MQTT: strict JSON everywhere; every window outside the NaN block scores exactly
    what it does with silence there, so no NaN stayed in the streaming resampler's state."""
    path, first, last = corpus["nan_block"]
    conf = write_config(tmp_path / "c.yaml", tiny_model, broker, threshold=0.5, mqtt={"publish_scores": True})
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub:
        sub.wait_connected()
        proc = subprocess.run([sys.executable, "-m", "monitor", "replay", str(path), "--config", str(conf), "--scores"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        sync(sub)
        payloads = json_payloads(sub)
    assert payloads and all(strict(p) is not None for p in payloads)
    assert "Traceback" not in proc.stderr
    lines = [strict(line) for line in proc.stdout.splitlines()]
    _, reference = run_file(make_config(tiny_model, threshold=0.5), corpus["zero_block"][0])
    got = [ln for ln in lines if ln["kind"] == "scores"]
    want = [ln for ln in reference if ln["kind"] == "scores"]
    assert len(got) == len(want) > 6
    for g, w in zip(got, want, strict=True):
        if overlaps(g, first, last):
            assert g["skipped"] == "invalid" and g["scores"] == {}
        else:
            assert g["skipped"] is False
            # 1e-5, the project parity bound: batches form differently run to run (float summation order)
            assert g["scores"] == pytest.approx(w["scores"], abs=1e-5), g["window_start"]


def test_beyond_full_scale_is_clipped_counted_and_scored_as_clipped(
    tmp_path: Path, tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = tone(3.0, RATE, 440, amplitude=4.0)  # a float file 12 dB over full scale: loud, but audio
    over = write_wav(tmp_path / "over.wav", x, RATE, "FLOAT")
    clipped = write_wav(tmp_path / "clipped.wav", np.clip(x, -1, 1), RATE, "FLOAT")
    cfg = make_config(tiny_model, threshold=0.5)
    monitor, lines = run_file(cfg, over)
    _, reference = run_file(cfg, clipped)
    assert monitor.stats().samples_clipped == int(np.count_nonzero(np.abs(x) > 1))
    assert monitor.stats().windows_invalid == 0
    got = [ln["scores"] for ln in lines if ln["kind"] == "scores"]
    want = [ln["scores"] for ln in reference if ln["kind"] == "scores"]
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-5)
    assert any("beyond full scale" in r.getMessage() and "clipped" in r.getMessage() for r in caplog.records)


def test_replay_of_a_file_shorter_than_a_window_scores_it_as_classify_does(tmp_path: Path, tiny_model: Path) -> None:
    from monitor.offline import classify

    wav = write_wav(tmp_path / "half.wav", good_audio(0.5), RATE, "FLOAT")
    conf = write_config(tmp_path / "c.yaml", tiny_model, threshold=0.5, audio={"window_seconds": 5.0})
    proc = subprocess.run([sys.executable, "-m", "monitor", "replay", str(wav), "--config", str(conf), "--scores"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    windows = [ln for ln in map(strict, proc.stdout.splitlines()) if ln["kind"] == "scores"]
    assert [(w["window_start"], w["window_end"], w["skipped"]) for w in windows] == [(0.0, 0.5, False)]
    out = io.StringIO()
    assert classify.run([wav], None, conf, config_required=True, as_json=True, out=out) == 0
    [row] = strict(out.getvalue())["files"][0]["windows"]
    assert windows[0]["scores"] == pytest.approx(row["scores"], abs=1e-5)


@pytest.mark.parametrize("what", ["directory", "fifo", "rate 1 Hz", "rate 1 MHz"])
def test_replay_refuses_what_is_not_an_audio_file_in_one_line(what: str, tmp_path: Path, tiny_model: Path) -> None:
    target = tmp_path / "target.wav"
    expected = {"directory": "is a directory", "fifo": "is not a regular file",
                "rate 1 Hz": "sample rate 1 Hz", "rate 1 MHz": "sample rate 1000000 Hz"}[what]
    if what == "directory":
        target.mkdir()
    elif what == "fifo":
        os.mkfifo(target)
    else:
        write_wav(target, good_audio(0.01), 1 if what == "rate 1 Hz" else 1_000_000, "FLOAT")
    conf = write_config(tmp_path / "c.yaml", tiny_model)
    proc = subprocess.run([sys.executable, "-m", "monitor", "replay", str(target), "--config", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{target}: {expected}" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_non_finite_values_reaching_output_are_caught_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Last line of defence: a non-finite number that got past every guard is written as null, not as NaN, and
    the sink does not raise."""
    out = io.StringIO()
    sink = StdoutSink(scores=True, out=out)
    sink.on_window(ScoredWindow(0, 0.0, 1.0, 1.0, -20.0, {"dog barking": math.nan, "glass breaking": math.inf}))
    assert strict(out.getvalue())["scores"] == {"dog barking": None, "glass breaking": None}
    assert any("non-finite" in r.getMessage() for r in caplog.records)


def test_mqtt_payloads_are_strict_json_even_with_a_non_finite_number(broker: Broker, tiny_model: Path) -> None:
    from monitor.mqtt.publisher import MqttPublisher
    from monitor.mqtt.topics import Topics

    cfg = make_config(tiny_model, broker)
    assert cfg.mqtt is not None
    publisher = MqttPublisher(cfg.mqtt, Topics(PREFIX))
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#"]) as sub:
        sub.wait_connected()
        publisher.start()
        try:
            publisher.publish(f"{PREFIX}/events", {"score": math.nan, "peak_score": -math.inf})
            msg = sub.wait_for(f"{PREFIX}/events")
        finally:
            publisher.stop()
    assert strict(msg.payload) == {"score": None, "peak_score": None}


def test_detector_never_counts_a_non_finite_score_as_a_hit() -> None:
    det = Detector([LabelRule("dog barking", "dog_barking", 0.5)], node="n", min_hits=1, end_after_seconds=1.0,
                   cooldown_seconds=0.0)
    for i, value in enumerate([math.nan, math.inf, -math.inf]):
        assert det.update(ScoredWindow(i, i, i + 1.0, i + 1.0, -20.0, {"dog barking": value})) == []
    assert not det.is_active("dog barking")


def test_numeric_options_are_bounded_with_one_line(tmp_path: Path) -> None:
    """A negative --block-size made soundfile read the whole file at once; every numeric option is bounded."""

    wav = write_wav(tmp_path / "a.wav", tone(1, 48000), 48000)
    for args in (["replay", str(wav), "--block-size", "-5"], ["replay", str(wav), "--block-size", "x"],
                 ["classify", str(wav), "--labels", "a", "--top-k", "0"],
                 ["evaluate", str(tmp_path), "--batch-size", "0"], ["evaluate", str(tmp_path), "--limit", "-1"]):
        proc = subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1].startswith("sound-monitor "), proc.stderr
        assert "Traceback" not in proc.stderr
