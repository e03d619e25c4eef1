"""What each runtime command does to the burst's label draft, and how it is answered.

The dispatcher (:mod:`monitor.mqtt.commands`) parses a payload, hands the command to :meth:`CommandActions.apply`
on its own thread, and later commits the draft and answers. A handler only validates the command against the draft
and changes it; one that raises :class:`~monitor.mqtt.validation.CommandError` or
:class:`~monitor.labels.LabelError` has changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.config import Config
from monitor.labels import LabelDraft
from monitor.mqtt.teach import Teacher
from monitor.mqtt.validation import ACTIONS, CommandError, check_keys, label_key, new_label, threshold

__all__ = ["Answer", "CommandActions"]


@dataclass
class Answer:
    """One command's outcome within a burst, answered once the burst is applied."""

    cmd: dict[str, Any]
    ok: bool
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the label the change touches (it fails with that label's encoding)
    change: bool = False  # changes labels: waits for the burst to be applied
    note: str = ""  # logged once applied


class CommandActions:
    """One handler per action of :data:`~monitor.mqtt.validation.ACTIONS` (raises CommandError or LabelError)."""

    def __init__(self, cfg: Config, teacher: Teacher) -> None:
        self.cfg = cfg
        self.teacher = teacher  # add_example, add_negative (monitor/mqtt/teach.py)
        handlers: dict[str, Callable[[dict[str, Any], LabelDraft], Answer]] = {
            "set_threshold": self._set_threshold,
            "enable": lambda cmd, draft: self._set_enabled(cmd, draft, True),
            "disable": lambda cmd, draft: self._set_enabled(cmd, draft, False),
            "get_config": self._get_config,
            "add_label": self._add_label,
            "remove_label": self._remove_label,
            "add_example": self._add_example,
            "add_negative": self._add_negative,
        }
        assert set(handlers) == set(ACTIONS), "every action validation accepts has a handler"
        self._handlers = handlers

    def apply(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        """Validate ``cmd`` (parsed, its action known) against ``draft`` and apply it there."""
        return self._handlers[cmd["action"]](cmd, draft)

    def _set_threshold(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        check_keys(cmd, {"label", "threshold"})
        key = label_key(cmd)
        if "threshold" not in cmd:
            raise CommandError("'threshold' is required")
        label = draft.update(key, threshold=threshold(cmd["threshold"]))
        return Answer(cmd, True, extra={"label": label.name, "threshold": label.threshold}, label=label.name,
                      change=True, note=f"threshold of {label.name} set to {label.threshold:g}")

    def _set_enabled(self, cmd: dict[str, Any], draft: LabelDraft, enabled: bool) -> Answer:
        check_keys(cmd, {"label"})
        label = draft.update(label_key(cmd), enabled=enabled)
        return Answer(cmd, True, extra={"label": label.name, "enabled": enabled}, label=label.name, change=True,
                      note=f"{'enabled' if enabled else 'disabled'} {label.name}")

    def _get_config(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        check_keys(cmd, set())
        return Answer(cmd, True)  # the summary is read once the burst is applied

    def _add_label(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        label = new_label(cmd, self.cfg.detection.threshold)
        draft.add(label)
        return Answer(cmd, True, extra={"label": label.name, "label_id": label.label_id, "threshold": label.threshold},
                      label=label.name, change=True, note=f"added label {label.name} (threshold {label.threshold:g})")

    def _remove_label(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        check_keys(cmd, {"label"})
        label = draft.remove(label_key(cmd))
        return Answer(cmd, True, extra={"label": label.name}, change=True, note=f"removed label {label.name}")

    def _add_example(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        # The clip is checked and copied here; the inference thread embeds it once the burst is committed.
        check_keys(cmd, {"label", "clip"})
        changed, extra = self.teacher.add_example(cmd, draft)
        return Answer(cmd, True, extra=extra, label=extra["label"], change=changed,
                      note=f"{extra['clip']} is now an example of {extra['label']}")

    def _add_negative(self, cmd: dict[str, Any], draft: LabelDraft) -> Answer:
        check_keys(cmd, {"label", "clip"})
        changed, extra = self.teacher.add_negative(cmd, draft)
        return Answer(cmd, True, extra=extra, label=extra["label"], change=changed,
                      note=f"{extra['clip']} is now a negative of {extra['label'] or 'every label'}")
