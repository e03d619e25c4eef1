"""Files of the teaching feature: where taught clips live, which files a label's examples are, clip names.

No model here (the audio tower runs on the inference thread, :mod:`monitor.inference.examples`); this module only
resolves, checks and copies files, on whichever thread asks (the main thread at start, the command dispatcher,
``enroll``).

Layout of the taught folder (``examples.folder``, default ``examples`` next to ``clips.folder``)::

    <folder>/<label_id>/*.flac               a label's taught examples
    <folder>/_negatives/<label_id>/*.flac    a label's taught negatives
    <folder>/_negatives/_all/*.flac          top-level negatives (never fire any label)

A label id never starts with ``_`` (``slugify`` strips it), so the ``_negatives`` folder cannot clash with one.
A label's examples are the files its config names (files, or folders searched recursively) plus its taught
folder; likewise its negatives. Every list is bounded by ``examples.max_files``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from monitor.config import Config
from monitor.inference.embedcache import file_digest
from monitor.labels import LabelError
from monitor.sources.audiofile import AUDIO_EXTENSIONS, AudioFileError, find_audio_files, read_audio

NEGATIVES_DIR = "_negatives"
ALL_LABELS_DIR = "_all"
CLIP_SUFFIXES = (".flac", ".wav")  # what the clips feature writes
MAX_NAME = 255
# <UTC stamp without colons>_<label_id>[-n].<ext>, as monitor/sinks/clips.py names clips
_CLIP_NAME = re.compile(r"^(?P<stamp>[0-9T.Z-]+)_(?P<label_id>[a-z0-9_]+?)(?:-\d+)?\.(?:flac|wav)$")


class TeachError(LabelError):
    """An example, negative or clip that cannot be taught; the message names the file or key and says why."""


def taught_folder(cfg: Config) -> Path:
    """The folder of taught clips (``examples.folder``, default ``examples`` next to ``clips.folder``)."""
    return Path(cfg.examples.folder) if cfg.examples.folder is not None else Path(cfg.clips.folder).parent / "examples"


def examples_dir(root: Path, label_id: str) -> Path:
    """Where a label's taught examples are kept."""
    return root / label_id


def negatives_dir(root: Path, label_id: str | None) -> Path:
    """Where a label's taught negatives are kept (``None``: the top-level negatives)."""
    return root / NEGATIVES_DIR / (label_id or ALL_LABELS_DIR)


def cache_folder(cfg: Config) -> Path:
    """The embedding cache: ``examples.cache_folder``, else systemd's ``$CACHE_DIRECTORY/embeddings``, else
    ``~/.cache/sound-monitor/embeddings``."""
    if cfg.examples.cache_folder is not None:
        return Path(cfg.examples.cache_folder)
    base = os.environ.get("CACHE_DIRECTORY")
    return (Path(base) if base else Path.home() / ".cache" / "sound-monitor") / "embeddings"


def resolve_files(paths: Sequence[Path | str], key: str, max_files: int, taught: Path | None = None) -> tuple[str, ...]:
    """Absolute paths of the audio files ``paths`` name (folders searched recursively), then those in ``taught``
    (if it exists), without duplicates. Raises :class:`TeachError` for a missing path or more than ``max_files``."""
    found: list[Path] = []
    for i, p in enumerate(map(Path, paths)):
        if not p.exists():
            raise TeachError(f"{key}[{i}]: {p}: no such file or folder")
        files = find_audio_files([p])
        if p.is_dir() and not files:
            raise TeachError(f"{key}[{i}]: {p}: no audio files in this folder")
        found += files
    if taught is not None and taught.is_dir():
        found += find_audio_files([taught])
    out: dict[str, None] = {}
    for f in found:
        out.setdefault(str(f.resolve()), None)
    if len(out) > max_files:
        raise TeachError(f"{key}: {len(out)} files, more than examples.max_files ({max_files})")
    return tuple(out)


def config_files(cfg: Config) -> tuple[list[tuple[tuple[str, ...], tuple[str, ...]]], tuple[str, ...]]:
    """Per configured label its (examples, negatives) files, and the top-level negatives: what the config names
    plus the taught folders. Raises ``ConfigError`` (one line naming the key) for a missing path, too many files,
    or a label with neither prompts nor examples."""
    from monitor.config import ConfigError

    root, limit = taught_folder(cfg), cfg.examples.max_files
    out = []
    try:
        for i, lbl in enumerate(cfg.labels):
            examples = resolve_files(lbl.examples, f"labels[{i}].examples", limit, examples_dir(root, lbl.slug))
            negatives = resolve_files(lbl.negatives, f"labels[{i}].negatives", limit, negatives_dir(root, lbl.slug))
            if lbl.prompts == [] and not examples:
                raise TeachError(f"labels[{i}]: '{lbl.name}' has no prompts and no examples")
            out.append((examples, negatives))
        return out, resolve_files(cfg.negatives, "negatives", limit, negatives_dir(root, None))
    except TeachError as exc:
        raise ConfigError("config", [str(exc)]) from None


def check_audio_file(path: Path, max_bytes: int, max_seconds: float) -> None:
    """Raise :class:`TeachError` unless ``path`` is a regular audio file within the bounds that decodes."""
    try:
        st = path.stat()
    except OSError:
        raise TeachError(f"{path}: no such file") from None
    if not path.is_file():
        raise TeachError(f"{path}: not a regular file")
    if st.st_size > max_bytes:
        mb = 1024 * 1024
        raise TeachError(f"{path}: {st.st_size / mb:.1f} MB, more than examples.max_file_mb ({max_bytes / mb:g})")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise TeachError(f"{path}: not a readable audio file ({str(exc)[:200]})") from None
    if info.duration > max_seconds:
        raise TeachError(f"{path}: {info.duration:.0f} s long, more than examples.max_file_seconds "
                         f"({max_seconds:g} s); cut out the part with the sound")
    try:
        read_audio(path)  # a damaged body can pass the header check
    except AudioFileError as exc:
        raise TeachError(str(exc)) from None


def clip_path(folder: Path, name: object) -> Path:
    """The clip called ``name`` in the clips ``folder``: a plain file name the clips feature could have written
    (no separators, no ``..``, not hidden, ``.flac``/``.wav``), an existing regular file, not a link out of it."""
    if not isinstance(name, str) or not name.strip():
        raise TeachError("'clip' (the file name from an event's 'clip' field) is required")
    shown = name if len(name) <= 80 else name[:79] + "…"
    if len(name) > MAX_NAME or any(c in name for c in "/\\\0") or name in (".", "..") or name.startswith("."):
        raise TeachError(f"clip '{shown}': must be a plain file name in the clips folder (no path)")
    if not name.lower().endswith(CLIP_SUFFIXES):
        raise TeachError(f"clip '{shown}': not a clip (.flac or .wav)")
    path = folder / name
    if path.is_symlink() or (path.exists() and path.resolve().parent != folder.resolve()):
        raise TeachError(f"clip '{shown}': must be a plain file name in the clips folder (no link)")
    if not path.is_file():
        raise TeachError(f"clip '{shown}': no such clip in {folder} (deleted by the size bound, or not yet written)")
    return path


def last_clip(folder: Path, label_id: str) -> str | None:
    """The newest clip of ``label_id`` in ``folder`` by its name's time stamp, if any."""
    best: tuple[str, str] | None = None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        m = _CLIP_NAME.match(entry.name)
        if m and m["label_id"] == label_id and entry.is_file(follow_symlinks=False):
            key = (m["stamp"], entry.name)
            best = key if best is None or key > best else best
    return best[1] if best else None


def count_audio(folder: Path) -> int:
    """Audio files in ``folder`` (not recursive); 0 if it does not exist."""
    try:
        return sum(1 for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in AUDIO_EXTENSIONS)
    except OSError:
        return 0


def copy_in(src: Path, dest_dir: Path) -> tuple[Path, bool]:
    """Copy ``src`` into ``dest_dir`` (kept when the clips folder rotates); (the copy, whether it is new).

    A file of the same content already there is reused; a different file of the same name gets ``-2``, ``-3`` ...
    The copy is written under a hidden name and renamed into place, so no reader sees half a file.
    """
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        digest = file_digest(src)
        stem, suffix = src.stem, src.suffix
        n = 1
        while True:
            dest = dest_dir / (src.name if n == 1 else f"{stem}-{n}{suffix}")
            if not dest.exists():
                break
            if dest.is_file() and file_digest(dest) == digest:
                return dest, False
            n += 1
        tmp = dest.with_name(f".{dest.name}.part")
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                fout.write(chunk)
        os.replace(tmp, dest)
    except OSError as exc:
        raise TeachError(f"{dest_dir}: cannot copy {src.name} there ({exc.strerror or exc})") from None
    return dest, True
