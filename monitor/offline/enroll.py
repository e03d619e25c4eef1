"""``sound-monitor enroll``: teach a label from the command line.

``enroll LABEL FILES...`` copies audio files (or the audio files in folders) into the label's taught folder
(``examples.folder``, :mod:`monitor.teaching`), ``--negative`` into its negatives folder, ``--negative
--every-label`` into the top-level negatives. Every file is checked first (exists, within ``examples.max_file_mb``
and ``examples.max_file_seconds``, decodes); one bad file refuses the whole command, so nothing is half taught.
Then the model is loaded once to embed the new files into the cache, so the next start of the monitor costs no
inference for them (``--no-warm`` skips that). A running monitor sees the files at its next start; to teach one
while it runs, use the ``add_example`` / ``add_negative`` commands over MQTT.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from monitor.config import Config, load_config
from monitor.labels import labels_from_config
from monitor.sources.audiofile import find_audio_files
from monitor.teaching import TeachError, check_audio_file, copy_in, examples_dir, negatives_dir, taught_folder

log = logging.getLogger(__name__)


def run(items: Sequence[str], negative: bool, every_label: bool, config_path: str | Path, model: str | None = None,
        warm: bool = True, out: TextIO | None = None) -> int:
    """The ``enroll`` command: 0 when the files were taught (and the cache warmed), 1 on bad input (one line)."""
    out = out or sys.stdout
    cfg = load_config(config_path)  # a ConfigError goes to the CLI, which lists every problem
    if model:
        cfg = cfg.model_copy(update={"model": model})
    labels = labels_from_config(cfg)
    root = taught_folder(cfg)
    try:
        if every_label:
            if not negative:
                raise TeachError("--every-label goes with --negative (examples belong to one label)")
            name, current, dest, files = "every label", labels.negatives, negatives_dir(root, None), list(items)
        else:
            if len(items) < 2:
                raise TeachError("give a label, then one or more audio files or folders")
            label = labels.find(items[0])
            if label is None:
                raise TeachError(f"unknown label '{items[0]}' (labels: {', '.join(labels.names())})")
            current = label.negatives if negative else label.examples
            dest = (negatives_dir if negative else examples_dir)(root, label.label_id)
            name, files = label.name, list(items[1:])
        paths = _check(files, cfg.examples.max_file_mb, cfg.examples.max_file_seconds)
        kind = "negative" if negative else "example"
        if len(current) + len(paths) > cfg.examples.max_files:
            raise TeachError(f"{name} has {len(current)} {kind}s; {len(paths)} more would pass examples.max_files "
                             f"({cfg.examples.max_files})")
        copied = [copy_in(p, dest) for p in paths]
    except TeachError as exc:
        log.error("%s", exc)
        return 1
    added = sum(new for _, new in copied)
    total = len(set(current) | {str(p.resolve()) for p, _ in copied})
    out.write(f"{name}: {added} {kind}(s) added to {dest}, {len(copied) - added} already there; "
              f"{total} {kind}(s) now\n")
    return _warm(cfg, out) if warm else 0


def _check(files: Sequence[str], max_mb: float, max_seconds: float) -> list[Path]:
    paths: list[Path] = []
    for f in map(Path, files):
        if f.is_dir():
            found = find_audio_files([f])
            if not found:
                raise TeachError(f"{f}: no audio files in this folder")
            paths += found
        else:
            paths.append(f)
    for p in paths:
        check_audio_file(p, int(max_mb * 1024 * 1024), max_seconds)
    return paths


def _warm(cfg: Config, out: TextIO) -> int:
    """Load the model as the monitor does and embed every example file not in the cache yet."""
    from monitor.inference.example_settings import ExampleSettings
    from monitor.inference.loading import load_scorer
    from monitor.inference.scorer import ModelLoadError

    settings = ExampleSettings.from_config(cfg)
    try:
        scorer = load_scorer(cfg.model, cfg.inference, labels_from_config(cfg).scored(), examples=settings)
    except ModelLoadError as exc:
        log.error("%s (the files were added; their embeddings will be computed at the next start)", exc)
        return 1
    bank = scorer.examples
    out.write(f"cache: {bank.embedded} file(s) embedded, {bank.cache.hits} already cached, in {bank.cache.dir}\n")
    if bank.cache.dir is not None and not bank.cache.writable:
        log.error("%s: the cache could not be written; the monitor will compute these at every start", bank.cache.dir)
        return 1
    return 0
