"""``evaluate --shots K``: few-shot accuracy beside zero-shot, scored with the live monitor's teaching rule.

Protocol (fixed, so that two runs compare):

* **Folds** (ESC-50, a ``datasets`` folder with a fold column): each evaluated fold is held out in turn; its clips
  are the queries, and K clips per class are drawn from the *other* folds of the whole dataset as the class's
  examples (as a user enrolls a few recordings); the accuracy is over all held-out clips.
* **No folds** (one folder per class): K clips per class are drawn as examples and the accuracy is over the
  other clips; a class needs at least K + 1 clips.
* The draw: ``numpy.random.default_rng(seed)`` (``--seed``, default 0), then for each held-out fold in order and
  each class in class order, ``rng.choice`` of K of the class's candidate clips (in dataset order), without
  replacement. ``results.json`` lists the clips drawn (``few_shot.support``).

Each query is scored as a label with its class prompt *and* those examples would be by the monitor
(:func:`monitor.inference.examples.combine` on the zero-shot scores and the cosine to the nearest example of each
class): ``top1_accuracy``, ``top5_accuracy`` and ``per_class``. ``examples_only`` scores the examples alone (a
label with ``prompts: []``; the nearest-example classifier) and ``zero_shot`` is the plain zero-shot accuracy on
the same query clips, so the gain is read off one file. The audio tower runs once per clip: queries reuse the
zero-shot pass's embeddings; only drawn examples outside the evaluated clips are embedded here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.core.resample import to_model_rate
from monitor.inference.examples import ExampleSettings, SupportLayout, combine
from monitor.offline.evalset import Clip, EvalDataset, EvaluationError
from monitor.sources.audiofile import AudioFileError

if TYPE_CHECKING:
    from monitor.inference.scorer import ClapScorer
    from monitor.offline.evaluate import EvalResult

log = logging.getLogger(__name__)

MAX_SHOTS = 1000
MAX_CLIP_SAMPLES = 10 * 48_000  # as evaluate: the model's input length


@dataclass(frozen=True)
class FewShotPlan:
    """Which clips are examples for which held-out fold (``None``: the one split of a dataset without folds)."""

    shots: int
    seed: int
    groups: list[tuple[int | None, list[Clip]]]
    full: EvalDataset  # where drawn clips outside the evaluated ones are read from


def plan_few_shot(full: EvalDataset, evaluated: EvalDataset, shots: int, seed: int) -> FewShotPlan:
    """Draw the examples (before the model loads: a class without enough clips is an error at once)."""
    if not 1 <= shots <= MAX_SHOTS:
        raise EvaluationError(f"--shots: must be between 1 and {MAX_SHOTS} (got {shots})")
    rng = np.random.default_rng(seed)
    if evaluated.available_folds:
        held = evaluated.folds or evaluated.available_folds
        groups = [(f, _draw([c for c in full.clips if c.fold != f], evaluated.labels, shots, rng,
                            f"outside fold {f}", 0)) for f in held]
    else:
        groups = [(None, _draw(evaluated.clips, evaluated.labels, shots, rng, "", 1))]
    return FewShotPlan(shots, seed, groups, full)


def _draw(pool: Sequence[Clip], labels: Sequence[str], shots: int, rng: np.random.Generator, where: str,
          spare: int) -> list[Clip]:
    support: list[Clip] = []
    for k, label in enumerate(labels):
        candidates = [c for c in pool if c.truth == k]
        if len(candidates) < shots + spare:
            need = f"{shots} examples" + (" and a clip to test" if spare else "")
            raise EvaluationError(f"--shots {shots}: class '{label}' has {len(candidates)} clip(s)"
                                  f"{' ' + where if where else ''}; it needs {need}")
        support += [candidates[i] for i in sorted(rng.choice(len(candidates), shots, replace=False))]
    return support


def few_shot(plan: FewShotPlan, result: EvalResult, scorer: ClapScorer, batch_size: int) -> dict[str, Any]:
    """The ``few_shot`` block of ``results.json`` (see the module docstring)."""
    assert result.embeddings is not None
    labels, n = result.labels, len(result.labels)
    index = {c.name: i for i, c in enumerate(result.clips)}
    drawn = list({c.name: c for _, support in plan.groups for c in support if c.name not in index}.values())
    extra = _embed(plan.full, drawn, scorer, batch_size)
    sharpness = ExampleSettings().sharpness
    truths, combined, alone, zero = [], [], [], []
    for fold, support in plan.groups:
        vecs = [(c, result.embeddings[index[c.name]] if c.name in index else extra.get(c.name)) for c in support]
        usable = [(c, v) for c, v in vecs if v is not None]
        names = {c.name for c in support}
        query = [i for i, c in enumerate(result.clips) if (c.fold == fold if fold is not None else c.name not in names)]
        if not query:
            continue
        layout = SupportLayout.build([v for _, v in usable], [[j for j, (c, _) in enumerate(usable) if c.truth == k]
                                                               for k in range(n)], [[] for _ in range(n)],
                                     result.embeddings.shape[1])
        c_pos, c_neg = layout.nearest(result.embeddings[query])
        text = result.scores[query]
        truths.append(result.truths[query])
        combined.append(combine(text, c_pos, c_neg, sharpness))
        alone.append(combine(np.zeros_like(text), c_pos, c_neg, sharpness))
        zero.append(text)
    if not truths:
        raise EvaluationError("--shots: no clip left to test once the examples were drawn")
    truth = np.concatenate(truths)
    k = min(5, n)
    scores = np.concatenate(combined)
    hits = _ranking(scores)[:, 0] == truth
    return {
        "shots": plan.shots,
        "seed": plan.seed,
        "rule": f"max(zero-shot score, exp(-{sharpness:g} * (1 - cosine to the nearest example of the class)))",
        **_accuracy(scores, truth, k),
        "top5_k": k,
        "n_clips": len(truth),
        "per_class": {lbl: float(hits[truth == i].mean()) for i, lbl in enumerate(labels) if np.any(truth == i)},
        "examples_only": _accuracy(np.concatenate(alone), truth, k),
        "zero_shot": _accuracy(np.concatenate(zero), truth, k),
        "support": {("all" if fold is None else str(fold)): {lbl: [c.name for c in support if c.truth == i]
                                                             for i, lbl in enumerate(labels)}
                    for fold, support in plan.groups},
        "support_unreadable": sorted(c.name for c in drawn if c.name not in extra),
    }


def _ranking(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")  # ties keep label order, as evaluate's ranking does


def _accuracy(scores: np.ndarray, truth: np.ndarray, k: int) -> dict[str, float]:
    order = _ranking(scores)
    return {"top1_accuracy": float(np.mean(order[:, 0] == truth)),
            "top5_accuracy": float(np.mean(np.any(order[:, :k] == truth[:, None], axis=1)))}


def _embed(ds: EvalDataset, clips: Sequence[Clip], scorer: ClapScorer, batch_size: int) -> dict[str, np.ndarray]:
    """Unit embeddings of drawn clips that were not evaluated (other folds); unreadable ones are left out."""
    groups: dict[int, list[tuple[str, np.ndarray]]] = {}
    for clip in clips:
        try:
            samples, rate = ds.read(clip)
        except AudioFileError as exc:
            log.warning("--shots: example clip skipped: %s", exc)
            continue
        x = to_model_rate(samples, rate)[:MAX_CLIP_SAMPLES]
        groups.setdefault(len(x), []).append((clip.name, x))
    out: dict[str, np.ndarray] = {}
    for items in groups.values():
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            vectors = scorer.audio_embeddings(np.stack([x for _, x in chunk])).float().numpy()
            out.update({name: v for (name, _), v in zip(chunk, vectors, strict=True)})
    return out
