"""The one way a scorer is built: live (run, replay), classify and evaluate all call :func:`load_scorer`,
so the model, thread count, precision and feature front end are the same wherever a score is printed."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import InferenceConfig
from monitor.inference.examples import ExampleSettings
from monitor.inference.scorer import ClapScorer, LabelPrompts


def load_scorer(model: str, inference: InferenceConfig, labels: Sequence[LabelPrompts],
                examples: ExampleSettings | None = None) -> ClapScorer:
    """Load ``model`` as ``inference`` says, encode ``labels`` (and embed their example files, cached as
    ``examples`` says) and free the text tower.

    Raises :class:`monitor.inference.scorer.ModelLoadError` when the checkpoint cannot be loaded or the
    precision is not available on this CPU.
    """
    scorer = ClapScorer(model, threads=inference.threads, precision=inference.precision, examples=examples)
    scorer.set_labels(labels)
    scorer.free_text_tower()
    return scorer
