"""The inference worker: one thread that owns the scorer and turns windows into scored windows.

It takes windows from a bounded queue (which drops the oldest when the model falls behind, so
latency stays bounded; with several sources the fair queue takes batches round-robin across them), applies each
source's loudness gate and adaptive hop, scores whatever is pending, from every source, as one batch and hands
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
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from monitor.core.queues import Closed, DropOldestQueue
from monitor.inference.adaptive import AdaptiveHop
from monitor.labels import LabelPrompts, LabelRegistry, LabelSet
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


class WindowBatches(Protocol):
    """Where the worker takes its batches: a ``DropOldestQueue`` or the sources' ``FairQueue``."""

    def get_batch(self, max_items: int, timeout: float | None = None) -> list[Window]:
        """Up to ``max_items`` windows; raises ``Closed`` once closed and drained."""
        ...


ThresholdView = Callable[[str, LabelSet], Mapping[str, float]]
"""(source, label set) → the thresholds that source's adaptive hop watches."""


class InferenceWorker:
    """Scores windows on its own thread until the input queue is closed and drained.

    ``min_dbfs`` and ``adaptive`` are one gate and one policy for every window, or a mapping source → its own
    (a source not in the mapping has no gate / scores every window). Each source's adaptive hop follows that source's
    thresholds (``thresholds``: by default the label set's).
    """

    def __init__(
        self,
        scorer: Scorer,
        registry: LabelRegistry,
        windows: WindowBatches,
        results: DropOldestQueue[ScoredWindow],
        min_dbfs: float | Mapping[str, float | None] | None = None,
        max_batch: int = 4,
        adaptive: AdaptiveHop | Mapping[str, AdaptiveHop] | None = None,
        thresholds: ThresholdView | None = None,
    ) -> None:
        self.scorer = scorer
        self.registry = registry
        self._labels_version = registry.applied().version  # the scorer was loaded with these
        self.windows = windows
        self.results = results
        self.min_dbfs = min_dbfs
        self.max_batch = max_batch
        self.adaptive = adaptive
        self._thresholds: ThresholdView = thresholds or (lambda source, labels: labels.thresholds())
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
        kept = wanted.without(failed)
        for source, hop in self._hops():
            hop.set_thresholds(self._thresholds(source, kept))
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

    def _hops(self) -> list[tuple[str, AdaptiveHop]]:
        if self.adaptive is None:
            return []
        if isinstance(self.adaptive, AdaptiveHop):
            return [("", self.adaptive)]
        return list(self.adaptive.items())

    def _hop(self, source: str) -> AdaptiveHop | None:
        if self.adaptive is None or isinstance(self.adaptive, AdaptiveHop):
            return self.adaptive
        return self.adaptive.get(source)

    def _gate(self, source: str) -> float | None:
        if self.min_dbfs is None or isinstance(self.min_dbfs, (int, float)):
            return self.min_dbfs
        return self.min_dbfs.get(source)

    def _skip_reason(self, window: Window) -> str:
        if not window.valid:
            return "invalid"
        gate = self._gate(window.source)
        if gate is not None and window.dbfs < gate:
            return "gate"
        hop = self._hop(window.source)
        if hop is not None and not hop.should_score(window.index, window.dbfs):
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
        # By position in the batch: window indexes count per source, so two sources' windows may share one.
        reasons = [self._skip_reason(w) for w in batch]
        todo = [i for i, reason in enumerate(reasons) if not reason]
        scores: dict[int, dict[str, float]] = {}
        elapsed = 0.0
        if todo:
            t0 = time.monotonic()
            self.busy_since = t0
            try:
                matrix = self.scorer.score(np.stack([batch[i].samples for i in todo]))
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
                    self._nonfinite([batch[i] for i, ok in zip(todo, finite, strict=True) if not ok])
                for i, row, ok in zip(todo, matrix, finite, strict=True):
                    if ok:
                        scores[i] = {n: float(s) for n, s in zip(names, row, strict=True)}
        for i, (w, reason) in enumerate(zip(batch, reasons, strict=True)):
            if not reason and i not in scores:
                continue  # failed inference: nothing to report
            hop = self._hop(w.source)
            if hop is not None and reason not in ("idle", "invalid"):
                hop.observe(scores.get(i), w.dbfs)
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
                    scores=scores.get(i, {}),
                    skipped=reason,
                    inference_seconds=elapsed / max(1, len(todo)),
                    source=w.source,
                ),
                block=True,
            )
        self.last_progress = time.monotonic()
