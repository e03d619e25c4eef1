"""The bounded buffer between a stream's reader thread and the consumer of its audio."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class SampleBuffer:
    """Blocks of samples from one producer to one consumer, at most ``max_samples`` held.

    The producer never waits: ffmpeg must keep draining the network, and a blocked pipe would stall it until the
    server gives up on us. When the consumer is behind, the oldest samples are dropped (counted in ``drops`` and
    ``dropped_samples``), so latency stays bounded as it does for the window queue.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        self.max_samples = max_samples
        self.drops = 0
        self.dropped_samples = 0
        self._blocks: deque[np.ndarray] = deque()
        self._held = 0
        self._closed = False  # take() returns None at once
        self._finished = False  # no more puts; take() hands out what is held, then None
        self._cond = threading.Condition()

    def __len__(self) -> int:
        """Samples held now."""
        with self._cond:
            return self._held

    def put(self, samples: np.ndarray) -> None:
        """Add a block, dropping the oldest samples past the bound; ignored once closed or finished."""
        with self._cond:
            if self._closed or self._finished:
                return
            lost = 0
            if samples.size > self.max_samples:  # bigger than the whole buffer: only its newest part fits
                lost = samples.size - self.max_samples
                samples = samples[lost:]
            excess = self._held + samples.size - self.max_samples
            lost += max(0, excess)
            while excess > 0:  # whole blocks first, then the front of the oldest one left
                oldest = self._blocks[0]
                if oldest.size <= excess:
                    self._blocks.popleft()
                    self._held -= oldest.size
                    excess -= oldest.size
                else:
                    self._blocks[0] = oldest[excess:]
                    self._held -= excess
                    excess = 0
            if lost:
                self.drops += 1
                self.dropped_samples += lost
            self._blocks.append(samples)
            self._held += samples.size
            self._cond.notify_all()

    def take(self, timeout: float | None) -> np.ndarray | None:
        """Everything held, as one block (empty if nothing came within ``timeout``); None once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._blocks or self._closed or self._finished, timeout)
            if self._closed or (self._finished and not self._blocks):
                return None
            if not self._blocks:
                return np.zeros(0, dtype=np.float32)
            out = self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks)
            self._blocks.clear()
            self._held = 0
            return out

    def finish(self) -> None:
        """The stream has ended: ``take()`` returns what is held, then None."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def close(self) -> None:
        """No more audio: wake a waiting ``take()``, which returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
