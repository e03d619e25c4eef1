"""The one JSON writer: strict JSON that any parser accepts, never ``NaN`` or ``Infinity``.

Python's ``json.dumps`` writes ``NaN`` by default, which is not JSON (Home Assistant, Node-RED and ``jq`` reject
the whole message). Non-finite numbers are stopped upstream (the audio guard, the inference worker); one that
still gets this far is written as ``null`` and logged, rather than raising in the thread that writes it.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

log = logging.getLogger(__name__)


def dumps(obj: Any, separators: tuple[str, str] | None = (",", ":"), indent: int | None = None,
          what: str = "output") -> str:
    """``obj`` as strict JSON (compact by default); non-finite floats become ``null`` (logged, naming ``what``)."""
    try:
        return json.dumps(obj, allow_nan=False, separators=separators, indent=indent)
    except ValueError:
        log.error("non-finite number in the JSON %s; written as null", what)
        return json.dumps(_finite(obj), allow_nan=False, separators=separators, indent=indent)


def _finite(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
