"""Bounded queues between threads: one that drops its oldest item when full (live audio) or blocks (file replay),
and a fair one that several sources share (per-source FIFOs, round-robin batches, drops from the source with the
most pending)."""

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


class FairQueue(Generic[T]):
    """Bounded queue from several producers (one per source) to one consumer, fair to every producer.

    Each source has its own FIFO; together they hold at most ``capacity`` items. The consumer takes batches
    round-robin across the sources (oldest first within each), so a source that floods the queue gets no more of
    the model's time than one that sends a window a second. When full, a live put (``block=False``) drops the
    oldest item of the source with the most pending (the putting source when it ties for most, else the tie with
    the oldest item): a flooding or bursting source only ever pushes out its own windows, never another's, and the
    latency stays bounded by ``capacity``. Drops are counted per source (:meth:`dropped_by`) and in ``dropped``;
    ``on_drop(source, item)`` is called with each (on the putting thread, outside the lock). A lossless put
    (``block=True``, file replay) waits for room instead.

    Producers register with :meth:`producer`; the queue closes itself once every registered producer has
    finished (its source ended or stopped), and the consumer then drains what is left and gets :class:`Closed`.
    """

    def __init__(self, capacity: int, on_drop: Callable[[str, T], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.dropped = 0
        self._queues: dict[str, deque[tuple[int, T]]] = {}  # source → (sequence number, item), oldest first
        self._dropped: dict[str, int] = {}
        self._open: set[str] = set()  # producers registered and not finished
        self._next = 0  # index into the sources of the one served first by the next batch
        self._seq = 0
        self._size = 0
        self._cond = threading.Condition()
        self._closed = False
        self._on_drop = on_drop

    def __len__(self) -> int:
        with self._cond:
            return self._size

    def depth(self, source: str) -> int:
        """Items of ``source`` waiting."""
        with self._cond:
            q = self._queues.get(source)
            return len(q) if q is not None else 0

    def dropped_by(self, source: str) -> int:
        """Items of ``source`` dropped so far."""
        with self._cond:
            return self._dropped.get(source, 0)

    def producer(self, source: str) -> Producer[T]:
        """Register ``source`` and return its handle (``put``/``close``, the shape of a :class:`DropOldestQueue`)."""
        with self._cond:
            self._queues.setdefault(source, deque())
            self._dropped.setdefault(source, 0)
            self._open.add(source)
        return Producer(self, source)

    def put(self, source: str, item: T, block: bool = False, timeout: float | None = None) -> bool:
        """Add ``item`` from ``source``; False if the queue is closed (or a blocking put timed out)."""
        dropped: tuple[str, T] | None = None
        with self._cond:
            if self._closed:
                return False
            if self._size >= self.capacity:
                if block:
                    ok = self._cond.wait_for(lambda: self._closed or self._size < self.capacity, timeout)
                    if not ok or self._closed:
                        return False
                else:
                    victim = self._victim(source)
                    dropped = (victim, self._queues[victim].popleft()[1])
                    self._size -= 1
                    self._dropped[victim] += 1
                    self.dropped += 1
            self._queues.setdefault(source, deque()).append((self._seq, item))
            self._dropped.setdefault(source, 0)
            self._seq += 1
            self._size += 1
            self._cond.notify_all()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(*dropped)
        return True

    def _victim(self, putting: str) -> str:
        """The source that loses its oldest item: the most pending; the putting one, then the oldest item, on ties."""
        most = max(len(q) for q in self._queues.values())
        if len(self._queues.get(putting, ())) == most:
            return putting
        tied = [s for s, q in self._queues.items() if len(q) == most]
        return min(tied, key=lambda s: self._queues[s][0][0])

    def get_batch(self, max_items: int, timeout: float | None = None) -> list[T]:
        """Up to ``max_items`` items taken round-robin across the sources (at least one unless the timeout passes);
        raises :class:`Closed` once closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._size or self._closed, timeout):
                return []
            if not self._size:
                raise Closed
            sources = list(self._queues)
            batch: list[T] = []
            i = self._next
            while self._size and len(batch) < max_items:
                q = self._queues[sources[i % len(sources)]]
                i += 1
                if q:
                    batch.append(q.popleft()[1])
                    self._size -= 1
                    self._next = i % len(sources)  # the next batch starts after the last source served
            self._cond.notify_all()
            return batch

    def get(self, timeout: float | None = None) -> T | None:
        """Next item (round-robin), or None after ``timeout``; raises :class:`Closed` once closed and drained."""
        batch = self.get_batch(1, timeout)
        return batch[0] if batch else None

    def finish(self, source: str) -> None:
        """``source`` will put no more; the queue closes once every producer has finished."""
        with self._cond:
            self._open.discard(source)
            if not self._open:
                self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        """No more puts from anyone; the consumer drains what is left, then gets :class:`Closed`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Producer(Generic[T]):
    """One source's end of a :class:`FairQueue`: what a windowing stage puts into (like a DropOldestQueue)."""

    def __init__(self, queue: FairQueue[T], source: str) -> None:
        self.queue = queue
        self.source = source

    def put(self, item: T, block: bool = False, timeout: float | None = None) -> bool:
        """Add ``item`` under this source (see :meth:`FairQueue.put`)."""
        return self.queue.put(self.source, item, block, timeout)

    def close(self) -> None:
        """This source is done (see :meth:`FairQueue.finish`)."""
        self.queue.finish(self.source)
