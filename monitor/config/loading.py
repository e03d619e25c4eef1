"""Loading a config: YAML (safe loading only), validation, and one readable line per problem.

Kept apart from the schema so that :mod:`.schema` reads as the list of keys it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError

from monitor.config.schema import Config


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one ``key.path: message`` per issue."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


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


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate already-parsed YAML data; raise :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): must be a mapping of keys, got {type(data).__name__}"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML config file (safe loading only)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read file: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(p), [f"(yaml): {where}{getattr(exc, 'problem', None) or exc}"]) from None
    return parse_config(data, str(p))
