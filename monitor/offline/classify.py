"""``sound-monitor classify``: zero-shot scores of audio files against labels, per file and per window.

A file (any format, rate and channel count) is streamed block by block through the live monitor's audio guard,
resampler and windower (:class:`monitor.offline.filewindows.FileWindows`: memory stays bounded on a file of any
length) and scored by a scorer from :func:`monitor.inference.loading.load_scorer`, loaded as the live monitor
loads it (with a config: its ``inference`` threads and precision), so ``classify --config`` prints the scores
``replay --scores`` does. A clip no longer than one window is scored as it is: the feature extractor's
``repeatpad`` fills the model's 10 s input exactly as ``pipeline("zero-shot-audio-classification")`` would. A
longer clip is cut into windows (``audio.window_seconds`` every ``audio.hop_seconds``, as the live monitor does);
a final partial window is not scored, and the file gets a summary (mean and max per label, top label by mean).
Windows holding samples that are not audio (NaN, ±inf, beyond ±1000 full scale) are not scored, as live; a file
with no valid window at all is an error naming it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
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
from monitor.inference.errors import ModelLoadError
from monitor.inference.example_settings import ExampleSettings
from monitor.inference.loading import load_scorer
from monitor.inference.worker import Scorer
from monitor.labels import LabelPrompts, labels_from_config
from monitor.offline.filewindows import FileWindows
from monitor.offline.scoring import BATCH_SIZE, score_batches
from monitor.sources.audiofile import AudioFileError, find_audio_files
from monitor.strictjson import dumps

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
    examples: ExampleSettings | None = None  # the config's example cache and window (its labels' examples count)


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
        examples=ExampleSettings.from_config(cfg) if cfg else None,
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
    invalid_windows: int = 0  # windows not scored: they held NaN, inf or samples beyond ±1000 full scale

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
            "invalid_windows": self.invalid_windows,
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


def classify_file(scorer: Scorer, path: str | Path, window_seconds: float, hop_seconds: float) -> FileScores:
    """Stream, resample and score one file (raises :class:`AudioFileError` if it cannot be read or holds no valid
    window)."""
    windows = FileWindows(path, window_seconds, hop_seconds)
    try:
        scores = score_batches(scorer, windows, BATCH_SIZE)
    finally:
        windows.close()
    starts, ends = windows.starts, windows.ends
    finite = np.isfinite(scores).all(axis=1)
    if not finite.all():  # a broken checkpoint: never report NaN; those windows count as not scored
        scores = scores[finite]
        starts = [s for s, ok in zip(starts, finite, strict=True) if ok]
        ends = [e for e, ok in zip(ends, finite, strict=True) if ok]
        if len(scores):
            log.error("%s: the model gave non-finite scores for %d window(s); left out", path, int((~finite).sum()))
    if not len(scores):
        if windows.invalid:
            raise AudioFileError(f"{path}: no valid audio: every window holds NaN, inf or samples beyond ±1000 full "
                                 f"scale ({windows.guard.describe()})")
        raise AudioFileError(f"{path}: the model gave non-finite scores for every window")
    if windows.invalid:
        log.warning("%s: %d window(s) not scored: invalid samples (%s)", path, windows.invalid,
                    windows.guard.describe())
    return FileScores(str(path), windows.duration, windows.rate, starts, ends, scores, list(scorer.labels),
                      invalid_windows=windows.invalid)


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
        bad = f", {r.invalid_windows} invalid not scored" if r.invalid_windows else ""
        lines.append(f"{r.file}  ({r.duration:.2f} s, {n} window{'s' if n != 1 else ''}{bad})")
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
        scorer = load_scorer(settings.model, settings.inference, settings.labels, examples=settings.examples)
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 1
    results, errors = classify_files(scorer, files, settings.window_seconds, settings.hop_seconds)
    if as_json:
        out.write(dumps(report_json(settings, results, errors, top_k), separators=None, what="classify report") + "\n")
    else:
        out.write(format_table(results, top_k))
    out.flush()
    if not results:
        log.error("none of the %d file(s) could be read", len(files))
        return 1
    return 0
