"""``sound-monitor enroll``: files copied into the taught folder, the cache warmed so the next start embeds
nothing, and bad input refused in one line with nothing copied. The command runs as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.audio import write_wav
from support.config import write_config
from support.fewshot import sound
from support.procs import monitor_env

from monitor.config import load_config
from monitor.inference.examples import ExampleSettings
from monitor.inference.loading import load_scorer
from monitor.labels import labels_from_config

TIMING = {"audio": {"window_seconds": 5.0, "hop_seconds": 1.0}}


def enroll(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "enroll", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=monitor_env())


@pytest.fixture
def config(tiny_model: Path, tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", tiny_model, labels=["doorbell", "dog barking"],
                        examples={"folder": str(tmp_path / "taught"), "cache_folder": str(tmp_path / "cache"),
                                  "max_files": 4, "max_file_seconds": 30},
                        **TIMING)


def files(folder: Path, cls: str, n: int) -> list[Path]:
    return [write_wav(folder / f"{cls}-{k}.wav", sound(cls, k, 3.0), 48000) for k in range(n)]


def test_enroll_copies_and_warms_the_cache(config: Path, tmp_path: Path) -> None:
    rings = files(tmp_path / "mine", "chirps", 2)
    proc = enroll("doorbell", *map(str, rings), "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "doorbell: 2 example(s) added" in proc.stdout and "cache: 2 file(s) embedded" in proc.stdout
    taught = tmp_path / "taught" / "doorbell"
    assert sorted(p.name for p in taught.iterdir()) == ["chirps-0.wav", "chirps-1.wav"]

    tv = files(tmp_path / "tv", "noise", 1)
    proc = enroll("dog_barking", str(tmp_path / "tv"), "--negative", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dog barking: 1 negative(s) added" in proc.stdout and "1 file(s) embedded, 2 already cached" in proc.stdout
    proc = enroll("--every-label", "--negative", str(tv[0]), "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0 and "every label: 1 negative(s) added" in proc.stdout, proc.stderr
    assert (tmp_path / "taught" / "_negatives" / "_all" / "noise-0.wav").is_file()

    # Again: nothing new.
    proc = enroll("doorbell", str(rings[0]), "--config", str(config), "--no-warm", cwd=tmp_path)
    assert proc.returncode == 0 and "0 example(s) added" in proc.stdout and "1 already there" in proc.stdout

    # The monitor's next start: it has the taught files and runs no audio forward for them.
    cfg = load_config(config)
    labels = labels_from_config(cfg)
    assert [len(lbl.examples) for lbl in labels.labels] == [2, 0] and len(labels.negatives) == 1
    scorer = load_scorer(cfg.model, cfg.inference, labels.scored(), examples=ExampleSettings.from_config(cfg))
    # 4 files (the TV clip is taught twice: for dog barking and for every label), 3 contents, none embedded
    assert scorer.examples.embedded == 0 and scorer.examples.cache.hits == 4
    assert scorer.examples.layout is not None and len(scorer.examples.layout.support) == 4
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3


def test_enroll_refuses_bad_input_in_one_line(config: Path, tmp_path: Path) -> None:
    good = files(tmp_path / "mine", "chirps", 1)[0]
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEfmt nonsense")
    long = write_wav(tmp_path / "long.wav", np.zeros(48000 * 40, np.float32), 48000)
    many = files(tmp_path / "many", "noise", 5)
    cases = [
        (["cat", str(good)], "unknown label 'cat'"),
        (["doorbell"], "give a label, then one or more audio files"),
        (["doorbell", str(tmp_path / "nope.wav")], "nope.wav: no such file"),
        (["doorbell", str(good), str(junk)], "junk.wav: not a readable audio file"),
        (["doorbell", str(long)], "examples.max_file_seconds"),
        (["doorbell", str(tmp_path / "many")], "examples.max_files (4)"),
        (["--every-label", str(good)], "--every-label goes with --negative"),
        (["doorbell", str(tmp_path / "taught")], "no such file"),
    ]
    for args, reason in cases:
        proc = enroll(*args, "--config", str(config), "--no-warm", cwd=tmp_path)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], (args, proc.stderr)
    assert not (tmp_path / "taught").exists()  # nothing half taught
    assert many
