"""The inference worker: one thread that owns the scorer and turns windows into scored windows.

It takes windows from a bounded queue (which drops the oldest when the model falls behind, so
latency stays bounded), applies the loudness gate, scores whatever is pending as one batch and hands
:class:`ScoredWindow` records to the results queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from monitor.core.queues import Closed, DropOldestQueue
from monitor.inference.adaptive import AdaptiveHop
from monitor.records import ScoredWindow, Window

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What the worker needs of a scorer (``ClapScorer`` in production)."""

    labels: list[str]

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Scores (batch, len(labels))."""
        ...


class InferenceWorker:
    """Scores windows on its own thread until the input queue is closed and drained."""

    def __init__(
        self,
        scorer: Scorer,
        windows: DropOldestQueue[Window],
        results: DropOldestQueue[ScoredWindow],
        min_dbfs: float | None = None,
        max_batch: int = 4,
        adaptive: AdaptiveHop | None = None,
    ) -> None:
        self.scorer = scorer
        self.windows = windows
        self.results = results
        self.min_dbfs = min_dbfs
        self.max_batch = max_batch
        self.adaptive = adaptive
        self.scored = 0
        self.skipped = 0  # by the loudness gate
        self.idle_skipped = 0  # by the adaptive hop
        self.errors = 0
        self.busy_since: float | None = None
        self.last_progress = time.monotonic()
        self._jobs: list[Callable[[], None]] = []
        self._jobs_lock = threading.Lock()
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

    def call_soon(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread before the next batch (the scorer has one owner)."""
        with self._jobs_lock:
            self._jobs.append(job)

    def stalled(self, now: float, limit: float) -> bool:
        """True when one inference has been running for more than ``limit`` seconds."""
        return self.busy_since is not None and now - self.busy_since > limit

    def _run_jobs(self) -> None:
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            try:
                job()
            except Exception:
                log.exception("worker job failed")

    def _run(self) -> None:
        while True:
            self._run_jobs()
            try:
                batch = self.windows.get_batch(self.max_batch, timeout=0.5)
            except Closed:
                self._run_jobs()
                self.results.close()
                return
            self.last_progress = time.monotonic()
            if batch:
                self._process(batch)

    def _skip_reason(self, window: Window) -> str:
        if self.min_dbfs is not None and window.dbfs < self.min_dbfs:
            return "gate"
        if self.adaptive is not None and not self.adaptive.should_score(window.index, window.dbfs):
            return "idle"
        return ""

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
                for w, row in zip(todo, matrix, strict=True):
                    scores[w.index] = {n: float(s) for n, s in zip(names, row, strict=True)}
        for w in batch:
            reason = reasons[w.index]
            if not reason and w.index not in scores:
                continue  # failed inference: nothing to report
            if self.adaptive is not None and reason != "idle":
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
