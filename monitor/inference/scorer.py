"""The CLAP scorer: loads a checkpoint, encodes label prompts once, scores windows of audio.

Scores are computed exactly as ``transformers.pipeline("zero-shot-audio-classification")`` does
(softmax over ``logit_scale_a.exp() * cos(audio, text)``), but the text tower runs only when the label
set changes, not per window. Once the prompts are encoded the text tower is freed: it is four times the
size of the audio tower and would otherwise sit in memory for weeks doing nothing.
"""

from __future__ import annotations

import gc
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from monitor.inference.errors import ModelLoadError
from monitor.inference.runtime import default_threads
from monitor.labels import LabelPrompts

__all__ = ["ClapScorer", "LabelPrompts", "ModelLoadError", "bf16_supported", "default_threads"]

log = logging.getLogger(__name__)


def _release_checkpoint_pages() -> int:
    """Drop this process's resident pages of memory-mapped ``.safetensors`` files; returns bytes advised.

    from_pretrained maps the checkpoint, and the mapping stays while any tensor from it lives, so pages of
    the freed text tower would stay resident for weeks. The caller first copies every tensor it keeps into
    ordinary memory; pages of anything still pointing into the file are simply read again if touched
    (the mapping is never written). Linux only; elsewhere a no-op.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for line in maps:
        parts = line.split()
        if len(parts) >= 6 and parts[5].endswith(".safetensors"):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if libc.madvise(lo, hi - lo, 4) == 0:  # MADV_DONTNEED
                released += hi - lo
    return released


def bf16_supported() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch
        return False


def _mean_direction(rows: torch.Tensor) -> torch.Tensor:
    # Prompt ensembling as in CLIP/CLAP: average the unit vectors, renormalise. One prompt stays as it is,
    # so single-prompt labels score exactly like the pipeline.
    return rows[0] if len(rows) == 1 else torch.nn.functional.normalize(rows.mean(0), dim=-1)


class ClapScorer:
    """Zero-shot scores of 48 kHz windows against a set of labels."""

    def __init__(
        self, model: str, threads: int | None = None, fast_features: bool = True, precision: str = "fp32"
    ) -> None:
        from transformers import ClapModel, ClapProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # progress bars are noise in the journal

        self.model_id = model
        torch.set_num_threads(threads or default_threads())
        t0 = time.monotonic()
        try:
            self.processor = ClapProcessor.from_pretrained(model)
            self.model = ClapModel.from_pretrained(model).eval()
        except Exception as exc:
            hint = "" if Path(model).exists() else " (no such folder; a hub id needs network access or the HF cache)"
            raise ModelLoadError(f"model '{model}': cannot load CLAP checkpoint{hint}: {exc}") from exc
        self.feature_extractor = self.processor.feature_extractor
        self.tokenizer = self.processor.tokenizer
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self._fast = None
        if fast_features:
            try:
                from monitor.inference.features import TorchClapFeatures

                self._fast = TorchClapFeatures(self.feature_extractor)
            except ImportError:
                self._fast = None
        self.logit_scale = self.model.logit_scale_a.detach().exp()
        self.precision = precision
        self._autocast = False
        self._set_precision(precision)
        self.labels: list[str] = []
        self._text: torch.Tensor | None = None
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}  # prompts → label embedding
        log.info("loaded %s in %.1f s", model, time.monotonic() - t0)

    def _set_precision(self, precision: str) -> None:
        if precision == "fp32":
            return
        if precision == "bf16":
            if not bf16_supported():
                raise ModelLoadError(
                    "inference.precision: bf16 needs a CPU with AVX512-BF16 or AMX, which this one lacks "
                    "(bf16 would be emulated and slower than fp32); use fp32 or int8"
                )
            self._autocast = True
            return
        if precision == "int8":
            engines = torch.backends.quantized.supported_engines
            if not any(e in engines for e in ("x86", "fbgemm", "qnnpack")):
                raise ModelLoadError(f"inference.precision: int8 needs a quantized engine; this torch has {engines}")
            # Dynamic quantization: Linear weights stored as int8, activations quantized on the fly. The
            # audio tower's convolutions stay fp32 (they are a small part of its cost).
            with warnings.catch_warnings():  # torch.ao.quantization warns it will move to torchao
                warnings.simplefilter("ignore", DeprecationWarning)
                for name in ("audio_model", "audio_projection"):
                    module = getattr(self.model, name)
                    setattr(self.model, name, torch.ao.quantization.quantize_dynamic(
                        module, {torch.nn.Linear}, dtype=torch.qint8
                    ))
            return
        raise ModelLoadError(f"inference.precision: unknown precision {precision!r}")

    # --- text side -----------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings, one row per prompt (runs the text tower)."""
        text_model = getattr(self.model, "text_model", None)
        if text_model is None:
            return self._encode_with_reloaded_text_tower(prompts)
        inputs = self.tokenizer(list(prompts), padding=True, return_tensors="pt")
        return self.model.get_text_features(**inputs).pooler_output

    def _encode_with_reloaded_text_tower(self, prompts: Sequence[str]) -> torch.Tensor:
        # The text tower was freed after start-up; a new label at run time loads it for one encoding.
        from transformers import ClapTextModelWithProjection

        text = ClapTextModelWithProjection.from_pretrained(self.model_id).eval()
        try:
            inputs = self.tokenizer(list(prompts), padding=True, return_tensors="pt")
            with torch.inference_mode():
                return torch.nn.functional.normalize(text(**inputs).text_embeds, dim=-1)
        finally:
            del text
            gc.collect()

    def sync_labels(self, labels: Sequence[LabelPrompts]) -> dict[str, str]:
        """Score exactly ``labels`` (in order) from now on; returns name → reason for labels left out.

        Only labels whose prompts were never encoded run the text tower, all of them in one batch (one reload
        of a freed text tower however many labels a burst of commands added). If that encoding fails, the
        new labels are left out and named in the result; the others keep scoring.
        """
        missing = [lbl for lbl in labels if lbl.prompts not in self._cache]
        failed: dict[str, str] = {}
        if missing:
            try:
                emb = self.encode_prompts([p for lbl in missing for p in lbl.prompts])
            except Exception as exc:  # noqa: BLE001 - any failure of the text side is reported per label
                log.error("cannot encode the prompts of %s: %s", ", ".join(lbl.name for lbl in missing), exc)
                failed = {lbl.name: f"cannot encode the prompts: {exc}" for lbl in missing}
            else:
                i = 0
                for lbl in missing:
                    self._cache[lbl.prompts] = _mean_direction(emb[i : i + len(lbl.prompts)])
                    i += len(lbl.prompts)
        keep = [lbl for lbl in labels if lbl.name not in failed]
        if keep:
            self._text = torch.stack([self._cache[lbl.prompts] for lbl in keep])
        self.labels = [lbl.name for lbl in keep]
        wanted = {lbl.prompts for lbl in keep}
        for key in [k for k in self._cache if k not in wanted]:  # bounded by the label set
            del self._cache[key]
        return failed

    def set_labels(self, labels: Sequence[LabelPrompts]) -> None:
        """Encode every label's prompts; a label's embedding is the normalised mean of its prompts'."""
        if not labels:
            raise ValueError("at least one label is needed")
        failed = self.sync_labels(labels)
        if failed:
            raise ModelLoadError(f"model '{self.model_id}': {next(iter(failed.values()))}")

    def label_embeddings(self) -> dict[str, torch.Tensor]:
        """Current label → text embedding."""
        assert self._text is not None
        return {name: self._text[i] for i, name in enumerate(self.labels)}

    def free_text_tower(self) -> None:
        """Drop the text tower once prompts are encoded (saves ~500 MB on the real checkpoint)."""
        for name in ("text_model", "text_projection"):
            if getattr(self.model, name, None) is not None:
                setattr(self.model, name, None)
        # Move what is kept out of the memory-mapped checkpoint, then let the kernel drop its pages.
        with torch.no_grad():
            for tensor in [*self.model.parameters(), *self.model.buffers()]:
                tensor.data = tensor.data.clone()
        gc.collect()
        released = _release_checkpoint_pages()
        log.debug("released %.0f MB of checkpoint mapping", released / 1e6)

    # --- audio side ----------------------------------------------------------------------------
    def features(self, windows: np.ndarray) -> dict[str, torch.Tensor]:
        """Model inputs for a batch of windows (batch, samples) at 48 kHz."""
        if self._fast is not None and self._fast.supports(windows.shape[-1]):
            return self._fast(windows)
        return self.feature_extractor(
            list(windows), sampling_rate=self.sampling_rate, return_tensors="pt"
        )

    @torch.inference_mode()
    def audio_embeddings(self, windows: np.ndarray) -> torch.Tensor:
        """Unit-norm audio embeddings, one row per window."""
        inputs = self.features(np.asarray(windows, dtype=np.float32).reshape(len(windows), -1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast):
            out = self.model.get_audio_features(
                input_features=inputs["input_features"], is_longer=inputs.get("is_longer")
            ).pooler_output
        return torch.nn.functional.normalize(out.float(), dim=-1)

    @torch.inference_mode()
    def score(self, windows: np.ndarray) -> np.ndarray:
        """Softmax scores (batch, n_labels) over the current labels."""
        if self._text is None:
            raise RuntimeError("set_labels() first")
        audio = self.audio_embeddings(windows)
        logits = audio @ self._text.T * self.logit_scale
        return logits.softmax(dim=-1).float().numpy()
