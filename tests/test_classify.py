"""``classify``: per-file and per-window scores equal transformers' pipeline on the same 48 kHz samples."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from support.audio import chirp, concat, mixture, noise, tone, write_wav
from support.procs import monitor_env
from transformers import pipeline

from monitor.offline import classify

LABELS = ["dog barking", "glass breaking", "silence", "speech"]
TEMPLATE = "This is a sound of {}."
WINDOW, HOP = 240_000, 48_000  # the default 5 s window every 1 s, at 48 kHz
@pytest.fixture(scope="module")
def pipe(tiny_model: Path):
    return pipeline("zero-shot-audio-classification", model=str(tiny_model))


def samples_48k(path: Path) -> np.ndarray:
    """What classify should score: the file downmixed to mono and resampled in one shot (the reference side)."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    return mono if rate == 48_000 else soxr.resample(mono, rate, 48_000, quality="HQ")


def expected_windows(pipe, path: Path, labels: list[str], template: str = TEMPLATE, window: int = WINDOW,
                     hop: int = HOP) -> list[tuple[float, dict[str, float]]]:
    """(start seconds, pipeline scores) for the clip as is, or for each full window of a longer clip."""
    x = samples_48k(path)
    starts = [0] if len(x) <= window else range(0, len(x) - window + 1, hop)
    out = []
    for s in starts:
        clip = x if len(x) <= window else x[s : s + window]
        result = pipe(clip, candidate_labels=labels, hypothesis_template=template)
        out.append((s / 48_000, {r["label"]: r["score"] for r in result}))
    return out


def assert_matches(file_json: dict, expected: list[tuple[float, dict[str, float]]]) -> None:
    assert len(file_json["windows"]) == len(expected)
    for win, (start, ref) in zip(file_json["windows"], expected, strict=True):
        assert win["start"] == pytest.approx(start, abs=1e-3)
        assert set(win["scores"]) == set(ref)
        for label, score in ref.items():
            assert abs(win["scores"][label] - score) < 1e-5, (file_json["file"], start, label)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of clips: 5 s stereo at 44.1 kHz, 2 s FLAC at 48 kHz in a subfolder, 12 s at 44.1 kHz, and junk."""
    root = tmp_path_factory.mktemp("clips")
    write_wav(root / "five.wav", mixture(tone(5, 44_100, 440, channels=2), noise(5, 44_100, 0.05, channels=2)),
              44_100)
    (root / "sub").mkdir()
    sf.write(str(root / "sub" / "two.flac"), chirp(2, 48_000, 300, 3000), 48_000)
    write_wav(root / "twelve.wav", concat(noise(4, 44_100, 0.2, seed=1), tone(4, 44_100, 1000),
                                          chirp(4, 44_100, 2000, 200)), 44_100)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


def test_cli_json_matches_pipeline(tiny_model: Path, clips: Path, pipe, tmp_path: Path) -> None:
    env = monitor_env()
    proc = subprocess.Popen(  # cwd without config.yaml: the defaults (5 s windows every 1 s) apply
        [sys.executable, "-m", "monitor", "classify", str(clips), "--model", str(tiny_model), "--json",
         "--labels", *LABELS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )
    # the reference is computed while the command starts up (most of its time is imports)
    expected = {name: expected_windows(pipe, path, LABELS) for name, path in
                (("five.wav", clips / "five.wav"), ("two.flac", clips / "sub" / "two.flac"),
                 ("twelve.wav", clips / "twelve.wav"))}
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["labels"] == LABELS
    assert doc["prompts"] == [[TEMPLATE.format(lbl)] for lbl in LABELS]
    assert doc["model"] == str(tiny_model)
    files = {Path(f["file"]).name: f for f in doc["files"]}
    assert sorted(files) == ["five.wav", "twelve.wav", "two.flac"]

    # a clip up to one window long: one row, scored as is (the 2 s clip is repeat-padded like the pipeline does)
    for name, seconds in (("five.wav", 5.0), ("two.flac", 2.0)):
        f = files[name]
        assert f["duration"] == pytest.approx(seconds)
        assert f["windows"][0]["end"] == pytest.approx(seconds, abs=1e-3)
        assert_matches(f, expected[name])
    # a longer clip: every full 5 s window every 1 s (0..7 s), no partial window at the end
    twelve = files["twelve.wav"]
    assert [w["start"] for w in twelve["windows"]] == [float(s) for s in range(8)]
    assert all(w["end"] - w["start"] == pytest.approx(5.0) for w in twelve["windows"])
    assert_matches(twelve, expected["twelve.wav"])
    scores = np.array([[w["scores"][lbl] for lbl in LABELS] for w in twelve["windows"]])
    summary = twelve["summary"]
    assert [summary["mean"][lbl] for lbl in LABELS] == pytest.approx(scores.mean(axis=0), abs=1e-6)
    assert [summary["max"][lbl] for lbl in LABELS] == pytest.approx(scores.max(axis=0), abs=1e-6)
    assert summary["top_label"] == LABELS[int(np.argmax(scores.mean(axis=0)))]
    # random weights still separate windows, so matching per window is not matching a constant
    assert np.ptp(scores[:, 0]) > 1e-3

    # the unreadable file is named on stderr and in the JSON, and skipped
    assert "broken.wav" in stderr
    assert [Path(e["file"]).name for e in doc["errors"]] == ["broken.wav"]


def test_config_labels_template_and_window(tiny_model: Path, clips: Path, pipe, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"model: {tiny_model}\n"
        "labels: [{name: door knock}, {name: alarm, prompts: [a smoke alarm]}]\n"
        "background: [silence]\n"
        "prompt_template: 'A recording of {}.'\n"
        "audio: {window_seconds: 2.0, hop_seconds: 1.5}\n"
    )
    settings = classify.resolve_settings(None, cfg, config_required=True)
    assert [(lbl.name, lbl.prompts) for lbl in settings.labels] == [
        ("door knock", ("A recording of door knock.",)),
        ("alarm", ("A recording of a smoke alarm.",)),
        ("silence", ("A recording of silence.",)),
    ]
    assert (settings.model, settings.window_seconds, settings.hop_seconds) == (str(tiny_model), 2.0, 1.5)
    out = io.StringIO()
    assert classify.run([clips / "five.wav"], None, cfg, config_required=True, as_json=True, out=out) == 0
    f = json.loads(out.getvalue())["files"][0]
    assert [w["start"] for w in f["windows"]] == [0.0, 1.5, 3.0]  # 2 s windows every 1.5 s; 4.5-5 s is partial
    # the pipeline knows one prompt per label: compare with each label's prompt text as the candidate
    ref = expected_windows(pipe, clips / "five.wav", ["door knock", "a smoke alarm", "silence"],
                           template="A recording of {}.", window=96_000, hop=72_000)
    for win, (_, expected) in zip(f["windows"], ref, strict=True):
        got = [win["scores"]["door knock"], win["scores"]["alarm"], win["scores"]["silence"]]
        assert got == pytest.approx([expected["door knock"], expected["a smoke alarm"], expected["silence"]],
                                    abs=1e-5)
    # --labels override the config's labels but keep its template
    settings = classify.resolve_settings(["rain"], cfg, config_required=True)
    assert [lbl.prompts for lbl in settings.labels] == [("A recording of rain.",)]


def test_table_output(tiny_model: Path, clips: Path) -> None:
    out = io.StringIO()
    assert classify.run([clips / "sub"], LABELS, None, model=str(tiny_model), top_k=2, out=out) == 0
    text = out.getvalue()
    assert "two.flac  (2.00 s, 1 window)" in text
    assert len([line for line in text.splitlines() if line.startswith("  ") and "0." in line]) == 2  # top 2
    # a file of several windows also lists each window's top label
    scores = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05]], np.float32)
    r = classify.FileScores("long.wav", 6.0, 48_000, [0.0, 1.0], [5.0, 6.0], scores, LABELS)
    text = classify.format_table([r], top_k=4)
    assert "long.wav  (6.00 s, 2 windows)" in text
    assert "0.00-5.00 s" in text and "dog barking (0.700)" in text
    assert "1.00-6.00 s" in text and "glass breaking (0.800)" in text


def test_no_readable_file_exits_1(tiny_model: Path, clips: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    code = classify.run([clips / "broken.wav", clips / "missing.wav"], LABELS, None, model=str(tiny_model), out=out)
    assert code == 1
    assert "broken.wav" in caplog.text and "missing.wav: no such file" in caplog.text


def test_empty_folder_exits_1_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert classify.run([tmp_path / "empty"], LABELS, None, model="unused") == 1
    assert f"{tmp_path / 'empty'}: no audio files in this folder" in caplog.text


def test_label_sources(tmp_path: Path) -> None:
    with pytest.raises(classify.ClassifyError, match=r"no labels: give --labels.*nope\.yaml: no such file"):
        classify.resolve_settings(None, tmp_path / "nope.yaml", config_required=False)
    with pytest.raises(classify.ClassifyError, match=r"nope\.yaml: no such config file"):
        classify.resolve_settings(["dog"], tmp_path / "nope.yaml", config_required=True)
    with pytest.raises(classify.ClassifyError, match="duplicate labels"):
        classify.resolve_settings(["dog", "dog"], None, config_required=False)
    # a default config that is absent is fine when labels are given: defaults apply
    s = classify.resolve_settings(["dog"], tmp_path / "nope.yaml", config_required=False)
    assert (s.model, s.window_seconds) == ("laion/clap-htsat-unfused", 5.0)
    assert s.labels[0].prompts == (TEMPLATE.format("dog"),)


def test_config_precision_int8_scores_like_replay(tiny_model: Path, tmp_path: Path) -> None:
    """``classify --config`` loads the model as ``replay`` does: int8 from the config gives replay's scores."""
    clip = write_wav(tmp_path / "five.wav", mixture(tone(5, 48_000, 660), noise(5, 48_000, 0.1, seed=3)), 48_000,
                     subtype="FLOAT")
    assert sf.info(str(clip)).frames == WINDOW  # exactly one 5 s window at 48 kHz: replay scores it once

    def config(precision: str) -> Path:
        path = tmp_path / f"{precision}.yaml"
        path.write_text(
            f"model: {tiny_model}\n"
            "labels: [{name: door knock}, {name: alarm, prompts: [a smoke alarm, a fire alarm beeping]}]\n"
            "background: [silence, speech]\n"
            "audio: {window_seconds: 5}\n"
            f"inference: {{precision: {precision}, threads: 2}}\n"
        )
        return path

    def command(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "monitor", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=monitor_env())

    int8, fp32 = config("int8"), config("fp32")
    procs = {  # started together: most of each command's time is imports
        "classify int8": command("classify", str(clip), "--config", str(int8), "--json"),
        "replay int8": command("replay", str(clip), "--config", str(int8), "--scores"),
        "classify fp32": command("classify", str(clip), "--config", str(fp32), "--json"),
    }
    outputs = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, stderr)
        outputs[name] = stdout

    def classify_scores(stdout: str) -> dict[str, float]:
        (window,) = json.loads(stdout)["files"][0]["windows"]
        return window["scores"]

    lines = [json.loads(line) for line in outputs["replay int8"].splitlines() if line.strip()]
    (replayed,) = [ln["scores"] for ln in lines if ln["kind"] == "scores"]
    got = classify_scores(outputs["classify int8"])
    assert list(got) == ["door knock", "alarm", "silence", "speech"]  # configured labels, then background
    assert set(replayed) == set(got)
    for label, score in replayed.items():
        assert abs(got[label] - score) < 1e-6, label
    # int8 really is on: fp32 scores of the same clip differ (by about 1e-2 on the tiny model)
    fp32_scores = classify_scores(outputs["classify fp32"])
    assert max(abs(fp32_scores[lbl] - got[lbl]) for lbl in got) > 1e-3


def test_score_batches_equals_one_by_one(tiny_model: Path) -> None:
    """The shared batch loop: rows in input order across batch boundaries, equal to scoring each array alone."""
    from monitor.config import InferenceConfig
    from monitor.inference.loading import load_scorer
    from monitor.inference.scorer import LabelPrompts
    from monitor.offline.scoring import score_batches

    scorer = load_scorer(str(tiny_model), InferenceConfig(threads=2),
                         [LabelPrompts(lbl, (TEMPLATE.format(lbl),)) for lbl in LABELS])
    rng = np.random.default_rng(7)
    arrays = [(0.1 * (i + 1) * rng.standard_normal(96_000)).astype(np.float32) for i in range(7)]
    batched = score_batches(scorer, iter(arrays), batch_size=3)  # batches of 3, 3 and 1
    alone = np.concatenate([scorer.score(x[None]) for x in arrays])
    assert batched.shape == (7, len(LABELS))
    assert np.abs(batched - alone).max() < 1e-5
    assert np.ptp(alone[:, 0]) > 1e-3  # the rows differ, so a reordering would show
    assert score_batches(scorer, []).shape == (0, len(LABELS))
    with pytest.raises(ValueError, match="equal lengths"):
        score_batches(scorer, [arrays[0], arrays[1][:48_000]])
    with pytest.raises(ValueError, match="equal lengths"):  # across batches too
        score_batches(scorer, [arrays[0], arrays[1][:48_000]], batch_size=1)
