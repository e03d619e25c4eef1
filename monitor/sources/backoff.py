"""How long a network source waits before its next attempt: exponential backoff with jitter.

Jitter matters when many clients fail together (a camera or a switch reboots): without it, every reader of the
box, and every box of the house, would retry in the same instant, again and again.
"""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(failures: int, first: float, maximum: float, jitter: float, rand: float) -> float:
    """Seconds to wait after ``failures`` (>= 1) failures in a row: ``first`` doubling up to ``maximum``, less up
    to ``jitter`` of it (``rand`` in [0, 1)), so that streams that fail together do not retry together."""
    base = min(maximum, first * 2.0 ** min(failures - 1, 60))
    return base * (1.0 - jitter * rand)
