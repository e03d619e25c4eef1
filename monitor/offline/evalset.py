"""A labelled dataset once opened: its classes, its clips, and reading one clip's audio.

The records that :mod:`monitor.offline.datasets` builds from whichever layout a folder holds (ESC-50 release,
``datasets`` folder, class folders) and that ``evaluate`` and few-shot scoring read; the audio stays unread until
:meth:`EvalDataset.read` is called for a clip. Class names become labels with underscores turned into spaces
(:func:`class_label`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from monitor.core.resample import downmix
from monitor.sources.audiofile import AudioFileError, check_rate, read_audio

__all__ = ["Clip", "EvalDataset", "EvaluationError", "class_label"]


class EvaluationError(Exception):
    """The dataset or the options cannot be evaluated; the message names the file, folder or option."""


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
            return np.ascontiguousarray(downmix(samples)), check_rate(rate, clip.name)
        path = record.get("path") if isinstance(record, dict) else None
        if not path:
            raise AudioFileError(f"{clip.name}: no audio bytes and no path")
        p = Path(path)
        return read_audio(p if p.is_absolute() or p.exists() else self.path / p)
