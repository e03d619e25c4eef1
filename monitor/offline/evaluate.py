"""``sound-monitor evaluate``: zero-shot accuracy of a CLAP checkpoint on a labelled sound dataset.

Three layouts are recognised (see :func:`open_dataset`): the ESC-50 release, a Hugging Face ``datasets`` folder
written by ``save_to_disk``, and one folder of audio files per class. Class names become the labels (underscores
turned into spaces) and every label gets one prompt, ``prompt_template.format(label)``, as in
``pipeline("zero-shot-audio-classification")``. Clips are resampled to 48 kHz in one shot with soxr and scored by
:class:`monitor.scorer.ClapScorer` (prompts encoded once, clips of equal length batched), so the top-1 accuracy
equals what the pipeline gives clip by clip.

Results go to a folder: ``results.json`` (accuracies, per-class accuracy, model, prompts, dataset, folds,
skipped files), ``predictions.csv`` (top-5 per clip) and ``confusion_matrix.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soundfile as sf

from monitor.config import DEFAULT_MODEL, DEFAULT_PROMPT_TEMPLATE, MODEL_SAMPLE_RATE
from monitor.offline.classify import to_model_rate
from monitor.sources.audiofile import AUDIO_EXTENSIONS, AudioFileError, find_audio_files, read_audio

log = logging.getLogger(__name__)

LAYOUT_ESC50 = "esc50"
LAYOUT_HF = "hf-datasets"
LAYOUT_FOLDERS = "class-folders"
ESC50_CSV = Path("meta") / "esc50.csv"
TOP_K = 5
MAX_CLIP_SECONDS = 10.0  # the model's input length; longer clips are cut to their first 10 s
EXTRA_HINT = "pip install 'sound-monitor[eval]'"


class EvaluationError(Exception):
    """The dataset or the options cannot be evaluated; the message names the file, folder or option."""


def parse_folds(text: str) -> list[int]:
    """``"1,2"`` → ``[1, 2]`` (for ``--folds``)."""
    try:
        folds = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fold numbers separated by commas, e.g. 1,2 (got {text!r})") \
            from None
    if not folds:
        raise argparse.ArgumentTypeError("no fold given")
    return folds


def class_label(name: str) -> str:
    """A class name as a label: underscores become spaces (``crying_baby`` → ``crying baby``)."""
    return " ".join(name.replace("_", " ").split())


@dataclass(frozen=True)
class Clip:
    """One labelled clip: ``source`` is a file path, or a row number of a ``datasets`` table."""

    name: str
    truth: int
    fold: int | None
    source: Path | int


@dataclass
class EvalDataset:
    """A labelled dataset, opened but not yet read."""

    path: Path
    layout: str
    classes: list[str]
    clips: list[Clip]
    available_folds: list[int] | None = None
    folds: list[int] | None = None
    splits: list[str] | None = None
    table: Any = None  # the datasets.Dataset holding the audio column (layout hf-datasets)

    @property
    def labels(self) -> list[str]:
        """Class names as labels."""
        return [class_label(c) for c in self.classes]

    def read(self, clip: Clip) -> tuple[np.ndarray, int]:
        """The clip as mono float32 and its sample rate (raises :class:`AudioFileError`)."""
        if isinstance(clip.source, Path):
            return read_audio(clip.source)
        return self._read_row(clip)

    def _read_row(self, clip: Clip) -> tuple[np.ndarray, int]:
        record = self.table[clip.source]["audio"]
        data = record.get("bytes") if isinstance(record, dict) else None
        if data:
            # Decoded here with soundfile: datasets 5 decodes Audio with torchcodec, an extra we do not need.
            try:
                samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
            except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
                raise AudioFileError(f"{clip.name}: cannot decode audio bytes ({exc})") from None
            if samples.shape[0] == 0:
                raise AudioFileError(f"{clip.name}: contains no samples")
            return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), int(rate)
        path = record.get("path") if isinstance(record, dict) else None
        if not path:
            raise AudioFileError(f"{clip.name}: no audio bytes and no path")
        p = Path(path)
        return read_audio(p if p.is_absolute() or p.exists() else self.path / p)


# ------------------------------------------------------------------------------------------------ opening


def detect_layout(path: Path) -> str:
    """Which of the three layouts ``path`` holds (raises :class:`EvaluationError` for a broken ESC-50 folder)."""
    if (path / ESC50_CSV).is_file():
        return LAYOUT_ESC50
    if (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    ):
        return LAYOUT_HF
    audio = path / "audio"
    loose_audio = audio.is_dir() and any(
        f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS for f in audio.iterdir()
    )
    if (path / "meta").is_dir() or loose_audio:
        raise EvaluationError(
            f"{path / ESC50_CSV}: missing; an ESC-50 release has meta/esc50.csv next to audio/ "
            "(columns filename, fold, target, category)"
        )
    return LAYOUT_FOLDERS


def open_dataset(path: str | Path, folds: Sequence[int] | None = None, limit: int | None = None) -> EvalDataset:
    """Open ``path`` in whichever layout it has, keep the clips of ``folds`` (all if None), the first ``limit``.

    Layouts, tried in this order:

    - ESC-50 release: ``meta/esc50.csv`` (columns ``filename``, ``fold``, ``category``, optional ``target``)
      and the clips in ``audio/``.
    - Hugging Face ``datasets`` folder (``save_to_disk``) with an ``audio`` and a ``category`` column and an
      optional ``fold`` column; a ``DatasetDict``'s splits are evaluated together.
    - One subfolder per class, audio files inside (recursively); the class is the subfolder's name.
    """
    p = Path(path)
    if not p.exists():
        raise EvaluationError(f"{p}: no such dataset folder")
    if not p.is_dir():
        raise EvaluationError(f"{p}: not a folder (give the dataset's root folder)")
    layout = detect_layout(p)
    if layout == LAYOUT_ESC50:
        ds = _open_esc50(p)
    elif layout == LAYOUT_HF:
        ds = _open_hf(p)
    else:
        ds = _open_folders(p)
    if folds:
        if ds.available_folds is None:
            raise EvaluationError(f"--folds: {p} ({layout}) has no folds")
        unknown = sorted(set(folds) - set(ds.available_folds))
        if unknown:
            raise EvaluationError(
                f"--folds: fold {', '.join(map(str, unknown))} not in {p} "
                f"(its folds: {', '.join(map(str, ds.available_folds))})"
            )
        ds.folds = sorted(folds)
        ds.clips = [c for c in ds.clips if c.fold in set(folds)]
    if limit is not None:
        if limit < 1:
            raise EvaluationError(f"--limit: must be at least 1 (got {limit})")
        ds.clips = ds.clips[:limit]
    if not ds.clips:
        raise EvaluationError(f"{p}: no clips to evaluate")
    labels = ds.labels
    if len(set(labels)) != len(labels):
        dup = sorted({lbl for lbl in labels if labels.count(lbl) > 1})
        raise EvaluationError(f"{p}: classes that give the same label once underscores become spaces: {dup}")
    return ds


def _class_order(pairs: Iterator[tuple[Any, str]]) -> list[str]:
    # ESC-50 numbers its classes (target 0..49): keep that order; otherwise alphabetical.
    seen: dict[str, Any] = {}
    for target, category in pairs:
        seen.setdefault(category, target)
    if all(t is not None for t in seen.values()):
        return sorted(seen, key=lambda c: (int(seen[c]), c))
    return sorted(seen)


def _open_esc50(root: Path) -> EvalDataset:
    csv_path = root / ESC50_CSV
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationError(f"{csv_path}: cannot read ({exc})") from None
    missing = [c for c in ("filename", "fold", "category") if c not in columns]
    if missing:
        raise EvaluationError(f"{csv_path}: expected columns filename, fold, category; missing {', '.join(missing)}")
    if not rows:
        raise EvaluationError(f"{csv_path}: no clips listed")
    has_target = "target" in columns
    try:
        classes = _class_order((r["target"] if has_target else None, r["category"]) for r in rows)
    except ValueError:
        raise EvaluationError(f"{csv_path}: the target column must hold class numbers") from None
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for line, r in enumerate(rows, start=2):
        try:
            fold = int(r["fold"])
        except (TypeError, ValueError):
            raise EvaluationError(f"{csv_path}, line {line}: fold must be a number (got {r['fold']!r})") from None
        clips.append(Clip(f"audio/{r['filename']}", index[r["category"]], fold, root / "audio" / r["filename"]))
    return EvalDataset(root, LAYOUT_ESC50, classes, clips, sorted({c.fold for c in clips if c.fold is not None}))


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise EvaluationError(
            f"reading a Hugging Face datasets folder needs the 'datasets' package: {EXTRA_HINT}"
        ) from None
    return datasets


def _open_hf(root: Path) -> EvalDataset:
    datasets = _import_datasets()
    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a damaged folder
        raise EvaluationError(f"{root}: cannot load the datasets folder ({exc})") from None
    splits = None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if not splits:
            raise EvaluationError(f"{root}: the DatasetDict has no splits")
        try:
            table = datasets.concatenate_datasets([loaded[s] for s in splits])
        except Exception as exc:  # noqa: BLE001
            raise EvaluationError(f"{root}: cannot join the splits {splits} ({exc})") from None
    else:
        table = loaded
    missing = [c for c in ("audio", "category") if c not in table.column_names]
    if missing:
        raise EvaluationError(f"{root}: expected columns audio and category; missing {missing} "
                              f"(columns: {', '.join(table.column_names)})")
    # Keep the audio undecoded (bytes and path): datasets 5 would decode it with torchcodec.
    try:
        table = table.cast_column("audio", datasets.Audio(decode=False))
    except Exception as exc:  # noqa: BLE001
        raise EvaluationError(f"{root}: the audio column is not audio ({exc})") from None

    def column(name: str) -> list[Any]:
        values = list(table[name])
        feature = table.features[name]
        if isinstance(feature, datasets.ClassLabel):
            return [feature.int2str(v) for v in values]
        return values

    categories = [str(c) for c in column("category")]
    targets = column("target") if "target" in table.column_names else [None] * len(categories)
    try:
        classes = _class_order(zip(targets, categories, strict=True))
    except (TypeError, ValueError):
        classes = sorted(set(categories))
    folds: list[int | None] = [None] * len(categories)
    available = None
    if "fold" in table.column_names:
        try:
            numbers = [int(f) for f in table["fold"]]
        except (TypeError, ValueError):
            raise EvaluationError(f"{root}: the fold column must hold numbers") from None
        folds, available = list(numbers), sorted(set(numbers))
    names = [str(n) for n in table["filename"]] if "filename" in table.column_names else None
    index = {c: i for i, c in enumerate(classes)}
    clips = [
        Clip(names[i] if names else f"row {i}", index[cat], folds[i], i) for i, cat in enumerate(categories)
    ]
    return EvalDataset(root, LAYOUT_HF, classes, clips, available, splits=splits,
                       table=table.select_columns(["audio"]))


def _open_folders(root: Path) -> EvalDataset:
    classes: list[str] = []
    clips: list[Clip] = []
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = find_audio_files([sub])
        if not files:
            log.warning("%s: no audio files; not a class", sub)
            continue
        classes.append(sub.name)
        clips += [Clip(str(f.relative_to(root)), len(classes) - 1, None, f) for f in files]
    loose = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS]
    if loose:
        log.warning("%s: %d audio file(s) outside class folders ignored", root, len(loose))
    if not classes:
        raise EvaluationError(
            f"{root}: no audio files found; expected meta/esc50.csv with audio/, a datasets folder written by "
            "save_to_disk, or one subfolder of audio files per class"
        )
    return EvalDataset(root, LAYOUT_FOLDERS, classes, clips)


# --------------------------------------------------------------------------------------------- evaluating


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
    """Raise :class:`EvaluationError` for a template without exactly one ``{}`` or a batch size below 1."""
    if prompt_template.count("{}") != 1:
        raise EvaluationError(f"--prompt-template: must contain '{{}}' exactly once (got {prompt_template!r})")
    if batch_size < 1:
        raise EvaluationError(f"--batch-size: must be at least 1 (got {batch_size})")


def evaluate(
    dataset: EvalDataset,
    scorer: Any,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    batch_size: int = 8,
    free_text_tower: bool = False,
) -> EvalResult:
    """Score every clip of ``dataset`` with ``scorer`` against its class labels; unreadable clips are skipped.

    The labels' prompts (``prompt_template.format(label)``) are encoded once, up front; ``free_text_tower``
    then drops the text tower to save memory during the run. Clips are grouped by length (48 kHz samples) and
    scored ``batch_size`` at a time: a group is scored as soon as it is full, and the largest group early when
    many different lengths pile up, so memory stays bounded on datasets of clips of varied length.
    """
    check_options(prompt_template, batch_size)
    from monitor.inference.scorer import LabelPrompts

    prompts = [prompt_template.format(lbl) for lbl in dataset.labels]
    scorer.set_labels([LabelPrompts(lbl, (p,)) for lbl, p in zip(dataset.labels, prompts, strict=True)])
    if free_text_tower:
        scorer.free_text_tower()
    n = len(dataset.clips)
    scores = np.zeros((n, len(scorer.labels)), dtype=np.float32)
    scored = np.zeros(n, dtype=bool)
    skipped: list[dict[str, str]] = []
    truncated = 0
    max_samples = round(MAX_CLIP_SECONDS * MODEL_SAMPLE_RATE)
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}
    bar = _progress(n)
    t0 = time.monotonic()

    def flush(length: int) -> None:
        items = pending.pop(length)
        rows = scorer.score(np.stack([x for _, x in items]))
        for (i, _), row in zip(items, rows, strict=True):
            scores[i] = row
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
            x = to_model_rate(samples, rate)
            if len(x) > max_samples:
                x = x[:max_samples]  # deterministic, unlike the feature extractor's rand_trunc
                truncated += 1
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
    )


# ------------------------------------------------------------------------------------------------ writing


def results_dict(result: EvalResult) -> dict[str, Any]:
    """The content of ``results.json``."""
    from monitor import __version__

    ds = result.dataset
    per_class = result.per_class()
    n = len(result.clips)
    return {
        "top1_accuracy": result.top1_accuracy(),
        "top5_accuracy": result.top5_accuracy(),
        "top5_k": result.k,
        "n_clips": n,
        "n_skipped": len(result.skipped),
        "per_class_accuracy": {lbl: acc for lbl, (acc, _) in per_class.items()},
        "per_class_clips": {lbl: count for lbl, (_, count) in per_class.items()},
        "model": result.model,
        "prompt_template": result.prompt_template,
        "labels": result.labels,
        "classes": ds.classes,
        "prompts": result.prompts,
        "dataset": str(ds.path.resolve()),
        "layout": ds.layout,
        "splits": ds.splits,
        "folds": ds.folds if ds.folds is not None else ds.available_folds,
        "all_folds": ds.folds is None,
        "skipped": result.skipped,
        "truncated_clips": result.truncated,
        "sample_rate": MODEL_SAMPLE_RATE,
        "seconds": round(result.seconds, 3),
        "clips_per_second": round(n / result.seconds, 2) if result.seconds > 0 else None,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sound_monitor_version": __version__,
    }


def write_predictions(result: EvalResult, path: Path) -> None:
    """``predictions.csv``: file, fold, truth, whether top-1 is right, then the top-5 labels with scores."""
    labels = result.labels
    k = result.k
    ranking = result.ranking()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "fold", "truth", "correct",
                    *[h for j in range(1, k + 1) for h in (f"top{j}_label", f"top{j}_score")]])
        for clip, order, row in zip(result.clips, ranking, result.scores, strict=True):
            top = [v for j in order[:k] for v in (labels[j], f"{row[j]:.6f}")]
            fold = "" if clip.fold is None else clip.fold
            w.writerow([clip.name, fold, labels[clip.truth], int(order[0] == clip.truth), *top])


def plot_confusion(result: EvalResult, path: Path) -> None:
    """``confusion_matrix.png``: rows truth, columns prediction, shaded by fraction of the row's clips.

    The figure grows with the number of classes (about a quarter inch per class), so 50 ESC-50 labels stay
    readable; counts are written in the cells up to 25 classes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or GUI state

    labels = result.labels
    n = len(labels)
    m = result.confusion()
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = max(5.0, 2.5 + 0.25 * n)
    font = 9 if n <= 25 else 7
    fig = Figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    model = Path(result.model).name if Path(result.model).is_dir() else result.model  # a hub id says more
    ax.set_title(f"{model}: top-1 {100 * result.top1_accuracy():.1f} % "
                 f"on {len(result.clips)} clips", fontsize=10)
    if n <= 25:
        for (i, j), count in np.ndenumerate(m):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                        color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of the class's clips")
    fig.savefig(path)


def summary_table(result: EvalResult, out_dir: Path, worst: int = 5) -> str:
    """A short text summary for stdout."""
    ds = result.dataset
    folds = ",".join(map(str, ds.folds)) if ds.folds else ("all" if ds.available_folds else "-")
    rate = f"{len(result.clips) / result.seconds:.1f} clips/s" if result.seconds > 0 else "-"
    rows = [
        ("dataset", f"{ds.path} ({ds.layout}, folds {folds})"),
        ("model", result.model),
        ("labels", f"{len(result.labels)}, prompts like {result.prompts[0]!r}" if result.prompts else "-"),
        ("clips", f"{len(result.clips)} scored, {len(result.skipped)} skipped"),
        ("top-1", f"{100 * result.top1_accuracy():.2f} %"),
        (f"top-{result.k}", f"{100 * result.top5_accuracy():.2f} %"),
        ("speed", f"{rate} ({result.seconds:.1f} s)"),
    ]
    weak = sorted((acc, lbl) for lbl, (acc, _) in result.per_class().items() if acc < 1.0)[:worst]
    if weak:
        rows.append(("weakest", ", ".join(f"{lbl} {100 * acc:.0f} %" for acc, lbl in weak)))
    rows.append(("written", f"{out_dir}/results.json, predictions.csv, confusion_matrix.png"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n"


def write_results(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``predictions.csv`` and ``confusion_matrix.png`` into ``out_dir``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    paths = {"results": out / "results.json", "predictions": out / "predictions.csv",
             "confusion_matrix": out / "confusion_matrix.png"}
    paths["results"].write_text(json.dumps(results_dict(result), indent=2) + "\n", encoding="utf-8")
    write_predictions(result, paths["predictions"])
    plot_confusion(result, paths["confusion_matrix"])
    return paths


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
) -> int:
    """The ``evaluate`` command: 0 when results were written, 1 on bad input (the reason on stderr)."""
    from monitor.inference.scorer import ClapScorer, ModelLoadError

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
        try:
            scorer = ClapScorer(model, threads)
        except ModelLoadError as exc:
            raise EvaluationError(str(exc)) from None
        result = evaluate(ds, scorer, prompt_template, batch_size, free_text_tower=True)
        if not result.clips:
            raise EvaluationError(f"{ds.path}: none of the {len(ds.clips)} clips could be read")
        write_results(result, out_dir)
    except EvaluationError as exc:
        log.error("%s", exc)
        return 1
    out.write(summary_table(result, Path(out_dir)))
    out.flush()
    return 0
