"""Capture: a PortAudio input stream feeding a preallocated ring buffer.

The audio callback runs on PortAudio's real-time thread. It only downmixes into a preallocated scratch
block, copies that into the ring, records ``status`` flags in counters and sets an event: no logging,
no allocation beyond numpy views, no locks held for long, and every exception is swallowed (counted),
because an exception there stops the stream. The consumer (the windowing thread) reads whatever is new;
if it fell more than a ring's length behind, the lost samples are counted as an overrun.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.core.resample import downmix
from monitor.sources.ring import RingBuffer

log = logging.getLogger(__name__)

PREFERRED_RATES = (48_000, 44_100, 32_000, 16_000, 96_000)
BLOCK_SECONDS = 0.1


class CaptureError(RuntimeError):
    """The input device cannot be opened or stopped delivering audio."""


def _sd() -> Any:
    # Imported lazily: importing sounddevice fails without libportaudio2, and commands such as
    # check-config or classify must work without an audio stack.
    try:
        import sounddevice
    except OSError as exc:  # libportaudio missing
        raise CaptureError(f"cannot load PortAudio ({exc}); install libportaudio2") from exc
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    """An input device as PortAudio reports it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    default_samplerate: float


# PortAudio is not thread-safe: with several local sources, their windowing threads open, close and list devices
# at any time. Every such call holds this lock (re-entrant: opening lists devices), and a rescan, which is
# Pa_Terminate, would close every stream still open, other sources' microphones included, so it is refused then.
_PORTAUDIO = threading.RLock()
_open_streams = 0  # input streams open in this process (guarded by _PORTAUDIO)


def rescan_devices() -> bool:
    """Make PortAudio enumerate devices again (it lists them only when initialised): a USB microphone
    plugged back in is invisible until then. Done only while no input stream is open in the process (False
    otherwise): with another microphone open, a device that comes back is found once that one closes."""
    sd = _sd()
    with _PORTAUDIO:
        if _open_streams:
            return False
        try:
            sd._terminate()
            sd._initialize()
        except Exception as exc:  # noqa: BLE001 - private API; worst case the old device list stays
            log.debug("PortAudio rescan failed: %s", exc)
    return True


def list_input_devices() -> list[InputDevice]:
    """All devices with at least one input channel."""
    sd = _sd()
    with _PORTAUDIO:
        hostapis, devices = sd.query_hostapis(), sd.query_devices()
    out = []
    for dev in devices:
        if dev["max_input_channels"] > 0:
            out.append(
                InputDevice(
                    index=dev["index"],
                    name=dev["name"],
                    hostapi=hostapis[dev["hostapi"]]["name"],
                    max_input_channels=dev["max_input_channels"],
                    default_samplerate=dev["default_samplerate"],
                )
            )
    return out


def format_devices(devices: list[InputDevice]) -> str:
    """One line per input device, for error messages and ``sound-monitor devices``."""
    if not devices:
        return "  (no input devices found)"
    default = _default_input_index()
    return "\n".join(
        f"{'*' if d.index == default else ' '} {d.index:3d}  {d.name}  ({d.hostapi}, {d.max_input_channels} ch, "
        f"{d.default_samplerate:g} Hz)"
        for d in devices
    )


def _default_input_index() -> int | None:
    try:
        idx = _sd().default.device[0]
    except Exception:  # noqa: BLE001 - no default is a normal answer here
        return None
    return idx if isinstance(idx, int) and idx >= 0 else None


def resolve_input_device(spec: str | int | None) -> InputDevice:
    """Find the input device named by ``spec`` (index, name substring, or None for the default).

    Raises CaptureError listing the available input devices when nothing matches.
    """
    devices = list_input_devices()
    listing = format_devices(devices)
    if spec is None:
        idx = _default_input_index()
        match = [d for d in devices if d.index == idx] or devices[:1]
        if not match:
            raise CaptureError(f"audio.device: no input device found.\nInput devices:\n{listing}")
        return match[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                return d
        raise CaptureError(f"audio.device: no input device with index {idx}.\nInput devices:\n{listing}")
    wanted = spec.strip().lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    partial = exact or [d for d in devices if wanted in d.name.lower()]
    if not partial:
        raise CaptureError(f"audio.device: no input device matching '{spec}'.\nInput devices:\n{listing}")
    if len(partial) > 1 and not exact:
        log.warning("audio.device '%s' matches %d devices; using %s", spec, len(partial), partial[0].name)
    return partial[0]


class Capture:
    """An open input device: ``start()``, then ``read()`` new mono samples at ``rate`` from another thread."""

    lossless = False  # live audio: when inference falls behind, drop the oldest window, never block capture

    def __init__(
        self,
        device: str | int | None = None,
        samplerate: int | None = None,
        channels: int | None = None,
        ring_seconds: float = 10.0,
        stall_seconds: float = 5.0,
    ) -> None:
        with _PORTAUDIO:
            self.device = resolve_input_device(device)
            self.rate, self.channels = self._pick_settings(samplerate, channels)
        self.stall_seconds = stall_seconds
        self._ring = RingBuffer(int(ring_seconds * self.rate))
        self._blocksize = max(1, int(self.rate * BLOCK_SECONDS))
        # Scratch for the downmix: PortAudio may hand us a bigger block than asked for.
        self._scratch = np.zeros(self._blocksize * 8, dtype=np.float32)
        self._ready = threading.Event()
        self._stream: Any = None
        self._finished = threading.Event()
        self.input_overflows = 0
        self.callback_errors = 0
        self.last_data_monotonic = 0.0

    def _pick_settings(self, samplerate: int | None, channels: int | None) -> tuple[int, int]:
        sd = _sd()
        dev = self.device
        chans = [channels] if channels else [1, min(2, dev.max_input_channels), dev.max_input_channels]
        rates = [samplerate] if samplerate else [int(dev.default_samplerate), *PREFERRED_RATES]
        errors: dict[str, str] = {}  # each distinct error once, with the first setting that got it (one short line)
        for ch in dict.fromkeys(c for c in chans if c):
            for rate in dict.fromkeys(rates):
                try:
                    sd.check_input_settings(device=dev.index, samplerate=rate, channels=ch, dtype="float32")
                    return int(rate), int(ch)
                except Exception as exc:  # noqa: BLE001 - PortAudio raises various errors per setting
                    errors.setdefault(str(exc), f"{rate} Hz x {ch} ch")
        why = "; ".join(f"{first}: {err}" for err, first in list(errors.items())[:3])
        raise CaptureError(f"audio: device '{dev.name}' accepts none of the tried settings: {why}")

    @property
    def ring(self) -> RingBuffer:
        """The ring buffer (counters are read by metrics and health checks)."""
        return self._ring

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            if status and status.input_overflow:
                self.input_overflows += 1
            # Mean into the preallocated scratch; a block too big for it keeps the first channel rather than allocate.
            mono = downmix(indata, self._scratch) if frames <= len(self._scratch) else indata[:, 0]
            self._ring.write(mono)
            self.last_data_monotonic = time.monotonic()
            self._ready.set()
        except Exception:  # noqa: BLE001 - an exception here would abort the stream
            self.callback_errors += 1

    def start(self) -> None:
        """Open and start the stream."""
        global _open_streams
        sd = _sd()
        self._finished.clear()
        with _PORTAUDIO:
            try:
                stream = sd.InputStream(
                    device=self.device.index,
                    samplerate=self.rate,
                    channels=self.channels,
                    dtype="float32",
                    blocksize=self._blocksize,
                    callback=self._callback,
                    finished_callback=self._finished.set,
                )
            except Exception as exc:
                raise CaptureError(f"audio: cannot open '{self.device.name}': {exc}") from exc
            _open_streams += 1
            self._stream = stream
            try:
                stream.start()
            except Exception as exc:
                self.stop()  # opened, not started: closed again (and no longer counted)
                raise CaptureError(f"audio: cannot open '{self.device.name}': {exc}") from exc
        self.last_data_monotonic = time.monotonic()
        log.info(
            "capturing from [%d] %s at %d Hz, %d channel(s)", self.device.index, self.device.name, self.rate,
            self.channels,
        )

    def read(self, timeout: float = 0.5) -> np.ndarray:
        """New samples since the last call (may be empty after ``timeout``).

        Raises CaptureError when the stream has ended or delivered nothing for ``stall_seconds``.
        """
        if self._ready.wait(timeout):
            self._ready.clear()
        data = self._ring.read_new()
        if data.size == 0:
            stream = self._stream  # once: stop() on another thread may clear it
            if self._finished.is_set() or (stream is not None and not stream.active):
                raise CaptureError(f"audio: input stream from '{self.device.name}' stopped")
            if time.monotonic() - self.last_data_monotonic > self.stall_seconds:
                raise CaptureError(
                    f"audio: no samples from '{self.device.name}' for {self.stall_seconds:g} s (device gone?)"
                )
        return data

    def interrupt(self) -> None:
        """Wake a ``read()`` waiting for audio so that it returns at once (from any thread)."""
        self._ready.set()

    def stop(self) -> None:
        """Stop and close the stream (safe to call twice)."""
        global _open_streams
        with _PORTAUDIO:
            stream, self._stream = self._stream, None
            if stream is None:
                return
            _open_streams -= 1
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception as exc:  # noqa: BLE001 - closing a vanished device may fail; nothing to do
                log.debug("closing stream: %s", exc)
