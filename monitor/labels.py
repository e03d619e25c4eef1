"""The label registry: the one home of what the monitor listens for.

Configured labels (name, prompts, threshold, enabled), the background labels and the prompt template live
here, with a version number that grows with every change. Nothing else keeps its own copy: each thread that
needs labels derives its own state from a snapshot, at the top of its loop, when the version changed (the
pull model: no callbacks cross threads):

* the inference thread syncs the scorer's text embeddings and the adaptive hop to :meth:`current`, then
  reports the version it applied with :meth:`settle` (a label whose prompts cannot be encoded is dropped);
* the main thread derives the detector's rules and hands :meth:`applied` snapshots to the sinks (discovery,
  the retained config summary, metrics), so they only ever show labels the scorer really scores;
* the command dispatcher validates a command, changes the registry and waits (:meth:`wait_applied`) for the
  inference thread to report the new version applied before it answers.

Snapshots are immutable, so any thread may read them without a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.config import Config

MAX_REMEMBERED_ERRORS = 100


class LabelError(ValueError):
    """A change the registry refuses (a name clash, the last label); the message says why."""


@dataclass(frozen=True)
class LabelPrompts:
    """A label and the prompt texts that describe it, already formatted with the template (what a scorer needs),
    with its example and negative audio files (the negatives include the top-level ones). No prompts: the label
    is scored from its examples alone."""

    name: str
    prompts: tuple[str, ...]
    examples: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Label:
    """A label as it is now (config plus runtime changes). ``prompts`` are the raw texts, before the template."""

    name: str
    label_id: str
    prompts: tuple[str, ...]
    threshold: float
    enabled: bool = True
    examples: tuple[str, ...] = ()  # resolved audio file paths (monitor/teaching.py)
    negatives: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """This label in the ``<prefix>/config`` summary (examples and negatives as counts)."""
        return {
            "name": self.name,
            "label_id": self.label_id,
            "threshold": self.threshold,
            "enabled": self.enabled,
            "prompts": list(self.prompts),
            "examples": len(self.examples),
            "negatives": len(self.negatives),
        }


@dataclass(frozen=True)
class LabelSet:
    """An immutable snapshot of the registry at one version."""

    version: int
    labels: tuple[Label, ...]
    background: tuple[str, ...] = ()
    template: str = "{}"
    negatives: tuple[str, ...] = ()  # top-level negatives: sounds that must never fire any label
    _by_key: dict[str, Label] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, Label] = {}
        for lbl in self.labels:
            index[lbl.name.casefold()] = lbl
            index[lbl.label_id] = lbl
        object.__setattr__(self, "_by_key", index)

    def find(self, key: str) -> Label | None:
        """The label whose name (case-insensitive) or label_id is ``key``."""
        key = key.strip()
        return self._by_key.get(key.casefold()) or self._by_key.get(key)

    def names(self) -> list[str]:
        """Label names in order (background labels excluded)."""
        return [lbl.name for lbl in self.labels]

    def thresholds(self) -> dict[str, float]:
        """Name → threshold of the labels that can fire (enabled)."""
        return {lbl.name: lbl.threshold for lbl in self.labels if lbl.enabled}

    def scored(self) -> list[LabelPrompts]:
        """What the model scores: every label with its formatted prompts, examples and negatives (its own, then the
        top-level ones), then the background labels."""
        out = [LabelPrompts(lbl.name, tuple(self.template.format(p) for p in lbl.prompts), lbl.examples,
                            tuple(dict.fromkeys((*lbl.negatives, *self.negatives))))
               for lbl in self.labels]
        out += [LabelPrompts(b, (self.template.format(b),)) for b in self.background]
        return out

    def without(self, names: Iterable[str]) -> LabelSet:
        """This snapshot minus the labels named (same version)."""
        gone = set(names)
        return replace(self, labels=tuple(lbl for lbl in self.labels if lbl.name not in gone))


def labels_from_config(cfg: Config) -> LabelSet:
    """The labels of ``cfg`` with their effective thresholds, prompts, example and negative files, as version 1.

    Example paths are resolved here (folders listed, taught folders added: :mod:`monitor.teaching`); a missing
    path, too many files or a label left with neither prompts nor examples raises ``ConfigError``.
    """
    from monitor.config import ConfigError
    from monitor.teaching import TeachError, examples_dir, negatives_dir, resolve_files, taught_folder

    root, limit = taught_folder(cfg), cfg.examples.max_files
    labels = []
    try:
        for i, lbl in enumerate(cfg.labels):
            examples = resolve_files(lbl.examples, f"labels[{i}].examples", limit, examples_dir(root, lbl.slug))
            negatives = resolve_files(lbl.negatives, f"labels[{i}].negatives", limit, negatives_dir(root, lbl.slug))
            prompts = tuple(lbl.prompts if lbl.prompts is not None else [lbl.name])
            if not prompts and not examples:
                raise TeachError(f"labels[{i}]: '{lbl.name}' has no prompts and no examples")
            labels.append(Label(lbl.name, lbl.slug, prompts, cfg.label_threshold(lbl), lbl.enabled, examples,
                                negatives))
        negatives = resolve_files(cfg.negatives, "negatives", limit, negatives_dir(root, None))
    except TeachError as exc:
        raise ConfigError("config", [str(exc)]) from None
    return LabelSet(version=1, labels=tuple(labels), background=tuple(cfg.background), template=cfg.prompt_template,
                    negatives=negatives)


class LabelRegistry:
    """The current labels, written by the command dispatcher, applied by the inference thread.

    ``current()`` is the latest wanted set; ``applied()`` the latest set the scorer has. Both start as
    the config's labels, which the scorer is loaded with.
    """

    def __init__(self, initial: LabelSet, max_labels: int = 1000) -> None:
        self._cond = threading.Condition()
        self._current = initial
        self._applied = initial
        self.max_labels = max_labels
        self._errors: dict[str, str] = {}  # label name → why its prompts could not be encoded

    @classmethod
    def from_config(cls, cfg: Config) -> LabelRegistry:
        """A registry holding ``cfg``'s labels."""
        return cls(labels_from_config(cfg))

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
    def add(self, label: Label) -> int:
        """Append ``label``; the new version. Raises LabelError on a clash or past ``max_labels``."""
        with self._cond:
            cur = self._current
            clash = cur.find(label.name) or cur.find(label.label_id)
            if clash is None:
                clash = next((lbl for lbl in cur.labels if lbl.label_id == label.label_id), None)
            if clash is not None:
                raise LabelError(f"label '{label.name}' already exists (same id '{label.label_id}' as "
                                 f"label '{clash.name}')")
            if label.name.casefold() in {b.strip().casefold() for b in cur.background}:
                raise LabelError(f"'{label.name}' is a background label")
            if len(cur.labels) >= self.max_labels:
                raise LabelError(f"there are already {len(cur.labels)} labels (the most allowed)")
            self._errors.pop(label.name, None)
            return self._set((*cur.labels, label))

    def update(self, name: str, **changes: Any) -> tuple[Label, int]:
        """Change fields (``threshold``, ``enabled``) of the label called ``name``; the new label and version."""
        with self._cond:
            old = self._find_current(name)
            new = replace(old, **changes)
            return new, self._set(tuple(new if lbl.name == old.name else lbl for lbl in self._current.labels))

    def remove(self, name: str) -> tuple[Label, int]:
        """Remove the label called ``name``; the removed label and the new version."""
        with self._cond:
            old = self._find_current(name)
            if len(self._current.labels) <= 1:
                raise LabelError(f"cannot remove '{old.name}': it is the last label")
            return old, self._set(tuple(lbl for lbl in self._current.labels if lbl.name != old.name))

    def _find_current(self, key: str) -> Label:
        found = self._current.find(key)
        if found is None:
            raise LabelError(f"unknown label '{key}' (labels: {', '.join(self._current.names())})")
        return found

    def set_negatives(self, negatives: tuple[str, ...]) -> int:
        """Replace the top-level negatives; the new version."""
        with self._cond:
            self._current = replace(self._current, version=self._current.version + 1, negatives=negatives)
            self._cond.notify_all()
            return self._current.version

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

