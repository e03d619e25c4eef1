"""``sound-monitor classify``: zero-shot scores of audio files against labels, per file and per window.

A file is read whole (any format, rate and channel count), resampled to 48 kHz with
:func:`monitor.core.resample.to_model_rate` and scored by a scorer from
:func:`monitor.inference.loading.load_scorer`, loaded as the live monitor loads it (with a config: its
``inference`` threads and precision), so ``classify --config`` prints the scores ``replay --scores`` does.
A clip no longer than one window is scored as it is: the feature extractor's ``repeatpad`` fills the model's
10 s input exactly as ``pipeline("zero-shot-audio-classification")`` would. A longer clip is cut into windows
(``audio.window_seconds`` every ``audio.hop_seconds``, as the live monitor does); a final partial window is not
scored, and the file gets a summary (mean and max per label, top label by mean).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from monitor.config import (
    DEFAULT_MODEL,
    DEFAULT_PROMPT_TEMPLATE,
    MODEL_SAMPLE_RATE,
    AudioConfig,
    Config,
    InferenceConfig,
    load_config,
)
from monitor.core.resample import to_model_rate
from monitor.core.windowing import Windower
from monitor.inference.errors import ModelLoadError
from monitor.inference.loading import load_scorer
from monitor.inference.worker import Scorer
from monitor.labels import LabelPrompts, labels_from_config
from monitor.offline.scoring import BATCH_SIZE, score_batches
from monitor.sources.audiofile import AudioFileError, find_audio_files, read_audio

log = logging.getLogger(__name__)


class ClassifyError(Exception):
    """Classification cannot run (no labels, no files); the message says why."""


@dataclass(frozen=True)
class ClassifySettings:
    """Everything classification needs besides the files."""

    model: str
    labels: list[LabelPrompts]
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    window_seconds: float = 5.0
    hop_seconds: float = 1.0
    inference: InferenceConfig = field(default_factory=InferenceConfig)  # the config's threads and precision


def resolve_settings(
    labels: Sequence[str] | None,
    config_path: str | Path | None,
    config_required: bool,
    model: str | None = None,
) -> ClassifySettings:
    """Labels, prompts, windowing and model from the command line and the config file.

    Labels come from ``labels`` if given, else from the config (its labels with their prompts, then its
    background labels: the set the live monitor scores, so the numbers match ``replay --scores``). The prompt
    template, window, hop, model and ``inference`` section (threads, precision) come from the config when there
    is one, else the defaults. A missing config file is an error only when ``config_required`` (it was named
    explicitly) or no labels were given.
    """
    cfg: Config | None = None
    if config_path is not None and Path(config_path).is_file():
        cfg = load_config(config_path)  # a ConfigError goes to the CLI, which lists every problem
    elif config_path is not None and config_required:
        raise ClassifyError(f"{config_path}: no such config file")
    if not labels and cfg is None:
        where = f" ({config_path}: no such file)" if config_path is not None else ""
        raise ClassifyError(f"no labels: give --labels, or a config file with labels{where}")
    template = cfg.prompt_template if cfg else DEFAULT_PROMPT_TEMPLATE
    audio = cfg.audio if cfg else AudioConfig()
    if labels:
        names = [name.strip() for name in labels]
        if any(not n for n in names):
            raise ClassifyError("labels must not be blank")
        if len(set(names)) != len(names):
            raise ClassifyError(f"duplicate labels: {sorted({n for n in names if names.count(n) > 1})}")
        prompts = [LabelPrompts(n, (template.format(n),)) for n in names]
    else:
        assert cfg is not None
        prompts = config_labels(cfg)
    return ClassifySettings(
        model=model or (cfg.model if cfg else DEFAULT_MODEL),
        labels=prompts,
        prompt_template=template,
        window_seconds=audio.window_seconds,
        hop_seconds=audio.hop_seconds,
        inference=cfg.inference if cfg else InferenceConfig(),
    )


def config_labels(cfg: Config) -> list[LabelPrompts]:
    """The labels the live monitor scores for ``cfg`` (the label registry's definition): configured labels with
    their prompts, then background labels."""
    return labels_from_config(cfg).scored()


@dataclass
class FileScores:
    """Scores of one file: one row per scored window (one row for a clip up to a window long)."""

    file: str
    duration: float
    sample_rate: int
    starts: list[float]
    ends: list[float]
    scores: np.ndarray  # (windows, labels)
    labels: list[str] = field(default_factory=list)

    @property
    def mean(self) -> np.ndarray:
        """Mean score per label over the windows."""
        return self.scores.mean(axis=0)

    @property
    def max(self) -> np.ndarray:
        """Highest score per label over the windows."""
        return self.scores.max(axis=0)

    def ranked(self) -> list[int]:
        """Label indices from highest to lowest mean score."""
        return [int(i) for i in np.argsort(-self.mean, kind="stable")]

    def to_json(self, top_k: int) -> dict[str, Any]:
        """JSON-ready dict: windows with a label → score map each, and the summary."""
        labels = self.labels
        mean, mx = self.mean, self.max
        order = self.ranked()
        return {
            "file": self.file,
            "duration": round(self.duration, 3),
            "sample_rate": self.sample_rate,
            "windows": [
                {"start": round(s, 3), "end": round(e, 3), "scores": dict(zip(labels, map(float, row), strict=True))}
                for s, e, row in zip(self.starts, self.ends, self.scores, strict=True)
            ],
            "summary": {
                "mean": dict(zip(labels, map(float, mean), strict=True)),
                "max": dict(zip(labels, map(float, mx), strict=True)),
                "top_label": labels[order[0]],
                "top_score": float(mean[order[0]]),
                "top": [{"label": labels[i], "mean": float(mean[i]), "max": float(mx[i])} for i in order[:top_k]],
            },
        }


def score_clip(scorer: Scorer, samples: np.ndarray, window_seconds: float, hop_seconds: float,
               ) -> tuple[list[float], list[float], np.ndarray]:
    """Score 48 kHz samples: as one clip if no longer than a window, else window by window.

    Returns window starts, ends (seconds) and scores ``(windows, labels)``. A clip longer than a window always
    has at least one full window; the samples after the last full window are not scored.
    """
    rate = MODEL_SAMPLE_RATE
    windower = Windower(window_seconds, hop_seconds, rate)
    if len(samples) <= windower.window:
        return [0.0], [len(samples) / rate], score_batches(scorer, [samples])
    starts: list[float] = []

    def windows() -> Iterator[np.ndarray]:  # lazily: an hour-long file is never held as all its windows
        for _, start, win in windower.push(samples):
            starts.append(start / rate)
            yield win

    scores = score_batches(scorer, windows(), BATCH_SIZE)
    ends = [s + windower.window / rate for s in starts]
    return starts, ends, scores


def classify_file(scorer: Scorer, path: str | Path, window_seconds: float, hop_seconds: float) -> FileScores:
    """Read, resample and score one file (raises :class:`AudioFileError` if it cannot be read)."""
    samples, rate = read_audio(path)
    starts, ends, scores = score_clip(scorer, to_model_rate(samples, rate), window_seconds, hop_seconds)
    return FileScores(str(path), len(samples) / rate, rate, starts, ends, scores, list(scorer.labels))


def classify_files(
    scorer: Scorer, paths: Sequence[str | Path], window_seconds: float, hop_seconds: float
) -> tuple[list[FileScores], list[tuple[str, str]]]:
    """Classify files and folders (recursively); unreadable files are logged and returned as (file, reason)."""
    files = find_audio_files(list(paths))
    results: list[FileScores] = []
    errors: list[tuple[str, str]] = []
    for path in files:
        try:
            results.append(classify_file(scorer, path, window_seconds, hop_seconds))
        except AudioFileError as exc:
            log.error("skipped %s", exc)
            errors.append((str(path), str(exc)))
    return results, errors


def format_table(results: Sequence[FileScores], top_k: int) -> str:
    """A readable report: per file the top labels by mean (and max), then each window's top label."""
    lines: list[str] = []
    for r in results:
        n = len(r.starts)
        lines.append(f"{r.file}  ({r.duration:.2f} s, {n} window{'s' if n != 1 else ''})")
        width = max(len(lbl) for lbl in r.labels)
        lines.append(f"  {'label':<{width}}  {'mean':>6}  {'max':>6}")
        mean, mx = r.mean, r.max
        for i in r.ranked()[:top_k]:
            lines.append(f"  {r.labels[i]:<{width}}  {mean[i]:6.3f}  {mx[i]:6.3f}")
        if n > 1:
            for s, e, row in zip(r.starts, r.ends, r.scores, strict=True):
                best = int(np.argmax(row))
                span = f"{s:.2f}-{e:.2f} s"
                lines.append(f"    {span:<18}{r.labels[best]} ({row[best]:.3f})")
        lines.append("")
    return "\n".join(lines)


def report_json(settings: ClassifySettings, results: Sequence[FileScores], errors: Sequence[tuple[str, str]],
                top_k: int) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "model": settings.model,
        "labels": [lbl.name for lbl in settings.labels],
        "prompts": [list(lbl.prompts) for lbl in settings.labels],
        "prompt_template": settings.prompt_template,
        "window_seconds": settings.window_seconds,
        "hop_seconds": settings.hop_seconds,
        "sample_rate": MODEL_SAMPLE_RATE,
        "files": [r.to_json(top_k) for r in results],
        "errors": [{"file": f, "error": e} for f, e in errors],
    }


def run(
    paths: Sequence[str | Path],
    labels: Sequence[str] | None,
    config_path: str | Path | None,
    config_required: bool = False,
    model: str | None = None,
    top_k: int = 5,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """The ``classify`` command: 0 if at least one file was scored, 1 if none could be (reasons on stderr)."""
    out = out or sys.stdout
    if top_k < 1:
        log.error("--top-k: must be at least 1 (got %d)", top_k)
        return 1
    try:
        settings = resolve_settings(labels, config_path, config_required, model)
    except ClassifyError as exc:
        log.error("%s", exc)
        return 1
    files = find_audio_files(list(paths))
    for p in map(Path, paths):
        if p.is_dir() and not any(f.is_relative_to(p) for f in files):
            log.error("%s: no audio files in this folder", p)
    if not files:
        log.error("nothing to classify: no audio files in %s", ", ".join(map(str, paths)))
        return 1
    try:
        scorer = load_scorer(settings.model, settings.inference, settings.labels)
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 1
    results, errors = classify_files(scorer, files, settings.window_seconds, settings.hop_seconds)
    if as_json:
        out.write(json.dumps(report_json(settings, results, errors, top_k)) + "\n")
    else:
        out.write(format_table(results, top_k))
    out.flush()
    if not results:
        log.error("none of the %d file(s) could be read", len(files))
        return 1
    return 0
