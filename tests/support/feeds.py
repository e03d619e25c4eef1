"""Audio sources a test drives block by block: what a source delivers, when, and in what state, is the test's call.

They implement the pipeline's ``AudioSource`` protocol like the microphone and the network reader do, so the real
windowing threads, fair queue, inference worker, detectors and sinks run on them; nothing waits on a clock.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.config import Config
from monitor.pipeline import SourcePlan
from support.config import make_config

if TYPE_CHECKING:
    from support.broker import Broker
    from support.runner import RunningMonitor

__all__ = ["RATE", "FailingSource", "FeedSource", "StallingSource", "feeds_for", "loud", "quiet", "sources_config",
           "windows_of"]

RATE = 48_000


def loud(seconds: float) -> np.ndarray:
    """A 1 kHz tone at -9 dBFS RMS: LoudnessScorer's "beep"."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    """Digital silence."""
    return np.zeros(round(seconds * RATE), np.float32)


class FeedSource:
    """48 kHz blocks handed in by the test (:meth:`feed`); ``read`` returns them in order, empty blocks while none
    waits, None after :meth:`end`. ``state``/``last_error``/``reopens`` are read by the pipeline like a network
    stream's: set them (:meth:`set_state`) to play a stream going down and coming back."""

    lossless = False
    rate = RATE

    def __init__(self, state: str = "up") -> None:
        self._blocks: queue.Queue[np.ndarray | None] = queue.Queue()
        self._stopped = threading.Event()
        self.state = state
        self.last_error: str | None = None
        self.reopens = 0
        self.reads = 0

    def feed(self, *blocks: np.ndarray) -> FeedSource:
        """Queue blocks for ``read``."""
        for block in blocks:
            self._blocks.put(block)
        return self

    def end(self) -> None:
        """The stream ends after what was fed."""
        self._blocks.put(None)

    def set_state(self, state: str, error: str | None = None) -> None:
        """As a reader does: ``down`` with why, or ``up`` again (counting a reconnect)."""
        if state == "up" and self.state != "up":
            self.reopens += 1
        self.last_error = error
        self.state = state

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        if self._stopped.is_set():
            return None
        self.reads += 1
        try:
            block = self._blocks.get(timeout=timeout)
        except queue.Empty:
            return np.zeros(0, np.float32)
        if block is None:
            self._stopped.set()
        return block

    def interrupt(self) -> None:
        self._stopped.set()
        self._blocks.put(None)

    def stop(self) -> None:
        self._stopped.set()


class StallingSource(FeedSource):
    """A source whose ``read`` never returns until the run stops (a driver or a socket that hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        self.entered.set()
        self._stopped.wait()
        return None


class FailingSource(FeedSource):
    """A source whose ``read`` raises once its fed blocks are used up (a bug, a broken device)."""

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        if self._blocks.empty():
            raise RuntimeError("scripted source failure")
        return super().read(timeout)


def sources_config(model: Path, sources: list[dict[str, Any]], broker: Broker | None = None,
                   **sections: Any) -> Config:
    """Labels beep and buzz (background silence), for ``TwoLabelScorer``, over ``sources``."""
    return make_config(model, broker, labels=["beep", "buzz"], background=["silence"], sources=sources, **sections)


def feeds_for(cfg: Config, **special: FeedSource) -> tuple[dict[str, FeedSource], list[SourcePlan]]:
    """A fed source per configured source (``special`` ones by name, ``-`` written ``_``), and the plans that open
    them."""
    assert cfg.sources is not None
    feeds = {s.name: special.get(s.name.replace("-", "_")) or FeedSource() for s in cfg.sources}
    return feeds, [SourcePlan(s, lambda f=feeds[s.name]: f) for s in cfg.sources]


def windows_of(run: RunningMonitor, source: str) -> list[int]:
    """Indexes of ``source``'s windows the sinks saw, in order."""
    return [w.index for w in list(run.windows) if w.source == source]
