"""A run's counters as ``/metrics`` reads them: each source's, and the totals over every source.

Records only, built at any time from any thread by plain reads of the counters each owner keeps (the windowing
stage, the source, the fair queue, the inference worker); nothing here counts anything itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from monitor.core.queues import FairQueue
    from monitor.inference.worker import InferenceWorker

__all__ = ["PipelineStats", "SourceStats", "total_stats"]


@dataclass(frozen=True)
class SourceStats:
    """One source's counters now (for ``/metrics``), read from any thread."""

    name: str
    state: Literal["up", "down", "starting"]
    reconnects: int = 0
    windows: int = 0
    dropped: int = 0
    queue_depth: int = 0
    level_dbfs: float | None = None
    overruns: int = 0
    lost_samples: int = 0
    windows_invalid: int = 0
    samples_clipped: int = 0


@dataclass(frozen=True)
class PipelineStats:
    """Counters of one run, read at any time from any thread (each a plain read of its owner's counter); the
    totals are over every source, ``sources`` has each one's."""

    windows_scored: int = 0
    windows_skipped: int = 0
    windows_idle_skipped: int = 0
    windows_dropped: int = 0
    inference_errors: int = 0
    queue_depth: int = 0
    capture_overruns: int = 0
    capture_lost_samples: int = 0
    windows_invalid: int = 0  # windows holding NaN/inf/absurd samples, not scored
    samples_clipped: int = 0  # samples beyond full scale clipped to ±1
    sources: tuple[SourceStats, ...] = ()


def total_stats(per: Sequence[SourceStats], windows: FairQueue[Any], worker: InferenceWorker | None) -> PipelineStats:
    """The run's counters from each source's, the window queue's and (once it exists) the inference worker's."""
    if worker is None:
        return PipelineStats(windows_dropped=windows.dropped, queue_depth=len(windows), sources=tuple(per))
    return PipelineStats(
        windows_scored=worker.scored,
        windows_skipped=worker.skipped,
        windows_idle_skipped=worker.idle_skipped,
        windows_dropped=windows.dropped,
        inference_errors=worker.errors,
        queue_depth=len(windows),
        capture_overruns=sum(s.overruns for s in per),
        capture_lost_samples=sum(s.lost_samples for s in per),
        windows_invalid=sum(s.windows_invalid for s in per),
        samples_clipped=sum(s.samples_clipped for s in per),
        sources=tuple(per),
    )
