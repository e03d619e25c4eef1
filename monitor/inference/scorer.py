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
from typing import TYPE_CHECKING

import numpy as np
import torch

from monitor.inference.embedcache import EmbeddingCache, model_key
from monitor.inference.errors import ModelLoadError
from monitor.inference.examples import ExampleBank, ExampleSettings
from monitor.inference.runtime import default_threads
from monitor.inference.text import TextEncoder
from monitor.labels import LabelPrompts

__all__ = ["ClapScorer", "LabelPrompts", "ModelLoadError", "TextEncoder", "bf16_supported", "default_threads"]

if TYPE_CHECKING:
    from transformers import ClapModel

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




class ClapScorer:
    """Zero-shot scores of 48 kHz windows against a set of labels."""

    def __init__(
        self, model: str, threads: int | None = None, fast_features: bool = True, precision: str = "fp32",
        text: TextEncoder | None = None, examples: ExampleSettings | None = None,
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
        # Prompts → label embedding, shared with the command dispatcher, which encodes new labels into it.
        self.text = text if text is not None else TextEncoder(model)
        self.text.attach(self.tokenizer, self.model.config.text_config)
        self._text_cols: list[int] = []  # columns of self.labels that have prompts (all, unless examples-only labels)
        ex = examples or ExampleSettings()
        key = model_key(model, [getattr(self.model.config, "_commit_hash", None), self.model.config.to_json_string(),
                                precision, self._fast is not None, ex.window_seconds, ex.hop_seconds])
        self.examples = ExampleBank(ex, EmbeddingCache(ex.cache_folder, key, ex.max_cache_bytes))
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
    def _text_model(self) -> ClapModel | None:
        """The full model while it still has its text tower (start-up), else None (the encoder loads it)."""
        return self.model if getattr(self.model, "text_model", None) is not None else None

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings, one row per prompt (runs the text tower)."""
        return self.text.encode(prompts, self._text_model())

    def sync_labels(self, labels: Sequence[LabelPrompts]) -> dict[str, str]:
        """Score exactly ``labels`` (in order) from now on; returns name → reason for labels left out.

        At run time the command dispatcher has already encoded new labels into the shared cache
        (:mod:`monitor.inference.text`), so this only installs vectors. Labels still missing (start-up, or a
        change that did not come through the dispatcher) are encoded here, all in one batch. If that fails, the
        new labels are left out and named in the result; the others keep scoring. Example and negative files
        never embedded (or changed) run the audio tower once each (:mod:`monitor.inference.examples`); a label
        without prompts and without a usable example is left out too.
        """
        failed = self.text.encode_labels([lbl for lbl in labels if lbl.prompts], self._text_model())
        dim = int(self.model.config.projection_dim)
        failed |= self.examples.sync([lbl for lbl in labels if lbl.name not in failed],
                                     lambda x: self.audio_embeddings(x).numpy(), dim)
        keep = [lbl for lbl in labels if lbl.name not in failed]
        texted = [lbl for lbl in keep if lbl.prompts]  # a label with prompts: [] is not in the text softmax
        vectors = [self.text.cache.get(lbl.prompts) for lbl in texted]
        if any(v is None for v in vectors):  # pruned by nobody but this thread, so never; say so if it happens
            raise RuntimeError("label embeddings vanished from the cache")
        if texted:
            self._text = torch.stack([v for v in vectors if v is not None])
        self._text_cols = [i for i, lbl in enumerate(keep) if lbl.prompts]
        self.labels = [lbl.name for lbl in keep]
        self.text.cache.prune({lbl.prompts for lbl in texted})  # bounded by the label set
        return failed

    def set_labels(self, labels: Sequence[LabelPrompts]) -> None:
        """Encode every label's prompts; a label's embedding is the normalised mean of its prompts'."""
        if not labels:
            raise ValueError("at least one label is needed")
        failed = self.sync_labels(labels)
        if failed:
            name, why = next(iter(failed.items()))
            raise ModelLoadError(f"model '{self.model_id}', label '{name}': {why}")

    def label_embeddings(self) -> dict[str, torch.Tensor]:
        """Current label → text embedding (labels scored by their examples alone have none)."""
        assert self._text is not None
        return {self.labels[col]: self._text[i] for i, col in enumerate(self._text_cols)}

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
        """Scores (batch, n_labels) over the current labels: the zero-shot softmax, with examples and negatives
        applied where labels have them."""
        if not self.labels:
            raise RuntimeError("set_labels() first")
        return self.score_embeddings(self.audio_embeddings(windows))

    @torch.inference_mode()
    def score_embeddings(self, audio: torch.Tensor) -> np.ndarray:
        """:meth:`score` from unit audio embeddings (batch, dim): what ``evaluate`` uses to keep the embeddings."""
        text = None
        if self._text is not None:
            logits = audio @ self._text.T * self.logit_scale
            text = logits.softmax(dim=-1).float().numpy()
        if self.examples.layout is None and text is not None and len(self._text_cols) == len(self.labels):
            return text  # no examples anywhere: exactly the zero-shot pipeline's scores
        full = np.zeros((len(audio), len(self.labels)), np.float32)
        if text is not None:
            full[:, self._text_cols] = text
        return self.examples.score(audio.float().numpy(), full)
