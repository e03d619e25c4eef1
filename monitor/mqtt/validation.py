"""Runtime commands as untrusted input: bounded in rate (:class:`TokenBucket`), size and depth before they are
parsed, validated field by field, and echoed back only in bounded form.

Anyone who may publish on ``<prefix>/command`` writes into this process, so nothing here trusts the payload:
a payload over :data:`MAX_PAYLOAD` bytes is not read at all; nesting deeper than :data:`MAX_DEPTH` is refused by
a linear scan before ``json.loads`` (which would recurse once per level); names and prompts are bounded in
characters; an ``id`` is echoed only when it is a short string or a number; error texts that quote the input
quote at most a few dozen characters of it. Every refusal is a :class:`CommandError` whose message is the
one-line reason sent back.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from monitor.config import slugify
from monitor.labels import Label, clip

ACTIONS = ("set_threshold", "enable", "disable", "add_label", "remove_label", "get_config", "add_example",
           "add_negative")
MAX_PAYLOAD = 16 * 1024  # bytes; a command is a few hundred
MAX_DEPTH = 8  # JSON nesting; a command needs 2 (an object holding a list of prompts)
MAX_NAME = 100  # characters of a label name (as in the config)
MAX_PROMPTS = 20  # prompts per label
MAX_PROMPT_CHARS = 300  # characters per prompt; tokens are truncated at the model's limit besides
MAX_ECHO = 64  # characters of an id or action echoed back
MAX_ERROR = 300  # characters of an error text


class TokenBucket:
    """``capacity`` takes at once, refilled at ``rate`` per second (on the given monotonic clock)."""

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._tokens = capacity
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token if there is one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


class CommandError(Exception):
    """A command that cannot be applied; the message is the reason sent back."""


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut short, for error texts that quote the input (never a 100 KB echo)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
    else:
        text = f"a {type(value).__name__}"  # a list or object: its type says enough
    return clip(text, limit)


def json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep ``text``'s brackets nest outside strings, counting no further than ``limit + 1``.

    One linear pass, no recursion: checked before ``json.loads``, whose recursion a 100,000-level payload
    would exhaust."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_bounded(payload: bytes) -> Any:
    """Decode a JSON payload within the size and depth bounds; CommandError otherwise."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"command too large: {len(payload)} bytes (at most {MAX_PAYLOAD}); not read")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"not valid JSON: {exc}") from None
    if json_depth(text) > MAX_DEPTH:
        raise CommandError(f"not accepted: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen within MAX_DEPTH; kept so no payload can kill the dispatcher
        raise CommandError(f"not accepted: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's 4300-digit conversion limit
        raise CommandError(f"not valid JSON: {clip(str(exc), 120)}") from None


def parse_command(payload: bytes) -> dict[str, Any]:
    """Decode a command payload (a JSON object with a string ``action``); raises CommandError."""
    data = loads_bounded(payload)
    if not isinstance(data, dict):
        raise CommandError("a command must be a JSON object")
    action = data.get("action")
    if not isinstance(action, str):
        raise CommandError(f"'action' must be one of {', '.join(ACTIONS)}")
    if action not in ACTIONS:
        raise CommandError(f"unknown action {shown(action)} (known: {', '.join(ACTIONS)})")
    return data


def echo(payload: bytes | None) -> dict[str, Any]:
    """``action`` and ``id`` of a command that is refused unparsed, when they can be read within the bounds."""
    if payload is None:
        return {}
    try:
        data = loads_bounded(payload)
    except CommandError:
        return {}
    return data if isinstance(data, dict) else {}


def reply_fields(cmd: dict[str, Any]) -> dict[str, Any]:
    """What an answer echoes of ``cmd``: ``action`` (a short string, else null) and ``id`` when it is a number
    or a string of at most :data:`MAX_ECHO` characters; any other id is replaced by ``id_note``."""
    action = cmd.get("action")
    out: dict[str, Any] = {"action": action if isinstance(action, str) and len(action) <= MAX_ECHO else None}
    if "id" in cmd:
        cid = cmd["id"]
        short_string = isinstance(cid, str) and len(cid) <= MAX_ECHO
        number = (isinstance(cid, (int, float)) and not isinstance(cid, bool) and math.isfinite(cid)
                  and abs(cid) <= 2**53)
        if short_string or number:
            out["id"] = cid
        else:
            out["id_note"] = (f"id not echoed: {shown(cid, 24)} is not a number or a string of at most "
                              f"{MAX_ECHO} characters")
    return out


def check_keys(cmd: dict[str, Any], allowed: set[str]) -> None:
    """Refuse keys the action does not know (a typo must not be silently ignored)."""
    unknown = sorted(set(cmd) - allowed - {"action", "id"})
    if unknown:
        keys = clip(", ".join(clip(k, 30) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else ""), 200)
        raise CommandError(f"unknown key(s) for {cmd['action']}: {keys}")


def threshold(value: Any) -> float:
    """A threshold between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError(f"threshold must be a number between 0 and 1 (got {shown(value)})")
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"threshold must be between 0 and 1 (got {shown(value)})")
    return float(value)


def label_key(cmd: dict[str, Any]) -> str:
    """The ``label`` field: a label's name or id."""
    key = cmd.get("label")
    if not isinstance(key, str) or not key.strip():
        raise CommandError("'label' (a label name or id) is required")
    return key


def new_label(cmd: dict[str, Any], default_threshold: float) -> Label:
    """The label an ``add_label`` command describes (validated; raises CommandError)."""
    check_keys(cmd, {"name", "prompts", "threshold", "enabled"})
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
    for i, prompt in enumerate(prompts, 1):
        if len(prompt.strip()) > MAX_PROMPT_CHARS:
            raise CommandError(f"prompt {i} is {len(prompt.strip())} characters long (at most {MAX_PROMPT_CHARS})")
    limit = threshold(cmd["threshold"]) if "threshold" in cmd else default_threshold
    enabled = cmd.get("enabled", True)
    if not isinstance(enabled, bool):
        raise CommandError("'enabled' must be true or false")
    return Label(name, slugify(name), tuple(p.strip() for p in prompts), limit, enabled)
