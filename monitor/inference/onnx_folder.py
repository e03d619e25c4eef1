"""The model folder the ONNX backend reads: the layout transformers.js uses for CLAP.

A public export such as ``Xenova/clap-htsat-unfused`` works as downloaded, and ``sound-monitor export`` writes
the same layout from any transformers CLAP checkpoint::

    config.json                     the transformers ClapConfig (text_config.max_position_embeddings)
    preprocessor_config.json        ClapFeatureExtractor settings (or processor_config.json's feature_extractor)
    tokenizer.json                  the tokenizer, read by the `tokenizers` library
    tokenizer_config.json           optional: pad token, model_max_length
    onnx/audio_model.onnx           ClapAudioModelWithProjection: input_features -> audio_embeds
    onnx/audio_model_quantized.onnx the same, int8 (``inference.precision: int8``)
    onnx/text_model.onnx            ClapTextModelWithProjection: input_ids, attention_mask -> text_embeds
    onnx/model{,_quantized}.onnx    optional: the whole ClapModel (-> logits_per_audio), see below

The names are those of transformers.js: ``ClapAudioModelWithProjection``/``ClapTextModelWithProjection`` load
``onnx/{audio,text}_model{,_quantized}.onnx``, its ``ClapFeatureExtractor`` feeds ``input_features``
``(batch, 1, frames, 64)`` and reads ``audio_embeds``, its tokenizer output feeds the text model, which gives
``text_embeds``; the zero-shot pipeline runs ``onnx/model.onnx`` and reads ``logits_per_audio``.

The two towers do not hold CLAP's logit scale (``exp(logit_scale_a)``, the softmax temperature). Our export
stores it in the audio model's metadata (``logit_scale``); for a folder without it, it is derived once from
the whole model, ``onnx/model_quantized.onnx`` (161 MB for the real one) or ``onnx/model.onnx`` (619 MB), see
:mod:`monitor.inference.onnx_scorer`, and cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.inference.errors import ModelLoadError

__all__ = ["AUDIO_INPUT", "AUDIO_OUTPUT", "TEXT_INPUTS", "TEXT_OUTPUT", "ModelFolder"]

AUDIO_INPUT = "input_features"
AUDIO_OUTPUT = "audio_embeds"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TEXT_OUTPUT = "text_embeds"
FULL_OUTPUT = "logits_per_audio"
LOGIT_SCALE_KEY = "logit_scale"  # metadata key our export writes into the audio models

_AUDIO_FILES = {"fp32": "onnx/audio_model.onnx", "int8": "onnx/audio_model_quantized.onnx"}
_TEXT_FILES = ("onnx/text_model.onnx", "onnx/text_model_quantized.onnx")  # fp32 preferred: it runs rarely
# The whole ClapModel, smallest first: only read (once) for the logit scale.
_FULL_FILES = ("onnx/model_quantized.onnx", "onnx/model.onnx")
_HOW = ("the onnx backend needs a local folder laid out like Xenova/clap-htsat-unfused (onnx/audio_model.onnx, "
        "onnx/text_model.onnx, tokenizer.json, preprocessor_config.json): write one with "
        "'sound-monitor export MODEL FOLDER' where torch is installed, or download that repository")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


@dataclass(frozen=True)
class ModelFolder:
    """A validated ONNX model folder."""

    root: Path

    @classmethod
    def open(cls, model: str, precision: str) -> ModelFolder:
        """Check ``model`` is a folder with every file ``precision`` needs; :class:`ModelLoadError` naming
        whatever is missing otherwise."""
        root = Path(model).expanduser()
        if not root.is_dir():
            where = "no such folder" if not root.exists() else "not a folder"
            raise ModelLoadError(f"model '{model}': {where}; {_HOW}")
        folder = cls(root)
        missing = [name for name in (_AUDIO_FILES[precision], "tokenizer.json") if not (root / name).is_file()]
        if not (root / "preprocessor_config.json").is_file() and not (root / "processor_config.json").is_file():
            missing.append("preprocessor_config.json")
        if missing:
            found = sorted(str(p.relative_to(root)) for p in root.glob("onnx/*.onnx"))
            raise ModelLoadError(f"model folder '{model}': missing {', '.join(missing)} "
                                 f"(for precision {precision}; onnx files found: {found or 'none'}); {_HOW}")
        return folder

    def audio_file(self, precision: str) -> Path:
        """The audio model for ``precision`` (fp32 or int8)."""
        return self.root / _AUDIO_FILES[precision]

    def text_file(self) -> Path:
        """The text model (fp32 if present, else the quantized one); may not exist when its outputs are cached."""
        for name in _TEXT_FILES:
            if (self.root / name).is_file():
                return self.root / name
        return self.root / _TEXT_FILES[0]

    def full_files(self) -> list[Path]:
        """The whole ClapModel's files present (``onnx/model_quantized.onnx``, ``onnx/model.onnx``), smallest first."""
        return [self.root / name for name in _FULL_FILES if (self.root / name).is_file()]

    def feature_settings(self) -> dict[str, Any]:
        """ClapFeatureExtractor settings: preprocessor_config.json, or transformers 5's processor_config.json."""
        path = self.root / "preprocessor_config.json"
        if path.is_file():
            return _read_json(path)
        data = _read_json(self.root / "processor_config.json")
        settings = data.get("feature_extractor")
        if not isinstance(settings, dict):
            raise ModelLoadError(f"{self.root / 'processor_config.json'}: no feature_extractor section")
        return settings

    def tokenizer_settings(self) -> tuple[str, int]:
        """The pad token and the longest prompt in tokens (``model_max_length``, else the text model's
        ``max_position_embeddings - 2``: RoBERTa's positions start after the padding index)."""
        path = self.root / "tokenizer_config.json"
        tok = _read_json(path) if path.is_file() else {}
        pad = tok.get("pad_token", "<pad>")
        pad = pad.get("content", "<pad>") if isinstance(pad, dict) else str(pad)
        limit = tok.get("model_max_length")
        if not isinstance(limit, int) or not 0 < limit < 100_000:  # transformers' "no limit" is 1e30
            config = _read_json(self.root / "config.json") if (self.root / "config.json").is_file() else {}
            positions = (config.get("text_config") or {}).get("max_position_embeddings", 514)
            limit = int(positions) - 2
        return pad, limit
