"""Teaching at run time: ``add_example`` and ``add_negative`` turn an event clip into an example or a negative.

Threads: :meth:`Teacher.note_event` runs on the main thread (the MQTT sink sees every event with its clip name);
everything else on the command dispatcher's thread. A command names a clip by the file name an event carried in
its ``clip`` field, or ``"last"`` for the label's latest event clip (what the Home Assistant buttons send). The
name must be a plain file name in ``clips.folder`` (:func:`monitor.teaching.clip_path`); the clip is checked
(bounded size and length, decodable), copied into the taught folder, so it outlives the clips folder's rotation,
and added to the label (or to the top-level negatives) in the registry. The inference thread then embeds that one
file (one audio forward, cached) and the dispatcher answers once it is applied: the next window is scored with it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from monitor.config import Config
from monitor.labels import Label, LabelRegistry
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
    """Validates and applies ``add_example`` / ``add_negative``; each method returns (registry version or 0 when
    nothing changed, answer fields)."""

    def __init__(self, cfg: Config, registry: LabelRegistry) -> None:
        self.registry = registry
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
    def add_example(self, cmd: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``{label, clip}``: the clip becomes an example of the label."""
        label = self._label(cmd.get("label"), required=True)
        assert label is not None
        if len(label.examples) >= self.max_files:
            raise TeachError(f"'{label.name}' already has {len(label.examples)} examples, the most allowed "
                             "(examples.max_files)")
        name, src = self._clip(cmd.get("clip"), label)
        dest, added = copy_in(src, examples_dir(self.root, label.label_id))
        path = str(dest.resolve())
        version = 0
        if path not in label.examples:
            label, version = self.registry.update(label.name, examples=(*label.examples, path))
        return version, self._answer(label, name, dest, added or version > 0)

    def add_negative(self, cmd: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``{clip, label?}``: the clip becomes a negative of the label, or of every label without one."""
        label = self._label(cmd.get("label"), required=False)
        current = label.negatives if label is not None else self.registry.current().negatives
        if len(current) >= self.max_files:
            whose = f"'{label.name}' already has" if label is not None else "there are already"
            raise TeachError(f"{whose} {len(current)} negatives, the most allowed (examples.max_files)")
        name, src = self._clip(cmd.get("clip"), label)
        dest, added = copy_in(src, negatives_dir(self.root, label.label_id if label is not None else None))
        path = str(dest.resolve())
        version = 0
        if path not in current:
            if label is not None:
                label, version = self.registry.update(label.name, negatives=(*current, path))
            else:
                version = self.registry.set_negatives((*current, path))
        if label is not None:
            return version, self._answer(label, name, dest, added or version > 0)
        return version, {"label": None, "clip": name, "file": str(dest), "added": added or version > 0,
                         "negatives": len(current) + (version > 0)}

    # --- validation --------------------------------------------------------------------------------
    def _label(self, key: object, required: bool) -> Label | None:
        if key is None and not required:
            return None
        if not isinstance(key, str) or not key.strip():
            raise TeachError("'label' (a label name or id) is required" if required
                             else "'label' must be a label name or id (or left out: a negative for every label)")
        labels = self.registry.current()
        found = labels.find(key)
        if found is None:
            shown = key if len(key) <= 60 else key[:59] + "…"
            raise TeachError(f"unknown label '{shown}' (labels: {', '.join(labels.names())})"[:300])
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

    def _answer(self, label: Label, clip: str, dest: Path, added: bool) -> dict[str, Any]:
        return {"label": label.name, "clip": clip, "file": str(dest), "added": added,
                "examples": len(label.examples), "negatives": len(label.negatives)}
