"""Five synthetic sound classes for the teaching tests, and an independent reference for example scores.

With random weights text scores mean nothing, but audio embeddings are a fixed function of the audio, so these
classes (steady tones, noise, repeated chirps, gated tones, jittery square waves; each take varies a little) are
told apart by their examples. :class:`Reference` computes embeddings and the scoring rule with transformers' own
pipeline objects and numpy, not with the monitor's code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from support.audio import write_wav

__all__ = ["CLASSES", "Reference", "rule", "sound", "write_class_folders"]

CLASSES = ["chirps", "gated_tones", "noise", "square_waves", "tones"]
RATE = 48_000


def sound(cls: str, take: int, seconds: float = 5.0, rate: int = RATE) -> np.ndarray:
    """A take of class ``cls`` (float32 mono); ``take`` varies pitch, level and phase a little."""
    rng = np.random.default_rng(1000 * CLASSES.index(cls) + take)
    t = np.arange(round(seconds * rate)) / rate
    if cls == "tones":
        x = 0.3 * np.sin(2 * np.pi * 440 * 2 ** rng.uniform(-0.5, 0.5) * t)
    elif cls == "noise":
        x = np.clip(rng.uniform(0.1, 0.2) * rng.standard_normal(len(t)), -1, 1)
    elif cls == "chirps":
        f0, f1, tt = rng.uniform(300, 500), rng.uniform(3000, 4000), t % 1.0
        x = 0.3 * np.sin(2 * np.pi * (f0 * tt + 0.5 * (f1 - f0) * tt * tt))
    elif cls == "gated_tones":
        f, gate = 2000 * 2 ** rng.uniform(-0.3, 0.3), rng.uniform(3, 5)
        x = 0.3 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * gate * t + rng.uniform(0, 6)) > 0)
    elif cls == "square_waves":
        phase = 2 * np.pi * rng.uniform(150, 250) * t + np.cumsum(rng.normal(0, 0.01, len(t)))
        x = 0.2 * np.sign(np.sin(phase))
    else:
        raise ValueError(cls)
    return x.astype(np.float32)


def write_class_folders(root: Path, takes: int, seconds: float = 5.0) -> Path:
    """One folder per class with ``takes`` 16-bit WAVs (44.1 kHz for odd takes, to exercise resampling)."""
    for cls in CLASSES:
        for k in range(takes):
            rate = 44_100 if k % 2 else RATE
            write_wav(root / cls / f"{cls}-{k}.wav", sound(cls, k, seconds, rate), rate)
    return root


def rule(text: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray, beta: float = 5.5) -> np.ndarray:
    """The documented rule, written out again: max(text, exp(-b(1-c_pos))) * (1 - exp(-b(1-c_neg)))."""
    e = np.where(np.isfinite(c_pos), np.exp(-beta * (1 - np.asarray(c_pos, np.float64))), 0.0)
    n = np.where(np.isfinite(c_neg), np.exp(-beta * (1 - np.asarray(c_neg, np.float64))), 0.0)
    return np.maximum(text, np.minimum(e, 1.0)) * (1 - np.minimum(n, 1.0))


class Reference:
    """Audio embeddings and zero-shot scores from transformers' ``zero-shot-audio-classification`` pipeline."""

    def __init__(self, model: Path) -> None:
        from transformers import pipeline

        self.pipe = pipeline("zero-shot-audio-classification", model=str(model))

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """Unit audio embedding of 48 kHz samples, as the pipeline's model computes it."""
        import torch

        inputs = self.pipe.feature_extractor([samples], sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            out = self.pipe.model.get_audio_features(**inputs)
        v = getattr(out, "pooler_output", out)[0].numpy().astype(np.float64)
        return v / np.linalg.norm(v)

    def embed_file(self, path: Path) -> np.ndarray:
        """Unit embedding of a file no longer than a window (read, downmixed, resampled with soxr HQ)."""
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if rate != RATE:
            x = soxr.resample(x, rate, RATE, quality="HQ").astype(np.float32)
        return self.embed(x)

    def text(self, samples: np.ndarray, labels: list[str], template: str = "This is a sound of {}.",
             ) -> dict[str, float]:
        """The pipeline's zero-shot scores of ``samples`` against ``labels``."""
        return {r["label"]: r["score"] for r in self.pipe(samples, candidate_labels=labels,
                                                         hypothesis_template=template)}
