"""Adaptive hop: score every window while a label is near its threshold, every k-th while all is quiet.

Windows are still cut at the fine hop; this policy only decides which ones the worker scores. While
every label's score stays more than ``margin`` under its threshold for ``hold`` windows in a row, only
one window in ``stride`` is scored. The first scored window that comes within ``margin`` of a threshold
switches back to scoring every window, so a sound that is building up is followed at the fine hop.

A sound that starts between two coarse windows would otherwise wait up to ``stride - 1`` windows to be
heard. The level of every window is known for free, so while idle a window whose level rises more than
``level_jump_db`` above the last scored one is scored at once: a sound louder than the room is looked at
in the first window that holds it, no later than at the fine hop.
"""

from __future__ import annotations

from collections.abc import Mapping


class AdaptiveHop:
    """Which windows to score; owned by the inference worker thread."""

    def __init__(
        self, stride: int, margin: float, hold: int, thresholds: Mapping[str, float], level_jump_db: float = 3.0
    ) -> None:
        if stride < 1 or hold < 1:
            raise ValueError("stride and hold must be at least 1")
        self.stride = stride
        self.margin = margin
        self.hold = hold
        self.level_jump_db = level_jump_db
        self._level = float("inf")  # level of the last scored window
        self.thresholds = dict(thresholds)
        self.idle = False
        self._quiet = 0

    def set_thresholds(self, thresholds: Mapping[str, float]) -> None:
        """Labels that can fire and their thresholds (after a runtime change); wakes the policy up."""
        self.thresholds = dict(thresholds)
        self.idle = False
        self._quiet = 0

    def should_score(self, index: int, dbfs: float = float("-inf")) -> bool:
        """Whether window ``index`` (counted at the fine hop), of level ``dbfs``, is scored."""
        return not self.idle or index % self.stride == 0 or dbfs > self._level + self.level_jump_db

    def observe(self, scores: Mapping[str, float] | None, dbfs: float = float("inf")) -> None:
        """Feed a scored window's scores and level, or None for a window skipped by the loudness gate."""
        if scores is not None:
            self._level = dbfs
        near = scores is not None and any(
            scores.get(label, 0.0) >= threshold - self.margin for label, threshold in self.thresholds.items()
        )
        if near:
            self.idle = False
            self._quiet = 0
            return
        self._quiet += 1
        if self._quiet >= self.hold:
            self.idle = True
