"""The ``sources`` section: several audio inputs for one model, each a local device or a network/file URL.

Each entry is checked on its own here (name, exactly one of ``device``/``url``, keys that belong to the other
kind, the URL's shape); what spans entries or sections (unique names, label names that exist) is checked by
:class:`~monitor.config.schema.Config`. A URL may hold a password (``rtsp://user:secret@cam/...``): no message
ever prints a URL unless through :func:`redact_url`, and ``password_file``/``password_env`` keep it out of the
file altogether.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from annotated_types import Ge, Le
from pydantic import Field, ValidationInfo, field_validator, model_validator

from monitor.config.base import PasswordEnv, PasswordFile, Problem, Strict, checks_files, problems, slugify
from monitor.redaction import redact_query

__all__ = ["MAX_SOURCES", "NETWORK_SCHEMES", "RESERVED_NAMES", "SourceConfig", "cross_source_problems", "redact_url",
           "url_problem"]

MAX_SOURCES = 32
"""Sources one monitor listens to: each costs a windowing thread, a reader, a detector and a share of the model."""
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "srt", "tcp", "udp")
"""URL schemes a source may use besides ``file:`` and a plain path: what cameras and streaming servers speak."""
RESERVED_NAMES = frozenset({"availability", "events", "config", "command", "level", "scores", "input", "status"})
"""Names that would make a source's topics look like the node's own (``<prefix>/<name>/...``)."""
URL_ONLY = ("transport", "username", "password_file", "password_env", "timeout_seconds", "audio_only")
DEVICE_ONLY = ("samplerate", "channels")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and secret-looking query values (``?password=``) replaced by
    ``***`` (safe to log or print)."""
    redacted = redact_query(url)
    try:
        parts = urlsplit(redacted)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return redacted
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _split(url: str) -> SplitResult | str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    return parts


def url_problem(url: str, check_files: bool = False) -> str | None:
    """Why ``url`` cannot be a source's URL, or None. Never quotes the URL (it may hold a password).

    A network URL needs an allowed scheme (:data:`NETWORK_SCHEMES`) and a host; ``file:`` URLs and plain paths
    name a file, which must exist when ``check_files`` is set.
    """
    if not url.strip() or url != url.strip() or any(ord(c) < 32 or c == "\x7f" for c in url):
        return "must be a URL or a path without spaces around it or control characters"
    if "://" not in url and not url.startswith("file:"):
        path: Path | None = Path(url)
    else:
        parts = _split(url)
        if isinstance(parts, str):
            return parts
        scheme = parts.scheme.lower()
        if scheme == "file":
            path = Path(parts.path)
        elif scheme in NETWORK_SCHEMES:
            if not parts.hostname:
                return f"a {scheme} URL needs a host ({scheme}://host[:port]/path)"
            if any(c.isspace() for c in url):
                return "has a space in it (write a space in a URL as %20)"
            path = None
        else:
            allowed = ", ".join(NETWORK_SCHEMES)
            return f"scheme '{scheme}' is not allowed (use {allowed}, file: or a path)"
    if path is not None and check_files:
        try:
            if not path.is_file():
                return f"no such file: {path}" if not path.exists() else f"{path} is not a file"
        except (OSError, ValueError) as exc:
            return f"cannot use the path: {exc}"
    return None


class SourceConfig(Strict):
    """One audio source: a local input (``device``) or a stream or file (``url``), with optional overrides."""

    name: str
    """Unique, lower case ``[a-z0-9_-]`` (up to 40): part of the source's MQTT topics and Home Assistant device."""
    device: str | int | None = None
    """A local input as ``audio.device`` (index or name substring; null = the system default)."""
    url: str | None = None
    """rtsp(s)://, http(s)://, rtmp(s)://, srt://, tcp://, udp://, file: or a path: anything ffmpeg reads."""
    samplerate: Annotated[int, Ge(8000), Le(384000)] | None = None
    """(device) capture rate; null = ``audio.samplerate``."""
    channels: Annotated[int, Ge(1), Le(32)] | None = None
    """(device) channels to open; null = ``audio.channels``."""
    transport: Literal["tcp", "udp"] = "tcp"
    """(rtsp) RTP over the RTSP TCP connection (default: through NAT and firewalls, no lost packets) or UDP."""
    username: Annotated[str, Field(min_length=1)] | None = None
    """(url) user name; replaces one written in the URL."""
    password_file: PasswordFile | None = None
    """(url) file whose first line is the password (keeps it out of this file)."""
    password_env: PasswordEnv | None = None
    """(url) environment variable holding the password."""
    timeout_seconds: Annotated[float, Ge(2.0), Le(300.0)] = 10.0
    """(url) no audio for this long (a half-open connection, a stalled camera) and the stream is reconnected."""
    audio_only: bool = True
    """(url) ask the server for the audio track only where the protocol allows (RTSP); video is never decoded."""
    labels: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = None
    """The labels this source detects (names or ids); null = all."""
    thresholds: dict[str, Annotated[float, Ge(0.0), Le(1.0)]] = Field(default_factory=dict)
    """Label (name or id) → threshold on this source, over the label's own."""
    min_dbfs: Annotated[float, Ge(-120.0), Le(0.0)] | None = None
    """Loudness gate of this source; null = ``audio.min_dbfs``."""

    @field_validator("name")
    @classmethod
    def _name_usable(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError("must be 1-40 characters of a-z, 0-9, '_' and '-', starting with a letter or digit "
                             "(it becomes part of MQTT topics and Home Assistant ids)")
        if value in RESERVED_NAMES:
            raise ValueError(f"'{value}' is reserved (a topic of the node itself); choose another name")
        return value

    @field_validator("url")
    @classmethod
    def _url_usable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (why := url_problem(value, checks_files(info))):
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        given = self.model_fields_set
        if ("device" in given) == ("url" in given):
            raise ValueError("give either device (a local input) or url (a stream or file), not both"
                             if "device" in given else "needs device (a local input) or url (a stream or file)")
        kind = "url" if "device" in given else "device"
        found: list[Problem] = [([k], f"only for {kind} sources", None)
                                for k in (URL_ONLY if "device" in given else DEVICE_ONLY) if k in given]
        if self.url is not None and self.url.split("://", 1)[0].lower() not in ("rtsp", "rtsps"):
            found += [([k], "only for rtsp:// URLs", None) for k in ("transport", "audio_only") if k in given]
        if self.url is not None and self.password_file is not None and self.password_env is not None:
            found.append((["password_env"], "give password_file or password_env, not both", None))
        if self.url is not None and _has_password(self.url) and (self.password_file or self.password_env):
            found.append((["url"], "holds a password and password_file/password_env is set too: keep one", None))
        if found:
            raise problems("source", found)
        return self

    @property
    def local(self) -> bool:
        """Whether this is a local input (``device``), not a URL."""
        return self.url is None

    @property
    def source_id(self) -> str:
        """The name as an id for Home Assistant (``front-door`` → ``front_door``)."""
        return source_id(self.name)

    def describe(self) -> str:
        """One line naming what it listens to, safe to print (a URL's password redacted)."""
        if self.url is not None:
            return redact_url(self.url)
        return "default input" if self.device is None else f"device {self.device!r}"


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def source_id(name: str) -> str:
    """A source name as an id for Home Assistant (``front-door`` → ``front_door``): two names with one id clash."""
    return name.replace("-", "_")


def cross_source_problems(raw: Any, known: set[str]) -> list[Problem]:
    """What spans the entries of a raw ``sources`` list: names that are the same id, and labels (in ``labels`` or
    ``thresholds``) that are not in ``known`` (names casefolded and ids; empty: labels not checked).

    It reads the raw entries, not validated ones, so it still runs when an entry has problems of its own;
    whatever is not the expected type is left to the entry's own validation.
    """
    found: list[Problem] = []
    names: dict[str, str] = {}
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if isinstance(name, str):
            sid = source_id(name)
            if sid in names:
                other = names[sid]
                why = f"'{name}' is used twice" if other == name else f"'{name}' and '{other}' have the same id '{sid}'"
                found.append(([i, "name"], why, name))
            names.setdefault(sid, name)
        if not known:
            continue
        subset, thresholds = entry.get("labels"), entry.get("thresholds")
        subset = [k for k in subset if isinstance(k, str)] if isinstance(subset, list) else None
        for j, key in enumerate(subset or []):
            if key.strip().casefold() not in known:
                found.append(([i, "labels", j], f"'{key}' is not one of the labels", key))
        spelled: dict[str, str] = {}  # label id -> the key that named it first
        for key in thresholds if isinstance(thresholds, dict) else {}:
            if not isinstance(key, str):
                continue
            label = slugify(key)  # a name and its id both give the label's id
            if key.strip().casefold() not in known:
                found.append(([i, "thresholds", key], f"'{key}' is not one of the labels", key))
            elif label in spelled:
                found.append(([i, "thresholds", key], f"the same label as '{spelled[label]}'", key))
            elif subset is not None and label not in {slugify(k) for k in subset}:
                found.append(([i, "thresholds", key], f"'{key}' is not in this source's labels", key))
            spelled.setdefault(label, key)
    return found
