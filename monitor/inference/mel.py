"""CLAP's log-mel features in numpy: ``ClapFeatureExtractor`` (unfused path) without torch or transformers.

The ONNX backend must not import torch, and transformers imports it, so this module re-implements what the
extractor does for ``truncation="rand_trunc"`` checkpoints such as ``laion/clap-htsat-unfused``, reading the
settings from ``preprocessor_config.json``. It follows the extractor's arithmetic step by step (transformers
5.x ``models/clap/feature_extraction_clap.py`` and ``audio_utils.spectrogram``), so the features agree to
float32 rounding:

1. Clips longer than ``nb_max_samples`` are cropped at a random offset (``rand_trunc``). Shorter ones are
   padded: ``repeatpad`` tiles ``int(max / n)`` copies then zero-pads, ``repeat`` tiles one copy more and cuts,
   anything else zero-pads. Every clip therefore becomes the model's full input (10 s): a 5 s window costs the
   same forward as a 10 s one.
2. Reflect-pad ``fft_window_size // 2`` samples on each side; one frame every ``hop_length`` samples.
3. Each frame times a periodic Hann window, ``rfft`` in float64, stored as complex64 (as the extractor stores
   it), then the power ``abs(X) ** 2`` in float64.
4. Slaney mel filterbank (float64), floored at ``1e-10``, ``10 * log10``, cast to float32.

Frames that are built from the same samples (``repeatpad`` tiles a 5 s window twice, so about half of the
1001 frames are copies) are computed once; which ones repeat is worked out once per clip length
(:mod:`monitor.inference.frameplan`, shared with the torch front end).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monitor.inference.frameplan import FramePlans

__all__ = ["NumpyClapFeatures", "slaney_mel_filters"]

# ClapFeatureExtractor's defaults, for keys a preprocessor_config.json leaves out.
_DEFAULTS: dict[str, Any] = {
    "feature_size": 64,
    "sampling_rate": 48_000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "frequency_min": 0.0,
    "frequency_max": 14_000.0,
    "truncation": "fusion",
    "padding": "repeatpad",
}
_FLOOR = 1e-10  # spectrogram's mel_floor and power_to_db's min_value


def _hz_to_slaney(freq: np.ndarray) -> np.ndarray:
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _slaney_to_hz(mels: np.ndarray) -> np.ndarray:
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


def slaney_mel_filters(n_fft: int, n_mels: int, f_min: float, f_max: float, sampling_rate: int) -> np.ndarray:
    """The extractor's ``mel_filters_slaney``: ``(n_fft // 2 + 1, n_mels)`` float64, area-normalised triangles."""
    mel_freqs = np.linspace(_hz_to_slaney(np.array([f_min], float))[0], _hz_to_slaney(np.array([f_max], float))[0],
                            n_mels + 2)
    filter_freqs = _slaney_to_hz(mel_freqs)
    fft_freqs = np.linspace(0, sampling_rate // 2, n_fft // 2 + 1)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    diff = np.diff(filter_freqs)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))
    return filters * (2.0 / (filter_freqs[2 : n_mels + 2] - filter_freqs[:n_mels]))[None, :]


class NumpyClapFeatures:
    """Log-mel features equal (to float32 rounding) to ``ClapFeatureExtractor``'s for unfused checkpoints."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        """``settings``: the contents of a ``preprocessor_config.json`` (missing keys take the extractor's
        defaults). Raises ValueError for ``truncation="fusion"`` (the fused checkpoints), which is not reproduced."""
        cfg = {**_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
        self.truncation = str(cfg["truncation"])
        if self.truncation == "fusion":
            raise ValueError("feature truncation 'fusion' (a fused CLAP checkpoint) is not supported; "
                             "use an unfused one such as laion/clap-htsat-unfused")
        self.padding = str(cfg["padding"])
        self.sampling_rate = int(cfg["sampling_rate"])
        self.n_fft = int(cfg["fft_window_size"])
        self.hop_length = int(cfg["hop_length"])
        self.max_samples = int(cfg.get("nb_max_samples") or int(cfg["max_length_s"]) * self.sampling_rate)
        self.window = np.hanning(self.n_fft + 1)[:-1]  # periodic Hann, as window_function(n, "hann")
        mel = slaney_mel_filters(self.n_fft, int(cfg["feature_size"]), float(cfg["frequency_min"]),
                                 float(cfg["frequency_max"]), self.sampling_rate)
        # Bins outside every filter add exact zeros to each sum; leaving them out changes nothing.
        used = np.flatnonzero(mel.any(axis=1))
        self.bin_lo, self.bin_hi = int(used[0]), int(used[-1]) + 1
        self.mel_filters = np.ascontiguousarray(mel[self.bin_lo : self.bin_hi])
        self.n_mels = mel.shape[1]
        # The filterbank is sparse (each bin lies in at most two triangles): a gather and a segmented sum cost
        # about 0.5 ms per window, where a dense product through a multithreaded BLAS took 4-13 ms on a busy
        # 2-core box. The sums run in float64, in another order than the extractor's np.dot: far below float32.
        bands, bins = np.nonzero(self.mel_filters.T)  # sorted by band, then bin
        self._bins = bins
        self._weights = self.mel_filters[bins, bands]
        self._band_starts = np.searchsorted(bands, np.arange(self.n_mels))
        self._plans = FramePlans()  # which frames repeat, per clip length

    @classmethod
    def from_file(cls, path: str | Path) -> NumpyClapFeatures:
        """Settings from a ``preprocessor_config.json`` (or a ``processor_config.json`` holding a
        ``feature_extractor`` section, as transformers 5 writes it)."""
        data = json.loads(Path(path).read_text())
        return cls(data.get("feature_extractor", data))

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Features ``(batch, 1, frames, n_mels)`` float32 of ``(batch, n_samples)`` (or one ``(n_samples,)``) clips."""
        x = np.asarray(clips, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"clips must be (batch, n_samples) with n_samples > 0, got shape {x.shape}")
        if x.shape[1] > self.max_samples:  # rand_trunc: a random crop of the model's length, clip by clip
            starts = [np.random.randint(0, x.shape[1] - self.max_samples + 1) for _ in range(len(x))]
            x = np.stack([row[s : s + self.max_samples] for row, s in zip(x, starts, strict=True)])
        plan = self._plans.get(x.shape[1], self._frame_sources)
        framed = np.lib.stride_tricks.sliding_window_view(self._pad(x), self.n_fft, axis=1)[:, :: self.hop_length]
        frames = np.concatenate([framed[:, start:stop] for start, stop in plan.runs], axis=1) * self.window
        spectrum = np.fft.rfft(frames, axis=-1).astype(np.complex64)[..., self.bin_lo : self.bin_hi]
        power = np.abs(spectrum, dtype=np.float64) ** 2
        mel = np.maximum(_FLOOR, np.add.reduceat(power[..., self._bins] * self._weights, self._band_starts, axis=-1))
        log_mel = (10.0 * np.log10(mel)).astype(np.float32)
        return log_mel[:, plan.frame_of_output][:, None]

    def _pad(self, x: np.ndarray) -> np.ndarray:
        """The extractor's padding of ``(batch, n)`` rows to ``max_samples``, then reflect centring (any dtype)."""
        n = x.shape[1]
        if n < self.max_samples:
            if self.padding == "repeat":
                x = np.tile(x, (1, self.max_samples // n + 1))[:, : self.max_samples]
            elif self.padding == "repeatpad":
                x = np.tile(x, (1, self.max_samples // n))
            x = np.pad(x, ((0, 0), (0, self.max_samples - x.shape[1])))
        half = self.n_fft // 2
        return np.pad(x, ((0, 0), (half, half)), mode="reflect")

    def _frame_sources(self, n_samples: int) -> np.ndarray:
        """Sample numbers 1..n through the same padding (0 marks a padding zero), framed like the audio."""
        sources = self._pad(np.arange(1, n_samples + 1, dtype=np.int64)[None, :])[0]
        return np.lib.stride_tricks.sliding_window_view(sources, self.n_fft)[:: self.hop_length]
