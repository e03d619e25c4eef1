"""``sound-monitor evaluate``: zero-shot accuracy of a CLAP checkpoint on a labelled sound dataset.

The dataset is opened by :mod:`monitor.offline.datasets` (ESC-50 release, Hugging Face ``datasets`` folder,
one folder per class). Class names become the labels (underscores turned into spaces) and every label gets one
prompt, ``prompt_template.format(label)``, as in ``pipeline("zero-shot-audio-classification")``. The scorer is
loaded by :func:`monitor.inference.loading.load_scorer`, like the live monitor's; clips are resampled to 48 kHz
through the live monitor's :class:`monitor.core.sanitize.AudioGuard` (a clip whose scored part holds NaN, inf or
samples beyond ±1000 full scale is skipped, with the reason) and clips of equal length are scored together by
:func:`monitor.offline.scoring.score_batches`, so the top-1 accuracy equals what the pipeline gives clip by clip.

Results go to a folder (:mod:`monitor.offline.report`): ``results.json`` (accuracies, per-class accuracy, model,
prompts, dataset, folds, skipped files), ``predictions.csv`` (top-5 per clip) and ``confusion_matrix.png``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from monitor.config import DEFAULT_MODEL, DEFAULT_PROMPT_TEMPLATE, MODEL_SAMPLE_RATE, InferenceConfig
from monitor.config.schema import prompt_template_problem
from monitor.core.sanitize import AudioGuard
from monitor.offline.datasets import EXTRA_HINT, open_dataset
from monitor.offline.datasets import parse_folds as parse_folds  # monitor/cli.py imports it from here
from monitor.offline.evalset import Clip, EvalDataset, EvaluationError
from monitor.offline.report import summary_table, write_results
from monitor.offline.scoring import score_and_embed
from monitor.sources.audiofile import AudioFileError

if TYPE_CHECKING:  # torch is imported only when a model is loaded
    from monitor.inference.scorer import ClapScorer, LabelPrompts

log = logging.getLogger(__name__)

TOP_K = 5
MAX_CLIP_SECONDS = 10.0  # the model's input length; longer clips are cut to their first 10 s


@dataclass
class EvalResult:
    """Scores of every clip that could be read, and what was skipped."""

    dataset: EvalDataset
    model: str
    prompt_template: str
    prompts: list[str]
    scores: np.ndarray  # (clips, labels), in dataset order
    truths: np.ndarray  # (clips,) class index
    clips: list[Clip]
    skipped: list[dict[str, str]] = field(default_factory=list)
    truncated: int = 0
    seconds: float = 0.0
    embeddings: np.ndarray | None = None  # (clips, dim) unit audio embeddings, for the few-shot pass
    few_shot: dict[str, Any] | None = None  # evaluate --shots (monitor/offline/fewshot.py)

    @property
    def labels(self) -> list[str]:
        """Labels, in class order."""
        return self.dataset.labels

    @property
    def k(self) -> int:
        """The k of top-k accuracy: 5, or the number of labels if fewer."""
        return min(TOP_K, len(self.labels))

    def ranking(self) -> np.ndarray:
        """Label indices per clip, best first (ties keep label order, as the pipeline's stable sort does)."""
        return np.argsort(-self.scores, axis=1, kind="stable")

    def top1_accuracy(self) -> float:
        """Fraction of clips whose best label is the truth."""
        return float(np.mean(self.ranking()[:, 0] == self.truths))

    def top5_accuracy(self) -> float:
        """Fraction of clips whose truth is among the best five labels."""
        return float(np.mean(np.any(self.ranking()[:, : self.k] == self.truths[:, None], axis=1)))

    def confusion(self) -> np.ndarray:
        """Counts (truth, predicted)."""
        n = len(self.labels)
        m = np.zeros((n, n), dtype=np.int64)
        np.add.at(m, (self.truths, self.ranking()[:, 0]), 1)
        return m

    def per_class(self) -> dict[str, tuple[float, int]]:
        """Label → (top-1 accuracy, clips) for every class with at least one clip."""
        m = self.confusion()
        out = {}
        for i, lbl in enumerate(self.labels):
            n = int(m[i].sum())
            if n:
                out[lbl] = (float(m[i, i] / n), n)
        return out


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int) -> Any:
    """A tqdm bar (clips per second) on a terminal; nothing when stderr is not a TTY or tqdm is missing."""
    if not sys.stderr.isatty():
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return tqdm(total=total, unit="clip", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def check_options(prompt_template: str, batch_size: int) -> None:
    """Raise :class:`EvaluationError` for a template that cannot format every label (the config's
    ``prompt_template`` check, as the command line applies it) or a batch size below 1."""
    why = prompt_template_problem(prompt_template)
    if why:
        raise EvaluationError(f"--prompt-template: {why} (got {prompt_template!r})")
    if batch_size < 1:
        raise EvaluationError(f"--batch-size: must be at least 1 (got {batch_size})")


def dataset_labels(dataset: EvalDataset, prompt_template: str = DEFAULT_PROMPT_TEMPLATE) -> list[LabelPrompts]:
    """The labels to load the scorer with: each class label with its one prompt, in class order."""
    from monitor.labels import LabelPrompts

    return [LabelPrompts(lbl, (prompt_template.format(lbl),)) for lbl in dataset.labels]


def evaluate(
    dataset: EvalDataset,
    scorer: ClapScorer,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    batch_size: int = 8,
) -> EvalResult:
    """Score every clip of ``dataset`` with ``scorer``; unreadable clips are skipped.

    ``scorer`` comes from ``load_scorer(model, inference, dataset_labels(dataset, prompt_template))``: its
    labels must be the dataset's, in class order. Clips are grouped by length (48 kHz samples) and scored
    ``batch_size`` at a time: a group is scored as soon as it is full, and the largest group early when many
    different lengths pile up, so memory stays bounded on datasets of clips of varied length.
    """
    check_options(prompt_template, batch_size)
    if list(scorer.labels) != dataset.labels:
        raise ValueError(f"the scorer's labels {scorer.labels} are not the dataset's {dataset.labels}")
    prompts = [prompt_template.format(lbl) for lbl in dataset.labels]
    n = len(dataset.clips)
    scores = np.zeros((n, len(scorer.labels)), dtype=np.float32)
    embeddings: np.ndarray | None = None
    scored = np.zeros(n, dtype=bool)
    skipped: list[dict[str, str]] = []
    truncated = 0
    max_samples = round(MAX_CLIP_SECONDS * MODEL_SAMPLE_RATE)
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}
    bar = _progress(n)
    t0 = time.monotonic()

    def flush(length: int) -> None:
        nonlocal embeddings
        items = pending.pop(length)
        rows, vectors = score_and_embed(scorer, [x for _, x in items], batch_size)
        if embeddings is None:
            embeddings = np.zeros((n, vectors.shape[1]), dtype=np.float32)
        for (i, _), row, vec in zip(items, rows, vectors, strict=True):
            if not np.isfinite(row).all():  # a broken checkpoint: skipped, never written as NaN
                skipped.append({"file": dataset.clips[i].name, "reason": "the model gave non-finite scores"})
                continue
            scores[i] = row
            embeddings[i] = vec
            scored[i] = True
        bar.update(len(items))

    try:
        for i, clip in enumerate(dataset.clips):
            try:
                samples, rate = dataset.read(clip)
            except AudioFileError as exc:
                log.warning("skipped %s", exc)
                skipped.append({"file": clip.name, "reason": str(exc)})
                bar.update(1)
                continue
            guard = AudioGuard(rate, name=clip.name)  # NaN/inf/absurd samples: as live and classify
            x = guard.process(samples, last=True)
            if len(x) > max_samples:
                x = x[:max_samples]  # deterministic, unlike the feature extractor's rand_trunc
                truncated += 1
            if not guard.clean(0, len(x)):
                skipped.append({"file": clip.name, "reason": f"{clip.name}: invalid samples ({guard.describe()})"})
                bar.update(1)
                continue
            group = pending.setdefault(len(x), [])
            group.append((i, x))
            if len(group) >= batch_size:
                flush(len(x))
            elif sum(map(len, pending.values())) >= 4 * batch_size:
                flush(max(pending, key=lambda k: len(pending[k])))
        for length in list(pending):
            flush(length)
    finally:
        bar.close()
    if truncated:
        log.warning("%d clip(s) longer than %g s: scored on their first %g s", truncated, MAX_CLIP_SECONDS,
                    MAX_CLIP_SECONDS)
    kept = [c for c, ok in zip(dataset.clips, scored, strict=True) if ok]
    return EvalResult(
        dataset=dataset,
        model=str(scorer.model_id),
        prompt_template=prompt_template,
        prompts=prompts,
        scores=scores[scored],
        truths=np.array([c.truth for c in kept], dtype=np.int64),
        clips=kept,
        skipped=skipped,
        truncated=truncated,
        seconds=time.monotonic() - t0,
        embeddings=embeddings[scored] if embeddings is not None else None,
    )


# -------------------------------------------------------------------------------------------------- command


def run(
    dataset: str | Path,
    model: str | None = None,
    out_dir: str | Path = "eval-out",
    folds: Sequence[int] | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    threads: int | None = None,
    out: TextIO | None = None,
    shots: int | None = None,
    seed: int = 0,
    backend: str = "torch",
) -> int:
    """The ``evaluate`` command: 0 when results were written, 1 on bad input (the reason on stderr).

    With ``shots`` it also measures few-shot accuracy (:mod:`monitor.offline.fewshot`)."""
    from monitor.inference.errors import ModelLoadError
    from monitor.inference.loading import load_scorer

    out = out or sys.stdout
    model = model or DEFAULT_MODEL
    try:
        check_options(prompt_template, batch_size)  # before the model loads
        try:
            import matplotlib  # noqa: F401 - checked before the long run, not after it
        except ImportError:
            raise EvaluationError(f"the confusion matrix needs matplotlib: {EXTRA_HINT}") from None
        ds = open_dataset(dataset, folds, limit)
        log.info("%s: %s layout, %d classes, %d clips", ds.path, ds.layout, len(ds.classes), len(ds.clips))
        plan = None
        if shots is not None and backend != "torch":
            raise EvaluationError("--shots: few-shot accuracy needs --backend torch (examples are a torch feature "
                                  "for now)")
        if shots is not None:
            from monitor.offline.fewshot import plan_few_shot

            plan = plan_few_shot(open_dataset(dataset) if ds.available_folds else ds, ds, shots, seed)
        try:
            inference = InferenceConfig(threads=threads, backend=backend)  # type: ignore[arg-type]
            scorer = load_scorer(model, inference, dataset_labels(ds, prompt_template))
        except ModelLoadError as exc:
            raise EvaluationError(str(exc)) from None
        result = evaluate(ds, scorer, prompt_template, batch_size)
        if not result.clips:
            raise EvaluationError(f"{ds.path}: none of the {len(ds.clips)} clips could be read")
        if plan is not None:
            from monitor.offline.fewshot import few_shot

            result.few_shot = few_shot(plan, result, scorer, batch_size)
        write_results(result, out_dir)
    except EvaluationError as exc:
        log.error("%s", exc)
        return 1
    out.write(summary_table(result, Path(out_dir)))
    out.flush()
    return 0
