"""Audio examples and negatives per label: the scoring rule against an independent computation, parity for labels
without examples, the embedding cache (reused at restart, invalidated by a change, bounded) and bad input.

Every scorer here is the real one loaded by ``load_scorer`` from the tiny random checkpoint; the references use
transformers' pipeline objects and numpy (tests/support/fewshot.py).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.audio import concat, noise, tone, write_wav
from support.config import make_config, write_config
from support.fewshot import Reference, rule, sound
from support.procs import monitor_env

from monitor.config import InferenceConfig
from monitor.inference.examples import ExampleSettings
from monitor.inference.loading import load_scorer
from monitor.labels import LabelPrompts, labels_from_config

TIMING = {"audio": {"window_seconds": 5.0, "hop_seconds": 1.0}}


@pytest.fixture(scope="module")
def ref(tiny_model: Path) -> Reference:
    return Reference(tiny_model)


def wav(folder: Path, cls: str, take: int, seconds: float = 5.0) -> Path:
    return write_wav(folder / f"{cls}-{take}.wav", sound(cls, take, seconds), 48000)


def read16(path: Path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="float32")[0]


def scorer_for(cfg, cache: Path | None):
    settings = ExampleSettings.from_config(cfg) if cache is not None else ExampleSettings()
    return load_scorer(cfg.model, InferenceConfig(threads=2), labels_from_config(cfg).scored(), examples=settings)


def test_scores_follow_the_documented_rule(tiny_model: Path, tmp_path: Path, ref: Reference) -> None:
    ex = tmp_path / "ex"
    learned = [wav(ex / "learned", "chirps", k) for k in range(3)]
    glass = [wav(ex / "glass", "tones", k) for k in range(2)]
    dog_neg = wav(ex / "dogneg", "noise", 0)
    tv = wav(ex / "tv", "square_waves", 0)
    cfg = make_config(tiny_model, labels=[
        {"name": "learned", "prompts": [], "examples": [str(ex / "learned")]},
        {"name": "dog barking", "negatives": [str(dog_neg)]},
        {"name": "glass breaking", "examples": [str(p) for p in glass]},
    ], negatives=[str(tv)], examples={"cache_folder": str(tmp_path / "cache")}, **TIMING)
    scorer = scorer_for(cfg, tmp_path / "cache")
    assert scorer.labels == ["learned", "dog barking", "glass breaking", "silence", "speech"]
    windows = np.stack([sound(c, 7) for c in ("chirps", "noise", "tones", "square_waves", "gated_tones")])
    got = scorer.score(windows)

    vec = {p: ref.embed_file(p) for p in [*learned, *glass, dog_neg, tv]}
    texted = ["dog barking", "glass breaking", "silence", "speech"]
    for i, x in enumerate(windows):
        a = ref.embed(x)
        p = ref.text(x, texted)
        cos = {path: float(a @ v) for path, v in vec.items()}
        c_tv = cos[tv]
        expected = {
            "learned": rule(0.0, max(cos[q] for q in learned), c_tv),
            "dog barking": rule(p["dog barking"], -np.inf, max(cos[dog_neg], c_tv)),
            "glass breaking": rule(p["glass breaking"], max(cos[q] for q in glass), c_tv),
            "silence": p["silence"],  # background labels: never touched by examples or negatives
            "speech": p["speech"],
        }
        for j, name in enumerate(scorer.labels):
            assert got[i, j] == pytest.approx(float(expected[name]), abs=2e-4), (i, name)
    assert scorer.examples.embedded == 7


def test_labels_without_examples_score_exactly_as_without_the_feature(tiny_model: Path, tmp_path: Path) -> None:
    ex = [wav(tmp_path, "chirps", k) for k in range(2)]
    plain = make_config(tiny_model, labels=["dog barking", "glass breaking"], **TIMING)
    mixed = make_config(tiny_model, labels=["dog barking", {"name": "learned", "prompts": [], "examples": ex},
                                            "glass breaking"], **TIMING)
    windows = np.stack([sound(c, 3) for c in ("chirps", "noise", "tones")])
    a, b = scorer_for(plain, None), scorer_for(mixed, None)
    sa, sb = a.score(windows), b.score(windows)
    for name in a.labels:  # the text softmax runs over the labels with prompts, as before
        assert np.array_equal(sa[:, a.labels.index(name)], sb[:, b.labels.index(name)]), name
    assert b.examples.layout is not None and a.examples.layout is None


def test_cache_is_reused_at_restart_and_notices_changes(tiny_model: Path, tmp_path: Path, ref: Reference,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    ex = tmp_path / "ex"
    files = [wav(ex, "tones", k) for k in range(3)]
    cache = tmp_path / "cache"
    cfg = make_config(tiny_model, labels=[{"name": "beep", "examples": [str(ex)]}, "dog barking"],
                      examples={"cache_folder": str(cache)}, **TIMING)
    windows = np.stack([sound("tones", 9), sound("noise", 9)])
    first = scorer_for(cfg, cache)
    assert first.examples.embedded == 3
    assert len(list(cache.rglob("*.npy"))) == 3

    # A restart: a new scorer, the same files. No audio forward for them, the same scores.
    second = scorer_for(cfg, cache)
    assert second.examples.embedded == 0 and second.examples.cache.hits == 3
    assert np.array_equal(first.score(windows), second.score(windows))

    # A file changed in place: noticed at the next label sync (and at a restart), embedded again, only it.
    write_wav(files[1], sound("noise", 5), 48000)
    labels = labels_from_config(cfg).scored()
    assert second.sync_labels(labels) == {}
    assert second.examples.embedded == 1
    stored = second.examples.layout.support
    assert np.abs(stored - ref.embed_file(files[1])).max(axis=1).min() < 1e-4  # its new content is in use
    third = scorer_for(cfg, cache)
    assert third.examples.embedded == 0
    assert np.allclose(third.score(windows), second.score(windows), atol=1e-6)

    # A file removed: noticed, named, skipped; the label keeps its other examples.
    files[2].unlink()
    caplog.set_level(logging.WARNING)
    assert second.sync_labels(labels) == {}
    assert "tones-2.wav: no such file" in caplog.text
    assert len(second.examples.layout.support) == 2


def test_cache_folder_is_bounded_and_damage_is_repaired(tiny_model: Path, tmp_path: Path) -> None:
    ex = tmp_path / "ex"
    for k in range(6):
        wav(ex, "noise", k, seconds=1.0)
    cache = tmp_path / "cache"
    probe = make_config(tiny_model, labels=[{"name": "hiss", "examples": [str(ex / "noise-0.wav")]}],
                        examples={"cache_folder": str(cache)}, **TIMING)
    scorer_for(probe, cache)
    entry = next(cache.rglob("*.npy"))
    size = entry.stat().st_size
    bound_mb = 3.5 * size / 1024 / 1024
    cfg = make_config(tiny_model, labels=[{"name": "hiss", "examples": [str(ex)]}],
                      examples={"cache_folder": str(cache), "max_cache_mb": bound_mb}, **TIMING)
    scorer_for(cfg, cache)
    total = sum(f.stat().st_size for f in cache.rglob("*.npy"))
    assert total <= bound_mb * 1024 * 1024 and len(list(cache.rglob("*.npy"))) == 3

    # A damaged entry is noticed and computed again (not loaded as garbage).
    for f in cache.rglob("*.npy"):
        f.write_bytes(b"not numpy")
    again = scorer_for(cfg, cache)
    assert again.examples.embedded == 6


def test_a_long_example_contributes_its_loudest_window(tiny_model: Path, tmp_path: Path, ref: Reference) -> None:
    x = concat(noise(5, 48000, 0.01, seed=1), tone(5, 48000, 700, 0.5), noise(5, 48000, 0.01, seed=2))
    path = write_wav(tmp_path / "long.wav", x, 48000, subtype="FLOAT")
    cfg = make_config(tiny_model, labels=[{"name": "beep", "prompts": [], "examples": [str(path)]}], **TIMING)
    scorer = scorer_for(cfg, None)
    stored = scorer.examples.layout.support[0]
    assert np.abs(stored - ref.embed(x[5 * 48000 : 10 * 48000])).max() < 1e-4
    assert np.abs(stored - ref.embed(x[4 * 48000 : 9 * 48000])).max() > 1e-3  # not just any window


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=monitor_env())


def test_bad_examples_get_one_line_answers(tiny_model: Path, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "in.wav", sound("tones", 1, 6.0), 48000)
    missing = write_config(tmp_path / "missing.yaml", tiny_model,
                           labels=[{"name": "beep", "examples": [str(tmp_path / "nope")]}], **TIMING)
    for cmd in (["check-config", str(missing)], ["replay", str(audio), "--config", str(missing)]):
        proc = run_cli(*cmd, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert f"labels[0].examples[0]: {tmp_path / 'nope'}: no such file or folder" in proc.stderr
        assert "Traceback" not in proc.stderr

    # The only example of an examples-only label is not audio: the run stops with one line naming both.
    (tmp_path / "junk").mkdir()
    junk = tmp_path / "junk" / "fake.flac"
    junk.write_bytes(b"fLaC not really")
    only = write_config(tmp_path / "only.yaml", tiny_model,
                        labels=[{"name": "beep", "prompts": [], "examples": [str(junk)]}, "dog barking"], **TIMING)
    proc = run_cli("replay", str(audio), "--config", str(only), cwd=tmp_path)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln or "error" in ln.lower()]
    assert any("beep" in ln and "fake.flac" in ln for ln in errors), proc.stderr
    assert "Traceback" not in proc.stderr

    # Beside a label's prompts, the same file is skipped with a warning and the run goes on.
    beside = write_config(tmp_path / "beside.yaml", tiny_model,
                          labels=[{"name": "beep", "examples": [str(junk)]}, "dog barking"], **TIMING)
    proc = run_cli("replay", str(audio), "--config", str(beside), "--scores", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "fake.flac" in proc.stderr and "Traceback" not in proc.stderr

    # prompts: [] with no examples at all
    empty = write_config(tmp_path / "empty.yaml", tiny_model, labels=[{"name": "beep", "prompts": []}], **TIMING)
    proc = run_cli("check-config", str(empty), cwd=tmp_path)
    assert proc.returncode == 2 and "labels[0]: 'beep' has no prompts and no examples" in proc.stderr


def test_label_prompts_carry_files_and_top_level_negatives(tiny_model: Path, tmp_path: Path) -> None:
    a, b = wav(tmp_path / "a", "tones", 0), wav(tmp_path / "b", "noise", 0)
    tv = wav(tmp_path / "tv", "square_waves", 0)
    cfg = make_config(tiny_model, labels=[{"name": "x", "examples": [str(a)], "negatives": [str(b)]}],
                      negatives=[str(tmp_path / "tv")], examples={"folder": str(tmp_path / "taught")}, **TIMING)
    taught = wav(tmp_path / "taught" / "x", "chirps", 0)  # the label's taught folder is part of its examples
    labels = labels_from_config(cfg)
    first = labels.scored()[0]
    assert first == LabelPrompts("x", ("This is a sound of x.",), (str(a.resolve()), str(taught.resolve())),
                                 (str(b.resolve()), str(tv.resolve())))
    assert labels.labels[0].summary()["examples"] == 2 and labels.labels[0].summary()["negatives"] == 1
    assert labels.negatives == (str(tv.resolve()),)
    too_many = make_config(tiny_model, labels=[{"name": "x", "examples": [str(tmp_path)]}],
                           examples={"max_files": 2}, **TIMING)
    with pytest.raises(Exception, match=r"labels\[0\].examples: \d+ files, more than examples.max_files \(2\)"):
        labels_from_config(too_many)
