"""Runtime control over MQTT: JSON commands on ``<prefix>/command`` change labels without a restart.

Threads: a command arrives on paho's network thread, which only puts its payload in a bounded queue (a full
queue is answered "busy" at once, so no command goes unanswered). The dispatcher thread, the one owner of
commands, parses and validates each, changes the :class:`~monitor.labels.LabelRegistry` and waits for the
inference thread to report the new label version applied before it answers, so an ``ok`` means the next
window is scored with the change. A new label costs one text encoding; the other labels' embeddings are
kept. Every command is answered on ``<prefix>/command/response``; a command that fails changes nothing.
Runtime changes live in memory only: they are not written back to config.yaml.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from typing import Any

from monitor import __version__
from monitor.config import Config, slugify
from monitor.labels import Label, LabelError, LabelRegistry, LabelSet
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.teach import Teacher
from monitor.mqtt.topics import Topics

log = logging.getLogger(__name__)

ACTIONS = ("set_threshold", "enable", "disable", "add_label", "remove_label", "get_config", "add_example",
           "add_negative")
MAX_PROMPTS = 20
MAX_NAME = 100
QUEUE_SIZE = 64  # commands waiting for the dispatcher; past this they are answered "busy"
APPLY_TIMEOUT = 60.0  # how long an answer waits for the inference thread to apply a change


class CommandError(Exception):
    """A command that cannot be applied; the message is the reason sent back."""


def config_summary(cfg: Config, labels: LabelSet) -> dict[str, Any]:
    """The retained ``<prefix>/config`` payload: what this node listens for right now."""
    return {
        "node": cfg.node_name(),
        "version": __version__,
        "model": cfg.model,
        "labels": [lbl.summary() for lbl in labels.labels],
        "background": list(labels.background),
        "prompt_template": labels.template,
        "negatives": len(labels.negatives),
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


def _label_key(cmd: dict[str, Any]) -> str:
    key = cmd.get("label")
    if not isinstance(key, str) or not key.strip():
        raise CommandError("'label' (a label name or id) is required")
    return key


def new_label(cmd: dict[str, Any], default_threshold: float) -> Label:
    """The label an ``add_label`` command describes (validated; raises CommandError)."""
    _check_keys(cmd, {"name", "prompts", "threshold", "enabled"})
    name = cmd.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CommandError("'name' (a non-empty string) is required")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise CommandError(f"'name' is longer than {MAX_NAME} characters")
    prompts = cmd.get("prompts", [name])
    if (not isinstance(prompts, list) or not prompts or len(prompts) > MAX_PROMPTS
            or not all(isinstance(p, str) and p.strip() for p in prompts)):
        raise CommandError(f"'prompts' must be a list of 1 to {MAX_PROMPTS} non-empty strings")
    threshold = _threshold(cmd["threshold"]) if "threshold" in cmd else default_threshold
    enabled = cmd.get("enabled", True)
    if not isinstance(enabled, bool):
        raise CommandError("'enabled' must be true or false")
    return Label(name, slugify(name), tuple(p.strip() for p in prompts), threshold, enabled)


class CommandDispatcher:
    """Owns runtime commands: one thread parses, validates, applies (through the registry) and answers."""

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher, topics: Topics) -> None:
        self.cfg = cfg
        self.registry = registry
        self.publisher = publisher
        self.topics = topics
        self.teacher = Teacher(cfg, registry)  # add_example, add_negative (monitor/mqtt/teach.py)
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)

    def start(self) -> None:
        """Subscribe to the command topic and start the dispatcher thread."""
        self.publisher.add_message_handler(self._on_message)
        self.publisher.subscribe(self.topics.command)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the dispatcher (a command waiting for its change to apply is answered with an error)."""
        self._stop.set()
        self.registry.wake()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the thread sees _stop after the command in hand
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _on_message(self, topic: str, payload: bytes) -> None:
        # Network thread: queue only; never block paho's loop.
        if topic != self.topics.command:
            return
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._respond(_echo(payload), False, f"busy: {QUEUE_SIZE} commands are waiting; try again")

    def _run(self) -> None:
        while not self._stop.is_set():
            payload = self._queue.get()
            if payload is None:
                return
            self.handle(payload)

    # --- commands (dispatcher thread) --------------------------------------------------------------
    def handle(self, payload: bytes) -> None:
        """Parse, validate and apply one command payload, answering on the response topic."""
        try:
            cmd = parse_command(payload)
        except CommandError as exc:
            self._respond(_echo(payload), False, str(exc))
            return
        try:
            getattr(self, f"_cmd_{cmd['action']}")(cmd)
        except (CommandError, LabelError) as exc:
            log.warning("command %s refused: %s", cmd.get("action"), exc)
            self._respond(cmd, False, str(exc))

    def _applied(self, version: int) -> None:
        if not self.registry.wait_applied(version, APPLY_TIMEOUT, self._stop):
            why = "the monitor is stopping" if self._stop.is_set() else f"not applied within {APPLY_TIMEOUT:g} s"
            raise CommandError(f"accepted but {why}")

    def _cmd_set_threshold(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"label", "threshold"})
        key = _label_key(cmd)
        if "threshold" not in cmd:
            raise CommandError("'threshold' is required")
        label, version = self.registry.update(key, threshold=_threshold(cmd["threshold"]))
        self._applied(version)
        log.info("runtime: threshold of %s set to %g", label.name, label.threshold)
        self._respond(cmd, True, label=label.name, threshold=label.threshold)

    def _set_enabled(self, cmd: dict[str, Any], enabled: bool) -> None:
        _check_keys(cmd, {"label"})
        label, version = self.registry.update(_label_key(cmd), enabled=enabled)
        self._applied(version)
        log.info("runtime: %s %s", "enabled" if enabled else "disabled", label.name)
        self._respond(cmd, True, label=label.name, enabled=enabled)

    def _cmd_enable(self, cmd: dict[str, Any]) -> None:
        self._set_enabled(cmd, True)

    def _cmd_disable(self, cmd: dict[str, Any]) -> None:
        self._set_enabled(cmd, False)

    def _cmd_get_config(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, set())
        summary = config_summary(self.cfg, self.registry.applied())
        self.publisher.publish(self.topics.config, summary, retain=True)
        self._respond(cmd, True, config=summary)

    def _cmd_add_label(self, cmd: dict[str, Any]) -> None:
        label = new_label(cmd, self.cfg.detection.threshold)
        version = self.registry.add(label)
        self._applied(version)
        error = self.registry.error(label.name)
        if error is not None and self.registry.applied().find(label.name) is None:
            self._respond(cmd, False, error, label=label.name)
            return
        log.info("runtime: added label %s (threshold %g)", label.name, label.threshold)
        self._respond(cmd, True, label=label.name, label_id=label.label_id, threshold=label.threshold)

    def _cmd_remove_label(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"label"})
        label, version = self.registry.remove(_label_key(cmd))
        self._applied(version)
        log.info("runtime: removed label %s", label.name)
        self._respond(cmd, True, label=label.name)

    def _cmd_add_example(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"label", "clip"})
        version, answer = self.teacher.add_example(cmd)
        if version:
            self._applied(version)  # the inference thread has embedded the clip: the next window uses it
        log.info("runtime: %s is now an example of %s", answer["clip"], answer["label"])
        self._respond(cmd, True, **answer)

    def _cmd_add_negative(self, cmd: dict[str, Any]) -> None:
        _check_keys(cmd, {"label", "clip"})
        version, answer = self.teacher.add_negative(cmd)
        if version:
            self._applied(version)
        log.info("runtime: %s is now a negative of %s", answer["clip"], answer["label"] or "every label")
        self._respond(cmd, True, **answer)

    # --- answers -----------------------------------------------------------------------------------
    def _respond(self, cmd: dict[str, Any], ok: bool, error: str | None = None, **extra: Any) -> None:
        body: dict[str, Any] = {"ok": ok, "action": cmd.get("action")}
        if "id" in cmd:
            body["id"] = cmd["id"]
        if error is not None:
            body["error"] = error
        body.update(extra)
        self.publisher.publish(self.topics.response, body)


def _echo(payload: bytes) -> dict[str, Any]:
    """``action`` and ``id`` of a command that failed to parse, when they can be read, to echo them back."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("action", "id") if k in data}
