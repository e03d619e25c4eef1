"""Loading a config: YAML (safe loading only), validation, and one readable line per problem.

Kept apart from the schema so that :mod:`.schema` reads as the list of keys it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError

from monitor.config.base import CHECK_FILES
from monitor.config.schema import Config


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one ``key.path: message`` per issue."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        # One line per problem, whatever a value or a parser message holds (the journal shows lines).
        self.problems = [p.replace("\r", " ").replace("\n", " ") for p in problems]
        super().__init__(f"{source}: " + "; ".join(self.problems))


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _field_bounds(loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """Find the (lower, upper) bounds declared on the field at ``loc``, for a friendlier message."""
    model: Any = Config
    info = None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            model = None
            continue
        info = fields[part]
        model = _model_in(info.annotation)
    if info is None:
        return None
    lo = hi = None
    for meta in _all_metadata(info):
        if isinstance(meta, (Ge, Gt)):
            lo = meta.ge if isinstance(meta, Ge) else meta.gt
        if isinstance(meta, (Le, Lt)):
            hi = meta.le if isinstance(meta, Le) else meta.lt
    return (lo, hi) if lo is not None and hi is not None else None


def _all_metadata(info: Any) -> list[Any]:
    metas = list(info.metadata)
    for arg in getattr(info.annotation, "__args__", ()) or ():
        metas.extend(getattr(arg, "__metadata__", ()))
    return metas


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bounds = _field_bounds(loc)
        if bounds:
            return f"must be between {bounds[0]:g} and {bounds[1]:g} (got {err.get('input')!r})"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def format_validation_error(exc: ValidationError) -> list[str]:
    """One ``key.path: message`` line per problem, deduplicated across union branches."""
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"int", "str", "none"})))
        line = f"{_format_loc(loc)}: {_message({**err, 'loc': loc})}"
        if line not in problems:
            problems.append(line)
    return problems


MAX_FILE_BYTES = 1024 * 1024
"""A config is a few KB; past this the file is refused before it is parsed (no time or memory spent on it)."""
MAX_DEPTH = 32
"""Nesting deeper than any real config (the deepest key path is four levels)."""
MAX_NODES = 100_000
"""Values in the file once YAML aliases are expanded (aliases can make a small file validate as a huge one)."""


def _structure_problems(data: Any) -> list[str]:
    """Problems of shape that must be caught before validation: keys that are not text (pydantic would report
    them as list indexes), nesting or alias expansion that would exhaust recursion or time, recursive aliases.

    Iterative, and each container is walked once however many aliases point at it.
    """
    sizes: dict[int, int] = {}  # id(container) → values under it, aliases expanded
    found: list[str] = []
    # (node, path, depth, children done?) — children are pushed first, the node is sized after them.
    stack: list[tuple[Any, str, int, bool]] = [(data, "", 0, False)]
    on_path: set[int] = set()
    while stack:
        node, path, depth, done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        if done:
            on_path.discard(key)
            items = node.values() if isinstance(node, dict) else node
            sizes[key] = 1 + sum(sizes.get(id(v), 1) for v in items)
            if sizes[key] > MAX_NODES:
                return [f"(yaml): more than {MAX_NODES} values once aliases are expanded"]
            continue
        if key in on_path:
            return [f"{path or '(top level)'}: an alias refers to the value that contains it (recursive)"]
        if key in sizes:
            continue
        if depth > MAX_DEPTH:
            return [f"{path or '(top level)'}: nested deeper than {MAX_DEPTH} levels"]
        on_path.add(key)
        stack.append((node, path, depth, True))
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    found.append(f"{path or '(top level)'}: key {k!r} must be text")
                    continue
                stack.append((v, f"{path}.{k}" if path else k, depth + 1, False))
        else:
            for i, v in enumerate(node):
                stack.append((v, f"{path}[{i}]", depth + 1, False))
    return found


def parse_config(data: Any, source: str = "config", check_files: bool = False) -> Config:
    """Validate already-parsed YAML data; raise :class:`ConfigError` listing every problem.

    ``check_files`` also checks what the config names outside itself (password file, CA file, environment
    variable, clips folder, a local model folder): what ``check-config``, ``run`` and ``replay`` do.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): must be a mapping of keys, got {type(data).__name__}"])
    shape = _structure_problems(data)
    if shape:
        raise ConfigError(source, shape)
    try:
        return Config.model_validate(data, context={CHECK_FILES: check_files})
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None
    except RecursionError:  # _structure_problems bounds the nesting; this is the last line of defence
        raise ConfigError(source, ["(top level): nested too deeply"]) from None


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The file's text: at most :data:`MAX_FILE_BYTES`, UTF-8 (raises :class:`ConfigError`)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read file: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(str(p), [f"(file): larger than {MAX_FILE_BYTES // 1024} KB; not a config file"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(str(p), [f"(file): not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line}"]) from None


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if not isinstance(value, Mapping):
            base[key] = value
        elif key not in base or base[key] is None:
            base[key] = dict(value)
        elif isinstance(base[key], dict):
            _merge(base[key], value)
        # else: the file's value is not a mapping; leave it, so that its own problem is reported
    return base


def load_config(path: str | os.PathLike[str], check_files: bool = False,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file (safe loading only); raise :class:`ConfigError` for any problem.

    Args:
        path: The YAML file.
        check_files: Also check the files, folders and environment variables it names (see
            :func:`parse_config`); ``check-config``, ``run`` and ``replay`` all pass True, so they agree.
        overrides: Values from the command line (``{"model": ...}``), merged in before validation so that
            they are checked like the file's.
    """
    text = read_config_text(path)
    source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"(yaml): {where}{getattr(exc, 'problem', None) or exc}"]) from None
    except RecursionError:
        raise ConfigError(source, [f"(yaml): nested too deeply (at most {MAX_DEPTH} levels)"]) from None
    except Exception as exc:  # noqa: BLE001 - the constructors' own errors: a date 2020-13-45, a 5000-digit number
        raise ConfigError(source, [f"(yaml): cannot read a value: {exc}"]) from None
    if overrides and (data is None or isinstance(data, dict)):
        data = _merge(data or {}, overrides)
    return parse_config(data, source, check_files=check_files)
