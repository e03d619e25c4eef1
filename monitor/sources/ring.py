"""The capture ring: PortAudio's callback writes the newest samples, the windowing thread reads what is new.

Kept apart from :mod:`monitor.sources.capture` (the device and its stream): the ring is plain numpy, without
threads or locks of its own, so it can be reasoned about (and tested) on its own.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-size ring of float32 samples, one writer (the audio callback) and one reader.

    ``_write_pos`` and ``_read_pos`` count samples since the start and only grow; a Python int
    assignment is atomic, and the writer publishes its position only after the copy is done.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._write_pos = 0
        self._read_pos = 0
        self.lost_samples = 0
        self.overruns = 0

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (called from the audio callback: no allocation)."""
        n = len(block)
        if n > self.capacity:
            block = block[-self.capacity :]
            n = self.capacity
        start = self._write_pos % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = block[:first]
        if first < n:
            self._buf[: n - first] = block[first:]
        self._write_pos += n

    @property
    def written(self) -> int:
        """Samples written since the start."""
        return self._write_pos

    def read_new(self) -> np.ndarray:
        """Copy of every sample written since the last read; counts samples lost to lapping."""
        end = self._write_pos
        start = self._read_pos
        if end - start > self.capacity:
            self._lost(end - self.capacity - start)
            start = end - self.capacity
        out = np.empty(end - start, dtype=np.float32)
        i, j = start % self.capacity, end % self.capacity
        if end - start == 0:
            pass
        elif i < j:
            out[:] = self._buf[i:j]
        else:
            k = self.capacity - i
            out[:k] = self._buf[i:]
            out[k:] = self._buf[:j]
        # The writer may have lapped us while we copied: drop what it overwrote.
        overwritten = self._write_pos - self.capacity - start
        if overwritten > 0:
            self._lost(overwritten)
            out = out[overwritten:]
        self._read_pos = end
        return out

    def _lost(self, n: int) -> None:
        self.lost_samples += n
        self.overruns += 1
