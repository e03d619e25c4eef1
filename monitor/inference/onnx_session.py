"""ONNX Runtime sessions set up for an always-on box: fixed threads, no spinning between windows, chosen providers.

onnxruntime is used because it runs the exported CLAP towers at torch's speed with a fraction of its memory
(``import onnxruntime`` is about 48 MB against torch's 220 MB plus transformers' 115 MB), and its wheels
exist for the small ARM boards this project targets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import onnxruntime as ort

from monitor.inference.errors import ModelLoadError
from monitor.inference.runtime import default_threads

__all__ = ["ARENA", "check_io", "open_session", "select_providers", "session_options"]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
# The CPU memory arena keeps every buffer it ever allocated, sized for the largest run (a batch of windows),
# for the life of the process; without it, buffers go back to malloc after each run. Measured on the full-size
# model (docs/BENCHMARKS.md): with the arena, RSS stayed at 395-412 MB after one batch of 4 windows, without it
# 247-265 MB, at the same time per window: off.
ARENA = False
_warned: set[str] = set()


def session_options(threads: int | None = None, arena: bool = ARENA) -> ort.SessionOptions:
    """Options for a session that scores one window every second or so, for weeks.

    ``threads``: intra-op threads (null = every core this process may use). Threads do not spin after a
    run: with spinning on, each window would be followed by a burst of busy-waiting on every thread.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = arena
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise in the journal
    return opts


def select_providers(wanted: Sequence[str]) -> list[str]:
    """The execution providers to use: those of ``wanted`` this onnxruntime has, in order, then the CPU one.

    A provider that is asked for but not installed is logged once and skipped: another provider is a speed-up,
    never a requirement.
    """
    available = ort.get_available_providers()
    chosen = []
    for name in wanted:
        if name in available:
            if name not in chosen:
                chosen.append(name)
        elif name not in _warned:
            _warned.add(name)
            log.warning("inference.providers: %s is not available in this onnxruntime (it has %s); not used",
                        name, ", ".join(available))
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def open_session(path: Path, threads: int | None, providers: Sequence[str] = (),
                 arena: bool = ARENA) -> ort.InferenceSession:
    """An inference session for ``path``; :class:`ModelLoadError` naming the file when it cannot be loaded."""
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads, arena),
                                    providers=select_providers(providers))
    except Exception as exc:  # ORT raises its own exception types; any failure here is a bad or unreadable file
        raise ModelLoadError(f"{path}: cannot load ONNX model: {str(exc).strip().splitlines()[0]}") from exc


def check_io(session: ort.InferenceSession, path: Path, inputs: Iterable[str], output: str) -> None:
    """Raise :class:`ModelLoadError` unless the session takes only known ``inputs`` and gives ``output``."""
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    unknown = [n for n in names_in if n not in set(inputs)]
    if unknown or output not in names_out:
        raise ModelLoadError(
            f"{path}: not a CLAP {output.split('_')[0]} model as transformers.js lays it out: it takes "
            f"{names_in} and gives {names_out}; expected inputs from {sorted(inputs)} and output '{output}'"
        )
