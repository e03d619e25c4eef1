"""The one way a scorer is built: live (run, replay), classify and evaluate all call :func:`load_scorer`,
so the model, thread count, precision and feature front end are the same wherever a score is printed."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import InferenceConfig
from monitor.inference.examples import ExampleSettings
from monitor.inference.scorer import ClapScorer, LabelPrompts, TextEncoder


def load_scorer(model: str, inference: InferenceConfig, labels: Sequence[LabelPrompts],
                text: TextEncoder | None = None, examples: ExampleSettings | None = None) -> ClapScorer:
    """Load ``model`` as ``inference`` says, encode ``labels`` (and embed their example files, cached as
    ``examples`` says) and free the text tower.

    ``text`` is the encoder (and embedding cache) the scorer shares with the command dispatcher, which encodes
    labels added at run time; by default the scorer has its own.

    Raises :class:`monitor.inference.scorer.ModelLoadError` when the checkpoint cannot be loaded or the
    precision is not available on this CPU.
    """
    scorer = ClapScorer(model, threads=inference.threads, precision=inference.precision, text=text,
                        examples=examples)
    scorer.set_labels(labels)
    scorer.free_text_tower()
    return scorer
