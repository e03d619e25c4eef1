"""A file's windows for offline scoring, read the way the live monitor reads its input.

The file is streamed block by block (:class:`~monitor.sources.audiofile.FileSource`) through the same
:class:`~monitor.core.sanitize.AudioGuard` (NaN, ±inf and absurd samples) and streaming resampler as ``replay``,
and cut by the same :class:`~monitor.core.windowing.Windower`, so ``classify`` gives ``replay --scores``'s numbers
and never holds more than a block and a window of a file of any length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from monitor.config import MODEL_SAMPLE_RATE
from monitor.core.sanitize import AudioGuard
from monitor.core.windowing import Windower
from monitor.sources.audiofile import FileSource

BLOCK_SECONDS = 1.0  # audio read per block


class FileWindows:
    """Iterate once over the valid 48 kHz windows of ``path``; ``starts``/``ends`` (seconds) fill in as they go.

    A file no longer than one window gives one window of its whole length (scored as it is: the feature
    extractor repeat-pads it); a longer one gives every full window, the samples after the last one are not
    scored. Windows holding invalid samples are counted in ``invalid``, not yielded. Opening raises
    :class:`~monitor.sources.audiofile.AudioFileError` (missing, a directory, unreadable, absurd rate, empty).
    """

    def __init__(self, path: str | Path, window_seconds: float, hop_seconds: float) -> None:
        self.path = Path(path)
        self.window_seconds = window_seconds
        self.hop_seconds = hop_seconds
        self._source = FileSource(self.path, block_seconds=BLOCK_SECONDS)
        self.rate = self._source.rate
        self.duration = self._source.frames / self.rate
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.invalid = 0
        self.guard = AudioGuard(self.rate, name=str(self.path))

    def __iter__(self) -> Iterator[np.ndarray]:
        windower = Windower(self.window_seconds, self.hop_seconds, MODEL_SAMPLE_RATE)
        try:
            while (block := self._source.read()) is not None:
                yield from self._valid(windower.push(self.guard.process(block)))
            yield from self._valid(windower.push(self.guard.process(np.zeros(0, np.float32), last=True)))
            short = windower.partial()
            if short is not None:
                yield from self._valid([(0, 0, short)])
        finally:
            self._source.stop()

    def _valid(self, windows: Iterable[tuple[int, int, np.ndarray]]) -> Iterator[np.ndarray]:
        for _, start, win in windows:
            stop = start + len(win)
            if not self.guard.clean(start, stop):
                self.invalid += 1
                continue
            self.starts.append(start / MODEL_SAMPLE_RATE)
            self.ends.append(stop / MODEL_SAMPLE_RATE)
            yield win

    def close(self) -> None:
        """Close the file (when iteration stopped early)."""
        self._source.stop()
