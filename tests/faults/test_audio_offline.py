"""Bad audio offline: ``classify`` and ``evaluate`` treat NaN, ±inf and absurd samples as the live monitor does, give
one-line errors for what cannot be scored, stream long files in bounded memory, and a checkpoint that yields
non-finite scores never gets NaN into any output."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import load_file, save_file
from support.audio import noise, tone, write_wav
from support.config import make_config

from monitor.offline import classify
from monitor.offline import evaluate as ev

LABELS = ["dog barking", "glass breaking"]


def strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and -Infinity."""
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def one_line_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Error messages logged, each checked to be one line without a traceback."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    for r in errors:
        assert "\n" not in r.getMessage() and r.exc_info is None, r.getMessage()
    return [r.getMessage() for r in errors]


@pytest.fixture(scope="module")
def nan_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with a NaN in its audio projection: loads fine, every audio score comes out NaN."""
    folder = tmp_path_factory.mktemp("nan-clap")
    for f in tiny_model.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(tiny_model / "model.safetensors"))
    weights["audio_projection.linear2.bias"][0] = np.nan
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_classify_scores_around_invalid_samples_and_reports_unusable_files_in_one_line(
    tmp_path: Path, tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = tone(8.0, 16000, 440, 0.3)
    x[round(6.5 * 16000): round(6.6 * 16000)] = np.nan
    block = write_wav(tmp_path / "nan_block.wav", x, 16000, "FLOAT")
    nan_only = write_wav(tmp_path / "nan_only.wav", np.full(16000, np.nan, np.float32), 16000, "FLOAT")
    inf_only = write_wav(tmp_path / "inf_only.wav", np.full(16000, -np.inf, np.float32), 16000, "FLOAT")
    one_hz = write_wav(tmp_path / "one_hz.wav", noise(0.01, 1000), 1, "FLOAT")
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    out = io.StringIO()
    paths = [block, nan_only, inf_only, one_hz, fifo]
    assert classify.run(paths, LABELS, None, model=str(tiny_model), as_json=True, out=out) == 0
    report = strict(out.getvalue())
    [scored] = report["files"]
    # 5 s windows every 1 s: those at 0 and 1 s end before the NaN at 6.5-6.6 s, those at 2 and 3 s hold it.
    assert [w["start"] for w in scored["windows"]] == [0.0, 1.0]
    assert scored["invalid_windows"] == 2
    assert all(np.isfinite(list(w["scores"].values())).all() for w in scored["windows"])
    reasons = {Path(e["file"]).name: e["error"] for e in report["errors"]}
    assert "no valid audio" in reasons["nan_only.wav"] and "NaN" in reasons["nan_only.wav"]
    assert "no valid audio" in reasons["inf_only.wav"] and "-inf" in reasons["inf_only.wav"]
    assert "sample rate 1 Hz" in reasons["one_hz.wav"]
    assert "is not a regular file" in reasons["fifo.wav"]
    errors = one_line_errors(caplog)
    for p in paths[1:]:
        assert sum(str(p) in e for e in errors) == 1, errors


def test_classify_streams_a_long_file_in_bounded_memory(tmp_path: Path, tiny_model: Path) -> None:
    """A 1 h 8 kHz file (first 10 s audio, then NaN, so that the test scores little) raises classify's peak RSS by
    far less than the file (115 MB of float32, 690 MB resampled to 48 kHz): it is read block by block."""
    rate = 8000
    long = tmp_path / "long.wav"
    with sf.SoundFile(str(long), "w", rate, 1, subtype="FLOAT", format="WAV") as f:
        f.write(tone(10.0, rate, 440, 0.3))
        for _ in range(60):
            f.write(np.full(60 * rate, np.nan, np.float32))
    short = write_wav(tmp_path / "short.wav", tone(10.0, rate, 440, 0.3), rate, "FLOAT")
    script = (
        "import io, json, resource, sys\n"
        "from monitor.offline import classify\n"
        "def run(p):\n"
        "    out = io.StringIO()\n"
        "    classify.run([p], ['a', 'b'], None, model=sys.argv[1], as_json=True, out=out)\n"
        "    return json.loads(out.getvalue())['files'][0]\n"
        "run(sys.argv[2])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "f = run(sys.argv[3])\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(json.dumps({'grown_mb': grown / 1024, 'windows': len(f['windows']), 'invalid': f['invalid_windows']}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_model), str(short), str(long)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = strict(proc.stdout.strip().splitlines()[-1])
    assert got["windows"] == 6 and got["invalid"] == 3600  # 5 s windows every 1 s over 3610 s
    assert got["grown_mb"] < 100, got


def test_broken_checkpoint_never_publishes_nan(
    tmp_path: Path, nan_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Non-finite scores count as failed inference (live) and as an error naming the file (classify)."""
    import threading

    from monitor.sinks.stdout import StdoutSink
    from monitor.sources.audiofile import FileSource
    from monitor.wiring import build_monitor

    wav = write_wav(tmp_path / "ok.wav", tone(3.0, 48000, 440, 0.3), 48000, "FLOAT")
    cfg = make_config(nan_model, threshold=0.5)
    buf = io.StringIO()
    monitor = build_monitor(cfg, lambda: FileSource(wav), live=False, stdout=False,
                            extra_sinks=[StdoutSink(scores=True, out=buf)])
    assert monitor.run(threading.Event()) == 0
    lines = [strict(line) for line in buf.getvalue().splitlines()]
    assert lines == []  # failed windows are not reported, no event
    stats = monitor.stats()
    assert stats.inference_errors >= 1 and stats.windows_scored == 0
    assert any("non-finite scores" in m for m in one_line_errors(caplog))
    out = io.StringIO()
    assert classify.run([wav], LABELS, None, model=str(nan_model), as_json=True, out=out) == 1
    [error] = strict(out.getvalue())["errors"]
    assert "non-finite scores" in error["error"] and str(wav) in error["error"]


def test_evaluate_skips_clips_with_invalid_samples_with_the_reason(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data"
    for cls in ("dog", "rain"):
        write_wav(data / cls / "good.wav", noise(2.0, 16000, 0.1, seed=len(cls)), 16000, "FLOAT")
    bad = tone(2.0, 16000, 440, 0.3)
    bad[100:200] = np.inf
    write_wav(data / "dog" / "inf.wav", bad, 16000, "FLOAT")
    out_dir = tmp_path / "out"
    assert ev.run(data, model=str(tiny_model), out_dir=out_dir, out=io.StringIO()) == 0
    results = strict((out_dir / "results.json").read_text())
    [skipped] = results["skipped"]
    assert skipped["file"].endswith("inf.wav")
    assert "invalid samples" in skipped["reason"] and "+inf" in skipped["reason"]
    assert results["n_clips"] == 2
