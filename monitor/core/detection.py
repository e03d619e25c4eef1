"""Detection: per-label threshold → consecutive hits → event start; silence → end; then a cooldown.

All timing is on a monotonic clock passed in by the caller (``time.monotonic()`` live, the stream
clock in replay), never the wall clock, so NTP jumps cannot stretch or end an event. The wall clock
appears only in the UTC ``timestamp`` of each event.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from monitor.records import Event, ScoredWindow, utc_now_iso


@dataclass(frozen=True)
class LabelRule:
    """How one label fires."""

    name: str
    label_id: str
    threshold: float
    enabled: bool = True


class Phase(enum.Enum):
    """Where a label is in its event cycle."""

    IDLE = "idle"
    ACTIVE = "active"


@dataclass
class _LabelState:
    phase: Phase = Phase.IDLE
    hits: int = 0
    run_peak: float = 0.0
    run_start: float = 0.0  # stream start of the first window of the current hit run
    event_peak: float = 0.0
    event_start: float = 0.0
    last_hit_mono: float = 0.0
    last_hit_end: float = 0.0
    last_score: float = 0.0
    cooldown_until: float = float("-inf")


class Detector:
    """Turns scored windows into start/end :class:`Event` objects. Owned by one thread.

    One detector per source: its events carry ``source``, and its per-label state never mixes with another's.
    """

    def __init__(
        self,
        rules: Iterable[LabelRule],
        node: str,
        min_hits: int = 2,
        end_after_seconds: float = 10.0,
        cooldown_seconds: float = 10.0,
        clock_to_iso: Callable[[], str] = utc_now_iso,
        source: str = "",
    ) -> None:
        self.node = node
        self.source = source
        self.min_hits = min_hits
        self.end_after = end_after_seconds
        self.cooldown = cooldown_seconds
        self._iso = clock_to_iso
        self._rules: dict[str, LabelRule] = {}
        self._state: dict[str, _LabelState] = {}
        self.set_rules(rules)

    @property
    def rules(self) -> list[LabelRule]:
        """Current rules, in order."""
        return list(self._rules.values())

    def set_rules(self, rules: Iterable[LabelRule], now: float | None = None) -> list[Event]:
        """Replace the rule set; labels removed or disabled while active get an end event."""
        new = {r.name: r for r in rules}
        events: list[Event] = []
        for name, st in list(self._state.items()):
            rule = new.get(name)
            if st.phase is Phase.ACTIVE and (rule is None or not rule.enabled):
                events.append(self._end(self._rules[name], st, now if now is not None else st.last_hit_mono))
            if rule is None:
                del self._state[name]
        self._rules = new
        for name in new:
            self._state.setdefault(name, _LabelState())
        return events

    def is_active(self, name: str) -> bool:
        """Whether ``name`` has an event in progress."""
        st = self._state.get(name)
        return st is not None and st.phase is Phase.ACTIVE

    def update(self, window: ScoredWindow, now: float | None = None) -> list[Event]:
        """Feed one scored window (``now`` defaults to the window's monotonic end time)."""
        now = window.mono_end if now is None else now
        events: list[Event] = []
        for rule in self._rules.values():
            st = self._state[rule.name]
            score = window.scores.get(rule.name)
            if score is not None and not math.isfinite(score):
                score = None  # never a hit, never reported (the worker drops such windows before they get here)
            if score is None or not rule.enabled or score < rule.threshold:
                st.hits = 0
                if score is not None:
                    st.last_score = score
                continue
            st.last_score = score
            if st.hits == 0:
                st.run_peak = 0.0
                st.run_start = window.start
            st.hits += 1
            st.run_peak = max(st.run_peak, score)
            if st.phase is Phase.ACTIVE:
                st.last_hit_mono = now
                st.last_hit_end = window.end
                st.event_peak = max(st.event_peak, score)
            elif st.hits >= self.min_hits and now >= st.cooldown_until:
                st.phase = Phase.ACTIVE
                st.event_start = st.run_start
                st.event_peak = st.run_peak
                st.last_hit_mono = now
                st.last_hit_end = window.end
                events.append(self._event("start", rule, score, st.event_peak, st.event_start, window.end))
        events.extend(self.tick(now))
        return events

    def tick(self, now: float) -> list[Event]:
        """End events whose label has not been heard for ``end_after_seconds`` (call even without windows)."""
        events = []
        for rule in self._rules.values():
            st = self._state[rule.name]
            if st.phase is Phase.ACTIVE and now - st.last_hit_mono >= self.end_after:
                events.append(self._end(rule, st, now))
        return events

    def flush(self, now: float) -> list[Event]:
        """End every active event (shutdown, end of file)."""
        return [self._end(r, self._state[r.name], now) for r in self._rules.values()
                if self._state[r.name].phase is Phase.ACTIVE]

    def _end(self, rule: LabelRule, st: _LabelState, now: float) -> Event:
        st.phase = Phase.IDLE
        st.hits = 0
        st.cooldown_until = now + self.cooldown
        return self._event("end", rule, st.last_score, st.event_peak, st.event_start, st.last_hit_end)

    def _event(self, kind: str, rule: LabelRule, score: float, peak: float, start: float, end: float) -> Event:
        return Event(
            type=kind,  # type: ignore[arg-type]
            label=rule.name,
            label_id=rule.label_id,
            score=score,
            peak_score=peak,
            timestamp=self._iso(),
            window_start=start,
            window_end=end,
            node=self.node,
            source=self.source,
        )
