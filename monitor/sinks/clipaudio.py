"""The audio side of event clips: a ring of the latest resampled samples, and a clip collecting its span.

Kept apart from :mod:`monitor.sinks.clips` (the recorder: naming, the writer thread, the folder) so that each
reads on its own. Neither is locked; the recorder holds its lock around both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class AudioRing:
    """The last ``capacity`` samples of a stream, addressed by absolute sample index. Not locked: callers lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    def write(self, first: int, samples: np.ndarray) -> None:
        """Store ``samples`` whose first sample has absolute index ``first``."""
        n = len(samples)
        if n == 0:
            return
        if n > self.capacity:
            first, samples, n = first + n - self.capacity, samples[-self.capacity :], self.capacity
        i = first % self.capacity
        k = min(n, self.capacity - i)
        self._buf[i : i + k] = samples[:k]
        self._buf[: n - k] = samples[k:]
        self.end = first + n

    def read(self, start: int, end: int) -> np.ndarray:
        """Copy of ``[start, end)`` clipped to what is held (may be shorter, or empty)."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        i, j = start % self.capacity, end % self.capacity
        if i < j:
            return self._buf[i:j].copy()
        return np.concatenate([self._buf[i:], self._buf[:j]])


@dataclass
class Clip:
    """One clip being collected: the span it wants (absolute sample indexes) and the audio it has so far."""

    name: str
    start: int  # absolute sample indexes of the wanted span
    end: int
    next: int  # the next sample the clip still needs
    parts: list[np.ndarray] = field(default_factory=list)
    source: str = ""  # whose audio (each source has its own stream clock and ring)

    def take(self, first: int, samples: np.ndarray) -> None:
        if first > self.next:  # a gap in the stream: skip it rather than wait forever
            self.next = min(first, self.end)
        lo = max(self.next, first)
        hi = min(self.end, first + len(samples))
        if hi > lo:
            self.parts.append(samples[lo - first : hi - first].copy())
            self.next = hi

    @property
    def done(self) -> bool:
        return self.next >= self.end
