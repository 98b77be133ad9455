"""Workstation subcommands: ``synth``, ``train``, ``score``, ``eval``, ``sample``.

Torch is imported inside the commands that need it: ``score BUNDLE`` and
``eval BUNDLE`` run on the base (gateway) install.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_aae.cli.common import add_data_args, channels_arg, print_table
from edge_aae.core.errors import UsageError
from edge_aae.core.scores import WindowScores
from edge_aae.core.streaming import StreamRule

if TYPE_CHECKING:  # `edge-aae serve` goes through this module: the daemon never loads files
    from edge_aae.core.data import SensorData


def register(sub: Any) -> None:
    """Add this side's subcommands to the top-level parser's subparsers."""
    p = sub.add_parser("synth", help="write a simulated pump data set (train.csv, test.csv, faults.json)",
                       description="Write a simulated pump data set: normal train.csv, test.csv with labelled "
                                   "faults of every kind, faults.json. Example: edge-aae synth --out data/pump")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--train-rows", type=int, default=14_400, help="rows of normal training data (default: 14400)")
    p.add_argument("--test-rows", type=int, default=10_800, help="rows of test data (default: 10800)")
    p.add_argument("--faults-per-kind", type=int, default=2, help="faults of each kind in test.csv (default: 2)")
    p.add_argument("--channels", type=int, default=8,
                   help="channels to write: the pump's 8, then derived sensors aux_NN mixing them (default: 8)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train an AAE on normal data into a run directory",
                       description="Train an AAE on normal data. Example: "
                                   "edge-aae train --data data/pump/train.csv --out runs/pump")
    add_data_args(p, many=True)
    p.add_argument("--out", type=Path, help="run directory to write (required)")
    p.add_argument("--config", type=Path, help="TOML with training settings (flags override it)")
    add_train_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue an interrupted run from its last epoch, with its own data and settings "
                        "(checkpoint.pt and train_args.json in RUN); alone, or with --epochs to train longer")
    p.add_argument("--log-dir", type=Path, metavar="DIR",
                   help="TensorBoard scalars per epoch (losses, discriminator accuracy, MMD² codes vs prior, "
                        "validation score) in DIR, when tensorboard is installed; report.json stays the record")
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel training across the processes torchrun starts (gloo on CPU, NCCL on "
                        "CUDA), e.g. torchrun --nproc-per-node 2 -m edge_aae.train --data ... --out ...; "
                        "implied when torchrun launched it; rank 0 writes the run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score a CSV with a run directory or exported bundle",
                       description="Score every window of a CSV. Example: "
                                   "edge-aae score bundles/pump --data data/pump/test.csv --out scores.csv")
    p.add_argument("model", type=Path, metavar="MODEL", help="run directory or bundle")
    add_data_args(p, label=True)
    p.add_argument("--out", required=True, type=Path, help="scores CSV to write")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("eval", help="metrics, table and plots of a run or bundle on a labelled series",
                       description="Metrics, a table and plots on a labelled series. Example: edge-aae eval "
                                   "bundles/pump --data data/pump/test.csv --label-col label --out eval-out")
    p.add_argument("model", type=Path, metavar="MODEL", help="run directory or bundle")
    add_data_args(p)
    p.add_argument("--label-col", required=True, help="0/1 label column")
    p.add_argument("--interpretation", type=Path, metavar="FILE",
                   help="SMD-style 'start-end:c1,c2' lines (1-based channels) for localization metrics")
    p.add_argument("--interpretation-inclusive", action="store_true",
                   help="interval ends are inclusive (ASD); default [start, end) as in SMD")
    p.add_argument("--out", type=Path, default=Path("eval-out"),
                   help="folder for metrics.json and plots (default: eval-out)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="decode prior samples into synthetic normal windows",
                       description="Decode samples of the prior into windows. Example: "
                                   "edge-aae sample runs/pump -n 10 --out samples.csv")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory")
    p.add_argument("-n", type=int, required=True, help="number of windows")
    p.add_argument("--out", required=True, type=Path, help="CSV to write (sample, step, one column per channel)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one)")
    p.set_defaults(func=cmd_sample)


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field, with the field's help, its choices and its default."""
    from edge_aae.train.config import CHOICES, TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = f.default
        shown = default if default != "" else "none"
        typ = type(default)
        if typ is bool:  # --name / --no-name: bool("false") would be True
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                           dest=f.name, help=f"{f.metadata['help']} (default: {'on' if default else 'off'})")
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, dest=f.name,
                       choices=CHOICES.get(f.name), metavar=None if f.name in CHOICES else f.name.upper(),
                       help=f"{f.metadata['help']} (default: {shown})")


def cmd_synth(args: argparse.Namespace) -> int:
    """``edge-aae synth``."""
    from edge_aae.train import synth

    try:
        result = synth.generate(args.seed, args.train_rows, args.test_rows, args.faults_per_kind,
                                channels=args.channels)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    synth.write_dataset(args.out, result, args.seed)
    kinds = sorted({f.kind for f in result.faults})
    print(f"wrote {args.out}/train.csv ({result.train.shape[0]} rows x {len(result.channels)} channels, normal), "
          f"{args.out}/test.csv ({result.test.shape[0]} rows, {len(result.faults)} faults: {', '.join(kinds)}), "
          f"{args.out}/faults.json")
    return 0


def _train_config(args: argparse.Namespace) -> Any:
    from edge_aae.core.errors import ConfigError
    from edge_aae.train.config import TrainConfig, load_train_config

    base = load_train_config(args.config) if args.config else TrainConfig()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name) is not None}
    try:
        return base.replace(**overrides)
    except ConfigError as exc:
        raise UsageError(f"invalid option: {exc}") from None


TRAIN_ARGS = "train_args.json"
CHECKPOINT = "checkpoint.pt"


def _resume_args(args: argparse.Namespace) -> Any:
    """``--resume RUN``: the run's own data and settings (``--epochs`` may extend it)."""
    from edge_aae.train.config import TrainConfig

    run = args.resume
    given = [f"--{k.replace('_', '-')}" for k in ("data", "out", "config", "time_col", "channels")
             if getattr(args, k, None)]
    given += [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(TrainConfig)
              if f.name not in ("epochs", "threads") and getattr(args, f.name) is not None]
    if given:
        raise UsageError(f"--resume continues {run} with its own data and settings: leave out {', '.join(given)}")
    path = run / TRAIN_ARGS
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(saved["config"], source=str(path))
    except FileNotFoundError:
        raise UsageError(f"{path}: missing; {run} is not a run started by this version of edge-aae train") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: unreadable ({exc})") from None
    if not (run / CHECKPOINT).is_file():
        raise UsageError(f"{run / CHECKPOINT}: missing; the run stopped before its first epoch ended: start it "
                         "again without --resume")
    args.data, args.time_col, args.channels, args.out = saved["data"], saved["time_col"], saved["channels"], run
    return config.replace(**{k: getattr(args, k) for k in ("epochs", "threads") if getattr(args, k) is not None})


def cmd_train(args: argparse.Namespace) -> int:
    """``edge-aae train`` (under torchrun: every rank trains, rank 0 writes the run)."""
    if args.resume is not None:
        config = _resume_args(args)
    else:
        missing = [flag for flag, v in (("--data", args.data), ("--out", args.out)) if not v]
        if missing:
            raise UsageError(f"train needs {' and '.join(missing)} (or --resume RUN)")
        config = _train_config(args)
    from edge_aae.train import distributed

    if args.ddp and "WORLD_SIZE" not in os.environ:
        raise UsageError("--ddp trains across the processes torchrun starts: launch it as  torchrun "
                         "--nproc-per-node N -m edge_aae.train --data ... --out ...  (no WORLD_SIZE is set)")
    ddp = distributed.init_from_env(config.device)
    try:
        return _train(args, config, ddp)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, config: Any, ddp: Any) -> int:
    from edge_aae.core.data import load_many
    from edge_aae.train.detector import AAEDetector
    from edge_aae.train.report import write_latent_plot

    say = print if ddp.is_main else (lambda *a, **k: None)
    data = load_many(args.data, time_col=args.time_col, channels=channels_arg(args),
                     max_nan_run=config.max_nan_run, max_gap_factor=config.max_gap_factor)
    say(f"{data.path}: {data.n_rows} rows, {len(data.channels)} channels, "
        f"{len(data.segments)} segment(s), sample period {data.sample_period_s:g} s"
        + (f"; {ddp.world} processes (DistributedDataParallel)" if ddp.active else ""))
    if ddp.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
    if args.resume is None and ddp.is_main:  # what --resume needs to start the same training again
        (args.out / TRAIN_ARGS).write_text(json.dumps(
            {"data": [str(Path(d).resolve()) for d in args.data], "time_col": args.time_col,
             "channels": args.channels, "config": config.to_dict()}, indent=1) + "\n", encoding="utf-8")
    try:
        det = AAEDetector(config).fit(data, progress=not args.quiet, checkpoint=args.out / CHECKPOINT,
                                      resume=args.resume is not None, log_dir=args.log_dir)
    except KeyboardInterrupt:
        if not (args.out / CHECKPOINT).is_file():
            raise
        print(f"\ninterrupted: continue with  edge-aae train --resume {args.out}", file=sys.stderr)
        return 130
    if det.replica_:  # another rank: rank 0 fits the threshold and writes the run
        return 0
    det.save(args.out)
    write_latent_plot(det, data, args.out / "report.png")
    rep = det.report_
    assert rep is not None  # set by fit()
    last = rep["history"][rep["best_epoch"] - 1]
    cfg = det.config_
    if len(rep["history"]) < cfg.epochs:
        print(f"stopped early at epoch {len(rep['history'])} of {cfg.epochs}: no better validation loss for "
              f"{cfg.patience} epochs; best epoch {rep['best_epoch']} (validation loss {last['val_loss']:.5f})")
    for d in rep.get("preset", {}).get("decisions", []):
        print(f"preset {cfg.preset}: {d['key']} = {d['value']!r} ({d['reason']})")
    print(f"unseen-state rule: {det.unseen_reason_}")
    rows = [("epochs run / best", f"{len(rep['history'])} / {rep['best_epoch']}"),
            ("validation loss", f"{last['val_loss']:.5f}"),
            ("discriminator accuracy", f"{last['disc_acc']:.2f}"),
            ("MMD² codes vs prior", f"{rep['mmd_codes_vs_prior']:.4f}"),
            (f"threshold ({det.threshold_rule_}, far {cfg.target_far:g})", f"{det.threshold_:.4f}"),
            ("device / time", f"{rep['device']} / {rep['train_seconds']:.1f} s")]
    if rep.get("shift_covariance_inflation") not in (None, 1.0):  # training windows joined the shift reference
        rows.insert(-1, ("shift covariance scaled by (unseen normal windows)",
                         f"{rep['shift_covariance_inflation']:.2f}"))
    print_table(["", "value"], rows)
    check = rep.get("self_check") or {}
    if check:
        print("self-check, synthetic faults in held-out normal windows flagged by the threshold: "
              + ", ".join(f"{k} {v:.0%}" for k, v in check.items()))
    for w in rep["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    print(f"wrote run directory {args.out} (model.json, weights.pt, report.json, report.png, checkpoint.pt)")
    return 0


class SeriesScorer(Protocol):
    """A run directory or a bundle, behind what ``score`` and ``eval`` need."""

    @property
    def stream_rule(self) -> StreamRule:
        """How the model windows a raw series."""

    def score(self, data: SensorData) -> WindowScores:
        """Scores of every window of ``data``."""


def open_model(path: Path) -> SeriesScorer:
    """A run directory (torch) or a bundle (onnxruntime only) as a :class:`SeriesScorer`.

    Raises:
        UsageError: neither.

    """
    if not path.exists():
        raise UsageError(f"{path}: no such run directory or bundle")
    if (path / "model.json").is_file():
        from edge_aae.train.detector import AAEDetector

        return AAEDetector.load(path)
    if (path / "manifest.json").is_file():
        from edge_aae.gateway.scorer import BundleScorer

        return BundleScorer(path)
    raise UsageError(f"{path}: neither a run directory (model.json) nor a bundle (manifest.json)")


def _model_and_data(args: argparse.Namespace) -> tuple[SeriesScorer, SensorData]:
    """The MODEL argument opened and ``--data`` read raw: the model's streaming rule windows it."""
    scorer = open_model(args.model)
    from edge_aae.core.data import load_series

    data = load_series(args.data, time_col=args.time_col, channels=channels_arg(args), label_col=args.label_col,
                       max_nan_run=0, max_gap_factor=scorer.stream_rule.gap_factor)
    return scorer, data


def cmd_score(args: argparse.Namespace) -> int:
    """``edge-aae score``."""
    from edge_aae.core.scores import write_scores_csv

    scorer, data = _model_and_data(args)
    result = scorer.score(data)
    write_scores_csv(args.out, result)
    flagged = int(result.is_anomaly.sum())
    print(f"scored {result.score.size} windows of {args.data}; {flagged} over threshold "
          f"{result.threshold:.4f}; wrote {args.out}")
    if data.labels is not None:
        from edge_aae.core.metrics import auroc

        y = data.labels[result.ends]
        if y.any() and not y.all():
            print(f"window AUROC (label of each window's last sample): {auroc(y, result.score):.4f}")
        else:
            print(f"window AUROC: not defined: every window is labelled {int(y[0]) if y.size else '-'} "
                  "(it needs normal and anomalous windows)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``edge-aae eval``."""
    from edge_aae.core.evaluate import alerts_from_scores, evaluate, plot_eval, read_interpretation, write_metrics

    scorer, data = _model_and_data(args)
    truth = (read_interpretation(args.interpretation, len(data.timestamps), len(data.channels),
                                 args.interpretation_inclusive) if args.interpretation else None)
    result = scorer.score(data)
    metrics = evaluate(data, result, truth)
    args.out.mkdir(parents=True, exist_ok=True)
    write_metrics(args.out / "metrics.json", metrics)
    try:
        plots = plot_eval(args.out, data, result, alerts_from_scores(result))
    except ImportError:  # the base (gateway) install has no matplotlib: the numbers still stand
        plots = []
        print("note: plots skipped (matplotlib is not installed: pip install 'edge-aae[train]')", file=sys.stderr)
    ev = metrics["events"]
    rows = [
        ("AUROC", f"{metrics['auroc']:.4f}"), ("AUPRC", f"{metrics['auprc']:.4f}"),
        ("F1 / precision / recall at the model's threshold",
         f"{metrics['f1']:.4f} / {metrics['precision']:.4f} / {metrics['recall']:.4f}"),
        ("oracle: best F1 over thresholds (uses labels)", f"{metrics['oracle_best_f1']:.4f}"),
        ("point-adjusted F1 (PA, inflated)", f"{metrics['point_adjusted_f1']:.4f}"),
        ("PA%K area (K 0..100)", f"{metrics['pa_k_auc']:.4f}"),
        ("events detected", f"{ev['events_detected']}/{ev['events']}"),
        ("median time to detect (s)", f"{ev['time_to_detect_s_median']:.0f}"),
        ("false alarms per day", f"{ev['false_alarms_per_day']:.2f}"),
    ]
    if "localization" in metrics:
        loc = metrics["localization"]
        rows.append(("HitRate@100% / @150%", f"{loc['hitrate@100']:.4f} / {loc['hitrate@150']:.4f}"))
        rows.append(("NDCG@100% / @150%", f"{loc['ndcg@100']:.4f} / {loc['ndcg@150']:.4f}"))
    print_table(["metric", "value"], rows)
    print(f"{metrics['points']} points scored; the first {metrics['points_without_window']} point(s) of the "
          "segments have no full window and are left out")
    print(f"wrote {args.out / 'metrics.json'}, {', '.join(str(p) for p in plots)}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """``edge-aae sample``."""
    from edge_aae.train.detector import AAEDetector

    if args.n < 1:
        raise UsageError(f"-n must be >= 1, got {args.n}")
    det = AAEDetector.load(args.run)
    windows = det.sample(args.n, args.seed)  # (n, window_len, C)
    lines = [",".join(["sample", "step", *det.channels_])]
    for i, w in enumerate(windows):
        for t, row in enumerate(w):
            lines.append(",".join([str(i), str(t), *(f"{v:.6g}" for v in row)]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.n} synthetic windows of {det.config_.window_len} steps to {args.out}")
    return 0
