"""What one source detects: the label set as that source sees it (its subset, its threshold overrides).

The model scores every label once per window whatever the source (one forward for all of them); a source's
``labels`` and ``thresholds`` only change what its detector fires on. Every owner derives its own view from an
immutable :class:`~monitor.labels.LabelSet` snapshot and the source's (static) config, with these pure functions:
the main thread for its detectors and sinks, the inference thread for its adaptive hops, the MQTT network thread
for discovery. Nothing here holds state.
"""

from __future__ import annotations

from dataclasses import replace

from monitor.config import SourceConfig
from monitor.core.detection import LabelRule
from monitor.labels import Label, LabelSet


def _matches(label: Label, key: str) -> bool:
    key = key.strip().casefold()  # as the config check compares: "DOG_BARKING" names dog_barking there and here
    return key == label.name.casefold() or key == label.label_id


def source_labels(labels: LabelSet, source: SourceConfig | None) -> tuple[Label, ...]:
    """The labels ``source`` detects, with its threshold overrides applied (all labels, unchanged, for None or
    a source without ``labels``/``thresholds``). A label added at run time joins every source without a subset."""
    if source is None or (source.labels is None and not source.thresholds):
        return labels.labels
    out = []
    for label in labels.labels:
        if source.labels is not None and not any(_matches(label, key) for key in source.labels):
            continue
        override = next((t for key, t in source.thresholds.items() if _matches(label, key)), None)
        out.append(label if override is None else replace(label, threshold=override))
    return tuple(out)


def detection_rules(labels: LabelSet, source: SourceConfig | None = None) -> list[LabelRule]:
    """Detector rules of ``source`` for a label set (background labels never fire)."""
    return [LabelRule(lbl.name, lbl.label_id, lbl.threshold, lbl.enabled) for lbl in source_labels(labels, source)]


def source_thresholds(labels: LabelSet, source: SourceConfig | None = None) -> dict[str, float]:
    """Name → threshold of the labels ``source`` can fire on (what its adaptive hop watches)."""
    return {lbl.name: lbl.threshold for lbl in source_labels(labels, source) if lbl.enabled}
