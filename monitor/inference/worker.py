"""The inference worker: one thread that owns the scorer and turns windows into scored windows.

It takes windows from a bounded queue (which drops the oldest when the model falls behind, so
latency stays bounded), applies the loudness gate, scores whatever is pending as one batch and hands
:class:`ScoredWindow` records to the results queue. At the top of its loop it pulls the label registry:
when the wanted labels changed, it syncs the scorer (text embeddings) and the adaptive hop's thresholds,
then reports the version applied (:meth:`monitor.labels.LabelRegistry.settle`).

Windows marked invalid by the windowing thread (samples that are not audio) are never scored. A window whose
scores come back non-finite (a broken checkpoint, a numerical fault) is treated as a failed inference: counted
in ``errors``, logged (at most every 30 s) and dropped, so no NaN reaches the detector or any sink.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from monitor.core.queues import Closed, DropOldestQueue
from monitor.inference.adaptive import AdaptiveHop
from monitor.labels import LabelPrompts, LabelRegistry
from monitor.records import ScoredWindow, Window

log = logging.getLogger(__name__)

NONFINITE_LOG_EVERY = 30.0  # seconds between two "non-finite scores" log lines


class Scorer(Protocol):
    """What the worker needs of a scorer (``ClapScorer`` in production)."""

    labels: list[str]

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Scores (batch, len(labels))."""
        ...

    def sync_labels(self, labels: Sequence[LabelPrompts]) -> dict[str, str]:
        """Score exactly ``labels`` from now on; name → reason for those that cannot be."""
        ...


class InferenceWorker:
    """Scores windows on its own thread until the input queue is closed and drained."""

    def __init__(
        self,
        scorer: Scorer,
        registry: LabelRegistry,
        windows: DropOldestQueue[Window],
        results: DropOldestQueue[ScoredWindow],
        min_dbfs: float | None = None,
        max_batch: int = 4,
        adaptive: AdaptiveHop | None = None,
    ) -> None:
        self.scorer = scorer
        self.registry = registry
        self._labels_version = registry.applied().version  # the scorer was loaded with these
        self.windows = windows
        self.results = results
        self.min_dbfs = min_dbfs
        self.max_batch = max_batch
        self.adaptive = adaptive
        self.scored = 0
        self.skipped = 0  # by the loudness gate
        self.idle_skipped = 0  # by the adaptive hop
        self.errors = 0
        self._last_nonfinite_log = -math.inf
        self.busy_since: float | None = None
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def stalled(self, now: float, limit: float) -> bool:
        """True when one inference has been running for more than ``limit`` seconds."""
        return self.busy_since is not None and now - self.busy_since > limit

    def _sync_labels(self) -> None:
        wanted = self.registry.current()
        if wanted.version == self._labels_version:
            return
        self.busy_since = time.monotonic()
        try:
            failed = self.scorer.sync_labels(wanted.scored())
        finally:
            self.busy_since = None
        if self.adaptive is not None:
            self.adaptive.set_thresholds(wanted.without(failed).thresholds())
        self._labels_version = wanted.version
        self.registry.settle(wanted, failed)

    def _run(self) -> None:
        while True:
            self._sync_labels()
            try:
                batch = self.windows.get_batch(self.max_batch, timeout=0.5)
            except Closed:
                self.results.close()
                return
            self.last_progress = time.monotonic()
            if batch:
                self._process(batch)

    def _skip_reason(self, window: Window) -> str:
        if not window.valid:
            return "invalid"
        if self.min_dbfs is not None and window.dbfs < self.min_dbfs:
            return "gate"
        if self.adaptive is not None and not self.adaptive.should_score(window.index, window.dbfs):
            return "idle"
        return ""

    def _nonfinite(self, windows: Sequence[Window]) -> None:
        """Non-finite scores: a failed inference for these windows (counted once per call, logged at most every
        30 s)."""
        self.errors += 1
        now = time.monotonic()
        if now - self._last_nonfinite_log >= NONFINITE_LOG_EVERY:
            self._last_nonfinite_log = now
            log.error("inference gave non-finite scores (NaN/inf) for %d window(s) from %.1f s; they are dropped "
                      "(%d failed inference call(s) so far)", len(windows), windows[0].start, self.errors)

    def _process(self, batch: Sequence[Window]) -> None:
        reasons = {w.index: self._skip_reason(w) for w in batch}
        todo = [w for w in batch if not reasons[w.index]]
        scores: dict[int, dict[str, float]] = {}
        elapsed = 0.0
        if todo:
            t0 = time.monotonic()
            self.busy_since = t0
            try:
                matrix = self.scorer.score(np.stack([w.samples for w in todo]))
            except Exception:  # keep listening; the error is logged loudly
                self.errors += 1
                log.exception("inference failed on %d window(s); they are dropped", len(todo))
                matrix = None
            finally:
                self.busy_since = None
            elapsed = time.monotonic() - t0
            if matrix is not None:
                names = self.scorer.labels
                finite = np.isfinite(matrix).all(axis=1)
                if not finite.all():
                    self._nonfinite([w for w, ok in zip(todo, finite, strict=True) if not ok])
                for w, row, ok in zip(todo, matrix, finite, strict=True):
                    if ok:
                        scores[w.index] = {n: float(s) for n, s in zip(names, row, strict=True)}
        for w in batch:
            reason = reasons[w.index]
            if not reason and w.index not in scores:
                continue  # failed inference: nothing to report
            if self.adaptive is not None and reason not in ("idle", "invalid"):
                self.adaptive.observe(scores.get(w.index), w.dbfs)
            self.scored += not reason
            self.skipped += reason == "gate"
            self.idle_skipped += reason == "idle"
            self.results.put(
                ScoredWindow(
                    index=w.index,
                    start=w.start,
                    end=w.end,
                    mono_end=w.mono_end,
                    dbfs=w.dbfs,
                    scores=scores.get(w.index, {}),
                    skipped=reason,
                    inference_seconds=elapsed / max(1, len(todo)),
                ),
                block=True,
            )
        self.last_progress = time.monotonic()
