"""Labelled sound datasets for ``evaluate``: the ESC-50 release, ``datasets`` folders and class folders.

:func:`open_dataset` recognises the layout, reads the class list and the clips (and their folds) into an
:class:`~monitor.offline.evalset.EvalDataset` (:mod:`monitor.offline.evalset`: the records, and reading a clip's
audio, which stays unread until then).
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from monitor.offline.evalset import Clip, EvalDataset, EvaluationError
from monitor.sources.audiofile import AUDIO_EXTENSIONS, find_audio_files

log = logging.getLogger(__name__)

LAYOUT_ESC50 = "esc50"
LAYOUT_HF = "hf-datasets"
LAYOUT_FOLDERS = "class-folders"
ESC50_CSV = Path("meta") / "esc50.csv"
EXTRA_HINT = "pip install 'sound-monitor[eval]'"


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
