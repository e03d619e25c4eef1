"""The text side of CLAP: label prompts → unit-norm embeddings, kept in a cache the scorer reads.

The scorer frees the text tower after start-up (it is four times the size of the audio tower). A label added
at run time is encoded here, on the command dispatcher's thread, not on the inference thread: the tower is
loaded from disk once for a whole burst of commands, every new prompt is encoded in one batch, the tower is
freed again, and the finished vectors go into :class:`PromptEmbeddings`. The inference thread's
``sync_labels`` then only installs vectors, so live windows keep being scored while a burst is encoded.

Every prompt is tokenized with truncation at the model's limit (512 tokens for CLAP), so no prompt, however
long or exotic (one emoji is several tokens), can make the text tower index past its position table.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from monitor.labels import LabelPrompts

log = logging.getLogger(__name__)

PromptKey = tuple[str, ...]
_QUIET = threading.Lock()  # the verbosity is process-wide: one quiet load at a time, so each restores the real one


def mean_direction(rows: torch.Tensor) -> torch.Tensor:
    """A label's embedding from its prompts' rows: prompt ensembling as in CLIP/CLAP (average the unit vectors,
    renormalise). One prompt stays as it is, so single-prompt labels score exactly like the pipeline."""
    return rows[0] if len(rows) == 1 else torch.nn.functional.normalize(rows.mean(0), dim=-1)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' and huggingface_hub's warnings while loading: reloading only the text tower from
    the full checkpoint prints a ~45-line "LOAD REPORT" of the audio weights it leaves out, every time."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # for good, as the scorer does: progress bars are noise in the journal
    hub = logging.getLogger("huggingface_hub")
    with _QUIET:
        verbosity, hub_level = hf_logging.get_verbosity(), hub.level
        hf_logging.set_verbosity_error()
        hub.setLevel(logging.ERROR)
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            hub.setLevel(hub_level)


class PromptEmbeddings:
    """Thread-safe cache: a label's formatted prompts → its embedding.

    The dispatcher puts vectors in, the inference thread reads them and prunes what no label uses. Entries a
    burst is about to commit are pinned, so a prune by a sync of an older version cannot take them away.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vectors: dict[PromptKey, torch.Tensor] = {}
        self._pinned: Counter[PromptKey] = Counter()

    def __len__(self) -> int:
        with self._lock:
            return len(self._vectors)

    def get(self, prompts: PromptKey) -> torch.Tensor | None:
        """The embedding of a label with these prompts, if encoded."""
        with self._lock:
            return self._vectors.get(prompts)

    def put(self, prompts: PromptKey, vector: torch.Tensor) -> None:
        """Keep the embedding of a label with these prompts."""
        with self._lock:
            self._vectors[prompts] = vector

    def missing(self, labels: Iterable[LabelPrompts]) -> list[LabelPrompts]:
        """The labels whose prompts were never encoded (each prompt set once; a label without prompts, scored by
        its examples alone, has none)."""
        with self._lock:
            out: dict[PromptKey, LabelPrompts] = {}
            for lbl in labels:
                if lbl.prompts and lbl.prompts not in self._vectors:
                    out.setdefault(lbl.prompts, lbl)
            return list(out.values())

    @contextlib.contextmanager
    def pinned(self, keys: Iterable[PromptKey]) -> Iterator[None]:
        """Keep ``keys`` through every :meth:`prune` while the block runs."""
        keys = list(keys)
        with self._lock:
            self._pinned.update(keys)
        try:
            yield
        finally:
            with self._lock:
                self._pinned.subtract(keys)
                self._pinned = +self._pinned  # drop zero counts

    def prune(self, keep: set[PromptKey]) -> None:
        """Forget every entry not in ``keep`` and not pinned (the cache stays bounded by the label set)."""
        with self._lock:
            for key in [k for k in self._vectors if k not in keep and k not in self._pinned]:
                del self._vectors[key]


class TextEncoder:
    """Encodes label prompts into :attr:`cache`, with the scorer's full model while it has its text tower,
    else by loading the text tower from disk (counted in :attr:`loads`) for one batch."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.cache = PromptEmbeddings()
        self.loads = 0  # text tower loads from disk: one per burst of new labels, observable for tests
        self.tokenizer: Any = None
        self.max_tokens = 512
        self._lock = threading.Lock()  # one encoding at a time: the tokenizer is not safe across threads

    def attach(self, tokenizer: Any, text_config: Any) -> None:
        """Use the scorer's tokenizer, and truncate at what the text tower's position table holds (RoBERTa
        positions start after the padding index: 514 - 2 = 512 for CLAP)."""
        self.tokenizer = tokenizer
        limit = int(text_config.max_position_embeddings) - int(getattr(text_config, "pad_token_id", 1) or 0) - 1
        self.max_tokens = max(1, min(limit, int(getattr(tokenizer, "model_max_length", limit))))

    def _tokenize(self, prompts: Sequence[str]) -> Any:
        if self.tokenizer is None:  # not attached to a scorer: load it (small, kept)
            from transformers import AutoTokenizer

            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_id)
        return self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_tokens,
                              return_tensors="pt")

    @torch.inference_mode()
    def encode(self, prompts: Sequence[str], model: Any = None) -> torch.Tensor:
        """Unit-norm embeddings, one row per prompt: with ``model`` (a ``ClapModel`` that still has its text
        tower), else with the text tower loaded from disk for this one batch and freed after."""
        with self._lock:
            if model is not None:
                return model.get_text_features(**self._tokenize(prompts)).pooler_output
            return self._encode_with_loaded_tower(prompts)

    def _encode_with_loaded_tower(self, prompts: Sequence[str]) -> torch.Tensor:
        # The scorer freed its text tower after start-up: load it from disk for this one batch (lock held).
        from transformers import ClapTextModelWithProjection

        with quiet_transformers():
            tower = ClapTextModelWithProjection.from_pretrained(self.model_id).eval()
        self.loads += 1
        try:
            return torch.nn.functional.normalize(tower(**self._tokenize(prompts)).text_embeds, dim=-1)
        finally:
            del tower
            gc.collect()

    def encode_labels(self, labels: Sequence[LabelPrompts], model: Any = None) -> dict[str, str]:
        """Encode the labels not in the cache, all in one batch, into the cache; name → reason for failures."""
        missing = self.cache.missing(labels)
        if not missing:
            return {}
        try:
            rows = self.encode([p for lbl in missing for p in lbl.prompts], model)
        except Exception as exc:  # noqa: BLE001 - any failure of the text side is reported per label
            reason = f"cannot encode the prompts: {str(exc)[:200]}"
            log.error("cannot encode the prompts of %d label(s) (%s): %s", len(missing),
                      ", ".join(lbl.name for lbl in missing[:5]), reason)
            return {lbl.name: reason for lbl in labels if lbl.prompts in {m.prompts for m in missing}}
        i = 0
        for lbl in missing:
            self.cache.put(lbl.prompts, mean_direction(rows[i : i + len(lbl.prompts)]))
            i += len(lbl.prompts)
        return {}
