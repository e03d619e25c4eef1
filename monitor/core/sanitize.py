"""Guarding the stream against samples that are not audio: NaN, ±inf and values far beyond full scale.

Float files (float WAV, a decoder gone wrong) or a misbehaving driver can deliver samples that are not audio.
Left alone they poison soxr's filter state (one NaN spreads into the output that follows), the model (NaN scores
counted as hits) and JSON (NaN is not JSON). The rule, applied to every block before the streaming resampler, on
the windowing thread (never in the audio callback) and by ``classify`` / ``evaluate`` through the same class:

* a finite sample beyond full scale (|x| > 1) but within :data:`MAX_ABS` is **clipped** to ±1, as a real
  converter would have delivered it, and counted (``samples_clipped``);
* a non-finite sample (NaN, +inf, -inf) or one beyond :data:`MAX_ABS` is **invalid**: it is replaced by silence
  before the resampler, and every window that contains it is not scored (``skipped: "invalid"``) and counted.

What was wrong is logged with the source's name and the time, at most every :data:`LOG_EVERY` seconds per kind.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque

import numpy as np

from monitor.config import MODEL_SAMPLE_RATE
from monitor.core.resample import StreamResampler

log = logging.getLogger(__name__)

MAX_ABS = 1000.0  # 60 dB over full scale: no recording is that loud, so such a sample is garbage, not audio
LOG_EVERY = 30.0  # seconds between two log lines of one kind for one stream


class AudioGuard:
    """Sanitize, then resample: mono blocks at any rate in, clean 48 kHz samples out.

    Keeps the invalid regions as spans of output (48 kHz stream) sample positions so that windows cut later can
    be checked with :meth:`clean`, and counts what it fixed. Owned by one thread (the windowing thread live).
    """

    def __init__(self, in_rate: int, name: str = "audio input", out_rate: int = MODEL_SAMPLE_RATE) -> None:
        self.name = name
        self.out_rate = out_rate
        self.clipped_samples = 0
        self.invalid_samples = 0
        self.problems: Counter[str] = Counter()  # invalid samples by kind: NaN, +inf, -inf, beyond ±MAX_ABS
        self._spans: deque[tuple[int, int]] = deque()  # invalid output positions [start, end), in order, merged
        self._last_log: dict[str, float] = {}
        self.set_rate(in_rate, 0)

    @property
    def in_rate(self) -> int:
        """The input rate of the current resampler."""
        return self._resampler.in_rate

    def set_rate(self, in_rate: int, out_pos: int) -> None:
        """Resample from ``in_rate`` from now on; the next output sample is stream position ``out_pos``
        (a microphone reopened at another rate)."""
        self._resampler = StreamResampler(in_rate, self.out_rate)
        self._in_pos = 0  # input samples fed to the current resampler
        self._out_pos0 = out_pos

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Check and fix the next mono block, then resample it; ``last=True`` flushes the filter's tail."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if block.size:
            block = self._sanitize(block)
            self._in_pos += block.size
        return self._resampler.process(block, last=last)

    def clean(self, start: int, stop: int) -> bool:
        """Whether output positions ``[start, stop)`` hold no invalid sample.

        Windows are asked in increasing ``start``: spans that end before ``start`` are forgotten.
        """
        spans = self._spans
        while spans and spans[0][1] <= start:
            spans.popleft()
        return not any(s < stop and e > start for s, e in spans)

    def describe(self) -> str:
        """The invalid samples seen so far by kind, e.g. ``"4800 NaN, 12 +inf"``."""
        return ", ".join(f"{n} {kind}" for kind, n in self.problems.items()) or "none"

    # --- internals ---------------------------------------------------------------------------------
    def _sanitize(self, block: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(block)))  # NaN anywhere makes the peak NaN
        if peak <= 1.0:
            return block  # the common case: one pass over the block, nothing else
        finite = np.isfinite(block)
        magnitude = np.abs(np.where(finite, block, 0.0))
        huge = magnitude > MAX_ABS
        invalid = ~finite | huge
        n_invalid = int(np.count_nonzero(invalid))
        if n_invalid:
            self._invalid(block, finite, huge, invalid, n_invalid)
        n_clipped = int(np.count_nonzero(magnitude > 1.0)) - int(np.count_nonzero(huge))
        if n_clipped:
            self.clipped_samples += n_clipped
            peak_ok = float(np.max(np.where(huge, 0.0, magnitude)))
            self._log("clipped", f"{n_clipped} sample(s) beyond full scale (peak {peak_ok:.3g}) near "
                                 f"{self._seconds(0):.1f} s clipped to ±1 ({self.clipped_samples} so far)")
        # A new array: the block may be a view of the source's buffer.
        return np.where(invalid, np.float32(0.0), np.clip(block, -1.0, 1.0)).astype(np.float32, copy=False)

    def _invalid(self, block: np.ndarray, finite: np.ndarray, huge: np.ndarray, invalid: np.ndarray,
                 n_invalid: int) -> None:
        self.invalid_samples += n_invalid
        kinds = {"NaN": int(np.count_nonzero(np.isnan(block))), "+inf": int(np.count_nonzero(np.isposinf(block))),
                 "-inf": int(np.count_nonzero(np.isneginf(block))), f"beyond ±{MAX_ABS:g}": int(np.count_nonzero(huge))}
        found = {k: n for k, n in kinds.items() if n}
        self.problems.update(found)
        where = np.flatnonzero(invalid)
        ratio = self.out_rate / self.in_rate
        start = self._out_pos0 + math.floor((self._in_pos + int(where[0])) * ratio)
        end = self._out_pos0 + math.ceil((self._in_pos + int(where[-1]) + 1) * ratio)
        if self._spans and start <= self._spans[-1][1]:
            self._spans[-1] = (self._spans[-1][0], max(end, self._spans[-1][1]))
        else:
            self._spans.append((start, end))
        what = ", ".join(f"{n} {k}" for k, n in found.items())
        self._log("invalid", f"invalid audio near {self._seconds(int(where[0])):.1f} s ({what}): replaced by silence, "
                             f"windows containing it are not scored ({self.invalid_samples} invalid sample(s) so far)")

    def _seconds(self, offset: int) -> float:
        """Stream time of sample ``offset`` of the block being checked."""
        return (self._out_pos0 + (self._in_pos + offset) * self.out_rate / self.in_rate) / self.out_rate

    def _log(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -math.inf) >= LOG_EVERY:
            self._last_log[kind] = now
            log.warning("%s: %s", self.name, text)
