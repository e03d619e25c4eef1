"""The numpy log-mel front end of the onnx backend against transformers' ClapFeatureExtractor, which it reproduces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import ClapFeatureExtractor

from monitor.inference.mel import NumpyClapFeatures, slaney_mel_filters
from monitor.testing.randommodel import FEATURE_EXTRACTOR_SETTINGS

SR = 48_000
TOLERANCE = 1e-5  # dB; the bound (one float32 step at 64-128 dB is 7.6e-6)


def make(**overrides: object) -> tuple[ClapFeatureExtractor, NumpyClapFeatures]:
    settings = {**FEATURE_EXTRACTOR_SETTINGS, **overrides}
    extractor = ClapFeatureExtractor(**settings)
    return extractor, NumpyClapFeatures(extractor.to_dict())


def clips(n: int, seed: int = 0) -> np.ndarray:
    """Noise, tones (weak bands far below a strong one), silence, very quiet, clipped and out-of-range clips."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    rows = [
        0.1 * rng.standard_normal(n),
        0.5 * np.sin(2 * np.pi * 1000.0 * t),
        0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * np.sin(2 * np.pi * 9000.0 * t),
        np.zeros(n),
        1e-4 * rng.standard_normal(n),
        np.clip(10.0 * rng.standard_normal(n), -1.0, 1.0),
        1000.0 * rng.standard_normal(n),
    ]
    return np.stack(rows).astype(np.float32)


def reference(extractor: ClapFeatureExtractor, batch: np.ndarray) -> np.ndarray:
    return extractor(list(batch), sampling_rate=SR, return_tensors="np")["input_features"]


def test_filterbank_is_the_extractors() -> None:
    extractor, _ = make()
    ours = slaney_mel_filters(1024, 64, 50, 14_000, SR)
    np.testing.assert_allclose(ours, extractor.mel_filters_slaney, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [240_000, 480_000, 336_000, 100_000, 1024, 1])
def test_features_equal_the_extractor(n: int) -> None:
    """5 s windows (the monitor's), a full 10 s input, 7 s, odd lengths, down to one sample (tiled 480000 times)."""
    extractor, features = make()
    batch = clips(n)
    got, ref = features(batch), reference(extractor, batch)
    assert got.shape == ref.shape == (len(batch), 1, 1001, 64) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= TOLERANCE
    assert n == 1 or ref.std() > 1.0  # not a comparison of constants (one sample tiled is one)


@pytest.mark.parametrize("padding", ["repeat", "pad"])
def test_other_paddings(padding: str) -> None:
    extractor, features = make(padding=padding)
    batch = clips(170_000, seed=1)
    assert np.abs(features(batch) - reference(extractor, batch)).max() <= TOLERANCE


def test_longer_clips_are_cropped_at_random_like_the_extractor() -> None:
    extractor, features = make()
    batch = clips(600_000, seed=2)[:3]
    np.random.seed(7)
    ref = reference(extractor, batch)
    np.random.seed(7)
    assert np.abs(features(batch) - ref).max() <= TOLERANCE


def test_one_window_and_a_batch_agree() -> None:
    _, features = make()
    batch = clips(240_000)
    together = features(batch)
    for i, row in enumerate(batch):
        np.testing.assert_array_equal(features(row), together[i : i + 1])


def test_settings_from_either_config_file(tmp_path: Path) -> None:
    extractor, features = make()
    (tmp_path / "pre.json").write_text(json.dumps(extractor.to_dict()))
    (tmp_path / "proc.json").write_text(json.dumps({"feature_extractor": extractor.to_dict()}))
    batch = clips(240_000)[:2]
    for name in ("pre.json", "proc.json"):
        np.testing.assert_array_equal(NumpyClapFeatures.from_file(tmp_path / name)(batch), features(batch))


def test_fused_checkpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="fusion"):
        NumpyClapFeatures({**FEATURE_EXTRACTOR_SETTINGS, "truncation": "fusion"})
