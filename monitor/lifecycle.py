"""The process's life: SIGTERM/SIGINT at any stage end in exit 0 within 5 s, and the exit never hangs or aborts.

Stages and what a signal does in each:

* **starting** (imports, config, opening the microphone, building the sinks): nothing needs cleaning up yet,
  so the handler exits at once. :func:`install` is called first thing, before the heavy imports (torch and
  transformers take seconds), so even a signal in the first second is handled.
* **running** (from :func:`running`, which the CLI calls right before ``Monitor.run``): the handler only sets
  the stop event; the pipeline stops capture, publishes ``offline`` and returns. The model load is part of
  this stage but runs on its own thread (:func:`call_unless_stopped`), so the main thread keeps waiting on
  the stop event and never sits in a long native call while a signal is pending.
* A deadline armed by the first signal exits anyway, 4.5 s after it, should the shutdown hang (a broker that
  stopped answering, a device that does not close).

At the end, :func:`finish` exits with ``os._exit`` when threads are left (a model load or a label encoding
still inside torch): letting the interpreter finalize under a thread that is inside torch's native code
aborts the process ("terminate called without an active exception", exit 134). Output is flushed first.

Only stdlib imports here: this module is imported before anything heavy.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("sound-monitor")

STOP_DEADLINE_SECONDS = 4.5  # from the first signal to a forced exit: under systemd's and the 5 s

T = TypeVar("T")

_stop = threading.Event()
_running = False  # False: the "starting" stage (a signal exits at once)
_deadline: threading.Timer | None = None


def install() -> threading.Event:
    """Handle SIGTERM and SIGINT from now on (idempotent; main thread only). Returns the stop event."""
    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    return _stop


def uninstall() -> None:
    """Back to Python's defaults (commands that are not the monitor: Ctrl-C stops them with KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def running() -> threading.Event:
    """Enter the running stage: a signal now sets the returned stop event instead of exiting."""
    global _running
    _running = True
    return _stop


def _handle(signum: int, frame: Any) -> None:
    global _deadline
    name = signal.Signals(signum).name
    if not _running:
        log.info("received %s while starting; exiting", name)
        hard_exit(0)
    if _stop.is_set():
        log.info("received %s again; already stopping", name)
        return
    log.info("received %s", name)
    _stop.set()
    _deadline = threading.Timer(STOP_DEADLINE_SECONDS, _overdue)
    _deadline.name = "stop-deadline"
    _deadline.daemon = True
    _deadline.start()


def _overdue() -> None:
    log.error("shutdown did not finish within %g s of the signal; exiting now", STOP_DEADLINE_SECONDS)
    hard_exit(0)


def flush() -> None:
    """Flush the log handlers, stdout and stderr (best effort: this also runs inside a signal handler)."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - a closed or busy stream must not keep the process from exiting
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - same (e.g. a reentrant flush when the signal interrupted a write)
            pass


def hard_exit(code: int) -> None:
    """Flush the output and end the process now, without running the interpreter's finalization."""
    flush()
    os._exit(code)


def finish(code: int) -> int:
    """End of a run: ``code`` back to the caller when no other thread is left, else exit with it right here.

    A thread still running (the model load or a label encoding abandoned at a signal, a stuck device) cannot
    be joined quickly, and the interpreter's exit under it can abort; everything that must go out (events,
    ``offline``) went out before this is called.
    """
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if left:
        log.debug("exiting without waiting for thread(s): %s", ", ".join(left))
        # What was registered to run at exit still runs (the interpreter's finalization, which could abort
        # under a thread inside native code, does not); a handler that hangs is cut short by the stop timer.
        try:
            atexit._run_exitfuncs()
        except Exception:
            log.debug("an exit handler failed", exc_info=True)
        hard_exit(code)
    return code


def call_unless_stopped(fn: Callable[[], T], stop: threading.Event, name: str) -> T | None:
    """``fn()`` on a daemon thread; its result, or None as soon as ``stop`` is set (the thread is abandoned).

    The caller (the main thread) waits on ``stop`` meanwhile, so a signal is acted on at once even while ``fn``
    spends seconds inside native code. An exception raised by ``fn`` is raised here.
    """
    done = threading.Event()
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    # Two events cannot be waited on at once; a short poll of the stop event costs nothing next to a load.
    while not done.wait(0.1):
        if stop.is_set():
            return None
    if error:
        raise error[0]
    return result[0]
