"""Starting a run of the pipeline: ``run`` (live sources) and ``replay`` (an audio file).

What can be checked before the model loads is checked first (a missing device, no stream reader, a file that is
not audio, matplotlib for ``--plot``), so that a bad set-up fails in one line at once, not after minutes of loading.
Then the monitor runs under :mod:`monitor.lifecycle`'s stages. Imports are lazy: ``check-config`` and the offline
commands never load the audio stack or the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from monitor import lifecycle
from monitor.config import Config

log = logging.getLogger("sound-monitor")


def run_monitor(cfg: Config, source_factory: Callable[[], Any] | Sequence[Any], live: bool, scores: bool,
                plot: str | None = None) -> int:
    """Build the monitor, run it until its sources end or a signal stops it, and return the exit code."""
    from monitor.inference.errors import ModelLoadError  # torch-free: torch loads on the loader thread
    from monitor.sources.build import SourceError
    from monitor.wiring import build_monitor

    monitor = build_monitor(cfg, source_factory, live=live, scores=scores, plot=plot)
    # From here a signal asks the run to stop (it publishes offline) instead of exiting at once.
    stop = lifecycle.running()
    try:
        code = monitor.run(stop)
    except (ModelLoadError, SourceError) as exc:
        log.error("%s", exc)
        code = 1
    # A model load or label encoding abandoned at a signal is still inside torch: exit without it.
    return lifecycle.finish(code)


def live(cfg: Config, scores: bool = False, plot: str | None = None) -> int:
    """Listen to the microphone (or every configured source) until SIGTERM/SIGINT."""
    from monitor.sources.build import SourceError, check_url_reader, open_capture, source_plans
    from monitor.sources.capture import CaptureError
    from monitor.sources.reopening import ReopeningSource

    if plot:
        from monitor.sinks.plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            log.error("%s", exc)
            return 1
    if cfg.sources is not None:
        # Several sources: none is opened before the model loads; a device or stream that is not there is reported
        # down and retried while the others listen (one source never keeps the rest from running).
        try:
            check_url_reader(cfg.sources)  # in one line now, not after the model load
        except SourceError as exc:
            log.error("%s", exc)
            return 1
        return run_monitor(cfg, source_plans(cfg), live=True, scores=scores, plot=plot)
    src = cfg.unnamed_source()

    def open_default() -> ReopeningSource:
        return ReopeningSource(lambda: open_capture(src, cfg.audio))

    try:
        open_capture(src, cfg.audio).stop()  # fail fast, before loading the model, on a missing device
    except CaptureError as exc:
        log.error("%s", exc)
        return 1
    return run_monitor(cfg, open_default, live=True, scores=scores, plot=plot)


def replay(cfg: Config, file: str, realtime: bool = False, block_size: int | None = None, scores: bool = False,
           plot: str | None = None) -> int:
    """Run the same pipeline over an audio file; print events (and scores) as JSON lines."""
    from monitor.sources.audiofile import AudioFileError, FileSource

    try:
        FileSource(file).stop()
        if plot:
            from monitor.sinks.plot import require_matplotlib

            require_matplotlib()
    except (AudioFileError, RuntimeError) as exc:  # RuntimeError: PlotUnavailable
        log.error("%s", exc)
        return 1
    return run_monitor(cfg, lambda: FileSource(file, realtime=realtime, blocksize=block_size), live=False,
                       scores=scores, plot=plot)
