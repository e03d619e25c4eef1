"""What a label is: immutable records any thread may hold (the registry in :mod:`monitor.labels` owns the
current set and its versions)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.config import Config


class LabelError(ValueError):
    """A change the registry refuses (a name clash, the last label, too many labels); the message says why."""


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

    Example paths are resolved by :func:`monitor.teaching.config_files` (folders listed, taught folders added);
    a missing path, too many files or a label left with neither prompts nor examples raises ``ConfigError``.
    """
    from monitor.teaching import config_files

    files, negatives = config_files(cfg)
    labels = tuple(Label(lbl.name, lbl.slug, tuple(lbl.prompts if lbl.prompts is not None else [lbl.name]),
                         cfg.label_threshold(lbl), lbl.enabled, *files[i]) for i, lbl in enumerate(cfg.labels))
    return LabelSet(version=1, labels=labels, background=tuple(cfg.background), template=cfg.prompt_template,
                    negatives=negatives)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
