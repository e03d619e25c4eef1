"""Benchmark: what examples cost per window, and the measurements behind the teaching rule.

    .venv/bin/python benchmarks/bench_examples.py [--model M] [--out DIR] [--repeat N] [--rules-only]

1. **Cost** (the full-size random CLAP unless ``--model``): one window scored with 10 text labels (+ 4 background)
   against the same labels with 10 examples each (and then also 10 top-level negatives), timed interleaved
   (A, B, A, B, ...) so drift hits both; plus the example arithmetic alone (its share of a window).
2. **Rule** (the tiny random CLAP and the full-size one): on five synthetic classes (tests/support/fewshot.py,
   10 takes each), mean accuracy over 100 random draws of K examples per class for the ways a label's example
   score could be computed (nearest example, class mean, mean kernel), for how it could combine with the text
   score (max, mean; random weights make text scores noise, so this measures the harm noise does), and what one
   negative does to the sound it was taken from and to the label's own sound.

Results go to DIR/bench_examples.json and a table on stdout (docs/BENCHMARKS.md, docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.fewshot import CLASSES, sound

from monitor.config import InferenceConfig
from monitor.inference.examples import ExampleSettings, SupportLayout, combine
from monitor.inference.loading import load_scorer
from monitor.labels import LabelPrompts
from monitor.testing.randommodel import build_random_clap

LABELS = ["glass breaking", "dog barking", "a smoke alarm beeping", "a baby crying", "someone knocking on the door",
          "a doorbell ringing", "water running from a tap", "a car horn honking", "footsteps on a wooden floor",
          "a person coughing"]
BACKGROUND = ["silence", "speech", "music", "ambient noise"]
TEMPLATE = "This is a sound of {}."


def measure_cost(model: str, threads: int, repeat: int, tmp: Path) -> dict[str, Any]:
    """Per-window time, text-only vs 10 labels x 10 examples (vs + 10 top-level negatives), interleaved."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(110):  # 100 examples, 10 negatives: distinct synthetic sounds
        x = sound(CLASSES[i % 5], i, 5.0) + 0.02 * rng.standard_normal(5 * 48000).astype(np.float32)
        path = tmp / f"ex-{i}.wav"
        sf.write(str(path), x, 48000, subtype="FLOAT")
        files.append(str(path))
    text = [LabelPrompts(n, (TEMPLATE.format(n),)) for n in LABELS + BACKGROUND]
    taught = [LabelPrompts(n, (TEMPLATE.format(n),), tuple(files[10 * i : 10 * i + 10])) for i, n in enumerate(LABELS)]
    negs = tuple(files[100:])
    guarded = [LabelPrompts(t.name, t.prompts, t.examples, negs) for t in taught]
    # One scorer, so that every variant runs the very same weights: only the example layout is swapped between
    # calls (None = the text-only path). Three models side by side measured 7 % apart on text alone.
    scorer = load_scorer(model, InferenceConfig(threads=threads), taught + text[len(LABELS):],
                         examples=ExampleSettings(cache_folder=tmp / "cache"))
    layouts = {"examples": scorer.examples.layout}
    scorer.sync_labels(guarded + text[len(LABELS):])
    layouts["examples+negatives"] = scorer.examples.layout
    layouts = {"text": None, **layouts}
    window = np.stack([sound("noise", 99, 5.0)])
    times: dict[str, list[float]] = {k: [] for k in layouts}
    for _ in range(3):
        scorer.score(window)
    order = list(layouts.items())
    for r in range(repeat):
        for name, layout in order[r % 3 :] + order[: r % 3]:  # each variant takes each position in turn
            scorer.examples.layout = layout
            t0 = time.perf_counter()
            scorer.score(window)
            times[name].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    bank = scorer.examples
    audio = scorer.audio_embeddings(window).numpy()
    probs = np.full((1, len(LABELS) + len(BACKGROUND)), 0.1, np.float32)
    t = []
    for _ in range(1000):  # the example arithmetic alone, 10 labels x 10 examples + 10 negatives
        t0 = time.perf_counter()
        bank.score(audio, probs)
        t.append(time.perf_counter() - t0)
    return {"window_ms": ms, "ratio_examples": ms["examples"] / ms["text"],
            "ratio_examples_negatives": ms["examples+negatives"] / ms["text"],
            "example_math_us": statistics.median(t) * 1e6, "repeat": repeat}


def embed_classes(model: str, takes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit embeddings of ``takes`` clips per class, their class, and the zero-shot scores against the names."""
    labels = [LabelPrompts(c, (TEMPLATE.format(c.replace("_", " ")),)) for c in CLASSES]
    scorer = load_scorer(model, InferenceConfig(threads=2), labels)
    x = np.stack([sound(c, k) for c in CLASSES for k in range(takes)])
    emb = torch.cat([scorer.audio_embeddings(x[i : i + 8]) for i in range(0, len(x), 8)])
    return emb.numpy(), np.repeat(np.arange(len(CLASSES)), takes), scorer.score_embeddings(emb)


def measure_rules(emb: np.ndarray, y: np.ndarray, text: np.ndarray, draws: int = 100) -> dict[str, Any]:
    """Accuracies of the candidate rules, and the effect of one negative (see the module docstring)."""
    n, beta = len(CLASSES), ExampleSettings().sharpness
    out: dict[str, Any] = {}
    for shots in (1, 3, 5):
        acc: dict[str, list[float]] = {}
        rng = np.random.default_rng(shots)
        for _ in range(draws):
            sup = np.concatenate([rng.choice(np.where(y == c)[0], shots, replace=False) for c in range(n)])
            q = np.setdiff1d(np.arange(len(y)), sup)
            sims = emb[q] @ emb[sup].T
            nearest = np.stack([sims[:, y[sup] == c].max(1) for c in range(n)], 1)
            proto = np.stack([emb[sup][y[sup] == c].mean(0) for c in range(n)])
            proto /= np.linalg.norm(proto, axis=1, keepdims=True)
            kernel = np.stack([np.exp(-beta * (1 - sims[:, y[sup] == c])).mean(1) for c in range(n)], 1)
            e = np.exp(-beta * (1 - nearest))
            for name, scores in (("text alone", text[q]), ("nearest example", nearest),
                                 ("class mean (prototype)", emb[q] @ proto.T), ("mean kernel", kernel),
                                 ("max(text, E) (chosen)", np.maximum(text[q], e)),
                                 ("mean(text, E)", (text[q] + e) / 2)):
                acc.setdefault(name, []).append(float(np.mean(scores.argmax(1) == y[q])))
        out[f"{shots}-shot"] = {k: float(np.mean(v)) for k, v in acc.items()}
    # One negative: label = 3 takes of class a; negative = take 0 of class b; queries: the other takes of a and b.
    effects = []
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            pos, neg = np.where(y == a)[0][:3], np.where(y == b)[0][0]
            qa, qb = np.where(y == a)[0][3:], np.where(y == b)[0][1:]
            layout = SupportLayout.build(list(emb[[*pos, neg]]), [[0, 1, 2]], [[3]], emb.shape[1])
            bare = SupportLayout.build(list(emb[pos]), [[0, 1, 2]], [[]], emb.shape[1])

            def mean_score(lay: SupportLayout, q: np.ndarray) -> float:
                c_pos, c_neg = lay.nearest(emb[q])
                return float(combine(np.zeros((len(q), 1), np.float32), c_pos, c_neg, beta).mean())

            effects.append((mean_score(layout, qb) / max(mean_score(bare, qb), 1e-9),
                            mean_score(layout, qa) / max(mean_score(bare, qa), 1e-9)))
    kept = np.array(effects)
    out["one negative: score kept (median over class pairs)"] = {
        "on other takes of the negative's class": float(np.median(kept[:, 0])),
        "on the label's own class": float(np.median(kept[:, 1]))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint for the cost and the full-size rule runs (default: random full)")
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--rules-only", action="store_true")
    parser.add_argument("--cost-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    full = args.model
    if full is None:
        full = str(out / "clap-full")
        if not (Path(full) / "model.safetensors").exists():
            build_random_clap(Path(full), size="full")
    tiny = build_random_clap(Path(tempfile.mkdtemp(prefix="tiny-", dir=out)), size="tiny", seed=0)
    res: dict[str, Any] = {"model": full}
    if not args.rules_only:
        res["cost"] = measure_cost(full, args.threads, args.repeat, Path(tempfile.mkdtemp(prefix="ex-", dir=out)))
    for name, model in (("tiny random", str(tiny)), ("full-size random", full)):
        if not args.cost_only:
            res[f"rules ({name})"] = measure_rules(*embed_classes(model, 10))
    (out / "bench_examples.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
