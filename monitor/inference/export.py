"""``sound-monitor export MODEL OUT [--int8]``: a transformers CLAP checkpoint as an ONNX model folder.

Writes the layout of :mod:`monitor.inference.onnx_folder` (transformers.js's, as ``Xenova/clap-htsat-unfused``):
the audio tower with its projection as ``onnx/audio_model.onnx`` (``input_features`` → ``audio_embeds``), the
text tower with its projection as ``onnx/text_model.onnx`` (``input_ids``, ``attention_mask`` →
``text_embeds``), with ``--int8`` dynamically quantized ``onnx/audio_model_quantized.onnx`` (used by
``precision: int8``) and ``onnx/text_model_quantized.onnx`` (used only when ``text_model.onnx`` is left out, to
halve the memory of encoding labels on a very small box), and
``config.json``, ``preprocessor_config.json`` and the tokenizer files. CLAP's logit scale goes into the audio
models' metadata. Each tower is checked against torch on the spot.

This is the one command that needs torch, transformers and onnx (``pip install 'sound-monitor[torch,export]'``);
the folder it writes runs with the lean install (``inference.backend: onnx``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from monitor.inference.errors import ModelLoadError

__all__ = ["ExportError", "export_model", "run"]

log = logging.getLogger(__name__)

OPSET = 17
MAX_DIFFERENCE = 1e-4  # largest accepted difference of unit-norm embeddings, ONNX vs torch (typically ~1e-6)


class ExportError(Exception):
    """The export cannot be done; the message says why."""


def _require() -> tuple[Any, Any]:
    try:
        import onnx
        import torch
    except ImportError as exc:
        raise ExportError(f"export needs torch, transformers and onnx ({exc.name} is missing): "
                          "pip install 'sound-monitor[torch,export]'") from None
    return torch, onnx


def _towers(model: Any, torch: Any) -> tuple[Any, Any]:
    """``ClapAudioModelWithProjection``/``ClapTextModelWithProjection`` outputs as two modules of a ClapModel."""

    class Audio(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower, self.projection = model.audio_model, model.audio_projection

        def forward(self, input_features: Any) -> Any:
            return self.projection(self.tower(input_features=input_features).pooler_output)

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower, self.projection = model.text_model, model.text_projection

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.projection(self.tower(input_ids=input_ids, attention_mask=attention_mask).pooler_output)

    # eval() on the wrappers themselves: export restores each module's mode afterwards, and a fresh Module is in
    # training mode (dropout on).
    return Audio().eval(), Text().eval()


def _set_metadata(onnx: Any, path: Path, values: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _check(out: Path, audio: Any, text: Any, processor: Any, torch: Any, precision: str) -> tuple[float, float]:
    """Largest difference of unit-norm embeddings, ONNX (fed by the numpy features and the `tokenizers`
    tokenizer, as the monitor runs it) vs torch (fed by transformers' extractor and tokenizer)."""
    from monitor.inference.onnx_scorer import OnnxScorer
    from monitor.inference.onnx_text import normalize

    rng = np.random.default_rng(0)
    t = np.arange(240_000) / 48_000
    windows = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(t.size)]).astype(np.float32)
    prompts = ["This is a sound of a dog barking.", "This is a sound of glass breaking in the kitchen."]
    scorer = OnnxScorer(str(out), threads=None, precision=precision, cache_dir=None)
    feats = processor.feature_extractor(list(windows), sampling_rate=48_000, return_tensors="pt")["input_features"]
    tokens = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref_audio = normalize(audio(feats).numpy())
        ref_text = normalize(text(tokens["input_ids"], tokens["attention_mask"]).numpy())
    return (float(np.abs(scorer.audio_embeddings(windows) - ref_audio).max()),
            float(np.abs(scorer.encode_prompts(prompts) - ref_text).max()))


def export_model(model: str, out: str | Path, int8: bool = False) -> dict[str, float]:
    """Export ``model`` (hub id or folder of a transformers CLAP checkpoint) into the folder ``out``.

    Returns the largest embedding differences to torch (``audio``, ``text``, and ``audio_int8`` with ``int8``).
    Raises :class:`ExportError` with a one-line reason.
    """
    torch, onnx = _require()
    from transformers import ClapModel, ClapProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    try:
        processor = ClapProcessor.from_pretrained(model)
        clap = ClapModel.from_pretrained(model).eval()
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the reason is passed on
        hint = "" if Path(model).exists() else " (no such folder; a hub id needs network access or the HF cache)"
        raise ExportError(f"model '{model}': cannot load CLAP checkpoint{hint}: {exc}") from None
    if processor.feature_extractor.truncation == "fusion":
        raise ExportError(f"model '{model}': fused CLAP checkpoints are not supported (truncation 'fusion')")
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    audio, text = _towers(clap, torch)
    rate = processor.feature_extractor.sampling_rate
    feats = processor.feature_extractor([np.zeros(rate * 5, np.float32)] * 2, sampling_rate=rate,
                                        return_tensors="pt")["input_features"]
    tokens = processor.tokenizer(["a dog", "glass breaking nearby"], padding=True, return_tensors="pt")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about every traced shape expression
        torch.onnx.export(audio, (feats,), str(out / "onnx/audio_model.onnx"), input_names=["input_features"],
                          output_names=["audio_embeds"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_features": {0: "batch_size"}, "audio_embeds": {0: "batch_size"}})
        torch.onnx.export(text, (tokens["input_ids"], tokens["attention_mask"]), str(out / "onnx/text_model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "attention_mask": {0: "batch_size", 1: "sequence_length"},
                                        "text_embeds": {0: "batch_size"}})
    meta = {"logit_scale": repr(float(clap.logit_scale_a.exp())), "exported_from": str(model)}
    _set_metadata(onnx, out / "onnx/audio_model.onnx", meta)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Dynamic quantization: weights of MatMul/Gemm stored as int8, activations quantized per run.
        logging.disable(logging.WARNING)  # the quantizer logs every tensor it skips on the root logger
        try:
            for tower in ("audio_model", "text_model"):
                quantize_dynamic(out / f"onnx/{tower}.onnx", out / f"onnx/{tower}_quantized.onnx",
                                 weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        _set_metadata(onnx, out / "onnx/audio_model_quantized.onnx", {**meta, "quantization": "dynamic int8"})
    clap.config.to_json_file(str(out / "config.json"))
    processor.feature_extractor.to_json_file(str(out / "preprocessor_config.json"))
    processor.tokenizer.save_pretrained(str(out))
    if not (out / "tokenizer.json").is_file():
        raise ExportError(f"model '{model}': its tokenizer has no fast (tokenizer.json) form")
    try:
        diffs = dict(zip(("audio", "text"), _check(out, audio, text, processor, torch, "fp32"), strict=True))
        if int8:
            diffs["audio_int8"] = _check(out, audio, text, processor, torch, "int8")[0]
    except ModelLoadError as exc:
        raise ExportError(f"the exported folder does not load: {exc}") from None
    if max(diffs["audio"], diffs["text"]) > MAX_DIFFERENCE:
        raise ExportError(f"the exported towers differ from torch by {max(diffs.values()):.2g} (> {MAX_DIFFERENCE})")
    return diffs


def run(model: str, out: str | Path, int8: bool = False) -> int:
    """The ``export`` command: 0 when the folder is written and checked, 1 otherwise (the reason on stderr)."""
    try:
        diffs = export_model(model, out, int8)
    except (ExportError, OSError) as exc:
        log.error("%s", exc)
        return 1
    for path in sorted(Path(out).rglob("*")):
        if path.is_file():
            print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    checks = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
    print(f"largest difference of unit-norm embeddings to torch: {checks}")
    return 0
