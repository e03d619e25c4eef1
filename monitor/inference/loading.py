"""The one way a scorer is built: live (run, replay), classify and evaluate all call :func:`load_scorer`,
so the model, backend, thread count, precision and feature front end are the same wherever a score is printed.

Each backend is imported only when chosen: with ``inference.backend: onnx`` torch is never imported."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config import InferenceConfig
from monitor.inference.errors import ModelLoadError
from monitor.inference.runtime import default_cache_dir
from monitor.inference.worker import Scorer
from monitor.labels import LabelPrompts

if TYPE_CHECKING:
    from monitor.inference.example_settings import ExampleSettings
    from monitor.inference.text import TextEncoder

log = logging.getLogger(__name__)


def load_scorer(model: str, inference: InferenceConfig, labels: Sequence[LabelPrompts],
                text: TextEncoder | None = None, examples: ExampleSettings | None = None) -> Scorer:
    """Load ``model`` as ``inference`` says, encode ``labels`` (torch: and embed their example files, cached as
    ``examples`` says) and free the text tower.

    ``text`` (torch) is the encoder and embedding cache the scorer shares with the command dispatcher, which
    encodes labels added at run time; by default the scorer has its own. The onnx backend encodes new labels
    itself (its text model is small to load and its embeddings are cached on disk).

    Raises :class:`monitor.inference.errors.ModelLoadError` when the checkpoint cannot be loaded, the backend is
    not installed, the precision is not available on this CPU, or a feature is asked of a backend without it.
    """
    if inference.backend == "onnx":
        taught = sorted(lbl.name for lbl in labels if lbl.examples or lbl.negatives)
        if taught:
            raise ModelLoadError(f"labels with examples or negatives ({', '.join(taught[:3])}) need "
                                 "inference.backend: torch for now; the onnx backend scores text labels only")
        try:
            from monitor.inference.onnx_scorer import OnnxScorer
        except ImportError as exc:
            raise ModelLoadError(f"inference.backend: onnx needs onnxruntime and tokenizers ({exc.name} is missing): "
                                 "pip install 'sound-monitor[onnx]', or bash scripts/install.sh --onnx") from None
        cache = Path(inference.cache_dir).expanduser() if inference.cache_dir else default_cache_dir()
        scorer = OnnxScorer(model, threads=inference.threads, precision=inference.precision,
                            providers=inference.providers, cache_dir=cache)
        scorer.set_labels(labels)
        return scorer
    try:
        from monitor.inference.scorer import ClapScorer, bf16_supported
    except ImportError as exc:
        raise ModelLoadError(f"inference.backend: torch needs torch and transformers ({exc.name} is missing): "
                             "bash scripts/install.sh (the full set-up), or set inference.backend: onnx") from None
    precision = inference.precision
    if precision == "auto":  # bf16 where the CPU has it natively (2x faster there), else the fp32 reference
        precision = "bf16" if bf16_supported() else "fp32"
        log.info("inference.precision auto: %s", precision)
    scorer = ClapScorer(model, threads=inference.threads, precision=precision, text=text, examples=examples)
    scorer.set_labels(labels)
    scorer.free_text_tower()
    return scorer
