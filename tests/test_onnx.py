"""The onnx backend, in process: scores equal to transformers' zero-shot pipeline, the embedding cache, runtime
labels, int8, the Xenova folder layout and its logit scale, session settings, clear errors.

Every model here is the tiny random checkpoint exported at test time by the real export code and loaded by the
real loading code (``load_scorer`` with ``inference.backend: onnx``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.audio import synthetic_clips
from support.onnxmodels import xenova_like
from transformers import pipeline

from monitor.config import InferenceConfig
from monitor.inference.errors import ModelLoadError
from monitor.inference.loading import load_scorer
from monitor.inference.onnx_scorer import OnnxScorer
from monitor.labels import LabelPrompts

LABELS = ["glass breaking", "dog barking", "silence", "speech", "music"]
TEMPLATE = "This is a sound of {}."


def prompts(names: list[str]) -> list[LabelPrompts]:
    return [LabelPrompts(n, (TEMPLATE.format(n),)) for n in names]


def onnx_config(cache: Path | None, **kw: object) -> InferenceConfig:
    return InferenceConfig(backend="onnx", threads=2, cache_dir=str(cache) if cache else None, **kw)


def reference(pipe, audio: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {r["label"]: r["score"] for r in pipe(audio, candidate_labels=labels)}


@pytest.fixture(scope="module")
def pipe(tiny_model: Path):
    return pipeline("zero-shot-audio-classification", model=str(tiny_model))


@pytest.fixture(scope="module")
def scorer(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxScorer:
    s = load_scorer(str(tiny_onnx), onnx_config(tmp_path_factory.mktemp("cache")), prompts(LABELS))
    assert isinstance(s, OnnxScorer)
    return s


@pytest.mark.parametrize("name", list(synthetic_clips()))
def test_scores_equal_pipeline(scorer: OnnxScorer, pipe, name: str) -> None:
    audio = synthetic_clips()[name]
    ref = reference(pipe, audio, LABELS)
    got = dict(zip(scorer.labels, scorer.score(audio[None])[0], strict=True))
    for lbl in LABELS:
        assert abs(got[lbl] - ref[lbl]) < 1e-5, (lbl, got[lbl], ref[lbl])
    assert max(ref.values()) - min(ref.values()) > 1e-4  # random weights still separate the labels


def test_batch_equals_single(scorer: OnnxScorer) -> None:
    batch = np.stack(list(synthetic_clips().values()))
    together = scorer.score(batch)
    apart = np.concatenate([scorer.score(c[None]) for c in batch])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_restart_with_unchanged_labels_runs_no_text_model(tiny_onnx: Path, tmp_path: Path) -> None:
    folder = str(shutil.copytree(tiny_onnx, tmp_path / "model"))
    cache = tmp_path / "cache"
    first = load_scorer(folder, onnx_config(cache), prompts(LABELS))
    assert first.text_model_runs == 1 and list(cache.glob("text-embeddings-*.npz"))
    again = load_scorer(folder, onnx_config(cache), prompts(LABELS))
    assert again.text_model_runs == 0
    audio = synthetic_clips()["chirp"][None]
    np.testing.assert_array_equal(again.score(audio), first.score(audio))
    # one new label: only its prompt is encoded; a re-exported (touched) text model invalidates the cache
    assert load_scorer(folder, onnx_config(cache), prompts([*LABELS, "a kettle"])).text_model_runs == 1
    text_model = Path(folder) / "onnx" / "text_model.onnx"
    stat = text_model.stat()
    os.utime(text_model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_scorer(folder, onnx_config(cache), prompts(LABELS)).text_model_runs == 1


def test_runtime_label_matches_pipeline_and_cached_labels_survive_a_missing_text_model(
    tiny_onnx: Path, tmp_path: Path, pipe
) -> None:
    folder = shutil.copytree(tiny_onnx, tmp_path / "model")
    s = load_scorer(str(folder), onnx_config(tmp_path / "cache"), prompts(LABELS))
    labels = [*LABELS, "a door slamming"]
    assert s.sync_labels(prompts(labels)) == {}
    assert s.text_model_runs == 2  # the start, then the one new prompt
    # (Not the white noise: there ONNX Runtime's and torch's kernels differ by 1e-6 relative in the pooled audio
    # features, which the tiny model's centred projection amplifies tenfold: 1.5e-5 on this label set.)
    audio = synthetic_clips()["chirp"]
    ref = reference(pipe, audio, labels)
    got = dict(zip(s.labels, s.score(audio[None])[0], strict=True))
    assert all(abs(got[lbl] - ref[lbl]) < 1e-5 for lbl in labels), (got, ref)
    # Without the text models (deleted to save space), cached labels load; a new one is refused with the reason.
    (folder / "onnx" / "text_model.onnx").unlink()
    (folder / "onnx" / "text_model_quantized.onnx").unlink()
    s2 = load_scorer(str(folder), onnx_config(tmp_path / "cache"), prompts(labels))
    failed = s2.sync_labels(prompts([*labels, "thunder"]))
    assert list(failed) == ["thunder"] and "text_model.onnx" in failed["thunder"]
    assert s2.labels == labels


def test_several_prompts_average_embeddings(scorer: OnnxScorer, tiny_onnx: Path) -> None:
    both = ("a dog barking", "a dog growling")
    emb = scorer.encode_prompts(both)
    s = OnnxScorer(str(tiny_onnx), threads=2)
    s.set_labels([LabelPrompts("dog", both), LabelPrompts("cat", ("a cat",))])
    mean = emb.mean(0)
    np.testing.assert_allclose(s.label_embeddings()["dog"], mean / np.linalg.norm(mean), atol=1e-6)


def test_int8_uses_the_quantized_audio_model(tiny_onnx: Path, scorer: OnnxScorer) -> None:
    s8 = load_scorer(str(tiny_onnx), onnx_config(None, precision="int8"), prompts(LABELS))
    windows = np.stack(list(synthetic_clips().values())[:3])
    fp32, int8 = scorer.audio_embeddings(windows), s8.audio_embeddings(windows)
    cos = (fp32 * int8).sum(1)
    assert cos.min() > 0.9 and np.abs(fp32 - int8).max() > 1e-4  # close, and not the same model


@pytest.mark.parametrize("variant", ["model.onnx", "model_quantized.onnx", "model.onnx without embeddings"])
def test_xenova_layout_derives_the_logit_scale_once(tiny_model: Path, tmp_path: Path, variant: str) -> None:
    """A folder as published (no logit scale in the towers; the whole model beside them) scores like the pipeline
    of its checkpoint, whose logit scale (30) is not the config's init value (14.29). The smaller quantized whole
    model is used when present; a whole model without its own embeddings is matched against the towers."""
    ckpt, folder = xenova_like(tiny_model, tmp_path, logit_scale=30.0, embeds="without" not in variant,
                               quantized="quantized" in variant)
    pipe30 = pipeline("zero-shot-audio-classification", model=str(ckpt))
    s = load_scorer(str(folder), onnx_config(tmp_path / "cache"), prompts(LABELS))
    assert s.logit_scale == pytest.approx(30.0, rel=1e-5)
    assert s.cache.meta["logit_scale"]["file"] == f"onnx/{variant.split()[0]}"
    audio = synthetic_clips()["tone"]
    ref = reference(pipe30, audio, LABELS)
    got = dict(zip(s.labels, s.score(audio[None])[0], strict=True))
    assert all(abs(got[lbl] - ref[lbl]) < 1e-5 for lbl in LABELS)
    for full in folder.glob("onnx/model*.onnx"):  # derived once: the cached value is used from now on
        full.unlink()
    assert load_scorer(str(folder), onnx_config(tmp_path / "cache"), prompts(LABELS)).logit_scale == s.logit_scale
    with pytest.raises(ModelLoadError, match=r"onnx/model\.onnx is missing"):
        load_scorer(str(folder), onnx_config(tmp_path / "other-cache"), prompts(LABELS))


def test_session_settings(scorer: OnnxScorer, tiny_onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    opts = scorer.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with caplog.at_level(logging.WARNING):
        s = load_scorer(str(tiny_onnx), onnx_config(None, providers=["NoSuchExecutionProvider"]), prompts(LABELS))
    assert s.session.get_providers() == ["CPUExecutionProvider"]
    assert "NoSuchExecutionProvider is not available" in caplog.text


def test_auto_precision_is_fp32_and_long_prompts_are_cut(tiny_onnx: Path) -> None:
    s = load_scorer(str(tiny_onnx), onnx_config(None, precision="auto"), prompts(["dog"]))
    assert s.precision == "fp32"
    assert s.encode_prompts(["dog " * 2000]).shape[0] == 1  # over the 512-token limit: truncated, not an error


def test_missing_and_bad_files_are_named(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no such folder.*sound-monitor export"):
        load_scorer(str(tmp_path / "nope"), onnx_config(None), prompts(LABELS))
    with pytest.raises(ModelLoadError, match="laion/clap-htsat-unfused': no such folder"):
        load_scorer("laion/clap-htsat-unfused", onnx_config(None), prompts(LABELS))
    folder = shutil.copytree(tiny_onnx, tmp_path / "model")
    (folder / "onnx" / "audio_model_quantized.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"missing onnx/audio_model_quantized.onnx \(for precision int8"):
        load_scorer(str(folder), onnx_config(None, precision="int8"), prompts(LABELS))
    (folder / "onnx" / "audio_model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"audio_model\.onnx: cannot load ONNX model"):
        load_scorer(str(folder), onnx_config(None), prompts(LABELS))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"missing tokenizer\.json"):
        load_scorer(str(folder), onnx_config(None), prompts(LABELS))


def test_auto_precision_on_the_torch_backend_is_bf16_only_where_native(tiny_model: Path) -> None:
    from monitor.inference.scorer import bf16_supported

    s = load_scorer(str(tiny_model), InferenceConfig(threads=2, precision="auto"), prompts(["dog", "silence"]))
    assert s.precision == ("bf16" if bf16_supported() else "fp32")


def test_the_quantized_text_model_serves_when_the_fp32_one_is_left_out(tiny_onnx: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_onnx, tmp_path / "model")
    (folder / "onnx" / "text_model.onnx").unlink()
    s = load_scorer(str(folder), onnx_config(tmp_path / "cache"), prompts(LABELS))
    assert s.folder.text_file().name == "text_model_quantized.onnx" and s.text_model_runs == 1
    full = load_scorer(str(tiny_onnx), onnx_config(tmp_path / "cache"), prompts(LABELS))
    cos = (s._text * full._text).sum(1)
    assert cos.min() > 0.9 and not np.array_equal(s._text, full._text)  # close, and not the fp32 model's cache
