"""Command line: parses arguments, loads the config and hands it to the command. No logic of its own."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monitor import __version__, lifecycle
from monitor.config import Config, ConfigError, load_config

log = logging.getLogger("sound-monitor")

DEFAULT_CONFIG_PATHS = ("config.yaml", "/etc/sound-monitor/config.yaml")
EXIT_CONFIG = 2


def _default_config() -> str:
    env = os.environ.get("SOUND_MONITOR_CONFIG")
    if env:
        return env
    for candidate in DEFAULT_CONFIG_PATHS:
        if Path(candidate).is_file():
            return candidate
    return DEFAULT_CONFIG_PATHS[0]


def load(args: argparse.Namespace) -> Config:
    """The config file with command-line overrides applied (raises ConfigError)."""
    overrides: dict[str, Any] = {}
    if getattr(args, "model", None):
        overrides["model"] = args.model
    if getattr(args, "device", None) is not None:
        dev = args.device
        overrides["audio"] = {"device": int(dev) if dev.isdigit() else dev}
    # check_files: the same checks as check-config (files, folders, environment), before the model loads.
    return load_config(args.config, check_files=True, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    """Listen to the microphone (or every configured source) until SIGTERM/SIGINT."""
    from monitor import launch

    return launch.live(load(args), scores=args.scores, plot=args.plot)


def cmd_replay(args: argparse.Namespace) -> int:
    """Run the same pipeline over an audio file; print events (and scores) as JSON lines."""
    from monitor import launch

    return launch.replay(load(args), args.file, realtime=args.realtime, block_size=args.block_size,
                         scores=args.scores, plot=args.plot)


def cmd_devices(args: argparse.Namespace) -> int:
    """List input devices."""
    from monitor.sources.capture import CaptureError, format_devices, list_input_devices

    try:
        print(format_devices(list_input_devices()))
    except CaptureError as exc:
        log.error("%s", exc)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file without loading the model."""
    from monitor.labels import labels_from_config

    cfg = load_config(args.file, check_files=True)
    labels_from_config(cfg)  # example and negative paths exist and are within bounds (a ConfigError if not)
    if _check_url_reader(args.file, cfg):
        return 1
    labels = ", ".join(f"{lbl.name} ({cfg.label_threshold(lbl):g})" for lbl in cfg.labels)
    print(f"{args.file}: OK — {len(cfg.labels)} label(s): {labels}")
    for src in cfg.sources or []:  # URLs with their password redacted
        print(f"  source {src.name}: {src.describe()}")
    return 0


def _check_url_reader(path: str, cfg: Config) -> int:
    """As ``run`` checks before the model loads: a ``url`` source needs ffmpeg installed (1 and one line if not)."""
    from monitor.sources.build import SourceError, check_url_reader

    try:
        check_url_reader(cfg.sources or [])
    except SourceError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """Score audio files (or folders of them) against labels; print a table or JSON."""
    from monitor.offline.classify import run

    return run(
        args.paths,
        labels=args.labels,
        config_path=args.config,
        config_required=args.config != _default_config(),  # only a file named explicitly must exist
        model=args.model,
        top_k=args.top_k,
        as_json=args.json,
    )


def cmd_enroll(args: argparse.Namespace) -> int:
    """Copy audio files into a label's taught examples (or negatives) and embed them into the cache."""
    from monitor.offline.enroll import run

    return run(args.items, negative=args.negative, every_label=args.every_label, config_path=args.config,
               model=args.model, warm=not args.no_warm)


def _parse_folds(text: str) -> list[int]:
    from monitor.offline.evaluate import parse_folds  # imported only when --folds is given

    return parse_folds(text)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Zero-shot accuracy on a labelled dataset; results.json, predictions.csv and a confusion matrix."""
    from monitor.offline.evaluate import run

    return run(
        args.dataset,
        model=args.model,
        out_dir=args.out,
        folds=args.folds,
        batch_size=args.batch_size,
        limit=args.limit,
        prompt_template=args.prompt_template,
        shots=args.shots,
        seed=args.seed,
        backend=args.backend,
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Write a transformers CLAP checkpoint as an ONNX model folder (for inference.backend: onnx)."""
    from monitor.inference.export import run

    return run(args.model, args.out, int8=args.int8)


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (one clear error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high} (got {value})")
        return value

    return parse


def _shots(text: str) -> int:
    """An argparse type: ``evaluate --shots``, 1 to the few-shot module's bound (imported only when given)."""
    from monitor.offline.fewshot import MAX_SHOTS

    return _bounded_int(1, MAX_SHOTS)(text)


def _prompt_template(text: str) -> str:
    """An argparse type: a template that formats every label, by the config's ``prompt_template`` check."""
    from monitor.config.schema import prompt_template_problem

    why = prompt_template_problem(text)
    if why:
        raise argparse.ArgumentTypeError(f"{why} (got {text!r})")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (all sub-commands)."""
    parser = argparse.ArgumentParser(prog="sound-monitor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sound-monitor {__version__}")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log_level")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", default=_default_config(), help="config file (default: %(default)s)")
        p.add_argument("--model", help="override model (hub id or folder)")
        return p

    p = with_config(sub.add_parser("run", help="listen to the microphone"))
    p.add_argument("--device", help="override audio.device (index or name substring)")
    p.add_argument("--scores", action="store_true", help="print one JSON line of scores per window")
    p.add_argument("--plot", metavar="PNG", help="at exit, draw a timeline per source (PNG-<source>.png)")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("replay", help="run the pipeline over an audio file"))
    p.add_argument("file", help="audio file (wav, flac, ogg, mp3; any rate and channel count)")
    p.add_argument("--realtime", action="store_true", help="pace the file in real time")
    p.add_argument("--scores", action="store_true", help="print one JSON line of scores per window")
    p.add_argument("--block-size", type=_bounded_int(1, 1 << 20), default=None,
                   help="samples per block read from the file")
    p.add_argument("--plot", metavar="PNG", help="draw a timeline of scores, thresholds, events and level")
    p.add_argument("--device", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("devices", help="list audio input devices")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("check-config", help="validate a config file (exit 2 if invalid)")
    p.add_argument("file", nargs="?", default=_default_config())
    p.set_defaults(func=cmd_check_config)

    p = with_config(sub.add_parser("classify", help="score audio files against labels (table or JSON)"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="labels to score (default: the config's labels)")
    p.add_argument("--top-k", type=_bounded_int(1, 1000), default=5,
                   help="labels shown per file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON: every window's label → score map")
    p.set_defaults(func=cmd_classify)

    p = with_config(sub.add_parser("enroll", help="teach a label from audio files (examples or negatives)"))
    p.add_argument("items", nargs="+", metavar="LABEL FILES", help="a label name or id, then audio files or folders "
                   "(with --every-label: only files)")
    p.add_argument("--negative", action="store_true", help="the files are NOT this sound (negatives)")
    p.add_argument("--every-label", action="store_true", help="with --negative: a negative of every label")
    p.add_argument("--no-warm", action="store_true", help="do not load the model to embed the files now")
    p.set_defaults(func=cmd_enroll)

    from monitor.config import DEFAULT_MODEL, DEFAULT_PROMPT_TEMPLATE

    p = sub.add_parser("evaluate", help="zero-shot accuracy on ESC-50 or another labelled dataset")
    p.add_argument("dataset", help="ESC-50 release folder, datasets save_to_disk folder, or one folder per class")
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or folder (default: %(default)s)")
    p.add_argument("--out", default="eval-out", help="results folder (default: %(default)s)")
    p.add_argument("--folds", type=_parse_folds, help="only these folds, e.g. 1,2 (default: all)")
    p.add_argument("--batch-size", type=_bounded_int(1, 256), default=8,
                   help="clips scored together (default: %(default)s)")
    p.add_argument("--limit", type=_bounded_int(1, 10_000_000), help="only the first N clips (a quick check)")
    p.add_argument("--prompt-template", type=_prompt_template, default=DEFAULT_PROMPT_TEMPLATE,
                   help="prompt for each class, with one '{}' (default: %(default)r)")
    p.add_argument("--shots", type=_shots, metavar="K", help="also few-shot accuracy: K example clips per class, drawn "
                   "from the other folds (or the other clips), scored as taught labels")
    p.add_argument("--seed", type=_bounded_int(0, 2**32 - 1), default=0,
                   help="seed of the --shots draw (default: %(default)s)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="inference backend (onnx: --model is an exported folder; default: %(default)s)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a CLAP checkpoint as an ONNX model folder (needs torch)")
    p.add_argument("model", help="hub id or folder of a transformers CLAP checkpoint")
    p.add_argument("out", help="folder to write (onnx/audio_model.onnx, onnx/text_model.onnx, tokenizer, configs)")
    p.add_argument("--int8", action="store_true", help="also write onnx/audio_model_quantized.onnx")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sound-monitor`` console script."""
    lifecycle.install()  # first: a SIGTERM during the imports and the config below ends in exit 0
    from monitor.systemd import setup_logging

    # libgomp threads otherwise spin for a while after every parallel region: wasted CPU on a box that
    # scores one window a second. Must be set before torch is imported (it is imported lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    if args.func not in (cmd_run, cmd_replay):
        lifecycle.uninstall()  # the offline commands keep Python's defaults (Ctrl-C: KeyboardInterrupt)
    setup_logging(args.log_level or "INFO")
    try:
        if hasattr(args, "config") and args.command != "check-config" and not args.log_level:
            # Config may raise the log level; load it once here only to read that (errors reported below).
            try:
                setup_logging(load_config(args.config).log_level)
            except ConfigError:
                pass
        return int(args.func(args))
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
