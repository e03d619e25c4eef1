"""Test-only start-up hook: holds a ``sound-monitor`` subprocess at a chosen stage, so a test can signal it there.

Python imports ``sitecustomize`` at start-up from the first folder of ``sys.path`` that has one; the tests put
this folder first on ``PYTHONPATH`` and name what to hold in ``SOUND_MONITOR_TEST_HOLD`` (see
:func:`support.procs.hold_env`), a comma-separated list of:

* ``import:MODULE``: the first import of MODULE blocks forever (in whichever thread imports it);
* ``call:MODULE:NAME``: calling NAME (``func`` or ``Class.method``) of MODULE blocks forever;
* ``busy:MODULE:NAME``: calling NAME spins in torch's native code forever (what a long model load or text
  encoding does), so the process has a thread inside torch when it exits.

Each hold first prints ``test-hold: <spec>`` on stderr: the line a test waits for before it sends a signal. Nothing
here depends on time: a held stage stays held until the process is signalled.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


def _say(spec: str) -> None:
    print(f"test-hold: {spec}", file=sys.stderr, flush=True)


def _block(spec: str) -> None:
    _say(spec)
    threading.Event().wait()  # a signal interrupts the wait, runs its handler, and the wait goes on


def _spin(spec: str) -> None:
    import torch

    a = torch.randn(384, 384)
    _say(spec)
    while True:
        torch.mm(a, a)


def _patch(module: ModuleType, name: str, spec: str, hold: Callable[[str], None]) -> None:
    *owner_path, attr = name.split(".")
    owner: Any = module
    for part in owner_path:
        owner = getattr(owner, part)

    def held(*args: Any, **kwargs: Any) -> Any:
        hold(spec)

    setattr(owner, attr, held)


class _Holds(importlib.abc.MetaPathFinder):
    def __init__(self, specs: Sequence[str]) -> None:
        self.imports: set[str] = set()
        self.patches: dict[str, list[Callable[[ModuleType], None]]] = {}
        for spec in specs:
            kind, _, rest = spec.partition(":")
            if kind == "import":
                self.imports.add(rest)
            elif kind in ("call", "busy"):
                module, _, name = rest.partition(":")
                hold = _block if kind == "call" else _spin
                self.patches.setdefault(module, []).append(
                    lambda m, name=name, spec=spec, hold=hold: _patch(m, name, spec, hold))
            else:
                raise ValueError(f"SOUND_MONITOR_TEST_HOLD: unknown hold {spec!r}")

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if fullname in self.imports:
            _block(f"import:{fullname}")
        patches = self.patches.get(fullname)
        if not patches:
            return None
        for finder in sys.meta_path:  # the real spec, from the finders after this one
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        exec_module = loader.exec_module

        def exec_then_patch(module: ModuleType) -> None:
            exec_module(module)
            for patch in patches:
                patch(module)

        loader.exec_module = exec_then_patch
        return spec


_specs = [s for s in os.environ.get("SOUND_MONITOR_TEST_HOLD", "").split(",") if s]
if _specs:
    sys.meta_path.insert(0, _Holds(_specs))
