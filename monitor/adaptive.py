"""Adaptive hop: score every window while a label is near its threshold, every k-th while all is quiet.

Windows are still cut at the fine hop; this policy only decides which ones the worker scores. While
every label's score stays more than ``margin`` under its threshold for ``hold`` windows in a row, only
one window in ``stride`` is scored. The first scored window that comes within ``margin`` of a threshold
switches back to scoring every window, so a sound that is building up is followed at the fine hop.
"""

from __future__ import annotations

from collections.abc import Mapping


class AdaptiveHop:
    """Which windows to score; owned by the inference worker thread."""

    def __init__(self, stride: int, margin: float, hold: int, thresholds: Mapping[str, float]) -> None:
        if stride < 1 or hold < 1:
            raise ValueError("stride and hold must be at least 1")
        self.stride = stride
        self.margin = margin
        self.hold = hold
        self.thresholds = dict(thresholds)
        self.idle = False
        self._quiet = 0

    def set_thresholds(self, thresholds: Mapping[str, float]) -> None:
        """Labels that can fire and their thresholds (after a runtime change); wakes the policy up."""
        self.thresholds = dict(thresholds)
        self.idle = False
        self._quiet = 0

    def should_score(self, index: int) -> bool:
        """Whether window ``index`` (counted at the fine hop) is scored."""
        return not self.idle or index % self.stride == 0

    def observe(self, scores: Mapping[str, float] | None) -> None:
        """Feed a scored window's scores, or None for a window that was quiet (skipped by the loudness gate)."""
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
