"""The label registry: the one home of what the monitor listens for.

Configured labels (name, prompts, threshold, enabled), the background labels and the prompt template live
here, with a version number that grows with every change. Nothing else keeps its own copy: each thread that
needs labels derives its own state from a snapshot, at the top of its loop, when the version changed (the
pull model: no callbacks cross threads):

* the inference thread syncs the scorer's text embeddings and the adaptive hop to :meth:`current`, then
  reports the version it applied with :meth:`settle` (a label whose prompts cannot be encoded is dropped);
* the main thread derives the detector's rules and hands :meth:`applied` snapshots to the sinks (discovery,
  the retained config summary, metrics), so they only ever show labels the scorer really scores;
* the command dispatcher validates a burst of commands on a :class:`LabelDraft`, commits it (one version)
  and waits (:meth:`wait_applied`) for the inference thread to report it applied before it answers.

Snapshots are immutable, so any thread may read them without a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from monitor.labelset import Label, LabelError, LabelPrompts, LabelSet, clip, labels_from_config

if TYPE_CHECKING:
    from monitor.config import Config

__all__ = ["Label", "LabelDraft", "LabelError", "LabelPrompts", "LabelRegistry", "LabelSet", "clip",
           "labels_from_config"]

MAX_REMEMBERED_ERRORS = 100


class LabelDraft:
    """A label set changed by a burst of commands, invisible to other threads until :meth:`LabelRegistry.commit`
    (one version for the burst, so the inference thread syncs once). Each change is validated against the ones
    before it; a refused change raises :class:`LabelError` and changes nothing."""

    def __init__(self, base: LabelSet, max_labels: int) -> None:
        self.base = base
        self.max_labels = max_labels
        self.labels: list[Label] = list(base.labels)
        self.negatives: tuple[str, ...] = base.negatives  # the top-level negatives (add_negative without a label)
        self.added: set[str] = set()  # names added by this draft (their old encoding errors are forgotten)
        self.changed = False

    def snapshot(self) -> LabelSet:
        """The draft as a label set (the base's version number)."""
        return replace(self.base, labels=tuple(self.labels), negatives=self.negatives)

    def set_negatives(self, negatives: tuple[str, ...]) -> None:
        """Replace the top-level negatives."""
        self.negatives = negatives
        self.changed = True

    def add(self, label: Label) -> None:
        """Append ``label``; LabelError on a clash, a background name or past ``max_labels``."""
        cur = self.snapshot()
        clash = cur.find(label.name) or cur.find(label.label_id)
        if clash is None:
            clash = next((lbl for lbl in cur.labels if lbl.label_id == label.label_id), None)
        if clash is not None:
            raise LabelError(f"label '{label.name}' already exists (same id '{label.label_id}' as "
                             f"label '{clash.name}')")
        if label.name.casefold() in {b.strip().casefold() for b in cur.background}:
            raise LabelError(f"'{label.name}' is a background label")
        if len(self.labels) >= self.max_labels:
            raise LabelError(f"there are already {len(self.labels)} labels, the most allowed "
                             f"(inference.max_labels)")
        self.labels.append(label)
        self.added.add(label.name)
        self.changed = True

    def update(self, key: str, **changes: Any) -> Label:
        """Change fields (``threshold``, ``enabled``) of the label ``key``; the new label."""
        old = self._find(key)
        new = replace(old, **changes)
        self.labels = [new if lbl.name == old.name else lbl for lbl in self.labels]
        self.changed = True
        return new

    def remove(self, key: str) -> Label:
        """Take out the label ``key``; the label removed. The last label cannot go."""
        old = self._find(key)
        if len(self.labels) <= 1:
            raise LabelError(f"cannot remove '{old.name}': it is the last label")
        self.labels = [lbl for lbl in self.labels if lbl.name != old.name]
        self.added.discard(old.name)
        self.changed = True
        return old

    def drop(self, names: Iterable[str]) -> None:
        """Take out labels that cannot be scored (their prompts failed to encode), without the last-label rule."""
        gone = set(names)
        self.labels = [lbl for lbl in self.labels if lbl.name not in gone]
        self.added -= gone

    def _find(self, key: str) -> Label:
        found = self.snapshot().find(key)
        if found is None:
            # User input echoed in an error is cut short: a 100 KB label key must not come back in full.
            names = clip(", ".join(lbl.name for lbl in self.labels), 200)
            raise LabelError(f"unknown label '{clip(key, 60)}' (labels: {names})")
        return found


class LabelRegistry:
    """The current labels, written by the command dispatcher, applied by the inference thread.

    ``current()`` is the latest wanted set; ``applied()`` the latest set the scorer has. Both start as
    the config's labels, which the scorer is loaded with.
    """

    def __init__(self, initial: LabelSet, max_labels: int = 1000) -> None:
        self._cond = threading.Condition()  # its lock is re-entrant: add/update/remove hold it across commit
        self._current = initial
        self._applied = initial
        self.max_labels = max_labels
        self._errors: dict[str, str] = {}  # label name → why its prompts could not be encoded

    @classmethod
    def from_config(cls, cfg: Config) -> LabelRegistry:
        """A registry holding ``cfg``'s labels, bounded by ``inference.max_labels``."""
        return cls(labels_from_config(cfg), max_labels=cfg.inference.max_labels)

    # --- snapshots (any thread) --------------------------------------------------------------------
    def current(self) -> LabelSet:
        """The latest wanted label set."""
        with self._cond:
            return self._current

    def applied(self) -> LabelSet:
        """The latest label set the scorer has applied."""
        with self._cond:
            return self._applied

    # --- changes (the command dispatcher) ----------------------------------------------------------
    def draft(self) -> LabelDraft:
        """A draft of the current labels to change a burst of commands in; see :meth:`commit`."""
        with self._cond:
            return LabelDraft(self._current, self.max_labels)

    def commit(self, draft: LabelDraft) -> int:
        """Make ``draft`` the wanted label set; the new version. Labels the inference thread took out since the
        draft was made (their prompts failed to encode) stay out."""
        with self._cond:
            labels = draft.labels
            if self._current.version != draft.base.version:
                gone = set(draft.base.names()) - set(self._current.names())
                labels = [lbl for lbl in labels if lbl.name not in gone or lbl.name in draft.added]
            for name in draft.added:
                self._errors.pop(name, None)
            self._current = replace(self._current, negatives=draft.negatives)  # only drafts change them
            return self._set(tuple(labels))

    def add(self, label: Label) -> int:
        """Append ``label``; the new version. Raises LabelError on a clash or past ``max_labels``."""
        with self._cond:
            draft = self.draft()
            draft.add(label)
            return self.commit(draft)

    def update(self, name: str, **changes: Any) -> tuple[Label, int]:
        """Change fields (``threshold``, ``enabled``, ``examples``, ``negatives``) of the label called ``name``;
        the new label and version."""
        with self._cond:
            draft = self.draft()
            new = draft.update(name, **changes)
            return new, self.commit(draft)

    def remove(self, name: str) -> tuple[Label, int]:
        """Remove the label called ``name``; the removed label and the new version."""
        with self._cond:
            draft = self.draft()
            old = draft.remove(name)
            return old, self.commit(draft)

    def set_negatives(self, negatives: tuple[str, ...]) -> int:
        """Replace the top-level negatives; the new version."""
        with self._cond:
            draft = self.draft()
            draft.set_negatives(negatives)
            return self.commit(draft)

    def _set(self, labels: tuple[Label, ...]) -> int:
        self._current = replace(self._current, version=self._current.version + 1, labels=labels)
        self._cond.notify_all()
        return self._current.version

    # --- the inference thread ----------------------------------------------------------------------
    def settle(self, synced: LabelSet, failed: dict[str, str] | None = None) -> None:
        """The scorer now holds ``synced`` minus the labels in ``failed`` (name → reason).

        Failed labels are taken out of the wanted set too, so the detector never waits for a label the
        scorer does not have; the reason stays readable through :meth:`error`.
        """
        failed = failed or {}
        with self._cond:
            if failed:
                self._errors.update(failed)
                while len(self._errors) > MAX_REMEMBERED_ERRORS:
                    self._errors.pop(next(iter(self._errors)))
                self._current = replace(self._current, version=self._current.version + 1,
                                        labels=tuple(lbl for lbl in self._current.labels if lbl.name not in failed))
            if synced.version > self._applied.version:
                self._applied = synced.without(failed)
            self._cond.notify_all()

    # --- waiting for a change to take effect -------------------------------------------------------
    def wait_applied(self, version: int, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until ``version`` (or a later one) is applied; False after ``timeout`` or once ``stop`` is set."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._applied.version >= version or (stop is not None and stop.is_set()), timeout
            ) and self._applied.version >= version

    def wait_changed(self, seen: int, timeout: float, stop: threading.Event | None = None) -> LabelSet:
        """Wait until ``current()`` has a version other than ``seen`` (or ``timeout`` passes, or ``stop`` is set
        and :meth:`wake` called); returns ``current()``."""
        with self._cond:
            self._cond.wait_for(lambda: self._current.version != seen or (stop is not None and stop.is_set()), timeout)
            return self._current

    def wake(self) -> None:
        """Wake every :meth:`wait_applied` (after setting its ``stop``)."""
        with self._cond:
            self._cond.notify_all()

    def error(self, name: str) -> str | None:
        """Why the label called ``name`` was dropped by the scorer, if it was."""
        with self._cond:
            return self._errors.get(name)

