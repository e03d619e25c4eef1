"""Audio examples and negatives per label: their embeddings (computed once, cached) and the scoring rule.

**The rule.** For a window with unit audio embedding ``a`` and a label ``L``:

* ``E_L = exp(-beta * (1 - c_pos))`` where ``c_pos`` is the cosine of ``a`` to the *nearest* of ``L``'s examples
  (0 without examples). 1 means identical to an example; it halves every ``ln 2 / beta`` of cosine below 1
  (``beta`` = ``examples.sharpness``, 5.5: 0.5 at cosine 0.874).
* ``N_L = exp(-beta * (1 - c_neg))`` with ``c_neg`` the cosine to the nearest of ``L``'s negatives and the
  top-level negatives (0 without any).
* ``score_L = max(P_L, E_L) * (1 - N_L)`` where ``P_L`` is the zero-shot text score (the softmax over the labels
  that have prompts and the background labels, exactly as without examples), 0 for a label without prompts.

So every score stays in 0-1 and is compared with the same thresholds. A label with examples fires on a sound
like one of its examples whatever the text says; examples never take away a hit the prompts gave (teaching
"that was right" only adds); a window like a negative loses its score (identical: all of it). A label without
examples and negatives scores exactly as before, and with none anywhere the scorer does not even run this code.
Nearest example rather than the class mean (prototype): a label may hold several different sounds (front and back
door chimes), and one "that was right" must make *that* sound fire next time, not move a mean by a tenth.
Measurements behind these choices: docs/evaluation.md ("Teaching: the scoring rule").

**The embeddings** are computed on the inference thread (it owns the audio tower), in ``sync_labels``, only for
files never seen (or changed), batched, and kept in :class:`~monitor.inference.embedcache.EmbeddingCache`. A file
up to a window long is embedded as it is (the feature extractor repeats it, as for a live window or ``classify``);
a longer one is cut into windows as the live monitor cuts them and its loudest window is used (an event clip holds
the quiet room before the sound as pre-roll). Per window the cost is one product with the example matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch

from monitor.config import MODEL_SAMPLE_RATE
from monitor.core.resample import to_model_rate
from monitor.core.windowing import Windower
from monitor.inference.embedcache import EmbeddingCache, file_digest
from monitor.inference.example_settings import ExampleSettings
from monitor.labels import LabelPrompts
from monitor.sources.audiofile import AudioFileError, read_audio

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

EMBED_BATCH = 8  # example windows embedded together


class ExampleFileError(Exception):
    """An example or negative file that cannot be used; the message names it."""


def example_samples(path: Path, settings: ExampleSettings) -> np.ndarray:
    """The 48 kHz samples a file contributes: all of it up to a window, else its loudest window."""
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise ExampleFileError(f"{path}: {size / 1024 / 1024:.1f} MB, more than examples.max_file_mb")
    try:
        seconds = sf.info(str(path)).duration
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise ExampleFileError(f"{path}: not a readable audio file ({str(exc)[:200]})") from None
    if seconds > settings.max_file_seconds:
        raise ExampleFileError(f"{path}: {seconds:.0f} s, longer than examples.max_file_seconds")
    try:
        samples, rate = read_audio(path)
    except AudioFileError as exc:
        raise ExampleFileError(str(exc)) from None
    if not np.all(np.isfinite(samples)):
        raise ExampleFileError(f"{path}: contains samples that are not finite numbers")
    x = to_model_rate(samples, rate)
    windower = Windower(settings.window_seconds, settings.hop_seconds, MODEL_SAMPLE_RATE)
    if len(x) <= windower.window:
        return x
    best, best_energy = x[: windower.window], -1.0
    for _, _, win in windower.push(x):
        energy = float(np.mean(np.square(win, dtype=np.float64)))
        if energy > best_energy:
            best, best_energy = win.copy(), energy
    return best


@dataclass
class SupportLayout:
    """The example and negative vectors of a label set, laid out for scoring a batch in a few array operations.

    ``support`` holds each file's vector once; ``pos``/``neg`` give, per label (column), the rows of its examples /
    negatives, padded with ``len(support)`` (a row that matches nothing).
    """

    support: np.ndarray  # (files, dim)
    pos: np.ndarray  # (labels, max examples) int
    neg: np.ndarray  # (labels, max negatives) int

    @classmethod
    def build(cls, vectors: Sequence[np.ndarray], pos: Sequence[Sequence[int]], neg: Sequence[Sequence[int]],
              dim: int) -> SupportLayout:
        """From the vectors and, per label, the indexes of its examples and negatives in ``vectors``."""
        support = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)

        def pad(lists: Sequence[Sequence[int]]) -> np.ndarray:
            width = max([1, *map(len, lists)])
            out = np.full((len(lists), width), len(support), dtype=np.int64)
            for i, rows in enumerate(lists):
                out[i, : len(rows)] = rows
            return out

        return cls(support, pad(pos), pad(neg))

    def nearest(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosine to the nearest example and to the nearest negative, ``(batch, labels)`` each; -inf for none."""
        # The product runs in torch, on the thread pool the audio tower uses: numpy's OpenBLAS would start its own
        # threads, which spin after the call and took 6-8 % off the next forward on 2 cores (docs/BENCHMARKS.md).
        with torch.inference_mode():
            dots = (torch.from_numpy(np.ascontiguousarray(audio, np.float32)) @ torch.from_numpy(self.support).T)
        sims = np.concatenate([dots.numpy(), np.full((len(audio), 1), -np.inf, np.float32)], axis=1)
        return sims[:, self.pos].max(axis=2), sims[:, self.neg].max(axis=2)


def combine(text: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray, sharpness: float) -> np.ndarray:
    """The rule (module docstring): ``max(text, exp(-b(1-c_pos))) * (1 - exp(-b(1-c_neg)))``, all ``(batch, labels)``.

    ``text`` is 0 for labels without prompts; ``c_pos``/``c_neg`` are -inf where a label has no examples /
    negatives (the terms are then 0, so such a label keeps its text score exactly).
    """
    with np.errstate(over="ignore"):
        e = np.minimum(np.exp(-sharpness * (1.0 - c_pos)), 1.0)  # rounding can put a cosine a hair above 1
        n = np.minimum(np.exp(-sharpness * (1.0 - c_neg)), 1.0)
    return (np.maximum(text, e) * (1.0 - n)).astype(np.float32)


@dataclass
class _File:
    stat: tuple[int, int]  # size, mtime_ns: a change means the content must be hashed again
    digest: str = ""
    vector: np.ndarray | None = None
    error: str = ""


@dataclass
class ExampleBank:
    """Every example and negative file of the current labels, with its vector; owned by the inference thread."""

    settings: ExampleSettings
    cache: EmbeddingCache
    embedded: int = 0  # files run through the audio tower (a restart with a warm cache adds none)
    layout: SupportLayout | None = None  # None: no label has examples or negatives (the text-only path)
    _files: dict[str, _File] = field(default_factory=dict)

    def sync(self, labels: Sequence[LabelPrompts], embed: Callable[[np.ndarray], np.ndarray], dim: int,
             ) -> dict[str, str]:
        """Embed the files of ``labels`` not yet known (or changed), lay out the rest; name → reason for labels
        without prompts left with no usable example (the caller leaves them out). Unusable files are logged
        once and skipped."""
        wanted = list(dict.fromkeys(p for lbl in labels for p in (*lbl.examples, *lbl.negatives)))
        self._refresh(wanted, embed)
        failed = {}
        for lbl in labels:
            if not lbl.prompts and not any(self._vector(p) is not None for p in lbl.examples):
                why = "; ".join(self._files[p].error for p in lbl.examples if p in self._files)[:300]
                failed[lbl.name] = f"no usable example ({why or 'none given'})"
        keep = [lbl for lbl in labels if lbl.name not in failed]
        usable = [p for p in wanted if self._vector(p) is not None]
        if not usable:
            self.layout = None
            return failed
        row = {p: i for i, p in enumerate(usable)}
        self.layout = SupportLayout.build(
            [self._files[p].vector for p in usable],  # type: ignore[misc]
            [[row[p] for p in lbl.examples if p in row] for lbl in keep],
            [[row[p] for p in lbl.negatives if p in row] for lbl in keep], dim)
        return failed

    def _vector(self, path: str) -> np.ndarray | None:
        f = self._files.get(path)
        return f.vector if f is not None else None

    def _refresh(self, wanted: list[str], embed: Callable[[np.ndarray], np.ndarray]) -> None:
        for gone in set(self._files) - set(wanted):  # bounded by the label set
            del self._files[gone]
        todo: dict[int, list[tuple[str, np.ndarray]]] = {}  # by length: a batch is one stacked array
        for path in wanted:
            try:
                st = Path(path).stat()
            except OSError:
                self._fail(path, (-1, -1), f"{path}: no such file (removed?)")
                continue
            stat = (st.st_size, st.st_mtime_ns)
            known = self._files.get(path)
            if known is not None and known.stat == stat:
                continue
            try:
                digest = file_digest(Path(path)) if st.st_size <= self.settings.max_file_bytes else ""
                vec = self.cache.get(digest) if digest else None
                entry = _File(stat, digest, vec)
                self._files[path] = entry
                if vec is None:
                    x = example_samples(Path(path), self.settings)
                    todo.setdefault(len(x), []).append((path, x))
            except (OSError, ExampleFileError) as exc:
                self._fail(path, stat, str(exc) if isinstance(exc, ExampleFileError) else f"{path}: {exc}")
        for items in todo.values():
            for i in range(0, len(items), EMBED_BATCH):
                chunk = items[i : i + EMBED_BATCH]
                try:
                    vectors = np.asarray(embed(np.stack([x for _, x in chunk])), dtype=np.float32)
                except Exception as exc:  # noqa: BLE001 - the inference thread must survive any model failure
                    for path, _ in chunk:
                        self._fail(path, self._files[path].stat, f"{path}: the audio tower failed ({exc})")
                    continue
                self.embedded += len(chunk)
                for (path, _), vec in zip(chunk, vectors, strict=True):
                    entry = self._files[path]
                    entry.vector = vec
                    self.cache.put(entry.digest, vec)
        if todo:
            log.info("examples: embedded %d new file(s), %d from the cache", sum(map(len, todo.values())),
                     self.cache.hits)
            self.cache.enforce_bound()

    def _fail(self, path: str, stat: tuple[int, int], reason: str) -> None:
        known = self._files.get(path)
        if known is None or known.stat != stat or known.error != reason:
            log.warning("examples: skipped %s", reason)
        self._files[path] = _File(stat, error=reason)

    def score(self, audio: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Apply the rule to a batch: ``audio`` unit embeddings ``(batch, dim)``, ``text`` ``(batch, labels)``."""
        if self.layout is None:
            return text
        c_pos, c_neg = self.layout.nearest(audio)
        return combine(text, c_pos, c_neg, self.settings.sharpness)
