"""Waiting in tests: poll a condition until it holds or a timeout passes, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["wait_for"]


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Args:
        predicate: Called repeatedly; exceptions propagate.
        timeout: Seconds before giving up.
        interval: Seconds between calls.
        message: Text of the AssertionError on timeout, or a callable producing it (evaluated only then, so it
            can describe the state at the time of failure).

    Raises:
        AssertionError: If ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s: {text}")
        time.sleep(interval)
