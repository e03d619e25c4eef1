"""What every config section shares: the strict base model, host name, reporting a problem at a key path, and
the field types checked outside the file (password file and variable, through :func:`checked_outside`).

Checks that look outside the file (does the CA file load, is the environment variable set, can the clips folder
be created) run only when validation is given the context :data:`CHECK_FILES` — ``check-config``, ``run`` and
``replay`` do, through ``load_config(..., check_files=True)`` — so a config built in memory (tests,
``classify``) is validated for its shape alone, and the two commands that must agree run the very same checks.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor.config import files

CHECK_FILES = "check_files"
"""Key of the validation context that turns on the checks of files, folders and environment variables."""


class Strict(BaseModel):
    """Unknown keys are errors and assignments are validated too (a typo never silently does nothing)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def checks_files(info: ValidationInfo) -> bool:
    """Whether this validation should also check what the config names outside itself."""
    return bool(info.context and info.context.get(CHECK_FILES))


T = TypeVar("T")


def checked_outside(problem: Callable[[T], str | None]) -> AfterValidator:
    """A field check of what the value names outside the file (one of :mod:`.files`' ``*_problem`` checks), run
    only under :data:`CHECK_FILES`; the problem is reported at the field's own key path."""

    def check(value: T, info: ValidationInfo) -> T:
        if checks_files(info) and (why := problem(value)):
            raise ValueError(why)
        return value

    return AfterValidator(check)


PasswordFile = Annotated[Path, checked_outside(files.password_file_problem)]
"""A file whose first line is a password (``mqtt.password_file``, a source's ``password_file``)."""
PasswordEnv = Annotated[str, Field(min_length=1), checked_outside(files.env_problem)]
"""An environment variable holding a password (``mqtt.password_env``, a source's ``password_env``)."""


Problem = tuple[Sequence[str | int], str, Any]
"""One problem found by a cross-field check: (location, message, the value at fault)."""


def problems(title: str, found: Sequence[Problem], carried: ValidationError | None = None) -> ValidationError:
    """A validation error holding each problem at its own location, for checks that span several fields.

    A plain ``ValueError`` is reported at the field or model that raised it (``(top level)`` for the whole
    file); raised from a validator, this error keeps each location, which pydantic prefixes with the validated
    field's own path, so the user reads ``labels[1].name`` instead. ``carried``: the errors a wrap validator's
    inner validation found, reported along (each keeps its type, so the usual wording applies).
    """
    # The message goes through the context: as the template itself, a '{}' in it would be a placeholder.
    inner = carried.errors() if carried is not None else []
    details = [InitErrorDetails(type=PydanticCustomError(err["type"], "{message}", {"message": err["msg"]}),
                                loc=err["loc"], input=err.get("input")) for err in inner]
    details += [InitErrorDetails(type=PydanticCustomError("config", "{message}", {"message": message}),
                                 loc=tuple(loc), input=value) for loc, message, value in found]
    if carried is not None:  # entry by entry (list items), whichever check found it; the rest first
        details.sort(key=lambda d: d["loc"][0] if d["loc"] and isinstance(d["loc"][0], int) else -1)
    return ValidationError.from_exception_data(title, details)


def slugify(name: str) -> str:
    """Turn a label name into an MQTT/Home Assistant safe id: lower case, ``[a-z0-9_]`` only."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return slug or "label"


def host_name() -> str:
    """Host name, used in the default topic prefix and client id."""
    return socket.gethostname().split(".")[0] or "sound-monitor"
