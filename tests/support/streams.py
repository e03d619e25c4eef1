"""Watching StreamSources in tests: their ffmpeg processes, and a reader thread standing in for the windowing stage."""

from __future__ import annotations

import threading

import numpy as np
import psutil

from monitor.sources.stream import StreamSource

__all__ = ["ProcessCounter", "Reader", "ffmpeg_children"]


def ffmpeg_children() -> list[psutil.Process]:
    """The ffmpeg processes (zombies included) below this test process."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "ffmpeg":
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


class Reader:
    """Reads a source on its own thread until it returns None, as the windowing stage does."""

    def __init__(self, source: StreamSource) -> None:
        self.source = source
        self.blocks: list[np.ndarray] = []
        self.ended = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (block := self.source.read(0.2)) is not None:
            if block.size:
                self.blocks.append(block)
        self.ended = True

    @property
    def samples(self) -> int:
        return sum(b.size for b in self.blocks)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


class ProcessCounter:
    """Samples the number of live ffmpeg children on a thread; ``most`` is the highest count seen."""

    def __init__(self) -> None:
        self.most = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.005):
            self.most = max(self.most, len(ffmpeg_children()))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.most
