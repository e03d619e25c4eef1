"""Resampling to the model's 48 kHz and downmixing to mono: the one implementation of each.

Resampling runs on a continuous stream with soxr's streaming resampler, never window by window: resampling
each window on its own would put filter edge effects at every window boundary and make the output depend on
where blocks happen to be cut. A whole file (classify, evaluate) goes through the same streaming resampler
with a final flush, so offline and live scoring see the same samples.
"""

from __future__ import annotations

import numpy as np
import soxr

from monitor.config import MODEL_SAMPLE_RATE


def downmix(block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Mono float32 from a (frames,) or (frames, channels) block: the mean of the channels.

    ``out`` (at least ``frames`` long) receives the result without allocating: the audio callback passes
    a preallocated scratch buffer. A single channel is returned as a view.
    """
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    if out is not None:
        dest = out[: block.shape[0]]
        np.mean(block, axis=1, out=dest)
        return dest
    return block.mean(axis=1, dtype=np.float32)


class StreamResampler:
    """Resample a mono float32 stream delivered in blocks of any size to ``out_rate``.

    At equal rates samples pass through untouched, so a 48 kHz file's windows are bit-identical to its samples.
    """

    def __init__(self, in_rate: int, out_rate: int = MODEL_SAMPLE_RATE, quality: str = "HQ") -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream = None if self.in_rate == self.out_rate else soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="float32", quality=quality
        )

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next block; ``last=True`` flushes the filter's tail."""
        block = np.ascontiguousarray(block, dtype=np.float32).reshape(-1)
        if self._stream is None:
            return block
        return self._stream.resample_chunk(block, last=last)


def to_model_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 samples at ``rate`` → 48 kHz through the streaming resampler (untouched at 48 kHz)."""
    return StreamResampler(rate).process(samples, last=True)
