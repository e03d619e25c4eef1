"""TorchClapFeatures against transformers' ClapFeatureExtractor, which it must reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor

from monitor.inference.features import TorchClapFeatures
from monitor.testing.randommodel import FEATURE_EXTRACTOR_SETTINGS

SR = 48_000
# Output is float32 dB in [-100, ~100]; one float32 step there is 7.6e-6, so this allows a few steps.
TOLERANCE_DB = 5e-5


def make_extractor(**overrides: object) -> ClapFeatureExtractor:
    """The feature settings of laion/clap-htsat-unfused (see its preprocessor_config)."""
    settings = dict(FEATURE_EXTRACTOR_SETTINGS)
    settings.update(overrides)
    return ClapFeatureExtractor(**settings)


@pytest.fixture(scope="module")
def extractor() -> ClapFeatureExtractor:
    return make_extractor()


@pytest.fixture(scope="module")
def features(extractor: ClapFeatureExtractor) -> TorchClapFeatures:
    return TorchClapFeatures(extractor)


@pytest.fixture(scope="module")
def main_case(extractor: ClapFeatureExtractor) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """The case that matters: a batch of 5 s windows (tiled twice by repeatpad), and the extractor's features."""
    clips = clip_batch(240_000)
    return clips, reference(extractor, clips)


def clip_batch(n_samples: int, seed: int = 0) -> np.ndarray:
    """Noise, tones, silence, a very quiet, a clipped-loud and an out-of-range clip, as float32 rows."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    clips = [
        0.1 * rng.standard_normal(n_samples),
        0.5 * np.sin(2 * np.pi * 1000.0 * t),  # weak bands far from a strong tone test the FFT precision
        0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * np.sin(2 * np.pi * 9000.0 * t),
        np.zeros(n_samples),  # all bands at the 1e-10 floor: -100 dB
        1e-4 * rng.standard_normal(n_samples),
        np.clip(10.0 * rng.standard_normal(n_samples), -1.0, 1.0),
        1000.0 * rng.standard_normal(n_samples),
    ]
    return np.stack(clips).astype(np.float32)


def reference(extractor: ClapFeatureExtractor, clips: np.ndarray) -> dict[str, torch.Tensor]:
    return extractor(list(clips), sampling_rate=SR, return_tensors="pt")


def assert_matches(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], tolerance: float) -> None:
    assert ours["input_features"].shape == ref["input_features"].shape
    assert ours["input_features"].dtype == torch.float32
    assert torch.equal(ours["is_longer"], ref["is_longer"])
    error = (ours["input_features"] - ref["input_features"]).abs().max().item()
    assert error <= tolerance, f"max error {error:.3g} dB"


def test_matches_extractor_on_5s_windows(
    features: TorchClapFeatures, main_case: tuple[np.ndarray, dict[str, torch.Tensor]]
) -> None:
    clips, ref = main_case
    assert_matches(features(clips), ref, TOLERANCE_DB)


@pytest.mark.parametrize("n_samples", [480_000, 100_000, 240_001, 1_000])
def test_matches_extractor_other_lengths(
    extractor: ClapFeatureExtractor, features: TorchClapFeatures, n_samples: int
) -> None:
    """Full length (no padding), tiles plus a zero tail, one copy plus 5 s of zeros, many tiles."""
    clips = clip_batch(n_samples)[[0, 1, 3]]  # noise, tone, silence
    assert_matches(features(clips), reference(extractor, clips), TOLERANCE_DB)


def test_main_case_shape_and_silence_floor(features: TorchClapFeatures) -> None:
    out = features(np.zeros((2, 240_000), dtype=np.float32))
    assert out["input_features"].shape == (2, 1, 1001, 64)
    assert out["is_longer"].shape == (2, 1) and out["is_longer"].dtype == torch.bool
    assert not out["is_longer"].any()
    assert torch.all(out["input_features"] == -100.0)


def test_float32_fft_is_close_on_noise_only(
    extractor: ClapFeatureExtractor, main_case: tuple[np.ndarray, dict[str, torch.Tensor]]
) -> None:
    """float32 is exact enough for noise-like audio, but not for the weak bands beside a pure tone."""
    clips, ref = main_case
    fast = TorchClapFeatures(extractor, dtype=torch.float32)
    error = (fast(clips)["input_features"] - ref["input_features"]).abs().amax(dim=(1, 2, 3))
    assert error[[0, 4, 5, 6]].max() <= 1e-4
    assert error.max() <= 0.2


@pytest.mark.parametrize("padding", ["repeat", "pad"])
def test_other_paddings(padding: str) -> None:
    extractor = make_extractor(padding=padding)
    clips = clip_batch(100_000, seed=1)[:3]
    assert_matches(TorchClapFeatures(extractor)(clips), reference(extractor, clips), TOLERANCE_DB)


def test_accepts_tensor_and_single_clip(
    features: TorchClapFeatures, main_case: tuple[np.ndarray, dict[str, torch.Tensor]]
) -> None:
    clips, ref = main_case
    first = {key: value[:1] for key, value in ref.items()}
    assert_matches(features(torch.from_numpy(clips[:1])), first, TOLERANCE_DB)
    assert_matches(features(clips[0]), first, TOLERANCE_DB)


def test_supports(extractor: ClapFeatureExtractor, features: TorchClapFeatures) -> None:
    assert features.supports(240_000)
    assert features.supports(480_000)
    assert features.supports(1)
    assert not features.supports(480_001)  # the extractor crops a random 10 s and marks it is_longer
    assert not features.supports(0)
    fused = TorchClapFeatures(make_extractor(truncation="fusion"))
    assert not fused.supports(240_000)  # fusion: four mel copies and a random is_longer


def test_rejects_unsupported(features: TorchClapFeatures) -> None:
    with pytest.raises(ValueError):
        features(np.zeros((1, 480_001), dtype=np.float32))
    with pytest.raises(ValueError):
        features(np.zeros((1, 2, 1000), dtype=np.float32))


def test_reads_settings_from_extractor() -> None:
    """Another hop, window, band count and length must follow the extractor, not constants."""
    extractor = make_extractor(feature_size=32, hop_length=320, fft_window_size=512, max_length_s=2, frequency_min=0)
    clips = clip_batch(30_000, seed=2)[:3]
    assert_matches(TorchClapFeatures(extractor)(clips), reference(extractor, clips), TOLERANCE_DB)
