"""Scripted scorers: stand-ins for the CLAP scorer whose scores, and so whose events, are known exactly."""

from __future__ import annotations

import numpy as np

__all__ = ["LoudnessScorer", "TwoLabelScorer"]


class LoudnessScorer:
    """Scripted scores: a window louder than -30 dBFS is "beep", a quieter one "silence"."""

    def __init__(self) -> None:
        self.labels = ["beep", "silence"]

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Scores ``(n, 2)``: (0.9, 0.1) for a loud window, (0.1, 0.9) for a quiet one."""
        rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
        loud = rms > 10 ** (-30 / 20)
        return np.where(loud[:, None], [0.9, 0.1], [0.1, 0.9]).astype(np.float32)


class TwoLabelScorer:
    """Scripted scores for two labels: a window louder than -30 dBFS scores "beep" 0.8 and "buzz" 0.6, a quieter one
    "silence" 0.9 (so per-source subsets and thresholds decide which fire)."""

    def __init__(self) -> None:
        self.labels = ["beep", "buzz", "silence"]
        self.calls: list[int] = []  # batch size of every call (one forward per batch)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Scores ``(n, 3)``."""
        self.calls.append(len(windows))
        rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
        loud = rms > 10 ** (-30 / 20)
        return np.where(loud[:, None], [0.8, 0.6, 0.1], [0.05, 0.05, 0.9]).astype(np.float32)
