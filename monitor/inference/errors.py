"""Errors of model loading, importable without torch or onnxruntime (the CLI catches them on every backend)."""

from __future__ import annotations

__all__ = ["ModelLoadError"]


class ModelLoadError(RuntimeError):
    """The checkpoint cannot be loaded; the message names the model id or folder and what is wrong."""
