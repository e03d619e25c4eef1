"""One source in a run: its audio source, its windowing thread, its detector and its input state.

A run holds one :class:`SourceRun` per configured source (one, unnamed, for a single-source config). Ownership:

* the source's **windowing thread** (``WindowStage``, thread ``windowing <name>``) owns the source (reading,
  reconnecting, its counters) and puts windows into the run's shared fair queue under the source's name;
* the **main thread** owns the detector (per label state of this source only) and the input state it last handed
  to the sinks (:meth:`poll_input`);
* any thread may read :meth:`problem` and :meth:`stats` (plain reads of counters and swapped snapshots).

A source that fails, stalls or floods touches nothing here but its own stage and detector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np

from monitor.config import Config, SourceConfig
from monitor.core.detection import Detector
from monitor.core.queues import FairQueue
from monitor.core.sourcerules import detection_rules
from monitor.core.windowing import AudioSource, WindowStage
from monitor.labels import LabelSet
from monitor.records import InputState, Window, utc_now_iso
from monitor.runstats import SourceStats

STALL_SECONDS = 15.0  # no progress for this long = the source is stalled (and, alone, the run unhealthy)

AudioTap = Callable[[int, np.ndarray], None]


@dataclass(frozen=True)
class SourcePlan:
    """A source of a run before it starts: its config entry and how to open it (called on the main thread once the
    model is loaded)."""

    config: SourceConfig
    open: Callable[[], AudioSource]


class SourceRun:
    """One source of a running monitor (see the module docstring for who owns what)."""

    def __init__(self, plan: SourcePlan, cfg: Config, labels: LabelSet, live: bool,
                 taps: Sequence[AudioTap] = ()) -> None:
        self.plan = plan
        self.config = plan.config
        self.name = plan.config.name
        self.cfg = cfg
        self.live = live
        self.taps = list(taps)
        d = cfg.detection
        self.detector = Detector(detection_rules(labels, self.config), node=cfg.node_name(), min_hits=d.min_hits,
                                 end_after_seconds=d.end_after_seconds, cooldown_seconds=d.cooldown_seconds,
                                 source=self.name)
        self.stage: WindowStage | None = None
        self._started = False
        self._handed: InputState | None = None  # main thread: the input state last handed to the sinks

    @property
    def label(self) -> str:
        """How messages name this source."""
        return self.name or "audio input"

    @property
    def min_dbfs(self) -> float | None:
        """This source's loudness gate: its own, else ``audio.min_dbfs``."""
        return self.config.min_dbfs if self.config.min_dbfs is not None else self.cfg.audio.min_dbfs

    # --- main thread -------------------------------------------------------------------------------
    def open(self, queue: FairQueue[Window]) -> None:
        """Open the source and build its windowing stage, which will put into ``queue`` under this source's name."""
        a = self.cfg.audio
        source = self.plan.open()
        self.stage = WindowStage(source, queue.producer(self.name), a.window_seconds, a.hop_seconds,
                                 live=self.live, taps=self.taps, name=self.name)

    def start(self) -> None:
        """Start the windowing thread."""
        assert self.stage is not None
        self.stage.start()
        self._started = True

    def stop(self) -> None:
        """Ask the windowing thread to finish (wakes a blocked read); a source opened but never started (another
        failed to open) is closed here, since no thread of its own will."""
        if self.stage is None:
            return
        self.stage.stop()
        if not self._started:
            self._started = True  # closed once
            self.stage.source.stop()

    def poll_input(self) -> InputState | None:
        """A new input state to hand to the sinks (tagged with this source's name), or None when unchanged or the
        source has none (a file)."""
        now = self.input_state()
        if now is None:
            return None
        last = self._handed
        if last is not None and (now.state, now.error, now.since) == (last.state, last.error, last.since):
            return None
        self._handed = now
        return now

    # --- any thread --------------------------------------------------------------------------------
    def input_state(self) -> InputState | None:
        """The source's input state now: its own ``input_state`` snapshot (a microphone), or one made from its
        ``state``/``last_error`` (a network stream: ``connecting`` counts as down), or None for a file."""
        stage = self.stage
        if stage is None:
            return None
        source = stage.source
        if stage.error is not None and not stage.alive:
            return self._synthetic("down", f"stopped: {stage.error}")
        own = getattr(source, "input_state", None)
        if isinstance(own, InputState):
            return replace(own, source=self.name)
        state = getattr(source, "state", None)
        if state is None:
            return None
        if state == "up":
            return self._synthetic("up", None)
        error = getattr(source, "last_error", None) or ("connecting" if state == "connecting" else "down")
        return self._synthetic("down", str(error))

    def _synthetic(self, state: Literal["up", "down"], error: str | None) -> InputState:
        last = self._handed
        if last is not None and (last.state, last.error) == (state, error):
            return last
        since = last.since if last is not None and last.state == state else utc_now_iso()
        version = last.version + 1 if last is not None else 1
        return InputState(state, error, since, version, source=self.name)

    def problem(self, now: float) -> str | None:
        """Why this source gives no audio now (down, stalled, stopped), or None while it is fine."""
        stage = self.stage
        if stage is None:
            return None
        state = self.input_state()
        if state is not None and state.state == "down":  # at once, not after STALL_SECONDS without audio
            return f"audio input is down: {state.error}" if not self.name else f"{self.name} is down: {state.error}"
        quiet = now - stage.last_progress
        if quiet >= STALL_SECONDS:
            return f"no audio from the input for {quiet:.0f} s" if not self.name else \
                f"{self.name}: no audio for {quiet:.0f} s"
        return None

    def stats(self, queue: FairQueue[Window]) -> SourceStats:
        """This source's counters now."""
        stage = self.stage
        if stage is None:
            return SourceStats(self.name, "starting")
        source = stage.source
        state = self.input_state()
        up = (state is None or state.state == "up") and stage.alive
        return SourceStats(
            name=self.name,
            state="up" if up else "down",
            reconnects=int(getattr(source, "reopens", 0)),
            windows=stage.windows_cut,
            dropped=queue.dropped_by(self.name),
            queue_depth=queue.depth(self.name),
            level_dbfs=stage.last_dbfs,
            # a microphone's ring overruns, or a stream's buffer drops: audio lost to a slow consumer either way
            overruns=int(getattr(source, "overruns", getattr(source, "drops", 0))),
            lost_samples=int(getattr(source, "lost_samples", getattr(source, "dropped_samples", 0))),
            windows_invalid=stage.windows_invalid,
            samples_clipped=stage.samples_clipped,
        )


class _Worker(Protocol):
    """What health needs of the inference worker."""

    alive: bool
    last_progress: float

    def stalled(self, now: float, limit: float) -> bool: ...


def run_health(sources: Sequence[SourceRun], worker: _Worker | None, now: float,
               watchdog: bool = False) -> tuple[bool, str]:
    """``(healthy, reason)`` of a run: failing while starting, when every source is down or stalled, or when
    inference stalls; healthy but ``degraded: ...`` (naming the sources) while only some are down, so that one
    camera that is away never gets the service restarted. One source alone gives the same answers as before
    sources existed.

    ``watchdog``: the systemd watchdog's question, "is the process stuck?". Named sources reconnect on their
    own, so their being down (all of them: a camera-only box whose camera reboots) is not a reason to restart
    the service, which would reload the model every ``WatchdogSec`` and reset every backoff; only a stuck
    inference is. The one unnamed microphone keeps its old rule (a restart re-opens PortAudio).
    """
    if worker is None or any(run.stage is None for run in sources):
        return False, "starting: loading the model"
    problems = [p for run in sources if (p := run.problem(now))]
    if problems and len(problems) == len(sources) and not (watchdog and sources[0].name):
        return False, problems[0] if len(problems) == 1 else "all sources are down: " + "; ".join(problems)
    if not worker.alive:
        return False, "the inference thread has stopped"
    if worker.stalled(now, STALL_SECONDS):
        return False, f"one inference has been running for over {STALL_SECONDS:g} s"
    if now - worker.last_progress >= STALL_SECONDS:
        return False, f"inference has made no progress for {now - worker.last_progress:.0f} s"
    if problems:
        return True, "degraded: " + "; ".join(problems)
    return True, "ok"
