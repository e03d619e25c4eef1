"""Offline batch scoring: the one loop that scores 48 kHz arrays in batches, for ``classify`` and ``evaluate``.

``classify`` passes the windows of one file, ``evaluate`` a group of clips of equal length; either way the
arrays of one call must all be the same length, since a batch is one stacked ``(batch, samples)`` array.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported only when a model is loaded
    from monitor.inference.scorer import ClapScorer

BATCH_SIZE = 8  # arrays scored together by default: faster per array than one by one, memory stays small


def score_batches(scorer: ClapScorer, arrays: Iterable[np.ndarray], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Scores ``(arrays, labels)`` of equal-length 48 kHz arrays, ``batch_size`` at a time, in input order.

    ``arrays`` is consumed lazily (a generator of windows is never held whole in memory). Raises
    :class:`ValueError` for a batch size below 1 or arrays of different lengths.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    it = iter(arrays)
    rows: list[np.ndarray] = []
    length: int | None = None
    while batch := list(islice(it, batch_size)):
        lengths = {len(x) for x in batch} | ({length} if length is not None else set())
        if len(lengths) != 1:
            raise ValueError(f"arrays of one call must have equal lengths (got {sorted(lengths)})")
        length = lengths.pop()
        rows.append(scorer.score(np.stack(batch)))
    if not rows:
        return np.zeros((0, len(scorer.labels)), dtype=np.float32)
    return np.concatenate(rows)


def score_and_embed(scorer: Any, arrays: Sequence[np.ndarray], batch_size: int = BATCH_SIZE,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(arrays, labels)`` and unit audio embeddings ``(arrays, dim)`` of equal-length 48 kHz arrays.

    The scores are exactly :func:`score_batches`' (the same batches through the same
    ``score_embeddings(audio_embeddings(batch))``); ``evaluate --shots`` reuses the embeddings.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    scores, embeddings = [], []
    for i in range(0, len(arrays), batch_size):
        audio = scorer.audio_embeddings(np.stack(arrays[i : i + batch_size]))
        scores.append(scorer.score_embeddings(audio))
        # torch tensors (torch backend) or numpy arrays (onnx backend)
        embeddings.append(np.asarray(audio, dtype=np.float32) if isinstance(audio, np.ndarray) else
                          audio.float().numpy())
    if not scores:
        return np.zeros((0, len(scorer.labels)), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(scores), np.concatenate(embeddings)
