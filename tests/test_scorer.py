"""The scorer equals transformers' zero-shot-audio-classification pipeline on the same samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.audio import synthetic_clips
from transformers import pipeline

from monitor.inference.scorer import ClapScorer, LabelPrompts, ModelLoadError, TextEncoder

LABELS = ["glass breaking", "dog barking", "silence", "speech", "music"]


def checkpoint_resident_kb() -> int:
    """Resident kB of this process's memory-mapped .safetensors files (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
            inside = line.endswith(".safetensors")
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


def reference(pipe, audio: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {r["label"]: r["score"] for r in pipe(audio, candidate_labels=labels)}


@pytest.fixture(scope="module")
def scorer(tiny_model: Path) -> ClapScorer:
    s = ClapScorer(str(tiny_model), threads=2)
    s.set_labels([LabelPrompts(lbl, (f"This is a sound of {lbl}.",)) for lbl in LABELS])
    return s


@pytest.fixture(scope="module")
def pipe(tiny_model: Path):
    return pipeline("zero-shot-audio-classification", model=str(tiny_model))


@pytest.mark.parametrize("name", list(synthetic_clips()))
def test_scores_equal_pipeline(scorer: ClapScorer, pipe, name: str) -> None:
    audio = synthetic_clips()[name]
    ref = reference(pipe, audio, LABELS)
    got = dict(zip(scorer.labels, scorer.score(audio[None])[0], strict=True))
    for lbl in LABELS:
        assert abs(got[lbl] - ref[lbl]) < 1e-5, (lbl, got[lbl], ref[lbl])
    # random weights still separate the labels, so equality above is not equality of constants
    assert max(ref.values()) - min(ref.values()) > 1e-4


def test_batch_equals_single(scorer: ClapScorer) -> None:
    batch = np.stack(list(synthetic_clips().values()))
    together = scorer.score(batch)
    apart = np.concatenate([scorer.score(c[None]) for c in batch])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_freeing_text_tower_keeps_scores_and_new_labels_match(tiny_model: Path, pipe) -> None:
    s = ClapScorer(str(tiny_model), threads=2)
    s.set_labels([LabelPrompts(lbl, (f"This is a sound of {lbl}.",)) for lbl in LABELS])
    audio = synthetic_clips()["chirp"][None]
    before = s.score(audio)
    s.free_text_tower()
    assert s.model.text_model is None
    assert checkpoint_resident_kb() == 0  # the mapped checkpoint's pages are given back
    np.testing.assert_allclose(s.score(audio), before, atol=1e-6)
    # a label added later reloads the text tower for one encoding and gives the pipeline's numbers
    labels = [*LABELS, "a door slamming"]
    s.set_labels([LabelPrompts(lbl, (f"This is a sound of {lbl}.",)) for lbl in labels])
    ref = reference(pipe, audio[0], labels)
    got = dict(zip(s.labels, s.score(audio)[0], strict=True))
    for lbl in labels:
        assert abs(got[lbl] - ref[lbl]) < 1e-5


def test_several_prompts_average_embeddings(scorer: ClapScorer) -> None:
    prompts = ("a dog barking", "a dog growling")
    emb = scorer.encode_prompts(prompts)
    s2 = ClapScorer.__new__(ClapScorer)
    s2.__dict__.update(scorer.__dict__)
    s2.text = TextEncoder(scorer.model_id)  # its own label cache, not the shared fixture's
    s2.text.attach(scorer.tokenizer, scorer.model.config.text_config)
    s2.set_labels([LabelPrompts("dog", prompts), LabelPrompts("cat", ("a cat",))])
    expected = torch.nn.functional.normalize(emb.mean(0), dim=-1)
    torch.testing.assert_close(s2.label_embeddings()["dog"], expected)


def test_missing_model_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=str(tmp_path / "nope")):
        ClapScorer(str(tmp_path / "nope"))
