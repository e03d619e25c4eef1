"""Checks of what a config names outside itself: files, folders, environment variables, a local model folder.

Each returns the problem as one line (without the key path, which the caller knows) or None. They are run by
``check-config`` and, identically, by ``run``/``replay`` before the model loads, so a missing password file or an
unloadable CA fails at once and in the same words, never after minutes of loading or as a traceback.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

MAX_SECRET_BYTES = 64 * 1024  # a password file is one line; a bigger one is not what the user meant


def read_text_file(path: Path, limit: int = MAX_SECRET_BYTES) -> str:
    """The UTF-8 text of a small file (raises ``OSError``, or ``ValueError`` when too big or not UTF-8)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit // 1024} KB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def password_file_problem(path: Path) -> str | None:
    """Why the password file cannot be used (missing, unreadable, not UTF-8), or None."""
    try:
        if Path(path).is_dir():
            return f"{path} is a folder, not a file"
        read_text_file(path)
    except OSError as exc:
        return f"cannot read {path}: {_describe(exc)}"
    except ValueError as exc:
        return f"{path} {exc}"
    return None


def ca_file_problem(path: Path) -> str | None:
    """Why the CA certificates cannot be loaded (missing, unreadable, no PEM certificates in it), or None."""
    if Path(path).is_dir():
        return f"{path} is a folder, not a PEM file"
    try:
        # The very call paho's tls_set makes, so what passes here loads there.
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        return f"cannot load CA certificates from {path}: {exc.reason or exc}"
    except OSError as exc:
        return f"cannot read {path}: {_describe(exc)}"
    except ValueError as exc:  # e.g. a NUL byte in the path
        return f"cannot use {path!r}: {exc}"
    return None


def env_problem(name: str) -> str | None:
    """Why the environment variable cannot give a password (unset), or None."""
    if name not in os.environ:
        return f"environment variable {name} is not set"
    return None


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (created and) written as a folder, or None.

    Nothing is created: the nearest existing ancestor must be a writable folder. ``os.access`` answers for the
    user running the check, and also for root, on a read-only file system or an immutable folder.
    """
    try:
        p = Path(path).expanduser().absolute()
        if p.exists() and not p.is_dir():
            return f"{p} exists and is not a folder"
        existing = p
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            return f"cannot create {p}: {existing} is not a folder"
        if not os.access(existing, os.W_OK | os.X_OK):
            verb = "write to" if existing == p else f"create {p} in"
            return f"cannot {verb} {existing}: not writable by this user"
    except (OSError, ValueError) as exc:  # a path too long, a NUL byte, a folder we may not look into
        return f"cannot use {path!s}: {exc}"
    return None


def model_problem(model: str) -> str | None:
    """Why ``model`` cannot be a local checkpoint folder, or None.

    A hub id (``laion/clap-htsat-unfused``) is not checked: that needs the network, and a wrong one fails at
    load with the hub's answer. A string that is a path (it exists, or starts with ``/``, ``.`` or ``~``) must be
    a folder with a ``config.json`` (what ``save_pretrained`` writes).
    """
    try:
        p = Path(model).expanduser()
        if not p.exists():
            if model.startswith(("/", ".", "~")):
                return f"no such folder: {model}"
            return None
        if not p.is_dir():
            return f"{model} is not a folder (a local model is a folder written by save_pretrained)"
        if not (p / "config.json").is_file():
            return f"{model} has no config.json: not a checkpoint folder"
    except (OSError, ValueError) as exc:
        return f"cannot use {model!r}: {exc}"
    return None
