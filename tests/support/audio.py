"""Synthetic audio for tests: tones, noise, sweeps, silence, mixtures, levels, WAV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "audio_file",
    "beeps",
    "chirp",
    "concat",
    "dbfs",
    "mixture",
    "noise",
    "rms",
    "silence",
    "tone",
    "write_wav",
]


def _shape(mono: np.ndarray, channels: int) -> np.ndarray:
    """float32 ``(n,)`` for one channel, else ``(n, channels)`` with the same signal in every channel."""
    mono = mono.astype(np.float32)
    if channels == 1:
        return mono
    return np.repeat(mono[:, None], channels, axis=1)


def _frames(seconds: float, rate: int) -> int:
    return round(seconds * rate)


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.3, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz and peak ``amplitude``, float32, shaped ``(n,)`` or ``(n, channels)``."""
    t = np.arange(_frames(seconds, rate)) / rate
    return _shape(amplitude * np.sin(2 * np.pi * freq * t), channels)


def noise(seconds: float, rate: int, amplitude: float = 0.1, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Gaussian white noise with standard deviation ``amplitude`` (clipped to [-1, 1]), reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    return _shape(np.clip(amplitude * rng.standard_normal(_frames(seconds, rate)), -1.0, 1.0), channels)


def chirp(
    seconds: float, rate: int, f0: float = 200.0, f1: float = 4000.0, amplitude: float = 0.3, channels: int = 1
) -> np.ndarray:
    """A linear sweep from ``f0`` to ``f1`` Hz over ``seconds``, float32."""
    t = np.arange(_frames(seconds, rate)) / rate
    k = (f1 - f0) / max(seconds, 1e-9)
    return _shape(amplitude * np.sin(2 * np.pi * (f0 * t + 0.5 * k * t * t)), channels)


def silence(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """Digital silence, float32."""
    return _shape(np.zeros(_frames(seconds, rate)), channels)


def mixture(*signals: np.ndarray) -> np.ndarray:
    """Sum signals of possibly different lengths (shorter ones zero-padded at the end), clipped to [-1, 1]."""
    if not signals:
        raise ValueError("mixture needs at least one signal")
    length = max(len(s) for s in signals)
    shape = (length, *signals[0].shape[1:])
    out = np.zeros(shape, np.float32)
    for s in signals:
        out[: len(s)] += s
    return np.clip(out, -1.0, 1.0)


def concat(*signals: np.ndarray) -> np.ndarray:
    """Signals one after another, float32."""
    return np.concatenate(signals).astype(np.float32)


def rms(samples: np.ndarray) -> float:
    """Root mean square over all samples and channels."""
    x = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS); -inf for silence."""
    level = rms(samples)
    return float(20 * np.log10(level)) if level > 0 else float("-inf")


def write_wav(path: str | Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``samples`` (``(n,)`` or ``(n, channels)``, floats in [-1, 1]) as a WAV file and return its path.

    ``subtype`` is a soundfile subtype: ``"PCM_16"`` (default, what most players and devices produce) or
    ``"FLOAT"`` for lossless float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype=subtype, format="WAV")
    return path


def audio_file(folder: Path, seconds: float, name: str = "in.wav") -> tuple[Path, np.ndarray]:
    """A 48 kHz float WAV of alternating tone and noise (windows are then bit-identical to its samples)."""
    parts, t = [], 0.0
    while t < seconds:
        parts += [tone(2, 48000, 440 + 100 * len(parts), 0.3), noise(2, 48000, 0.1, seed=len(parts))]
        t += 4
    x = concat(*parts)[: round(seconds * 48000)]
    return write_wav(folder / name, x, 48000, subtype="FLOAT"), x


def beeps(folder: Path, at: list[float], length: float, rate: int = 48000) -> tuple[Path, np.ndarray]:
    """Silence with a one-second 1 kHz beep starting at each time in ``at``; 16-bit WAV, as clips are.

    Returns the file and its samples as the monitor reads them back (the 16-bit values, as float32).
    """
    parts, t = [], 0.0
    for start in at:
        parts += [silence(start - t, rate), tone(1.0, rate, 1000, 0.5)]
        t = start + 1.0
    parts.append(silence(length - t, rate))
    x = concat(*parts)
    path = write_wav(folder / "beeps.wav", x, rate)
    x16, _ = sf.read(str(path), dtype="float32")  # what the monitor reads: the 16-bit values
    return path, x16


def synthetic_clips() -> dict[str, np.ndarray]:
    """Four 5 s clips at 48 kHz that even random audio embeddings tell apart: a tone, noise, a chirp, silence."""
    rng = np.random.default_rng(3)
    t = np.arange(240_000) / 48_000
    return {
        "tone": (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "noise": (0.1 * rng.standard_normal(240_000)).astype(np.float32),
        "chirp": (0.5 * np.sin(2 * np.pi * (200 + 2000 * t) * t)).astype(np.float32),
        "silence": np.zeros(240_000, np.float32),
    }
