"""``evaluate``'s output: ``results.json``, ``predictions.csv``, ``confusion_matrix.png`` and the stdout summary."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.config import MODEL_SAMPLE_RATE
from monitor.offline.evalset import EvaluationError
from monitor.strictjson import dumps

if TYPE_CHECKING:  # evaluate.py imports this module; the result type is only needed for hints
    from monitor.offline.evaluate import EvalResult


def results_dict(result: EvalResult) -> dict[str, Any]:
    """The content of ``results.json``."""
    from monitor import __version__

    ds = result.dataset
    per_class = result.per_class()
    n = len(result.clips)
    return {
        "top1_accuracy": result.top1_accuracy(),
        "top5_accuracy": result.top5_accuracy(),
        "top5_k": result.k,
        "n_clips": n,
        "n_skipped": len(result.skipped),
        "per_class_accuracy": {lbl: acc for lbl, (acc, _) in per_class.items()},
        "per_class_clips": {lbl: count for lbl, (_, count) in per_class.items()},
        "model": result.model,
        "prompt_template": result.prompt_template,
        "labels": result.labels,
        "classes": ds.classes,
        "prompts": result.prompts,
        "dataset": str(ds.path.resolve()),
        "layout": ds.layout,
        "splits": ds.splits,
        "folds": ds.folds if ds.folds is not None else ds.available_folds,
        "all_folds": ds.folds is None,
        "skipped": result.skipped,
        "truncated_clips": result.truncated,
        "sample_rate": MODEL_SAMPLE_RATE,
        "seconds": round(result.seconds, 3),
        "clips_per_second": round(n / result.seconds, 2) if result.seconds > 0 else None,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sound_monitor_version": __version__,
        **({"few_shot": result.few_shot} if result.few_shot is not None else {}),
    }


def write_predictions(result: EvalResult, path: Path) -> None:
    """``predictions.csv``: file, fold, truth, whether top-1 is right, then the top-5 labels with scores."""
    labels = result.labels
    k = result.k
    ranking = result.ranking()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "fold", "truth", "correct",
                    *[h for j in range(1, k + 1) for h in (f"top{j}_label", f"top{j}_score")]])
        for clip, order, row in zip(result.clips, ranking, result.scores, strict=True):
            top = [v for j in order[:k] for v in (labels[j], f"{row[j]:.6f}")]
            fold = "" if clip.fold is None else clip.fold
            w.writerow([clip.name, fold, labels[clip.truth], int(order[0] == clip.truth), *top])


def plot_confusion(result: EvalResult, path: Path) -> None:
    """``confusion_matrix.png``: rows truth, columns prediction, shaded by fraction of the row's clips.

    The figure grows with the number of classes (about a quarter inch per class), so 50 ESC-50 labels stay
    readable; counts are written in the cells up to 25 classes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or GUI state

    labels = result.labels
    n = len(labels)
    m = result.confusion()
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = max(5.0, 2.5 + 0.25 * n)
    font = 9 if n <= 25 else 7
    fig = Figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    model = Path(result.model).name if Path(result.model).is_dir() else result.model  # a hub id says more
    ax.set_title(f"{model}: top-1 {100 * result.top1_accuracy():.1f} % "
                 f"on {len(result.clips)} clips", fontsize=10)
    if n <= 25:
        for (i, j), count in np.ndenumerate(m):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                        color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of the class's clips")
    fig.savefig(path)


def summary_table(result: EvalResult, out_dir: Path, worst: int = 5) -> str:
    """A short text summary for stdout."""
    ds = result.dataset
    folds = ",".join(map(str, ds.folds)) if ds.folds else ("all" if ds.available_folds else "-")
    rate = f"{len(result.clips) / result.seconds:.1f} clips/s" if result.seconds > 0 else "-"
    rows = [
        ("dataset", f"{ds.path} ({ds.layout}, folds {folds})"),
        ("model", result.model),
        ("labels", f"{len(result.labels)}, prompts like {result.prompts[0]!r}" if result.prompts else "-"),
        ("clips", f"{len(result.clips)} scored, {len(result.skipped)} skipped"),
        ("top-1", f"{100 * result.top1_accuracy():.2f} %"),
        (f"top-{result.k}", f"{100 * result.top5_accuracy():.2f} %"),
        ("speed", f"{rate} ({result.seconds:.1f} s)"),
    ]
    if result.few_shot is not None:
        fs = result.few_shot
        rows.append((f"few-shot top-1 ({fs['shots']} per class)",
                     f"{100 * fs['top1_accuracy']:.2f} % (zero-shot {100 * fs['zero_shot']['top1_accuracy']:.2f} %, "
                     f"examples alone {100 * fs['examples_only']['top1_accuracy']:.2f} %, on the same "
                     f"{fs['n_clips']} clips)"))
    weak = sorted((acc, lbl) for lbl, (acc, _) in result.per_class().items() if acc < 1.0)[:worst]
    if weak:
        rows.append(("weakest", ", ".join(f"{lbl} {100 * acc:.0f} %" for acc, lbl in weak)))
    rows.append(("written", f"{out_dir}/results.json, predictions.csv, confusion_matrix.png"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n"


def write_results(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``predictions.csv`` and ``confusion_matrix.png`` into ``out_dir``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    paths = {"results": out / "results.json", "predictions": out / "predictions.csv",
             "confusion_matrix": out / "confusion_matrix.png"}
    text = dumps(results_dict(result), separators=None, indent=2, what="results.json")
    paths["results"].write_text(text + "\n", encoding="utf-8")
    write_predictions(result, paths["predictions"])
    plot_confusion(result, paths["confusion_matrix"])
    return paths
