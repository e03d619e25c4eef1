"""``evaluate``: the accuracy it reports is the accuracy transformers' pipeline gives clip by clip.

One small ESC-50-shaped dataset (6 classes x 2 clips, 5 s each, 44.1 and 48 kHz, a distinct synthetic sound per
class) is written in the three layouts. The reference runs ``pipeline("zero-shot-audio-classification")`` on every
clip's soxr-resampled 48 kHz samples with the class names (underscores → spaces) as candidate labels and the
default template. Six classes make top-5 accuracy a real measurement (the truth can rank sixth).
"""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from support.audio import write_wav
from support.datasets import CLASSES, Item, items, sound, write_esc50, write_folders, write_hf
from support.procs import monitor_env
from transformers import pipeline

from monitor.config.schema import prompt_template_problem
from monitor.offline import datasets as dsets
from monitor.offline import evalset, report
from monitor.offline import evaluate as ev

TEMPLATE = "This is a sound of {}."
@pytest.fixture(scope="module")
def data() -> list[Item]:
    return items()


@pytest.fixture(scope="module")
def esc50(tmp_path_factory: pytest.TempPathFactory, data: list[Item]) -> Path:
    return write_esc50(tmp_path_factory.mktemp("esc50"), data)


@pytest.fixture(scope="module")
def pipe(tiny_model: Path):
    return pipeline("zero-shot-audio-classification", model=str(tiny_model))


def at_48k(samples: np.ndarray, rate: int) -> np.ndarray:
    return samples if rate == 48_000 else soxr.resample(samples, rate, 48_000, quality="HQ")


def reference(pipe, data: list[Item], files: Path) -> dict[str, list[dict]]:
    """The pipeline's ranked results per clip, on the samples as written to (and read back from) disk."""
    labels = [c.replace("_", " ") for c in CLASSES]
    out = {}
    for it in data:
        samples, rate = sf.read(str(files / it.filename), dtype="float32")
        out[it.filename] = pipe(at_48k(samples, rate), candidate_labels=labels, hypothesis_template=TEMPLATE)
    return out


@pytest.fixture(scope="module")
def ref(pipe, data: list[Item], esc50: Path) -> dict[str, list[dict]]:
    return reference(pipe, data, esc50 / "audio")


def accuracies(ref: dict[str, list[dict]], data: list[Item]) -> tuple[float, float]:
    truth = {it.filename: it.category.replace("_", " ") for it in data}
    top1 = np.mean([ref[f][0]["label"] == truth[f] for f in truth])
    top5 = np.mean([truth[f] in [r["label"] for r in ref[f][:5]] for f in truth])
    return float(top1), float(top5)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_cli_esc50_matches_pipeline(
    tiny_model: Path, esc50: Path, data: list[Item], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "out"
    env = monitor_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "evaluate", str(esc50), "--model", str(tiny_model), "--out", str(out),
         "--batch-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )
    ref = request.getfixturevalue("ref")  # computed (if not yet) while the command starts up
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    res = json.loads((out / "results.json").read_text())
    top1, top5 = accuracies(ref, data)
    assert res["top1_accuracy"] == pytest.approx(top1, abs=1e-12)
    assert res["top5_accuracy"] == pytest.approx(top5, abs=1e-12)
    assert res["n_clips"] == len(data)
    assert res["layout"] == "esc50"
    assert res["dataset"] == str(esc50.resolve())
    assert res["model"] == str(tiny_model)
    assert res["prompt_template"] == TEMPLATE
    assert res["prompts"] == [TEMPLATE.format(c.replace("_", " ")) for c in CLASSES]
    assert res["folds"] == [1, 2] and res["all_folds"] is True
    assert set(res["per_class_accuracy"]) == {c.replace("_", " ") for c in CLASSES}
    # the unreadable clip is named, skipped and not fatal
    assert [s["file"] for s in res["skipped"]] == ["audio/2-999-A-0.wav"]
    assert "2-999-A-0.wav" in stderr
    assert "top-1" in stdout and "skipped" in stdout

    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data)
    for row in rows:
        expected = ref[Path(row["file"]).name]
        assert row["top1_label"] == expected[0]["label"]
        for k in range(1, 6):
            assert row[f"top{k}_label"] == expected[k - 1]["label"]
            assert abs(float(row[f"top{k}_score"]) - expected[k - 1]["score"]) < 1e-5
    width, height = png_size(out / "confusion_matrix.png")
    assert width >= 300 and height >= 300


def test_reference_is_not_trivial(ref: dict[str, list[dict]], data: list[Item]) -> None:
    # Random weights: accuracy is whatever it is, but it must not be 0 or 1 for the comparisons to mean much.
    top1, top5 = accuracies(ref, data)
    assert 0 < top1 < 1, top1
    assert top5 < 1 or top1 < top5


def test_hf_datasets_layout(tiny_model: Path, tmp_path: Path, ref, data: list[Item]) -> None:
    root = write_hf(tmp_path / "hf", data)
    assert ev.run(root, model=str(tiny_model), out_dir=tmp_path / "out", out=io.StringIO()) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (res["layout"], res["splits"], res["n_clips"]) == ("hf-datasets", ["train"], len(data))
    assert (res["top1_accuracy"], res["top5_accuracy"]) == pytest.approx(accuracies(ref, data), abs=1e-12)
    # --folds works on the fold column
    ds = dsets.open_dataset(root, folds=[2])
    assert [c.name for c in ds.clips] == [it.filename for it in data if it.fold == 2]


def test_class_folders_layout(tiny_model: Path, tmp_path: Path, ref, data: list[Item]) -> None:
    root = write_folders(tmp_path / "folders", data)
    (root / "empty_class").mkdir()  # not a class: no audio in it
    assert ev.run(root, model=str(tiny_model), out_dir=tmp_path / "out", batch_size=3, out=io.StringIO()) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (res["layout"], res["n_clips"], res["folds"]) == ("class-folders", len(data), None)
    assert res["labels"] == sorted(c.replace("_", " ") for c in CLASSES)
    assert (res["top1_accuracy"], res["top5_accuracy"]) == pytest.approx(accuracies(ref, data), abs=1e-12)


def test_folds_and_limit_select_clips(esc50: Path, data: list[Item]) -> None:
    ds = dsets.open_dataset(esc50, folds=[1])
    assert ds.folds == [1] and ds.available_folds == [1, 2]
    assert [c.name for c in ds.clips] == [f"audio/{it.filename}" for it in data if it.fold == 1]
    assert ds.labels == [c.replace("_", " ") for c in CLASSES]  # every class stays a label
    assert len(dsets.open_dataset(esc50, limit=5).clips) == 5


def test_clips_of_mixed_lengths_are_grouped_and_match_pipeline(tiny_model: Path, pipe, tmp_path: Path) -> None:
    from monitor.config import InferenceConfig
    from monitor.inference.loading import load_scorer

    # two 2 s clips share a batch (one from 44.1 kHz, one at 48 kHz: both 96,000 samples at 48 kHz)
    lengths = {"a": [(2.0, 44_100), (3.0, 22_050)], "b": [(2.0, 48_000), (11.0, 48_000)]}
    for cls, specs in lengths.items():
        for i, (seconds, rate) in enumerate(specs):
            kind = "sweep_down" if cls == "a" else "noise"
            write_wav(tmp_path / cls / f"{i}.wav", sound(kind, i, rate, seconds), rate)
    ds = dsets.open_dataset(tmp_path)
    result = ev.evaluate(ds, load_scorer(str(tiny_model), InferenceConfig(threads=2), ev.dataset_labels(ds)),
                         batch_size=2)
    assert result.truncated == 1  # the 11 s clip is scored on its first 10 s
    for clip, row in zip(result.clips, result.scores, strict=True):
        samples, rate = sf.read(str(clip.source), dtype="float32")
        x = at_48k(samples, rate)[:480_000]
        expected = {r["label"]: r["score"] for r in pipe(x, candidate_labels=["a", "b"])}
        assert row == pytest.approx([expected["a"], expected["b"]], abs=1e-5), clip.name
    # a scorer loaded with other labels (here: in another order) would file scores under the wrong class
    other = load_scorer(str(tiny_model), InferenceConfig(threads=2), ev.dataset_labels(ds)[::-1])
    with pytest.raises(ValueError, match="not the dataset's"):
        ev.evaluate(ds, other)


def test_confusion_matrix_scales_to_50_classes(tmp_path: Path) -> None:
    classes = [f"class_{i}_with_a_long_name" for i in range(50)]
    ds = evalset.EvalDataset(tmp_path, dsets.LAYOUT_FOLDERS, classes, [])
    rng = np.random.default_rng(0)
    clips = [evalset.Clip(f"{i}.wav", i % 50, None, Path(f"{i}.wav")) for i in range(200)]
    result = ev.EvalResult(ds, "m", TEMPLATE, [], rng.random((200, 50)).astype(np.float32),
                           np.array([c.truth for c in clips]), clips, seconds=1.0)
    report.plot_confusion(result, tmp_path / "cm.png")
    width, height = png_size(tmp_path / "cm.png")
    assert width >= 1000 and height >= 1000  # about a quarter inch per class


# ------------------------------------------------------------------------------------------- bad input


def test_missing_csv_is_named(tmp_path: Path, data: list[Item]) -> None:
    write_esc50(tmp_path / "esc", data[:2], broken=False)
    (tmp_path / "esc" / "meta" / "esc50.csv").unlink()
    with pytest.raises(evalset.EvaluationError, match=r"meta/esc50\.csv: missing"):
        dsets.open_dataset(tmp_path / "esc")


def test_csv_without_needed_columns(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,label\na.wav,dog\n")
    with pytest.raises(evalset.EvaluationError, match=r"esc50\.csv: expected columns .* missing fold, category"):
        dsets.open_dataset(tmp_path)


def test_unknown_fold_is_named(esc50: Path) -> None:
    with pytest.raises(evalset.EvaluationError, match=r"fold 9 not in .* \(its folds: 1, 2\)"):
        dsets.open_dataset(esc50, folds=[1, 9])


def test_folds_on_a_layout_without_folds(tmp_path: Path, data: list[Item]) -> None:
    root = write_folders(tmp_path / "f", data[:2])
    with pytest.raises(evalset.EvaluationError, match="has no folds"):
        dsets.open_dataset(root, folds=[1])


def test_empty_and_missing_folders_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(evalset.EvaluationError, match=rf"{tmp_path / 'empty'}: no audio files found"):
        dsets.open_dataset(tmp_path / "empty")
    with pytest.raises(evalset.EvaluationError, match=rf"{tmp_path / 'nope'}: no such dataset folder"):
        dsets.open_dataset(tmp_path / "nope")


def test_hf_folder_without_category_column(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"label": ["dog"], "audio": [b""]}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(evalset.EvaluationError, match=r"expected columns audio and category; missing \['category'\]"):
        dsets.open_dataset(tmp_path / "hf")


def test_no_readable_clip_is_an_error(tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "data" / "dog").mkdir(parents=True)
    (tmp_path / "data" / "dog" / "x.wav").write_bytes(b"not audio")
    code = ev.run(tmp_path / "data", model=str(tiny_model), out_dir=tmp_path / "out", out=io.StringIO())
    assert code == 1
    assert "x.wav" in caplog.text and "none of the 1 clips could be read" in caplog.text
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--shots", "0", "must be from 1 to 1000 (got 0)"),
    ("--shots", "5000", "must be from 1 to 1000 (got 5000)"),
    ("--seed", "-1", "must be from 0 to 4294967295 (got -1)"),
])
def test_few_shot_options_out_of_bounds_are_refused_before_anything_loads(option: str, value: str, says: str,
                                                                          tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "monitor", "evaluate", str(tmp_path / "no-such-dataset"), option,
                           value], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=monitor_env())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"sound-monitor evaluate: error: argument {option}: {says}"


@pytest.mark.parametrize("template", ["{}}", "no placeholder", "a {name}"])
def test_a_bad_prompt_template_is_refused_in_one_line_like_other_bad_options(template: str, tmp_path: Path) -> None:
    # The config's prompt_template check: "{}}" has one "{}" yet crashes str.format on the first clip.
    proc = subprocess.run([sys.executable, "-m", "monitor", "evaluate", str(tmp_path / "no-such-dataset"),
                           "--prompt-template", template], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=monitor_env())
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert errors == [f"sound-monitor evaluate: error: argument --prompt-template: {prompt_template_problem(template)} "
                      f"(got {template!r})"], proc.stderr
    with pytest.raises(evalset.EvaluationError, match=r"^--prompt-template: must contain '\{\}' exactly once"):
        ev.check_options(template, batch_size=1)  # ev.run, called without the command line, refuses it too


def test_parse_folds() -> None:
    import argparse

    assert dsets.parse_folds("2,1, 2") == [1, 2]
    with pytest.raises(argparse.ArgumentTypeError, match="1,2"):
        dsets.parse_folds("one")
    assert ev.parse_folds is dsets.parse_folds  # monitor/cli.py imports it from evaluate
