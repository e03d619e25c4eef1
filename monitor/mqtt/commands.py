"""Runtime control over MQTT: JSON commands on ``<prefix>/command`` change labels without a restart.

Threads: a command arrives on paho's network thread, where only its JSON is parsed; it is then validated
and applied on the main thread (``Monitor.call_soon``), which owns the detector and the label registry, so
commands apply one at a time in arrival order. Commands that change what the model scores (``add_label``,
``remove_label``) first run a job on the inference thread (``InferenceWorker.call_soon``), which owns the
scorer, and then finish on the main thread. A new label costs one text encoding; the other labels'
embeddings are kept. Every command is answered on ``<prefix>/command/response``; a command that fails
changes nothing. Runtime changes live in memory only: they are not written back to config.yaml.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from monitor import __version__
from monitor.config import Config, slugify
from monitor.core.detection import LabelRule

if TYPE_CHECKING:
    from monitor.pipeline import Monitor

log = logging.getLogger(__name__)

ACTIONS = ("set_threshold", "enable", "disable", "add_label", "remove_label", "get_config")
MAX_PROMPTS = 20
MAX_NAME = 100


@dataclass(frozen=True)
class RuntimeLabel:
    """A label as it is now (config plus runtime changes). ``prompts`` are the raw texts, before the template."""

    name: str
    label_id: str
    prompts: tuple[str, ...]
    threshold: float
    enabled: bool = True

    def rule(self) -> LabelRule:
        """The detector rule for this label."""
        return LabelRule(self.name, self.label_id, self.threshold, self.enabled)

    def summary(self) -> dict[str, Any]:
        """This label in the ``<prefix>/config`` summary."""
        return {
            "name": self.name,
            "label_id": self.label_id,
            "threshold": self.threshold,
            "enabled": self.enabled,
            "prompts": list(self.prompts),
        }


class LabelRegistry:
    """The current labels, in order. Written on the main thread; read from any thread (snapshots).

    ``listeners`` are called on the main thread after each change with ``(kind, label)``, kind being
    ``"added"``, ``"changed"`` or ``"removed"``.
    """

    def __init__(self, labels: Iterable[RuntimeLabel]) -> None:
        self._lock = threading.Lock()
        self._labels: list[RuntimeLabel] = list(labels)
        self.listeners: list[Callable[[str, RuntimeLabel], None]] = []

    @classmethod
    def from_config(cls, cfg: Config) -> LabelRegistry:
        """The labels of ``cfg`` with their effective thresholds and prompts."""
        return cls(
            RuntimeLabel(lbl.name, lbl.slug, tuple(lbl.prompts or [lbl.name]), cfg.label_threshold(lbl), lbl.enabled)
            for lbl in cfg.labels
        )

    def snapshot(self) -> list[RuntimeLabel]:
        """A copy of the current labels."""
        with self._lock:
            return list(self._labels)

    def find(self, key: str) -> RuntimeLabel | None:
        """The label whose name (case-insensitive) or label_id is ``key``."""
        folded = key.strip().casefold()
        for lbl in self.snapshot():
            if lbl.name.casefold() == folded or lbl.label_id == key.strip():
                return lbl
        return None

    def rules(self) -> list[LabelRule]:
        """Detector rules for the current labels."""
        return [lbl.rule() for lbl in self.snapshot()]

    def add(self, label: RuntimeLabel) -> None:
        """Append ``label`` and tell the listeners."""
        with self._lock:
            self._labels.append(label)
        self._notify("added", label)

    def update(self, label: RuntimeLabel) -> None:
        """Replace the label of the same name and tell the listeners."""
        with self._lock:
            self._labels = [label if lbl.name == label.name else lbl for lbl in self._labels]
        self._notify("changed", label)

    def remove(self, label: RuntimeLabel) -> None:
        """Remove the label of the same name and tell the listeners."""
        with self._lock:
            self._labels = [lbl for lbl in self._labels if lbl.name != label.name]
        self._notify("removed", label)

    def _notify(self, kind: str, label: RuntimeLabel) -> None:
        for listener in self.listeners:
            try:
                listener(kind, label)
            except Exception:
                log.exception("label listener failed")


class CommandError(Exception):
    """A command that cannot be applied; the message is the reason sent back."""


def config_summary(cfg: Config, registry: LabelRegistry) -> dict[str, Any]:
    """The retained ``<prefix>/config`` payload: what this node listens for right now."""
    return {
        "node": cfg.node_name(),
        "version": __version__,
        "model": cfg.model,
        "labels": [lbl.summary() for lbl in registry.snapshot()],
        "background": list(cfg.background),
        "prompt_template": cfg.prompt_template,
    }


def parse_command(payload: bytes) -> dict[str, Any]:
    """Decode a command payload (a JSON object with a string ``action``); raises CommandError."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError("a command must be a JSON object")
    action = data.get("action")
    if not isinstance(action, str):
        raise CommandError(f"'action' must be one of {', '.join(ACTIONS)}")
    if action not in ACTIONS:
        raise CommandError(f"unknown action '{action}' (known: {', '.join(ACTIONS)})")
    return data


def _check_keys(cmd: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(cmd) - allowed - {"action", "id"})
    if unknown:
        raise CommandError(f"unknown key(s) for {cmd['action']}: {', '.join(unknown)}")


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError(f"threshold must be a number between 0 and 1 (got {value!r})")
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"threshold must be between 0 and 1 (got {value!r})")
    return float(value)


class Controller:
    """Applies runtime commands to a Monitor: detector rules, scorer labels, the label registry."""

    def __init__(self, monitor: Monitor, cfg: Config, registry: LabelRegistry) -> None:
        assert cfg.mqtt is not None
        self.monitor = monitor
        self.cfg = cfg
        self.registry = registry
        prefix = cfg.mqtt.resolved_prefix()
        self.command_topic = f"{prefix}/command"
        self.response_topic = f"{prefix}/command/response"
        self.config_topic = f"{prefix}/config"
        self._busy: set[str] = set()  # label_ids with an add/remove in flight (main thread only)
        self._accept_commands = cfg.mqtt.commands

    # --- wiring ------------------------------------------------------------------------------------
    def attach(self) -> None:
        """Hook into the monitor: the summary is published and commands subscribed once the run starts."""
        self.monitor.on_started.append(self._started)
        self.registry.listeners.append(lambda kind, label: self.publish_summary())

    def _started(self, monitor: Monitor) -> None:
        publisher = monitor.publisher
        if publisher is None:
            return
        self.publish_summary()
        publisher.on_connect(self.publish_summary)  # a broker restarted without persistence forgets retained
        if self._accept_commands:
            publisher.add_message_handler(self._on_message)
            publisher.subscribe(self.command_topic)

    def publish_summary(self) -> None:
        """Retained ``<prefix>/config``: labels with thresholds, enabled and prompts; model; node; version."""
        if self.monitor.publisher is not None:
            self.monitor.publisher.publish(self.config_topic, config_summary(self.cfg, self.registry), retain=True)

    def _on_message(self, topic: str, payload: bytes) -> None:
        # Network thread: parse only, apply on the main thread.
        if topic != self.command_topic:
            return
        try:
            cmd = parse_command(payload)
        except CommandError as exc:
            self._respond(_echo(payload), False, str(exc))
            return
        self.monitor.call_soon(lambda: self.execute(cmd))

    # --- commands (main thread) --------------------------------------------------------------------
    def execute(self, cmd: dict[str, Any]) -> None:
        """Validate and apply one parsed command, answering on the response topic (main thread)."""
        try:
            getattr(self, f"_cmd_{cmd['action']}")(cmd)
        except CommandError as exc:
            log.warning("command %s refused: %s", cmd.get("action"), exc)
            self._respond(cmd, False, str(exc))

    def _label(self, cmd: dict[str, Any]) -> RuntimeLabel:
        key = cmd.get("label")
        if not isinstance(key, str) or not key.strip():
            raise CommandError("'label' (a label name or id) is required")
        label = self.registry.find(key)
        if label is None:
            names = ", ".join(lbl.name for lbl in self.registry.snapshot())
            raise CommandError(f"unknown label '{key}' (labels: {names})")
        if label.label_id in self._busy:
            raise CommandError(f"label '{label.name}' is being changed by an earlier command; try again")
        return label

    def _apply_rules(self, rules: list[LabelRule] | None = None) -> None:
        """Push the registry's rules to the detector (ending events of labels that can no longer fire)."""
        m = self.monitor
        rules = self.registry.rules() if rules is None else rules
        m.emit(m.detector.set_rules(rules, time.monotonic() if m.live else None))
        worker = m.worker
        adaptive = getattr(worker, "adaptive", None)
        if worker is not None and adaptive is not None:
            thresholds = {r.name: r.threshold for r in rules if r.enabled}
            worker.call_soon(lambda: adaptive.set_thresholds(thresholds))

    def _cmd_set_threshold(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"label", "threshold"})
        label = self._label(cmd)
        if "threshold" not in cmd:
            raise CommandError("'threshold' is required")
        new = replace(label, threshold=_threshold(cmd["threshold"]))
        self.registry.update(new)
        self._apply_rules()
        log.info("runtime: threshold of %s set to %g", new.name, new.threshold)
        self._respond(cmd, True, label=new.name, threshold=new.threshold)

    def _set_enabled(self, cmd: dict[str, Any], enabled: bool) -> None:
        _check_keys(cmd, {"label"})
        label = self._label(cmd)
        new = replace(label, enabled=enabled)
        self.registry.update(new)
        self._apply_rules()
        log.info("runtime: %s %s", "enabled" if enabled else "disabled", new.name)
        self._respond(cmd, True, label=new.name, enabled=enabled)

    def _cmd_enable(self, cmd: dict[str, Any]) -> None:
        self._set_enabled(cmd, True)

    def _cmd_disable(self, cmd: dict[str, Any]) -> None:
        self._set_enabled(cmd, False)

    def _cmd_get_config(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, set())
        self.publish_summary()
        self._respond(cmd, True, config=config_summary(self.cfg, self.registry))

    def _cmd_add_label(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"name", "prompts", "threshold", "enabled"})
        name = cmd.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CommandError("'name' (a non-empty string) is required")
        name = name.strip()
        if len(name) > MAX_NAME:
            raise CommandError(f"'name' is longer than {MAX_NAME} characters")
        label_id = slugify(name)
        clash = next((lbl for lbl in self.registry.snapshot() if lbl.label_id == label_id), None)
        if clash is not None or label_id in self._busy:
            what = f"label '{clash.name}'" if clash else "a label being added"
            raise CommandError(f"label '{name}' already exists (same id '{label_id}' as {what})")
        if name.casefold() in {b.strip().casefold() for b in self.cfg.background}:
            raise CommandError(f"'{name}' is a background label")
        prompts = cmd.get("prompts", [name])
        if (not isinstance(prompts, list) or not prompts or len(prompts) > MAX_PROMPTS
                or not all(isinstance(p, str) and p.strip() for p in prompts)):
            raise CommandError(f"'prompts' must be a list of 1 to {MAX_PROMPTS} non-empty strings")
        threshold = _threshold(cmd["threshold"]) if "threshold" in cmd else self.cfg.detection.threshold
        enabled = cmd.get("enabled", True)
        if not isinstance(enabled, bool):
            raise CommandError("'enabled' must be true or false")
        label = RuntimeLabel(name, label_id, tuple(p.strip() for p in prompts), threshold, enabled)
        formatted = [self.cfg.prompt_template.format(p) for p in label.prompts]
        background = set(self.cfg.background)
        self._busy.add(label_id)
        worker = self.monitor.worker
        assert worker is not None

        def encode() -> None:  # inference thread: the scorer's owner
            try:
                t0 = time.monotonic()
                _add_to_scorer(worker.scorer, name, formatted, background)
                seconds = time.monotonic() - t0
            except Exception as exc:
                log.exception("runtime: encoding prompts for %s failed", name)
                error = f"cannot encode the prompts: {exc}"
                self.monitor.call_soon(lambda: self._finish_add(cmd, label, error, 0.0))
                return
            self.monitor.call_soon(lambda: self._finish_add(cmd, label, None, seconds))

        worker.call_soon(encode)

    def _finish_add(self, cmd: dict[str, Any], label: RuntimeLabel, error: str | None, seconds: float) -> None:
        self._busy.discard(label.label_id)
        if error is not None:
            self._respond(cmd, False, error, label=label.name)
            return
        self.registry.add(label)
        self._apply_rules()
        if self.monitor.publisher is not None:
            self.monitor.publisher.set_state(label.label_id, False)
        log.info("runtime: added label %s (threshold %g; prompts encoded in %.2f s)", label.name, label.threshold,
                 seconds)
        self._respond(cmd, True, label=label.name, label_id=label.label_id, threshold=label.threshold,
                      encode_seconds=round(seconds, 3))

    def _cmd_remove_label(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"label"})
        label = self._label(cmd)
        remaining = [lbl for lbl in self.registry.snapshot() if lbl.label_id not in self._busy]
        if len(remaining) <= 1:
            raise CommandError(f"cannot remove '{label.name}': it is the last label")
        self._busy.add(label.label_id)
        worker = self.monitor.worker
        assert worker is not None

        def drop() -> None:  # inference thread
            try:
                _remove_from_scorer(worker.scorer, label.name)
            finally:
                self.monitor.call_soon(lambda: self._finish_remove(cmd, label))

        worker.call_soon(drop)

    def _finish_remove(self, cmd: dict[str, Any], label: RuntimeLabel) -> None:
        self._busy.discard(label.label_id)
        # Detector first: an event it ends publishes state OFF, which the registry listeners then delete.
        self._apply_rules([r for r in self.registry.rules() if r.name != label.name])
        self.registry.remove(label)
        log.info("runtime: removed label %s", label.name)
        self._respond(cmd, True, label=label.name)

    # --- answers -----------------------------------------------------------------------------------
    def _respond(self, cmd: dict[str, Any], ok: bool, error: str | None = None, **extra: Any) -> None:
        body: dict[str, Any] = {"ok": ok, "action": cmd.get("action")}
        if "id" in cmd:
            body["id"] = cmd["id"]
        if error is not None:
            body["error"] = error
        body.update(extra)
        if self.monitor.publisher is not None:
            self.monitor.publisher.publish(self.response_topic, body)


def _echo(payload: bytes) -> dict[str, Any]:
    """``action`` and ``id`` of a command that failed to parse, when they can be read, to echo them back."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("action", "id") if k in data}


def _add_to_scorer(scorer: Any, name: str, prompts: list[str], background: set[str]) -> None:
    """Encode ``prompts`` for ``name`` and insert it before the background labels (worker thread)."""
    import torch

    from monitor.inference.scorer import LabelPrompts

    current = scorer.label_embeddings()
    vec = scorer.encode_label(LabelPrompts(name, tuple(prompts)))
    names = list(scorer.labels)
    pos = next((i for i, n in enumerate(names) if n in background), len(names))
    names.insert(pos, name)
    rows = [vec if n == name else current[n] for n in names]
    scorer.set_label_embeddings(names, torch.stack(rows).to(next(iter(current.values())).dtype))


def _remove_from_scorer(scorer: Any, name: str) -> None:
    """Drop ``name`` from the scored labels without re-encoding the others (worker thread)."""
    import torch

    current = scorer.label_embeddings()
    names = [n for n in scorer.labels if n != name]
    scorer.set_label_embeddings(names, torch.stack([current[n] for n in names]))
