"""``demo`` and ``bench``: the whole product in minutes, and the benchmarks behind BENCHMARKS.md."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_aae.core.errors import UsageError
from edge_aae.train.config import SCORE_STATS, THRESHOLD_METHODS


def register(sub: Any) -> None:
    """Add ``demo`` and ``bench`` to the top-level parser's subparsers."""
    p = sub.add_parser("demo", help="the whole product in minutes: synth, train, export, broker, daemon, live alerts",
                       description="Simulate a pump, train, export, start mosquitto and the daemon, replay faults "
                                   "and watch the alerts. Example: edge-aae demo --fast")
    p.add_argument("--broker", metavar="URL", help="use this broker instead of starting a local mosquitto")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="working folder (default: demo-out)")
    p.add_argument("--fast", action="store_true", help="shorter training (for a quick look or CI)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks that write BENCHMARKS.md sections",
                       description="Benchmarks; --update writes the table and the command into a Markdown file. "
                                   "Example: edge-aae bench quality --dataset skab --path ../shared/data/skab")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("train", help="training time and quality on synthetic data, AAE vs plain AE")
    b.add_argument("--out", type=Path, default=Path("bench-out/train"), help="folder for the runs")
    b.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_train)
    b = bench.add_parser("speed", help="torch eager vs onnxruntime FP32 vs INT8, one thread")
    b.add_argument("--run", type=Path, default=Path("bench-out/train/aae"), help="run directory to export")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_speed)
    b = bench.add_parser("quality", help="a public protocol (SKAB or SMD layout): AAE, INT8, plain AE, PCA")
    b.add_argument("--dataset", required=True, choices=["skab", "smd", "folder"],
                   help="skab: SKAB's leaderboard protocol; smd: train/, test/, test_label/ (SMD/ASD layout); "
                        "folder: PATH/<unit>/train.csv and test.csv (with a label column) and optionally "
                        "interpretation.txt")
    b.add_argument("--path", required=True, type=Path, help="dataset folder, e.g. ../shared/data/skab")
    b.add_argument("--interpretation-inclusive", action="store_true",
                   help="interpretation intervals are [start, end] (ASD) rather than SMD's [start, end)")
    b.add_argument("--out", type=Path, default=Path("bench-out/quality"), help="folder for runs and bundles")
    b.add_argument("--limit", type=int, help="only the first N files/entities (a quick look)")
    b.add_argument("--epochs", type=int, help="training epochs (default: the TrainConfig default)")
    b.add_argument("--relative-channels", default="",
                   help="channels scored on their shape within each window, not their level (e.g. temperatures)")
    b.add_argument("--score-stat", choices=SCORE_STATS, default="error",
                   help="error: squared reconstruction error (default); shift: T² of the mean residual")
    b.add_argument("--threshold", choices=THRESHOLD_METHODS, default="pot",
                   help="label-free threshold rule (t2: the shift score's Hotelling limit; default: pot)")
    b.add_argument("--preset", choices=["auto", "none"], default="auto",
                   help="auto (default): settings chosen from each unit's training data alone; none: the defaults")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig key for every model, e.g. --set window_len=16 (repeatable)")
    b.add_argument("--seeds", metavar="N,N,...",
                   help="run the whole bench once per seed (e.g. 0,1,2) and add the seed spread of the headline "
                        "figures; the main table is the first seed's")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_quality)
    b = bench.add_parser("load", help="reading a large CSV: numpy's C parser vs the csv-module path")
    b.add_argument("--rows", type=int, default=200_000, help="rows of the generated CSV (default: 200000)")
    b.add_argument("--channels", type=int, default=38, help="channels (default: 38)")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_load)
    b = bench.add_parser("scale", help="training on 2,000,000 rows x 38 channels; --threads 1 vs torch's default")
    b.add_argument("--rows", type=int, default=2_000_000, help="training rows (default: 2000000)")
    b.add_argument("--channels", type=int, default=38, help="channels (default: 38)")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_scale)
    b = bench.add_parser("drift", help="the gateway's drift monitor on streams that slowly leave the training range")
    b.add_argument("--bundle", type=Path, required=True, help="bundle of a model trained on the synthetic pump")
    b.add_argument("--out", type=Path, default=Path("docs/bench"), help="folder for drift.png (default: docs/bench)")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_drift)
    b = bench.add_parser("daemon", help="edge-aae serve vs a bare paho subscriber: readings/s, latency, RSS")
    b.add_argument("--bundle", type=Path, required=True, help="bundle directory to serve")
    b.add_argument("--readings", type=int, default=20000, help="readings per throughput run (default: 20000)")
    b.add_argument("--assets", type=int, default=8, help="assets published at once (default: 8)")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_daemon)


def cmd_demo(args: argparse.Namespace) -> int:
    """``edge-aae demo``."""
    from edge_aae.devtools.demo import run_demo
    from export.bundle import build_bundle

    logging.getLogger().setLevel(logging.ERROR)
    return run_demo(args.out, build_bundle, args.broker, args.fast)


def cmd_bench_train(args: argparse.Namespace) -> int:
    """``edge-aae bench train``."""
    from export.bench.train import run_train_bench

    _, table = run_train_bench(args.out, args.seed)
    return publish_bench(args.update, "train", "Training on the synthetic pump", table,
                         f"edge-aae bench train --seed {args.seed}")


def cmd_bench_speed(args: argparse.Namespace) -> int:
    """``edge-aae bench speed``."""
    if not (args.run / "model.json").is_file():
        raise UsageError(f"{args.run}: no run directory (run `edge-aae bench train` first, or pass --run)")
    from export.bench.speed import run_speed_bench

    return publish_bench(args.update, "speed", "Inference speed", run_speed_bench(args.run),
                         f"edge-aae bench speed --run {args.run}")


def cmd_bench_quality(args: argparse.Namespace) -> int:
    """``edge-aae bench quality``."""
    from edge_aae.train.config import TrainConfig
    from export.bench.quality import run_quality_bench, seed_spread_table

    if not args.path.is_dir():
        raise UsageError(f"--path {args.path}: no such folder")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    cfg = TrainConfig(relative_channels=args.relative_channels, score_stat=args.score_stat,
                      threshold=args.threshold, preset=args.preset)
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.set:
        cfg = TrainConfig.from_dict(cfg.to_dict() | parse_settings(args.set), source="--set")
    command = f"edge-aae bench quality --dataset {args.dataset} --path {args.path}"
    if args.limit:
        command += f" --limit {args.limit}"
    if args.relative_channels:
        command += f" --relative-channels {args.relative_channels}"
    if args.score_stat != "error":
        command += f" --score-stat {args.score_stat}"
    if args.threshold != "pot":
        command += f" --threshold {args.threshold}"
    command += "".join(f" --set {kv}" for kv in args.set)
    if args.preset != "auto":
        command += f" --preset {args.preset}"
    # a folder's section is named after it too: two generated sets keep their own tables
    name = f"{args.dataset}-{folder_slug(args.path)}" if args.dataset == "folder" else args.dataset
    section = (f"quality-{name}" + ("-preset-none" if args.preset == "none" else "")
               + ("-relative" if args.relative_channels else "")
               + ("" if args.score_stat == "error" else f"-{args.score_stat}")
               + ("-custom" if args.set else ""))
    out = args.out / section.removeprefix("quality-")
    if args.interpretation_inclusive:
        command += " --interpretation-inclusive"
    if seeds is None:
        _, table = run_quality_bench(args.dataset, args.path, out, cfg, args.limit,
                                     interpretation_inclusive=args.interpretation_inclusive)
    else:
        command += f" --seeds {','.join(map(str, seeds))}"
        pooled, tables = {}, []
        for seed in seeds:
            print(f"seed {seed}:", flush=True)
            results, seed_table = run_quality_bench(args.dataset, args.path, out / f"seed-{seed}",
                                                    dataclasses.replace(cfg, seed=seed), args.limit,
                                                    interpretation_inclusive=args.interpretation_inclusive)
            pooled[seed] = results["pooled"]
            tables.append(seed_table)
        table = (tables[0] + f"\n\nThe table above is seed {seeds[0]}'s. Every seed ({', '.join(map(str, seeds))}), "
                 "the whole bench trained again with that seed, and the mean ± sample standard deviation over "
                 "them:\n\n" + seed_spread_table(pooled))
    layout = "SMD layout" if args.dataset == "smd" else "folder layout"
    title = "SKAB" if args.dataset == "skab" else f"{args.path.resolve().name.upper()} ({layout})"
    details = ([f"{args.relative_channels} scored by shape"] if args.relative_channels else []) + (
        [f"{args.score_stat} score, threshold {args.threshold}"] if args.score_stat != "error" else [])
    title += "".join(f", {d}" for d in details)
    return publish_bench(args.update, section, f"Quality: {title}", table, command)


def folder_slug(path: Path) -> str:
    """The folder's name as a Markdown section and output folder name: lower case, ``-`` between words."""
    return re.sub(r"[^a-z0-9]+", "-", path.resolve().name.lower()).strip("-") or "data"


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` to distinct integers >= 0, in the order given.

    Raises:
        UsageError: an empty list, a value that is not an integer >= 0, or a repeated seed.

    """
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(p.isdigit() for p in parts):
        raise UsageError(f"--seeds {text!r}: expected integers >= 0 separated by commas, e.g. 0,1,2")
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to TrainConfig values, typed by the field's default.

    Raises:
        UsageError: an item without ``=``, an unknown key, or a value of the wrong type.

    """
    from edge_aae.train.config import TrainConfig

    defaults = TrainConfig().to_dict()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"--set {item}: expected KEY=VALUE")
        if key not in defaults:
            raise UsageError(f"--set {item}: unknown key {key!r}; known keys: {', '.join(sorted(defaults))}")
        kind = type(defaults[key])
        if kind is bool:  # bool("false") would be True
            if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise UsageError(f"--set {item}: {key} needs true or false, got {value!r}")
            out[key] = value.strip().lower() in ("true", "1", "yes", "on")
            continue
        try:
            out[key] = value if kind is str else kind(value)
        except ValueError:
            raise UsageError(f"--set {item}: {key} needs {'an integer' if kind is int else 'a number'}, "
                             f"got {value!r}") from None
    return out


def cmd_bench_load(args: argparse.Namespace) -> int:
    """``edge-aae bench load``."""
    from export.bench.load import run_load_bench

    if args.rows < 100 or args.channels < 1:
        raise UsageError("--rows must be >= 100 and --channels >= 1")
    return publish_bench(args.update, "load", "Loading a large CSV", run_load_bench(args.rows, args.channels),
                         f"edge-aae bench load --rows {args.rows} --channels {args.channels}")


def cmd_bench_scale(args: argparse.Namespace) -> int:
    """``edge-aae bench scale``."""
    from export.bench.scale import run_scale_bench

    if args.rows < 10_000 or args.channels < 8:
        raise UsageError("--rows must be >= 10000 and --channels >= 8")
    return publish_bench(args.update, "scale", "Training at scale", run_scale_bench(args.rows, args.channels),
                         f"edge-aae bench scale --rows {args.rows} --channels {args.channels}")


def cmd_bench_drift(args: argparse.Namespace) -> int:
    """``edge-aae bench drift``."""
    from export.bench.drift import run_drift_bench

    if not (args.bundle / "manifest.json").is_file():
        raise UsageError(f"--bundle {args.bundle}: not a bundle (no manifest.json)")
    return publish_bench(args.update, "drift", "Drift monitor", run_drift_bench(args.bundle, args.out),
                         f"edge-aae bench drift --bundle {args.bundle} --out {args.out}")


def cmd_bench_daemon(args: argparse.Namespace) -> int:
    """``edge-aae bench daemon`` (torch-free; needs mosquitto)."""
    from export.bench.daemon import run_daemon_bench

    if args.readings < 1000 or args.assets < 1:
        raise UsageError("--readings must be >= 1000 and --assets >= 1")
    _, table = run_daemon_bench(args.bundle, args.readings, args.assets)
    return publish_bench(args.update, "daemon", "Gateway daemon throughput", table,
                         f"edge-aae bench daemon --bundle {args.bundle} --readings {args.readings} "
                         f"--assets {args.assets}")


def publish_bench(markdown: Path | None, name: str, title: str, table: str, command: str) -> int:
    """Print a benchmark table and, with ``--update``, write it into that Markdown file's section."""
    print(table)
    if markdown:
        from export.bench.common import update_section

        update_section(markdown, name, f"## {title}\n\n{table}", command)
        print(f"updated {markdown}")
    return 0
