"""Randomly initialised CLAP checkpoints, built locally, for tests and benchmarks.

There is no model hub on the project's machines, so tests and benchmarks cannot download
``laion/clap-htsat-unfused``. :func:`build_random_clap` writes a folder laid out like that checkpoint
(``config.json``, ``model.safetensors``, ``preprocessor_config.json``, tokenizer files) holding a randomly
initialised :class:`transformers.ClapModel`, so every loading path the monitor uses
(``ClapModel.from_pretrained``, ``ClapProcessor.from_pretrained``, ``pipeline("zero-shot-audio-classification")``)
runs exactly as it would on the real checkpoint.

- ``"full"`` has the real architecture (HTSAT-tiny audio tower, RoBERTa-base text tower): the same compute per
  window as the real model, for benchmarks. Only its token-embedding table is smaller (the local tokenizer has
  under 1,000 tokens, RoBERTa's 50,265), so it saves to about 460 MB instead of about 600 MB.
- ``"tiny"`` keeps the structure but shrinks every dimension: about 700 kB on disk, built in a fraction of a
  second (once transformers is imported), for tests.

The tokenizer is a byte-level BPE (RoBERTa's kind) trained here on a small built-in corpus of sound
descriptions; prompts tokenise to roughly as many tokens as they would with RoBERTa's vocabulary.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from transformers import ClapFeatureExtractor, ClapModel

__all__ = ["FEATURE_EXTRACTOR_SETTINGS", "build_random_clap"]

#: Feature-extractor settings of ``laion/clap-htsat-unfused`` (its ``preprocessor_config.json``).
FEATURE_EXTRACTOR_SETTINGS: dict[str, object] = {
    "feature_size": 64,
    "sampling_rate": 48_000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "padding_value": 0.0,
    "return_attention_mask": False,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "top_db": None,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}

# How the tiny model is made to tell inputs apart. With the default init, a tiny random model maps every prompt
# to nearly the same text embedding (cosine > 0.99) and every sound to nearly the same audio embedding, so all
# scores are close to 1/n whatever is heard. Two measures fix that without making the net chaotic:
# - the text tower's weights are initialised 5x larger (``initializer_factor``): prompts then get clearly
#   different embeddings (cosines down to about 0.5);
# - the audio projection is centred: its first bias is set so that it sees the pooled audio features minus their
#   mean over a few synthetic calibration sounds (tones, noise, silence), i.e. only what differs between sounds.
# Scaling the audio tower's init instead (factor 10-30) also separates sounds, but amplifies rounding: at 30,
# bf16 autocast moved scores by up to 0.45 and 1e-4 dB of feature noise by 5e-4, which breaks tests comparing
# two implementations to 1e-5. Centred, the same noise moves scores by about 1e-5 at most.
_TINY_TEXT_INIT_FACTOR = 5.0
_CALIBRATION_SECONDS = 5.0

_TOKENIZER_VOCAB_SIZE = 1000
_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4, in this order

# fmt: off
_SOUND_WORDS = (
    "dog barking", "cat meowing", "baby crying", "glass breaking", "door knocking", "doorbell", "smoke alarm",
    "fire alarm", "siren", "car horn", "engine idling", "motorcycle", "truck", "train", "airplane", "helicopter",
    "thunder", "rain", "wind", "sea waves", "water running", "toilet flush", "footsteps", "clapping", "laughing",
    "coughing", "sneezing", "snoring", "breathing", "speech", "whispering", "shouting", "screaming", "singing",
    "music", "piano", "guitar", "drums", "violin", "bell ringing", "church bells", "clock ticking", "alarm clock",
    "phone ringing", "keyboard typing", "mouse click", "vacuum cleaner", "washing machine", "hair dryer",
    "microwave beeping", "kettle whistling", "frying food", "chopping", "dishes clattering", "cutlery",
    "can opening", "pouring water", "drinking", "eating", "chewing", "birds chirping", "crow cawing",
    "rooster crowing", "hen clucking", "cow mooing", "sheep bleating", "pig oinking", "horse neighing",
    "frog croaking", "insects buzzing", "crickets", "mosquito", "bee", "owl hooting", "duck quacking", "gunshot",
    "explosion", "fireworks", "chainsaw", "hammering", "drilling", "sawing", "lawn mower", "leaf blower",
    "air conditioner", "fan humming", "ventilation", "silence", "ambient noise", "white noise", "static", "beeping",
    "buzzer", "whistle", "squeaking door", "door slam", "window opening", "zipper", "paper rustling",
    "coin dropping", "keys jingling", "crackling fire", "dripping tap", "mouse squeaking",
)
# fmt: on
_TEMPLATES = (
    "This is a sound of {}.",
    "the sound of {}",
    "a recording of {} in a quiet room",
    "loud {} nearby",
    "distant {} outside the house",
    "{} and some background noise",
    "I can hear {} again.",
    "Is that {}? It sounds like {} to me.",
)


def _corpus() -> list[str]:
    """A small English corpus of sound descriptions: every sound word in every template."""
    return [template.format(word, word) for word in _SOUND_WORDS for template in _TEMPLATES]


def _train_tokenizer(folder: Path) -> None:
    """Train a byte-level BPE on :func:`_corpus` and write ``vocab.json`` and ``merges.txt`` into ``folder``."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _corpus(),
        vocab_size=_TOKENIZER_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=_SPECIAL_TOKENS,
        show_progress=False,
    )
    bpe.save_model(str(folder))


def _tiny_config_kwargs() -> dict[str, object]:
    """Keyword arguments of a very small :class:`transformers.ClapConfig` with the real one's structure."""
    audio = {
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 2, 4, 8],
        "patch_embeds_hidden_size": 8,
        "hidden_size": 64,  # patch_embeds_hidden_size * 2 ** (len(depths) - 1), as in HTSAT
        "mlp_ratio": 2.0,
    }
    text = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "initializer_factor": _TINY_TEXT_INIT_FACTOR,
    }
    return {"audio_config": audio, "text_config": text, "projection_dim": 16}


def _calibration_sounds(rate: int) -> list[np.ndarray]:
    """Deterministic synthetic sounds whose mean pooled audio feature centres the tiny model's audio projection."""
    t = np.arange(round(_CALIBRATION_SECONDS * rate)) / rate
    sounds = [0.2 * np.sin(2 * np.pi * freq * t) for freq in (100.0, 300.0, 1000.0, 2500.0, 6000.0)]
    sounds.append(0.05 * np.random.default_rng(0).standard_normal(len(t)))
    sounds.append(np.zeros(len(t)))
    return [s.astype(np.float32) for s in sounds]


def _centre_audio_projection(model: ClapModel, feature_extractor: ClapFeatureExtractor) -> None:
    """Set ``audio_projection.linear1.bias`` so that the projection acts on pooled features minus their mean."""
    import torch

    rate = feature_extractor.sampling_rate
    inputs = feature_extractor(_calibration_sounds(rate), sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        pooled = model.audio_model(input_features=inputs["input_features"]).pooler_output
        linear1 = model.audio_projection.linear1
        linear1.bias.copy_(-(linear1.weight @ pooled.mean(dim=0)))


def build_random_clap(folder: str | Path, size: Literal["tiny", "full"] = "tiny", seed: int = 0) -> Path:
    """Save a randomly initialised CLAP model and processor into ``folder``, laid out like the real checkpoint.

    The folder then loads with ``ClapModel.from_pretrained(folder)``, ``ClapProcessor.from_pretrained(folder)``
    and ``transformers.pipeline("zero-shot-audio-classification", model=folder)`` exactly as
    ``laion/clap-htsat-unfused`` does: same model class, same feature-extractor settings (64 mel bins at
    48 kHz, hop 480, 50 Hz to 14 kHz, 10 s, ``rand_trunc``/``repeatpad``), a RoBERTa tokenizer.

    Args:
        folder: Destination; created if missing. Existing files of the same names are overwritten.
        size: ``"full"`` for the real architecture (``ClapConfig()``: HTSAT-tiny audio tower, RoBERTa-base text
            tower, for benchmarks); ``"tiny"`` for a structurally identical model of
            about 125 k parameters (under 1 MB on disk, for tests), adjusted so that its scores differ clearly
            between labels and between sounds (see the module's comments).
        seed: Seed of the weight initialisation. The same seed gives byte-identical weights and tokenizer.
            The caller's global torch RNG state is left untouched.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``size`` is neither ``"tiny"`` nor ``"full"``.
        RuntimeError: If the trained tokenizer does not have RoBERTa's special-token ids (a library change).
    """
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="clap-tokenizer-") as tmp:
        _train_tokenizer(Path(tmp))
        tokenizer = RobertaTokenizer.from_pretrained(tmp)
    tokenizer.model_max_length = 512  # as RoBERTa's (and the real checkpoint's) tokenizer_config
    # RoBERTa's special ids, which ClapTextConfig's defaults (bos 0, pad 1, eos 2) assume.
    ids = [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id]
    if ids != [0, 1, 2]:
        raise RuntimeError(f"trained tokenizer has special ids {ids}, expected RoBERTa's [0, 1, 2]")

    kwargs = _tiny_config_kwargs() if size == "tiny" else {}
    text_config = dict(kwargs.pop("text_config", {}))  # type: ignore[call-overload]
    text_config["vocab_size"] = len(tokenizer)
    config = ClapConfig(text_config=text_config, **kwargs)  # type: ignore[arg-type]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(config)
    model.eval()
    feature_extractor = ClapFeatureExtractor(**FEATURE_EXTRACTOR_SETTINGS)  # type: ignore[arg-type]
    if size == "tiny":
        _centre_audio_projection(model, feature_extractor)

    processor = ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
