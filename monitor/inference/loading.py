"""The one way a scorer is built: live (run, replay), classify and evaluate all call :func:`load_scorer`,
so the model, backend, thread count, precision and feature front end are the same wherever a score is printed.

Each backend is imported only when chosen: with ``inference.backend: onnx`` torch is never imported."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from monitor.config import InferenceConfig
from monitor.inference.errors import ModelLoadError
from monitor.inference.runtime import default_cache_dir
from monitor.inference.worker import Scorer
from monitor.labels import LabelPrompts

log = logging.getLogger(__name__)


def load_scorer(model: str, inference: InferenceConfig, labels: Sequence[LabelPrompts]) -> Scorer:
    """Load ``model`` as ``inference`` says, encode ``labels`` and free the text tower.

    Raises :class:`monitor.inference.errors.ModelLoadError` when the checkpoint cannot be loaded, the backend is
    not installed or the precision is not available on this CPU.
    """
    if inference.backend == "onnx":
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
                             "pip install 'sound-monitor[torch]', or set inference.backend: onnx") from None
    precision = inference.precision
    if precision == "auto":  # bf16 where the CPU has it natively (2x faster there), else the fp32 reference
        precision = "bf16" if bf16_supported() else "fp32"
        log.info("inference.precision auto: %s", precision)
    scorer = ClapScorer(model, threads=inference.threads, precision=precision)
    scorer.set_labels(labels)
    scorer.free_text_tower()
    return scorer
