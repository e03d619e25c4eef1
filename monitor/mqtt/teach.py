"""Teaching at run time: ``add_example`` and ``add_negative`` turn an event clip into an example or a negative.

Threads: :meth:`Teacher.note_event` runs on the main thread (the MQTT sink sees every event with its clip name);
everything else on the command dispatcher's thread. A command names a clip by the file name an event carried in
its ``clip`` field, or ``"last"`` for the label's latest event clip (what the Home Assistant buttons send). The
name must be a plain file name in ``clips.folder`` (:func:`monitor.teaching.clip_path`); the clip is checked
(bounded size and length, decodable), copied into the taught folder, so it outlives the clips folder's rotation,
and added to the label (or to the top-level negatives) in the burst's :class:`~monitor.labels.LabelDraft`. Once the
dispatcher commits the burst, the inference thread embeds that one file (one audio forward, cached), and the answer
comes once that is applied: the next window is scored with it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from monitor.config import Config
from monitor.labels import Label, LabelDraft, clip
from monitor.records import Event
from monitor.teaching import (
    TeachError,
    check_audio_file,
    clip_path,
    copy_in,
    examples_dir,
    last_clip,
    negatives_dir,
    taught_folder,
)

LAST = "last"


class Teacher:
    """Validates ``add_example`` / ``add_negative`` and applies them to a draft; each method returns (whether the
    draft changed, answer fields) or raises :class:`~monitor.teaching.TeachError` (a ``LabelError``)."""

    def __init__(self, cfg: Config) -> None:
        self.clips = Path(cfg.clips.folder) if cfg.clips.enabled else None
        self.post_roll = cfg.clips.post_roll_seconds
        self.root = taught_folder(cfg)
        e = cfg.examples
        self.max_files, self.max_bytes, self.max_seconds = e.max_files, int(e.max_file_mb * 1024 * 1024), \
            e.max_file_seconds
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}  # label_id → the clip its latest start event named

    def note_event(self, event: Event) -> None:
        """Main thread: remember each label's latest clip (``"last"`` resolves to it)."""
        name = event.extra.get("clip")
        if event.type == "start" and isinstance(name, str):
            with self._lock:
                self._last[event.label_id] = name

    # --- commands (dispatcher thread) --------------------------------------------------------------
    def add_example(self, cmd: dict[str, Any], draft: LabelDraft) -> tuple[bool, dict[str, Any]]:
        """``{label, clip}``: the clip becomes an example of the label."""
        label = self._label(cmd.get("label"), draft, required=True)
        assert label is not None
        if len(label.examples) >= self.max_files:
            raise TeachError(f"'{label.name}' already has {len(label.examples)} examples, the most allowed "
                             "(examples.max_files)")
        name, src = self._clip(cmd.get("clip"), label)
        dest, added = copy_in(src, examples_dir(self.root, label.label_id))
        path = str(dest.resolve())
        changed = path not in label.examples
        if changed:
            label = draft.update(label.name, examples=(*label.examples, path))
        return changed, self._answer(label, name, dest, added or changed)

    def add_negative(self, cmd: dict[str, Any], draft: LabelDraft) -> tuple[bool, dict[str, Any]]:
        """``{clip, label?}``: the clip becomes a negative of the label, or of every label without one."""
        label = self._label(cmd.get("label"), draft, required=False)
        current = label.negatives if label is not None else draft.negatives
        if len(current) >= self.max_files:
            whose = f"'{label.name}' already has" if label is not None else "there are already"
            raise TeachError(f"{whose} {len(current)} negatives, the most allowed (examples.max_files)")
        name, src = self._clip(cmd.get("clip"), label)
        dest, added = copy_in(src, negatives_dir(self.root, label.label_id if label is not None else None))
        path = str(dest.resolve())
        changed = path not in current
        if changed and label is not None:
            label = draft.update(label.name, negatives=(*current, path))
        elif changed:
            draft.set_negatives((*current, path))
        if label is not None:
            return changed, self._answer(label, name, dest, added or changed)
        return changed, {"label": None, "clip": name, "file": str(dest), "added": added or changed,
                         "negatives": len(draft.negatives)}

    # --- validation --------------------------------------------------------------------------------
    def _label(self, key: object, draft: LabelDraft, required: bool) -> Label | None:
        if key is None and not required:
            return None
        if not isinstance(key, str) or not key.strip():
            raise TeachError("'label' (a label name or id) is required" if required
                             else "'label' must be a label name or id (or left out: a negative for every label)")
        labels = draft.snapshot()
        found = labels.find(key)
        if found is None:
            raise TeachError(f"unknown label '{clip(key, 60)}' (labels: {clip(', '.join(labels.names()), 200)})")
        return found

    def _clip(self, name: object, label: Label | None) -> tuple[str, Path]:
        if self.clips is None:
            raise TeachError("clips are off (clips.enabled: false): there is no event clip to teach from")
        if name == LAST:
            if label is None:
                raise TeachError("clip 'last' needs a label (whose latest event clip)")
            with self._lock:
                noted = self._last.get(label.label_id)
            name = noted or last_clip(self.clips, label.label_id)
            if name is None:
                raise TeachError(f"'{label.name}' has no event clip in {self.clips}")
            if noted is not None and not (self.clips / noted).is_file():
                raise TeachError(f"the latest clip of '{label.name}' ({noted}) is not there: still being written "
                                 f"(it ends {self.post_roll:g} s after the event started; try again) or already "
                                 "deleted by clips.max_total_mb")
        path = clip_path(self.clips, name)
        check_audio_file(path, self.max_bytes, self.max_seconds)
        return str(name), path

    def _answer(self, label: Label, clip_name: str, dest: Path, added: bool) -> dict[str, Any]:
        return {"label": label.name, "clip": clip_name, "file": str(dest), "added": added,
                "examples": len(label.examples), "negatives": len(label.negatives)}
