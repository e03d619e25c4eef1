"""Runtime control over MQTT: JSON commands on ``<prefix>/command`` change labels without a restart.

Threads: a command arrives on paho's network thread, which only bounds it and queues it: every message costs
a token of a bucket (:data:`COMMAND_BURST` at once, :data:`COMMAND_RATE` per second after), a payload over
:data:`~monitor.mqtt.validation.MAX_PAYLOAD` is not read, a retained command is never applied (it would run
again at every start), and a full queue answers "busy". Those refusals are answered at once, themselves bounded
by a second bucket; past it a refused command is only counted and logged, so a flood cannot flood the answers.

The dispatcher thread, the one owner of commands, takes every queued command as one burst: it parses each and
applies it to a :class:`~monitor.labels.LabelDraft` (what each action does: :mod:`monitor.mqtt.actions`), encodes
the burst's new prompts itself (the text tower loaded once for the burst, never on the inference thread, which
keeps scoring), commits the draft (one label version), waits once for the inference thread to apply it and answers
every command, so an ``ok`` means the next window is scored with the change. Every command is answered on
``<prefix>/command/response``; a command that fails changes nothing. Runtime changes live in memory only: they are
not written back to config.yaml.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitor.config import Config
from monitor.labels import LabelDraft, LabelError, LabelRegistry, clip
from monitor.mqtt.actions import Answer, CommandActions
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.summary import config_summary
from monitor.mqtt.teach import Teacher
from monitor.mqtt.topics import Topics
from monitor.mqtt.validation import (
    ACTIONS,
    MAX_ERROR,
    MAX_PAYLOAD,
    CommandError,
    TokenBucket,
    echo,
    parse_command,
    reply_fields,
)

if TYPE_CHECKING:
    from monitor.inference.text import TextEncoder

__all__ = ["ACTIONS", "QUEUE_SIZE", "CommandDispatcher", "CommandError", "TokenBucket", "config_summary",
           "parse_command"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # commands waiting for the dispatcher; past this they are answered "busy"
APPLY_TIMEOUT = 60.0  # how long an answer waits for the inference thread to apply a change
COMMAND_BURST = 50  # commands taken at once (a script setting up every label) ...
COMMAND_RATE = 2.0  # ... and per second after that
ANSWER_BURST = 256  # refusals answered at once (over the rate, too large, retained, busy) ...
ANSWER_RATE = 10.0  # ... and per second after that; past this a refused command is only counted and logged
REFUSAL_LOG_SECONDS = 60.0  # network-thread refusals are logged once, then summed up at most this often


class CommandDispatcher:
    """Owns runtime commands: one thread validates, applies (through the registry) and answers them, a burst
    at a time; the network thread only bounds and queues them."""

    def __init__(self, cfg: Config, registry: LabelRegistry, publisher: MqttPublisher, topics: Topics,
                 text: TextEncoder | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.registry = registry
        self.publisher = publisher
        self.topics = topics
        self.text = text  # encodes new labels' prompts here; None: the inference thread does it
        self.teacher = Teacher(cfg)  # add_example, add_negative (monitor/mqtt/teach.py)
        self.actions = CommandActions(cfg, self.teacher)  # what each command does to the burst's draft
        self.received = 0  # messages on the command topic (network thread)
        self.unanswered = 0  # refused without an answer (past the answer bucket)
        self._commands = TokenBucket(COMMAND_BURST, COMMAND_RATE, clock)
        self._answers = TokenBucket(ANSWER_BURST, ANSWER_RATE, clock)
        self._clock = clock
        self._refused_since_log = 0
        self._last_refusal_log: float | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        # The burst being handled, so that a shutdown that cannot wait for it (the thread is deep in a text
        # encoding) still answers it; once answered that way, the thread answers nothing more.
        self._hand_lock = threading.Lock()
        self._in_hand: list[bytes] = []
        self._abandoned = False

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
            pass  # the thread sees _stop after the burst in hand
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            with self._hand_lock:
                self._abandoned = True
                in_hand, self._in_hand = self._in_hand, []
            for payload in in_hand:
                self._respond(echo(payload), False, "not applied: the monitor is stopping")

    # --- network thread: bound and queue, never parse what is not answered -------------------------
    def _on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if topic != self.topics.command:
            return
        self.received += 1
        if not self._commands.take():
            self._refuse(payload, f"rate limited: at most {COMMAND_BURST} commands at once and "
                                  f"{COMMAND_RATE:g} per second after; not applied, try again later")
        elif len(payload) > MAX_PAYLOAD:
            self._refuse(None, f"command too large: {len(payload)} bytes (at most {MAX_PAYLOAD}); not read")
        elif retained:
            log.warning("a retained command on %s was not applied: commands must not be published retained "
                        "(clear it: mosquitto_pub -r -n -t '%s')", topic, topic)
            self._refuse(payload, "retained command not applied: a retained command would run again at every "
                                  "start; publish commands without the retain flag and clear this one", log_it=False)
        else:
            try:
                self._queue.put_nowait(payload)
            except queue.Full:
                self._refuse(payload, f"busy: {QUEUE_SIZE} commands are waiting; try again")

    def _refuse(self, payload: bytes | None, error: str, log_it: bool = True) -> None:
        """Answer a command refused on the network thread, unless answers are over their own rate."""
        answered = self._answers.take()
        if answered:
            self._respond(echo(payload), False, error)  # echo reads it within the size/depth bounds
        else:
            self.unanswered += 1
        if log_it:
            self._log_refusal(error)

    def _log_refusal(self, error: str) -> None:
        # The first refusal is logged; later ones are summed up at most every REFUSAL_LOG_SECONDS.
        self._refused_since_log += 1
        now = self._clock()
        if self._last_refusal_log is not None and now - self._last_refusal_log < REFUSAL_LOG_SECONDS:
            return
        log.warning("runtime commands: %d refused before reading (latest: %s); %d left unanswered in all, "
                    "answers to refusals are limited to %g per second", self._refused_since_log,
                    clip(error, 120), self.unanswered, ANSWER_RATE)
        self._refused_since_log = 0
        self._last_refusal_log = now

    # --- dispatcher thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                return
            burst = [first]
            with contextlib.suppress(queue.Empty):
                while len(burst) < QUEUE_SIZE:
                    item = self._queue.get_nowait()
                    if item is None:
                        self._stop.set()
                        break
                    burst.append(item)
            with self._hand_lock:
                self._in_hand = burst
            self.handle_burst(burst)
            with self._hand_lock:
                self._in_hand = []

    def handle(self, payload: bytes) -> None:
        """Parse, validate and apply one command payload, answering on the response topic."""
        self.handle_burst([payload])

    def handle_burst(self, payloads: list[bytes]) -> None:
        """Apply a burst of commands as one label change and answer each, in order."""
        try:
            draft = self.registry.draft()
            answers = [self._apply(payload, draft) for payload in payloads]
            if any(a.change for a in answers):
                self._commit(draft, answers)
        except Exception as exc:  # a bug must not kill the dispatcher or leave commands unanswered
            log.exception("runtime commands: a burst of %d failed", len(payloads))
            answers = [Answer(echo(p), False, f"internal error: {exc}") for p in payloads]
        with self._hand_lock:
            if self._abandoned:  # the shutdown answered this burst already
                return
        refused = [a for a in answers if not a.ok]
        for answer in answers:
            self._finish(answer)
        if refused:
            first = refused[0]
            log.warning("runtime commands: %d of %d refused (first: %s: %s)", len(refused), len(answers),
                        reply_fields(first.cmd)["action"], clip(first.error or "", 160))

    def _apply(self, payload: bytes, draft: LabelDraft) -> Answer:
        try:
            cmd = parse_command(payload)
        except CommandError as exc:
            return Answer(echo(payload), False, str(exc))
        try:
            return self.actions.apply(cmd, draft)
        except (CommandError, LabelError) as exc:
            return Answer(cmd, False, str(exc))

    def _commit(self, draft: LabelDraft, answers: list[Answer]) -> None:
        """Encode the draft's new prompts (here, not on the inference thread), commit it, wait once."""
        missing = self.text.cache.missing(draft.snapshot().scored()) if self.text is not None else []
        pinned = self.text.cache.pinned(m.prompts for m in missing) if self.text else contextlib.nullcontext()
        with pinned:  # a sync of an older version must not prune what this burst encoded
            failed = self.text.encode_labels(missing) if self.text is not None and missing else {}
            if failed:
                draft.drop(failed)
                for a in answers:
                    if a.ok and a.label in failed:
                        a.ok, a.error, a.change = False, failed[a.label], False
            version = self.registry.commit(draft)
            if self.registry.wait_applied(version, APPLY_TIMEOUT, self._stop):
                return
        why = "the monitor is stopping" if self._stop.is_set() else f"not applied within {APPLY_TIMEOUT:g} s"
        for a in answers:
            if a.ok and a.change:
                a.ok, a.error = False, f"accepted but {why}"

    def _finish(self, answer: Answer) -> None:
        """Answer one command of an applied burst."""
        if answer.ok and answer.cmd.get("action") == "add_label" and answer.label is not None:
            error = self.registry.error(answer.label)  # the inference thread could not encode it
            if error is not None and self.registry.applied().find(answer.label) is None:
                answer.ok, answer.error, answer.extra = False, error, {"label": answer.label}
        if answer.ok and answer.cmd.get("action") == "get_config":
            summary = config_summary(self.cfg, self.registry.applied())
            self.publisher.publish(self.topics.config, summary, retain=True)
            answer.extra["config"] = summary
        if answer.ok and answer.note:
            log.info("runtime: %s", answer.note)
        self._respond(answer.cmd, answer.ok, answer.error, **answer.extra)

    # --- answers -----------------------------------------------------------------------------------
    def _respond(self, cmd: dict[str, Any], ok: bool, error: str | None = None, **extra: Any) -> None:
        body: dict[str, Any] = {"ok": ok, **reply_fields(cmd)}
        if error is not None:
            body["error"] = clip(error, MAX_ERROR)
        body.update(extra)
        self.publisher.publish(self.topics.response, body)
