"""Assembling one run from the config: the label registry, the sinks, the pipeline. Wiring only, no logic.

Each part gets at construction what it needs (the registry, the publisher, a stats or health callable),
never the whole pipeline; see docs/ARCHITECTURE.md for who owns what.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor.config import Config
from monitor.core.windowing import AudioSource
from monitor.inference.worker import Scorer
from monitor.labels import LabelRegistry
from monitor.pipeline import Annotator, AudioTap, Monitor, SourcePlan
from monitor.sinks import Sink
from monitor.sinks.stdout import StdoutSink

log = logging.getLogger(__name__)


def build_monitor(
    cfg: Config,
    source_factory: Callable[[], AudioSource] | Sequence[SourcePlan],
    live: bool,
    scores: bool = False,
    plot: str | Path | None = None,
    extra_sinks: list[Sink] | None = None,
    scorer: Scorer | None = None,
    stdout: bool = True,
) -> Monitor:
    """A :class:`Monitor` with every sink the config asks for (stdout, MQTT, metrics, clips, plot).

    ``source_factory`` opens the one source of a single-source run; a run of several sources gets one
    :class:`SourcePlan` per source (``monitor.sources.build.source_plans``).
    """
    registry = LabelRegistry.from_config(cfg)
    sources = [cfg.unnamed_source()] if callable(source_factory) else [plan.config for plan in source_factory]
    # One text encoder (and embedding cache) shared by the torch scorer and the command dispatcher, which encodes
    # labels added at run time off the inference thread (a scorer given without one, and the onnx backend, whose
    # text model is small and whose embeddings are cached on disk, encode their own labels).
    text = getattr(scorer, "text", None)
    if scorer is None and cfg.inference.backend == "torch":
        try:
            from monitor.inference.text import TextEncoder
        except ImportError:  # a lean install: load_scorer says in one line what the torch backend needs
            TextEncoder = None  # type: ignore[assignment,misc]
        if TextEncoder is not None:
            text = TextEncoder(cfg.model)
    sinks: list[Sink] = [StdoutSink(scores)] if stdout else []
    taps: dict[str, list[AudioTap]] = {}  # source name → its audio taps (each source's audio stays its own)
    annotators: list[Annotator] = []
    publisher = None
    clips = None
    if cfg.clips.enabled:
        from monitor.sinks.clips import ClipRecorder

        clips = ClipRecorder(cfg)
        sinks.append(clips)
        for src in sources:
            taps.setdefault(src.name, []).append(clips.tap(src.name))
        annotators.append(clips.annotate)
    if cfg.mqtt is not None:
        from monitor.mqtt.sink import MqttSink

        mqtt = MqttSink(cfg, registry, input_entity=live, text=text, sources=sources)
        publisher = mqtt.publisher
        sinks.append(mqtt)
    if plot is not None:
        from monitor.sinks.plot import TimelineRecorder, require_matplotlib

        require_matplotlib()
        sinks.append(TimelineRecorder(plot, min_dbfs=cfg.audio.min_dbfs, sources=sources))
    sinks.extend(extra_sinks or [])
    monitor = Monitor(cfg, source_factory, registry, live=live, sinks=sinks, scorer=scorer,
                      taps=lambda name: taps.get(name, []), annotators=annotators, text=text)
    if cfg.metrics.port is not None:
        try:
            from monitor.sinks.metrics import Metrics
        except ImportError as exc:
            log.error("metrics.port is set but prometheus_client is missing (%s): pip install 'sound-monitor[metrics]'",
                      exc)
        else:
            metrics = Metrics(monitor.stats, monitor.health, registry, cfg.model, cfg.node_name(),
                              publisher=publisher, bind=cfg.metrics.bind, port=cfg.metrics.port, clips=clips,
                              sources=sources,
                              timeout=cfg.metrics.timeout_seconds, max_connections=cfg.metrics.max_connections)
            metrics.start()  # now, so /healthz answers "starting" while the model loads
            monitor.sinks.append(metrics)
    return monitor
