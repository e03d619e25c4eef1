"""Keeping the C libraries under PortAudio out of the journal.

ALSA prints its errors (``ALSA lib pcm_pulse.c:758:(pulse_prepare) ...``) to stderr through ``snd_lib_error``, and
PortAudio's ALSA host API prints ``Expression '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c'`` with fprintf.
Every attempt to reopen a vanished microphone printed about thirty such lines. Two remedies:

- :func:`silence_alsa` installs an ALSA error handler (through ctypes) that hands ALSA's messages to this module's
  logger at debug level. It lasts for the process and covers every thread, PortAudio's audio thread included.
- PortAudio's own prints cannot be redirected (Debian's libportaudio does not export
  ``PaUtil_SetDebugPrintFunction``), so :func:`quiet_stderr` points file descriptor 2 at a temporary file around
  the calls that (re)open a device, then writes back to stderr whatever else landed there meanwhile (another
  thread's log line is delayed, never lost) and drops only the known PortAudio/ALSA/JACK noise. A loss itself is
  noticed on PortAudio's thread, outside any such call: its few lines (once per loss, not per retry) still show.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

MAX_HELD_BYTES = 1 << 20  # what a quiet section passes back at most; the noise of one retry is ~2 KB
NOISE = re.compile(
    rb"^(ALSA lib |Expression '.*' failed in |Cannot connect to server|jack server is not running|JackShm"
    rb"|Cannot lock down|\s*$)"
)

# ALSA's handler type: void (*)(const char *file, int line, const char *function, int err, const char *fmt, ...).
# The variadic tail is left out: the arguments before it are passed the same way, and we do not read it.
_ALSA_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
_alsa_handler: object | None = None  # kept alive here: ALSA calls it for as long as the process runs
_stderr_lock = threading.Lock()  # two quiet sections at once would restore each other's descriptor


def _on_alsa_error(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    try:
        log.debug("ALSA %s:%d (%s): %s [%d]", (file or b"?").decode(errors="replace"), line,
                  (function or b"?").decode(errors="replace"), (fmt or b"").decode(errors="replace").strip(), err)
    except Exception:  # noqa: BLE001 - an exception must not cross back into C
        pass


def silence_alsa() -> bool:
    """Send ALSA's error messages to the debug log instead of stderr (idempotent); False if libasound is absent."""
    global _alsa_handler
    if _alsa_handler is not None:
        return True
    for name in ("libasound.so.2", ctypes.util.find_library("asound")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)  # the copy PortAudio already loaded: a soname is loaded once per process
            handler = _ALSA_HANDLER(_on_alsa_error)
            lib.snd_lib_error_set_handler(handler)
        except (OSError, AttributeError) as exc:
            log.debug("cannot install an ALSA error handler from %s: %s", name, exc)
            continue
        _alsa_handler = handler
        return True
    return False


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hold what is written to file descriptor 2 inside the block; pass on all of it but PortAudio/ALSA noise."""
    try:
        held = tempfile.TemporaryFile()
    except OSError:  # nowhere to hold it: let the noise through rather than fail to reopen the device
        yield
        return
    with _stderr_lock, held:
        _flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            _flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            _pass_on(held.read(MAX_HELD_BYTES))


def _flush() -> None:
    with contextlib.suppress(Exception):  # a closed or replaced sys.stderr has nothing of ours buffered
        sys.stderr.flush()


def _pass_on(data: bytes) -> None:
    kept = [line for line in data.splitlines(keepends=True) if not NOISE.match(line)]
    rest = memoryview(b"".join(kept))
    with contextlib.suppress(OSError):
        while rest:
            rest = rest[os.write(2, rest):]
    dropped = data.count(b"\n") - len(kept)
    if dropped > 0:
        log.debug("hid %d line(s) of PortAudio/ALSA output", dropped)
