"""Prompt encoding without torch: the `tokenizers` library and the ONNX text model.

`tokenizers` (the Rust library behind transformers' fast tokenizers) reads the folder's ``tokenizer.json``, so
prompts get exactly the ids ``ClapProcessor`` gives them (byte-level BPE, ``<s> ... </s>``, ``<pad>``
padding with an attention mask), without transformers. The text session lives only while prompts are encoded:
it is several times the size of the audio model and is needed at start-up (when the cache lacks a prompt) and
for runtime ``add_label`` commands.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from monitor.inference.errors import ModelLoadError
from monitor.inference.onnx_folder import TEXT_INPUTS, TEXT_OUTPUT, ModelFolder
from monitor.inference.onnx_session import check_io, open_session

if TYPE_CHECKING:  # imported when a tokenizer is first needed (a restart with cached labels needs none)
    from tokenizers import Tokenizer

__all__ = ["encode_prompts", "load_tokenizer", "normalize", "tokenize"]

log = logging.getLogger(__name__)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as ``torch.nn.functional.normalize``: norms floored at 1e-12)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def load_tokenizer(folder: ModelFolder) -> Tokenizer:
    """The folder's tokenizer, padding to the longest prompt and truncating to the model's limit."""
    from tokenizers import Tokenizer

    path = folder.root / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception for a bad file
        raise ModelLoadError(f"{path}: cannot read the tokenizer: {exc}") from exc
    pad, limit = folder.tokenizer_settings()
    pad_id = tok.token_to_id(pad)
    if pad_id is None:
        raise ModelLoadError(f"{path}: the pad token {pad!r} is not in the vocabulary")
    tok.enable_padding(pad_id=pad_id, pad_token=pad)
    # The pipeline does not truncate (a prompt over the limit breaks it); here an over-long prompt is cut to the
    # model's positions instead of failing. Prompts within the limit get identical ids either way.
    tok.enable_truncation(max_length=limit)
    return tok


def tokenize(tokenizer: Tokenizer, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` (and zero ``token_type_ids``) int64 arrays for a batch of prompts."""
    encodings = tokenizer.encode_batch(list(prompts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def encode_prompts(folder: ModelFolder, prompts: Sequence[str], threads: int | None,
                   providers: Sequence[str] = ()) -> np.ndarray:
    """Unit-norm text embeddings ``(len(prompts), dim)``: loads the tokenizer and the text model, runs them once,
    and releases the session before returning."""
    path: Path = folder.text_file()
    if not path.is_file():
        raise ModelLoadError(f"model folder '{folder.root}': missing onnx/text_model.onnx, needed to encode "
                             f"prompts that are not in the embedding cache")
    t0 = time.monotonic()
    tokenizer = load_tokenizer(folder)
    session = open_session(path, threads, providers)
    try:
        check_io(session, path, TEXT_INPUTS, TEXT_OUTPUT)
        wanted = [i.name for i in session.get_inputs()]
        feeds = {k: v for k, v in tokenize(tokenizer, prompts).items() if k in wanted}
        (embeds,) = session.run([TEXT_OUTPUT], feeds)
    finally:
        del session
        gc.collect()  # the session's weights go back now, not at some later collection
    log.info("encoded %d prompt(s) with %s in %.2f s", len(prompts), path.name, time.monotonic() - t0)
    return normalize(embeds)
