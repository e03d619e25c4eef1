"""Which STFT frames of a clip repeat: worked out once per clip length, shared by both mel front ends.

CLAP pads every clip to the model's input length before framing it: ``repeatpad`` tiles a 5 s window twice, so
about half of the 1001 frames are copies of others, and a short clip's zero tail gives one all-zero frame many
times. Putting sample numbers (1..n; 0 for a padding zero) through the same padding and framing shows which
frames hold the same samples, and so the same values: each is computed once. Numpy only: the numpy front end
(:mod:`monitor.inference.mel`, the lean runtime's) must not import torch; the torch one
(:mod:`monitor.inference.features`) converts the plan's index array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_CACHED_PLANS", "FramePlan", "FramePlans", "plan_frames"]

MAX_CACHED_PLANS = 8  # clip lengths whose plans are kept (live scoring uses one; evaluate a few)


@dataclass(frozen=True)
class FramePlan:
    """Which frames to compute for one clip length: contiguous ``runs`` of frame numbers holding one frame of
    each distinct content (``n_computed`` in all), and for every output frame its row among the computed ones."""

    runs: tuple[tuple[int, int], ...]
    n_computed: int
    frame_of_output: np.ndarray  # (frames,) int64


def plan_frames(frame_sources: np.ndarray) -> FramePlan:
    """The plan for frames given as rows of the sample numbers each holds (equal rows are equal frames)."""
    # Exact match on the sample numbers (a dict of row bytes is far quicker than np.unique(axis=0)).
    row_of_content: dict[bytes, int] = {}
    computed: list[int] = []
    frame_of_output: list[int] = []
    for frame, source in enumerate(frame_sources):
        row = row_of_content.setdefault(source.tobytes(), len(computed))
        if row == len(computed):
            computed.append(frame)
        frame_of_output.append(row)
    runs: list[tuple[int, int]] = []
    for frame in computed:  # computed frames are in time order, so they form a few contiguous runs
        if runs and runs[-1][1] == frame:
            runs[-1] = (runs[-1][0], frame + 1)
        else:
            runs.append((frame, frame + 1))
    return FramePlan(tuple(runs), len(computed), np.asarray(frame_of_output, dtype=np.int64))


class FramePlans:
    """Plans by clip length, each worked out on first use (a few tens of ms); the latest few are kept."""

    def __init__(self, size: int = MAX_CACHED_PLANS) -> None:
        self._size = size
        self._plans: dict[int, FramePlan] = {}

    def get(self, n_samples: int, frame_sources: Callable[[int], np.ndarray]) -> FramePlan:
        """The plan for clips of ``n_samples``; ``frame_sources(n_samples)`` gives, when it is not kept yet, the
        sample numbers of every frame as rows, through the front end's own padding and framing."""
        plan = self._plans.get(n_samples)
        if plan is None:
            plan = plan_frames(frame_sources(n_samples))
            if len(self._plans) >= self._size:
                self._plans.pop(next(iter(self._plans)))
            self._plans[n_samples] = plan
        return plan
