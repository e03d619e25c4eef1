"""A bounded queue that, when full, either drops its oldest item (live audio) or blocks (file replay)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """Raised by :meth:`DropOldestQueue.get` once the queue is closed and empty."""


class DropOldestQueue(Generic[T]):
    """Bounded FIFO between one producer and one consumer thread.

    Live audio must never wait for a slow model, so ``put(block=False)`` drops the *oldest* pending item
    (keeping latency bounded) and counts it in ``dropped``; ``on_drop`` is called with the dropped item.
    Replay wants every window, so ``put(block=True)`` waits for room instead.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[T], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._on_drop = on_drop

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T, block: bool = False, timeout: float | None = None) -> bool:
        """Add ``item``; returns False if the queue is closed (or a blocking put timed out)."""
        dropped: T | None = None
        with self._cond:
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                if block:
                    ok = self._cond.wait_for(lambda: self._closed or len(self._items) < self.maxsize, timeout)
                    if not ok or self._closed:
                        return False
                else:
                    dropped = self._items.popleft()
                    self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)
        return True

    def get(self, timeout: float | None = None) -> T | None:
        """Next item, or None after ``timeout``; raises :class:`Closed` once closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise Closed

    def get_batch(self, max_items: int, timeout: float | None = None) -> list[T]:
        """Up to ``max_items`` items (at least one unless the timeout passes); raises Closed when drained."""
        first = self.get(timeout)
        if first is None:
            return []
        batch = [first]
        with self._cond:
            while self._items and len(batch) < max_items:
                batch.append(self._items.popleft())
            self._cond.notify_all()
        return batch

    def close(self) -> None:
        """No more puts; consumers drain what is left, then get :class:`Closed`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
