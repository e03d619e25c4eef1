"""A small ESC-50-shaped dataset for the evaluate tests: a distinct synthetic sound per class, written in the
three layouts ``evaluate`` reads (the ESC-50 release, a ``datasets`` save_to_disk folder, one folder per class)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from support.audio import chirp, mixture, noise, tone, write_wav

CLASSES = ["dog", "crying_baby", "chirping_birds", "door_wood_knock", "rain", "siren"]


def clicks(seconds: float, rate: int, every: float, amplitude: float = 0.8) -> np.ndarray:
    """Short decaying bursts every ``every`` seconds (knocks)."""
    out = np.zeros(round(seconds * rate), np.float32)
    burst = (amplitude * np.exp(-np.arange(int(0.02 * rate)) / (0.003 * rate))).astype(np.float32)
    for start in range(0, len(out) - len(burst), round(every * rate)):
        out[start : start + len(burst)] += burst
    return out


# Which synthetic sound each class gets. With random weights nothing "sounds like" its name; this pairing was
# picked so that the tiny model gets some clips right and some wrong, and ranks one class below the top 5, so
# that top-1 and top-5 accuracy are neither 0 nor 1 and their equality with the pipeline means something.
SOUND_OF = {"dog": "sweep_up", "crying_baby": "knocks", "chirping_birds": "high_tones",
            "door_wood_knock": "hum", "rain": "noise", "siren": "sweep_down"}


def sound(cls: str, take: int, rate: int, seconds: float = 5.0) -> np.ndarray:
    """A distinct synthetic sound per class; ``take`` varies it a little."""
    kind = SOUND_OF.get(cls, cls)
    if kind == "hum":
        return mixture(tone(seconds, rate, 300 + 40 * take, 0.4), noise(seconds, rate, 0.02, seed=take))
    if kind == "sweep_up":
        return chirp(seconds, rate, 500, 1500 + 200 * take, 0.3)
    if kind == "high_tones":
        return mixture(tone(seconds, rate, 3000 + 300 * take, 0.2), tone(seconds, rate, 4500, 0.1))
    if kind == "knocks":
        return clicks(seconds, rate, 0.5 + 0.2 * take)
    if kind == "noise":
        return noise(seconds, rate, 0.2 + 0.05 * take, seed=10 + take)
    if kind == "sweep_down":
        return chirp(seconds, rate, 2000, 600 + 100 * take, 0.5)
    raise ValueError(cls)


@dataclass
class Item:
    filename: str
    category: str
    target: int
    fold: int
    samples: np.ndarray
    rate: int


def items() -> list[Item]:
    out = []
    for target, cls in enumerate(CLASSES):
        for take in range(2):
            rate = 44_100 if (target + take) % 2 == 0 else 48_000
            out.append(Item(f"{take + 1}-{100 + target}-A-{target}.wav", cls, target, take + 1,
                            sound(cls, take, rate), rate))
    return out


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_esc50(root: Path, data: list[Item], broken: bool = True) -> Path:
    """The ESC-50 release layout; with ``broken``, one extra row points at a file that is not audio."""
    (root / "meta").mkdir(parents=True)
    rows = [(it.filename, it.fold, it.target, it.category) for it in data]
    for it in data:
        write_wav(root / "audio" / it.filename, it.samples, it.rate)
    if broken:
        (root / "audio" / "2-999-A-0.wav").write_bytes(b"RIFF....not a wav file")
        rows.append(("2-999-A-0.wav", 2, 0, "dog"))
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for filename, fold, target, category in rows:
            w.writerow([filename, fold, target, category, "False", filename.split("-")[1], "A"])
    return root


def write_hf(root: Path, data: list[Item]) -> Path:
    """A ``save_to_disk`` folder like a saved ``ashraq/esc50`` split (audio as encoded bytes, not decoded)."""
    from datasets import Audio, Dataset, DatasetDict, Features, Value

    # Built as a plain struct and cast to Audio: encoding through Audio would need torchcodec.
    features = Features({
        "filename": Value("string"), "fold": Value("int64"), "target": Value("int64"), "category": Value("string"),
        "audio": {"bytes": Value("binary"), "path": Value("string")},
    })
    table = Dataset.from_dict({
        "filename": [it.filename for it in data],
        "fold": [it.fold for it in data],
        "target": [it.target for it in data],
        "category": [it.category for it in data],
        "audio": [{"bytes": wav_bytes(it.samples, it.rate), "path": it.filename} for it in data],
    }, features=features).cast_column("audio", Audio())
    DatasetDict({"train": table}).save_to_disk(str(root))
    return root


def write_folders(root: Path, data: list[Item]) -> Path:
    for it in data:
        write_wav(root / it.category / it.filename, it.samples, it.rate)
    return root
