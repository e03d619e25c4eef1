"""The CLAP scorer on ONNX Runtime: no torch, no transformers, scores equal to the zero-shot pipeline's.

Per window: numpy log-mel features (:mod:`monitor.inference.mel`), the ONNX audio model, then the same scores
as ``pipeline("zero-shot-audio-classification")``: a softmax over ``logit_scale * cos(audio, text)``. Label
prompts are encoded by the ONNX text model only when the on-disk cache (:mod:`monitor.inference.text_cache`)
lacks them, and its session is released right after. The interface is the worker's ``Scorer`` protocol
(``labels``, ``score``, ``sync_labels``) plus what ``ClapScorer`` offers to tests and benchmarks
(``audio_embeddings``, ``encode_prompts``, ``free_text_tower``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from monitor.inference.errors import ModelLoadError
from monitor.inference.mel import NumpyClapFeatures
from monitor.inference.onnx_folder import (
    AUDIO_INPUT,
    AUDIO_OUTPUT,
    FULL_OUTPUT,
    LOGIT_SCALE_KEY,
    TEXT_INPUTS,
    TEXT_OUTPUT,
    ModelFolder,
)
from monitor.inference.onnx_session import ARENA, check_io, open_session
from monitor.inference.onnx_text import encode_prompts, load_tokenizer, normalize, tokenize
from monitor.inference.runtime import release_freed_memory
from monitor.inference.text_cache import EmbeddingCache, file_fingerprint
from monitor.labels import LabelPrompts

__all__ = ["OnnxScorer"]

log = logging.getLogger(__name__)

# What the logit scale is fitted on when it has to be derived from onnx/model.onnx.
_SCALE_PROMPTS = ("This is a sound of a dog barking.", "This is a sound of rain.", "This is a sound of music.")


def _mean_direction(rows: np.ndarray) -> np.ndarray:
    # Prompt ensembling as in ClapScorer: one prompt stays as it is, several are averaged and renormalised.
    return rows[0] if len(rows) == 1 else normalize(rows.mean(axis=0))


class OnnxScorer:
    """Zero-shot scores of 48 kHz windows against a set of labels, on ONNX Runtime."""

    def __init__(self, model: str, threads: int | None = None, precision: str = "fp32",
                 providers: Sequence[str] = (), cache_dir: Path | None = None, arena: bool = ARENA) -> None:
        """Open the folder ``model`` (see :mod:`monitor.inference.onnx_folder`). ``precision``: fp32 or int8
        (the quantized audio model; ``auto`` means fp32 here). ``cache_dir``: where prompt embeddings are kept
        (None: memory only). Raises :class:`ModelLoadError` with a one-line reason."""
        precision = "fp32" if precision == "auto" else precision
        if precision not in ("fp32", "int8"):
            raise ModelLoadError(f"inference.precision: {precision} is not available on the onnx backend "
                                 "(fp32 or int8; bf16 is a torch-backend setting)")
        t0 = time.monotonic()
        self.model_id = model
        self.precision = precision
        self.threads = threads
        self.providers = tuple(providers)
        self.folder = ModelFolder.open(model, precision)
        try:
            self.features = NumpyClapFeatures(self.folder.feature_settings())
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"model folder '{model}': {exc}") from exc
        self.sampling_rate = self.features.sampling_rate
        self._audio_path = self.folder.audio_file(precision)
        self._arena = arena
        self.session = self._open_audio()
        self.cache = EmbeddingCache(cache_dir, self.folder.root, self.folder.text_file())
        self.text_model_runs = 0  # how often the text model was loaded and run (tests, logs)
        self.logit_scale = np.float32(self._logit_scale())
        self.labels: list[str] = []
        self._text: np.ndarray | None = None
        self._label_cache: dict[tuple[str, ...], np.ndarray] = {}  # prompts → label embedding
        release_freed_memory()  # what loading left behind (the model file's bytes, graph rewrites)
        log.info("loaded %s (%s, onnxruntime %s) in %.1f s", self._audio_path, precision,
                 ",".join(self.session.get_providers()), time.monotonic() - t0)

    def _open_audio(self) -> ort.InferenceSession:
        session = open_session(self._audio_path, self.threads, self.providers, self._arena)
        check_io(session, self._audio_path, (AUDIO_INPUT,), AUDIO_OUTPUT)
        return session

    # --- logit scale -----------------------------------------------------------------------------
    def _logit_scale(self) -> float:
        meta = self.session.get_modelmeta().custom_metadata_map
        if LOGIT_SCALE_KEY in meta:
            return float(meta[LOGIT_SCALE_KEY])
        fulls = self.folder.full_files()
        cached = self.cache.meta.get("logit_scale")
        if isinstance(cached, dict):
            source = self.folder.root / str(cached.get("file"))
            if not source.is_file() or cached.get("source") == file_fingerprint(source):
                return float(cached["value"])
        if not fulls:
            raise ModelLoadError(
                f"model folder '{self.model_id}': the audio model has no '{LOGIT_SCALE_KEY}' metadata and "
                "onnx/model_quantized.onnx or onnx/model.onnx is missing to derive CLAP's logit scale from (needed "
                "once); write the folder with 'sound-monitor export', or add one of them from the same export")
        for full in fulls:
            value = self._derive_logit_scale(full, last=full == fulls[-1])
            if value is not None:
                break
        assert value is not None
        self.cache.meta["logit_scale"] = {"value": value, "file": str(full.relative_to(self.folder.root)),
                                          "source": file_fingerprint(full)}
        self.cache.save()
        return value

    def _derive_logit_scale(self, full: Path, last: bool) -> float | None:
        """``logits_per_audio / cos(audio, text)`` of the whole model, fitted over a few pairs (runs once).

        The cosines come from the model's own ``audio_embeds``/``text_embeds`` outputs when it has them; otherwise
        from this folder's towers, which only an fp32 whole model matches (None is returned for another one
        unless it is the ``last`` candidate).
        """
        log.info("deriving CLAP's logit scale from %s (once; the value is cached)", full)
        tokenizer = load_tokenizer(self.folder)
        t = np.arange(self.sampling_rate * 2) / self.sampling_rate
        sounds = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.random.default_rng(0).standard_normal(len(t))])
        feats = self.features(sounds.astype(np.float32))
        session = open_session(full, self.threads, self.providers)
        try:
            check_io(session, full, (*TEXT_INPUTS, AUDIO_INPUT), FULL_OUTPUT)
            own = {AUDIO_OUTPUT, TEXT_OUTPUT} <= {o.name for o in session.get_outputs()}
            if not own and not last:
                return None
            feeds = {**tokenize(tokenizer, _SCALE_PROMPTS), AUDIO_INPUT: feats}
            outputs = [FULL_OUTPUT, AUDIO_OUTPUT, TEXT_OUTPUT] if own else [FULL_OUTPUT]
            results = session.run(outputs, {i.name: feeds[i.name] for i in session.get_inputs()})
        finally:
            del session
            gc.collect()
        logits = results[0]
        if own:
            cos = normalize(results[1]) @ normalize(results[2]).T
        else:
            cos = self._embed_audio(feats) @ self.encode_prompts(_SCALE_PROMPTS).T
        scale = float((logits * cos).sum() / (cos * cos).sum())
        if not np.allclose(logits, scale * cos, rtol=1e-3, atol=1e-3 * abs(scale)):
            raise ModelLoadError(f"{full}: its logits do not match onnx/audio_model.onnx and onnx/text_model.onnx "
                                 "(files from different exports?)")
        return scale

    # --- text side -------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit-norm text embeddings, one row per prompt (runs the text model; the cache is not consulted)."""
        self.text_model_runs += 1
        return encode_prompts(self.folder, prompts, self.threads, self.providers)

    def sync_labels(self, labels: Sequence[LabelPrompts]) -> dict[str, str]:
        """Score exactly ``labels`` (in order) from now on; returns name → reason for labels left out.

        Prompts found in the embedding cache are not encoded again; the others (of every new label at once)
        are encoded in one run of the text model, stored in the cache, and the text session released.
        """
        new = [lbl for lbl in labels if lbl.prompts not in self._label_cache]
        todo = list(dict.fromkeys(p for lbl in new for p in lbl.prompts if self.cache.get(p) is None))
        failed: dict[str, str] = {}
        reason = "cannot encode the prompts"
        if todo:
            # The audio session is let go while the text model (several times its size) runs, so that the peak is
            # the larger of the two, not their sum; reloading it costs well under a second.
            self.session = None  # type: ignore[assignment]
            release_freed_memory()
            try:
                self.cache.put(dict(zip(todo, self.encode_prompts(todo), strict=True)))
            except Exception as exc:  # noqa: BLE001 - any failure of the text side is reported per label
                log.error("cannot encode the prompts of %s: %s", ", ".join(lbl.name for lbl in new), exc)
                reason = f"cannot encode the prompts: {exc}"
            finally:
                release_freed_memory()
                self.session = self._open_audio()
        elif new:
            log.info("%d label(s) from the embedding cache; no text model run", len(new))
        for lbl in new:
            rows = [self.cache.get(p) for p in lbl.prompts]
            if any(r is None for r in rows):
                failed[lbl.name] = reason
            else:
                self._label_cache[lbl.prompts] = _mean_direction(np.stack(rows))  # type: ignore[arg-type]
        keep = [lbl for lbl in labels if lbl.name not in failed]
        if keep:
            self._text = np.stack([self._label_cache[lbl.prompts] for lbl in keep])
        self.labels = [lbl.name for lbl in keep]
        wanted = {lbl.prompts for lbl in keep}
        for key in [k for k in self._label_cache if k not in wanted]:  # bounded by the label set
            del self._label_cache[key]
        return failed

    def set_labels(self, labels: Sequence[LabelPrompts]) -> None:
        """Encode every label's prompts (from the cache where possible); :class:`ModelLoadError` if any fails."""
        if not labels:
            raise ValueError("at least one label is needed")
        failed = self.sync_labels(labels)
        if failed:
            raise ModelLoadError(f"model '{self.model_id}': {next(iter(failed.values()))}")

    def label_embeddings(self) -> dict[str, np.ndarray]:
        """Current label → text embedding."""
        assert self._text is not None
        return {name: self._text[i] for i, name in enumerate(self.labels)}

    def free_text_tower(self) -> None:
        """Nothing to do: the text session is released after every use (kept for ClapScorer's interface)."""

    # --- audio side ------------------------------------------------------------------------------
    def _embed_audio(self, features: np.ndarray) -> np.ndarray:
        (embeds,) = self.session.run([AUDIO_OUTPUT], {AUDIO_INPUT: features})
        return normalize(embeds)

    def audio_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """Unit-norm audio embeddings, one row per window ``(batch, samples)`` at 48 kHz."""
        x = np.asarray(windows, dtype=np.float32)
        return self._embed_audio(self.features(x.reshape(len(x), -1)))

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Softmax scores ``(batch, n_labels)`` over the current labels."""
        return self.score_embeddings(self.audio_embeddings(windows))

    def score_embeddings(self, audio: np.ndarray) -> np.ndarray:
        """:meth:`score` from unit audio embeddings ``(batch, dim)`` (``evaluate`` keeps the embeddings)."""
        if self._text is None:
            raise RuntimeError("set_labels() first")
        logits = (audio @ self._text.T) * self.logit_scale
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
