"""ONNX model folders for the onnx-backend tests, exported at test time from the tiny random checkpoint by the real
export code, and a way to run the CLI while recording whether torch or transformers got imported."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

from monitor.inference.export import export_model
from support.procs import REPO, monitor_env

__all__ = ["HEAVY", "export_folder", "heavy_imports", "recorder_command", "run_cli_recording_imports",
           "strip_metadata", "xenova_like"]

HEAVY = ("torch", "transformers")
# Runs `sound-monitor ARGS` and, at exit (after everything else), prints which of HEAVY were imported.
_RECORDER = f"""
import atexit, json, sys
atexit.register(lambda: print("HEAVY_IMPORTS " + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)),
                              file=sys.stderr, flush=True))
from monitor.cli import main
sys.exit(main(sys.argv[1:]))
"""


def recorder_command(args: list[str]) -> list[str]:
    """The command line running ``sound-monitor ARGS`` under the import recorder (see :func:`heavy_imports`)."""
    return [sys.executable, "-c", _RECORDER, *args]


def export_folder(checkpoint: Path, out: Path, int8: bool = True) -> Path:
    """``sound-monitor export`` of ``checkpoint`` into ``out`` (in process); returns ``out``."""
    export_model(str(checkpoint), out, int8=int8)
    return out


def strip_metadata(path: Path) -> None:
    """Remove the logit-scale metadata our export writes (public exports have none)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))


def xenova_like(checkpoint: Path, work: Path, logit_scale: float, embeds: bool = True,
                quantized: bool = False) -> tuple[Path, Path]:
    """A checkpoint like ``checkpoint`` but with CLAP's logit scale set to ``logit_scale``, and its ONNX folder laid
    out as the public Xenova export: towers without our metadata, plus ``onnx/model.onnx`` (the whole ClapModel:
    ``input_ids``, ``attention_mask``, ``input_features`` -> ``logits_per_audio``, and with ``embeds`` also
    ``logits_per_text``, ``text_embeds``, ``audio_embeds``) and with ``quantized`` its int8 version
    ``onnx/model_quantized.onnx``. Returns (checkpoint folder, ONNX folder)."""
    import torch
    from transformers import ClapModel, ClapProcessor

    ckpt = work / "checkpoint"
    model = ClapModel.from_pretrained(str(checkpoint)).eval()
    processor = ClapProcessor.from_pretrained(str(checkpoint))
    with torch.no_grad():
        model.logit_scale_a.fill_(math.log(logit_scale))
    model.save_pretrained(ckpt)
    processor.save_pretrained(ckpt)
    folder = export_folder(ckpt, work / "onnx-folder", int8=True)
    for name in ("audio_model.onnx", "audio_model_quantized.onnx"):
        strip_metadata(folder / "onnx" / name)

    class Full(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clap = model

        def forward(self, input_ids, attention_mask, input_features):
            out = self.clap(input_ids=input_ids, attention_mask=attention_mask, input_features=input_features)
            if not embeds:
                return out.logits_per_audio
            return out.logits_per_audio, out.logits_per_text, out.text_embeds, out.audio_embeds

    tokens = processor.tokenizer(["a dog", "rain on the roof"], padding=True, return_tensors="pt")
    feats = torch.zeros(1, 1, 1001, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about every traced shape expression
        _export_full(torch, Full().eval(), tokens, feats, folder / "onnx" / "model.onnx", embeds)
    if quantized:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(folder / "onnx" / "model.onnx", folder / "onnx" / "model_quantized.onnx",
                         weight_type=QuantType.QInt8)
    return ckpt, folder


def _export_full(torch, module, tokens, feats, path: Path, embeds: bool) -> None:
    outputs = ["logits_per_audio", "logits_per_text", "text_embeds", "audio_embeds"] if embeds else ["logits_per_audio"]
    axes = {"input_ids": {0: "text", 1: "seq"}, "attention_mask": {0: "text", 1: "seq"}, "input_features": {0: "b"},
            "logits_per_audio": {0: "b", 1: "text"}, "logits_per_text": {0: "text", 1: "b"}, "text_embeds": {0: "text"},
            "audio_embeds": {0: "b"}}
    inputs = ["input_ids", "attention_mask", "input_features"]
    torch.onnx.export(module, (tokens["input_ids"], tokens["attention_mask"], feats), str(path), opset_version=17,
                      dynamo=False, input_names=inputs, output_names=outputs,
                      dynamic_axes={k: v for k, v in axes.items() if k in inputs + outputs})


def run_cli_recording_imports(args: list[str], timeout: float = 120, **kwargs) -> tuple[subprocess.CompletedProcess,
                                                                                      list[str]]:
    """Run ``sound-monitor ARGS`` in a subprocess; returns the process and which of :data:`HEAVY` it imported."""
    proc = subprocess.run(recorder_command(args), capture_output=True, text=True, timeout=timeout,
                          env=monitor_env(), cwd=kwargs.pop("cwd", REPO), **kwargs)
    return proc, heavy_imports(proc.stderr)


def heavy_imports(stderr: str) -> list[str]:
    """The modules the import recorder reported (it prints one ``HEAVY_IMPORTS [...]`` line at exit)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("HEAVY_IMPORTS ")]
    assert lines, f"the import recorder did not report:\n{stderr[-2000:]}"
    return json.loads(lines[-1].split(" ", 1)[1])
