"""The ``edge-aae`` command line: one program, one subcommand per task.

Exit status: 0 success, 1 bad data or model, 2 usage error, 130 interrupted.
Heavy imports (torch) happen inside the commands that need them, so commands
that run on a gateway (``score BUNDLE``, ``serve``) stay torch-free.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_aae import __version__
from edge_aae.config import SCORE_STATS, THRESHOLD_METHODS
from edge_aae.errors import EdgeAAEError, UsageError

log = logging.getLogger("edge_aae")

# flag name -> TrainConfig field, for `train`
TRAIN_FLAGS = {
    "epochs": int, "window_len": int, "stride": int, "arch": str, "hidden": int, "latent_dim": int,
    "prior": str, "n_components": int, "adversarial_weight": float, "latent_weight": float,
    "batch_size": int, "lr": float, "seed": int, "device": str, "threshold": str, "target_far": float,
    "patience": int, "max_train_windows": int, "relative_channels": str, "score_stat": str, "score_tail": float,
    "preset": str,
}


TRAIN_HELP = {
    "epochs": "training epochs (early stopping may end sooner)",
    "window_len": "samples per window",
    "stride": "new samples between windows",
    "arch": "encoder/decoder architecture",
    "hidden": "hidden width of the encoder and decoder",
    "latent_dim": "latent code size; 0: half the channels, 2 to 8",
    "prior": "prior the discriminator pushes the codes towards",
    "n_components": "components of the mixture prior",
    "adversarial_weight": "weight of the adversarial loss; 0 trains the plain autoencoder",
    "latent_weight": "weight of the latent score in the combined score",
    "batch_size": "windows per training batch",
    "lr": "learning rate of the autoencoder",
    "seed": "random seed (runs are deterministic on the CPU)",
    "device": "training device; auto picks CUDA when present (mixed precision there)",
    "threshold": "label-free threshold rule (t2 needs --score-stat shift)",
    "target_far": "false-alarm rate per window on normal data the threshold is set for",
    "patience": "epochs without a better validation loss before stopping",
    "max_train_windows": "most training windows used (a random subset beyond)",
    "relative_channels": "comma-separated channels scored by their shape within a window, not their level",
    "score_stat": "error: squared reconstruction error; shift: T² of the mean residual (sustained shifts)",
    "score_tail": "how much the score favours a window's most recent samples (smaller: more)",
    "preset": "auto: choose settings left at their defaults from the training data (reasons in model.json); "
              "none: the plain defaults",
}


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig key in TRAIN_FLAGS, with help, choices and the default."""
    from edge_aae.config import (
        ARCHITECTURES,
        DEVICES,
        PRESETS,
        PRIORS,
        SCORE_STATS,
        THRESHOLD_METHODS,
        TrainConfig,
    )

    choices = {"arch": ARCHITECTURES, "prior": PRIORS, "device": DEVICES, "threshold": THRESHOLD_METHODS,
               "score_stat": SCORE_STATS, "preset": PRESETS}
    defaults = TrainConfig().to_dict()
    for name, typ in TRAIN_FLAGS.items():
        shown = defaults[name] if defaults[name] != "" else "none"
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, dest=name, choices=choices.get(name),
                       metavar=None if name in choices else name.upper(),
                       help=f"{TRAIN_HELP[name]} (default: {shown})")


def _add_data_args(p: argparse.ArgumentParser, label: bool = False) -> None:
    p.add_argument("--data", required=True, type=Path, help="CSV (header; , ; or tab) or headerless numeric text")
    p.add_argument("--time-col", help="timestamp column (default: detected by name; else one row per second)")
    p.add_argument("--channels", help="comma-separated channel columns (default: all numeric but time/label)")
    if label:
        p.add_argument("--label-col", help="0/1 label column, to report AUROC")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="edge-aae", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-aae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a simulated pump data set (train.csv, test.csv, faults.json)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=14_400)
    p.add_argument("--test-rows", type=int, default=10_800)
    p.add_argument("--faults-per-kind", type=int, default=2)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train an AAE on normal data into a run directory")
    _add_data_args(p)
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--config", type=Path, help="TOML with training settings (flags override it)")
    _add_train_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score a CSV with a run directory or exported bundle")
    p.add_argument("model", type=Path, metavar="MODEL", help="run directory or bundle")
    _add_data_args(p, label=True)
    p.add_argument("--out", required=True, type=Path, help="scores CSV to write")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("eval", help="metrics, table and plots of a run or bundle on a labelled series")
    p.add_argument("model", type=Path, metavar="MODEL", help="run directory or bundle")
    _add_data_args(p)
    p.add_argument("--label-col", required=True, help="0/1 label column")
    p.add_argument("--interpretation", type=Path, metavar="FILE",
                   help="SMD-style 'start-end:c1,c2' lines (1-based channels) for localization metrics")
    p.add_argument("--interpretation-inclusive", action="store_true",
                   help="interval ends are inclusive (ASD); default [start, end) as in SMD")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="folder for metrics.json and plots")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="decode prior samples into synthetic normal windows")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("-n", type=int, required=True, help="number of windows")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("export", help="export a run to an ONNX bundle (INT8 + FP32, parity-gated)")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--out", required=True, type=Path, metavar="BUNDLE")
    p.add_argument("--target", default=None, help="x86_64 or arm64 (default: this machine)")
    p.add_argument("--no-int8", action="store_true", help="ship FP32 only")
    p.add_argument("--sign", type=Path, metavar="KEYDIR", help="sign manifest.json with KEYDIR/private.pem")
    p.add_argument("--force", action="store_true", help="write the bundle even if the FP32 parity gate fails")
    p.add_argument("--model-version", help="model version (dot-separated integers; default: UTC time)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    p.add_argument("--out", required=True, type=Path, metavar="KEYDIR")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("verify", help="check a bundle's hashes and (with --pubkey) its signature")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--pubkey", type=Path, help="public.pem, or the KEYDIR holding it")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("serve", help="run the gateway daemon: MQTT readings in, scores and alerts out")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", type=Path, metavar="FILE", help="gateway TOML (see firmware_configs/)")
    g.add_argument("--check-config", type=Path, metavar="FILE", help="validate FILE, list every problem, exit")
    p.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT (overrides the file)")
    p.add_argument("--gateway", metavar="ID", help="gateway id (overrides the file)")
    p.add_argument("--model", type=Path, metavar="BUNDLE", help="default bundle for every asset (overrides)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("alerts", help="watch alerts and gateway status across a fleet (live table or JSON lines)")
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--tls-ca", default="", metavar="FILE", help="CA certificate for mqtts://")
    p.add_argument("--username", default="", metavar="U")
    p.add_argument("--password-file", type=Path, metavar="FILE",
                   help="file holding the password (default: $EDGE_AAE_MQTT_PASSWORD when --username is given)")
    p.add_argument("--root", default="edge-aae", help="topic root (default: edge-aae)")
    p.add_argument("--gateway", default="+", help="only this gateway (default: all)")
    p.add_argument("--asset", default="+", help="only this asset (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("deploy", help="push a signed bundle to a gateway over MQTT (over-the-air update)")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--gateway", required=True, metavar="GW")
    p.add_argument("--root", default="edge-aae", help="topic root (default: edge-aae)")
    p.add_argument("--asset", default="", help="replace this asset's model (default: the gateway's default model)")
    p.add_argument("--tls-ca", default="", metavar="FILE")
    p.add_argument("--username", default="", metavar="U")
    p.add_argument("--password-file", type=Path, metavar="FILE")
    p.add_argument("--chunk-kb", type=int, default=128, help="split the bundle into messages of this size")
    p.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for the outcome (0: none)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("demo", help="the whole product in minutes: synth, train, export, broker, daemon, live alerts")
    p.add_argument("--broker", metavar="URL", help="use this broker instead of starting a local mosquitto")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="working folder (default: demo-out)")
    p.add_argument("--fast", action="store_true", help="shorter training (for a quick look or CI)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks that write BENCHMARKS.md sections")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("train", help="training time and quality on synthetic data, AAE vs plain AE")
    b.add_argument("--out", type=Path, default=Path("bench-out/train"))
    b.add_argument("--seed", type=int, default=0)
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
    b.add_argument("--out", type=Path, default=Path("bench-out/quality"))
    b.add_argument("--limit", type=int, help="only the first N files/entities (a quick look)")
    b.add_argument("--epochs", type=int, help="training epochs (default: the TrainConfig default)")
    b.add_argument("--relative-channels", default="",
                   help="channels scored on their shape within each window, not their level (e.g. temperatures)")
    b.add_argument("--score-stat", choices=SCORE_STATS, default="error",
                   help="error: squared reconstruction error (default); shift: T² of the mean residual")
    b.add_argument("--threshold", choices=THRESHOLD_METHODS, default="pot",
                   help="label-free threshold rule (t2: the shift score's Hotelling limit)")
    b.add_argument("--preset", choices=["auto", "none"], default="auto",
                   help="auto (default): settings chosen from each unit's training data alone; none: the defaults")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig key for every model, e.g. --set window_len=16 (repeatable)")
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_quality)
    b = bench.add_parser("daemon", help="edge-aae serve vs a bare paho subscriber: readings/s, latency, RSS")
    b.add_argument("--bundle", type=Path, required=True, help="bundle directory to serve")
    b.add_argument("--readings", type=int, default=20000, help="readings per throughput run")
    b.add_argument("--assets", type=int, default=8)
    b.add_argument("--update", type=Path, metavar="MD", help="write the table into this Markdown file")
    b.set_defaults(func=cmd_bench_daemon)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-aae`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except EdgeAAEError as exc:
        print(f"edge-aae {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        missing = _missing_extra(exc)
        if missing is None:
            raise
        print(f"edge-aae {args.command}: error: this needs {missing}, which the base (gateway) install leaves out: "
              "pip install 'edge-aae[train]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


TRAIN_EXTRA = ("torch", "onnx", "matplotlib", "tqdm")


def _missing_extra(exc: ImportError) -> str | None:
    """The ``[train]`` extra's module an ImportError is about, if it is one."""
    name = (exc.name or "").split(".")[0]
    if name in TRAIN_EXTRA:
        return name
    text = str(exc)
    return next((m for m in TRAIN_EXTRA if f"'{m}'" in text or text.startswith(m) or f" {m} " in text), None)


def _channels(args: argparse.Namespace) -> list[str] | None:
    if not args.channels:
        return None
    names = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not names:
        raise UsageError("--channels: no channel names given")
    return names


def cmd_synth(args: argparse.Namespace) -> int:
    """``edge-aae synth``."""
    from edge_aae import synth

    try:
        result = synth.generate(args.seed, args.train_rows, args.test_rows, args.faults_per_kind)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    synth.write_dataset(args.out, result, args.seed)
    kinds = sorted({f.kind for f in result.faults})
    print(f"wrote {args.out}/train.csv ({result.train.shape[0]} rows, normal), "
          f"{args.out}/test.csv ({result.test.shape[0]} rows, {len(result.faults)} faults: {', '.join(kinds)}), "
          f"{args.out}/faults.json")
    return 0


def _train_config(args: argparse.Namespace) -> Any:
    from edge_aae.config import TrainConfig, load_train_config
    from edge_aae.errors import ConfigError

    base = load_train_config(args.config) if args.config else TrainConfig()
    overrides = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    try:
        return base.replace(**overrides)
    except ConfigError as exc:
        raise UsageError(f"invalid option: {exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    """``edge-aae train``."""
    config = _train_config(args)
    from edge_aae.data import load_series
    from edge_aae.detector import AAEDetector

    data = load_series(args.data, time_col=args.time_col, channels=_channels(args),
                       max_nan_run=config.max_nan_run, max_gap_factor=config.max_gap_factor)
    print(f"{args.data}: {data.n_rows} rows, {len(data.channels)} channels, "
          f"{len(data.segments)} segment(s), sample period {data.sample_period_s:g} s")
    det = AAEDetector(config).fit(data, progress=not args.quiet)
    det.save(args.out)
    _write_report_plot(det, data, args.out)
    rep = det.report_
    assert rep is not None  # set by fit()
    last = rep["history"][rep["best_epoch"] - 1]
    cfg = det.config
    if len(rep["history"]) < cfg.epochs:
        print(f"stopped early at epoch {len(rep['history'])} of {cfg.epochs}: no better validation loss for "
              f"{cfg.patience} epochs; best epoch {rep['best_epoch']} (validation loss {last['val_loss']:.5f})")
    for d in rep.get("preset", {}).get("decisions", []):
        print(f"preset {cfg.preset}: {d['key']} = {d['value']!r} ({d['reason']})")
    rows = [("epochs run / best", f"{len(rep['history'])} / {rep['best_epoch']}"),
            ("validation loss", f"{last['val_loss']:.5f}"),
            ("discriminator accuracy", f"{last['disc_acc']:.2f}"),
            ("MMD² codes vs prior", f"{rep['mmd_codes_vs_prior']:.4f}"),
            (f"threshold ({det.threshold_rule_}, far {cfg.target_far:g})", f"{det.threshold_:.4f}"),
            ("device / time", f"{rep['device']} / {rep['train_seconds']:.1f} s")]
    _print_table(["", "value"], rows)
    for w in rep["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    print(f"wrote run directory {args.out} (model.json, weights.pt, report.json, report.png)")
    return 0


def _write_report_plot(det: Any, data: Any, out: Path) -> None:
    import numpy as np
    import torch

    from edge_aae.report import plot_training_report
    from edge_aae.windows import series_windows

    windows, _ = series_windows(data, det.config.window_len, max(1, data.n_rows // 2000))
    with torch.no_grad():
        codes = det.scorer_.encoder(det.scorer_.scale_input(torch.from_numpy(windows))).numpy()
        prior = det.scorer_.prior.sample(codes.shape[0], torch.Generator().manual_seed(0)).numpy()
    plot_training_report(out / "report.png", det.report_, codes[:, :2] if codes.shape[1] > 1 else
                         np.c_[codes, np.zeros_like(codes)], prior[:, :2] if prior.shape[1] > 1 else
                         np.c_[prior, np.zeros_like(prior)])


def _model_and_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """The MODEL argument opened (run or bundle) and ``--data`` read with that model's gap rules."""
    from edge_aae.data import load_series

    if not args.model.exists():
        raise UsageError(f"{args.model}: no such run directory or bundle")
    scorer = _open_model(args.model)
    data = load_series(args.data, time_col=args.time_col, channels=_channels(args), label_col=args.label_col,
                       max_nan_run=scorer.max_nan_run, max_gap_factor=scorer.max_gap_factor)
    return scorer, data


def cmd_score(args: argparse.Namespace) -> int:
    """``edge-aae score``."""
    from edge_aae.scores import write_scores_csv

    scorer, data = _model_and_data(args)
    result = scorer.score(data)
    write_scores_csv(args.out, result)
    flagged = int(result.is_anomaly.sum())
    print(f"scored {result.score.size} windows of {args.data}; {flagged} over threshold "
          f"{result.threshold:.4f}; wrote {args.out}")
    if data.labels is not None:
        from edge_aae.metrics import auroc

        y = data.labels[result.ends]
        if y.any() and not y.all():
            print(f"window AUROC (label of each window's last sample): {auroc(y, result.score):.4f}")
        else:
            print(f"window AUROC: not defined: every window is labelled {int(y[0]) if y.size else '-'} "
                  "(it needs normal and anomalous windows)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``edge-aae eval``."""
    from edge_aae.evaluate import alerts_from_scores, evaluate, plot_eval, read_interpretation, write_metrics

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
    _print_table(["metric", "value"], rows)
    print(f"{metrics['points']} points scored; the first {metrics['points_without_window']} point(s) of the "
          "segments have no full window and are left out")
    print(f"wrote {args.out / 'metrics.json'}, {', '.join(str(p) for p in plots)}")
    return 0


class _RunScorer:
    """Adapter: a run directory behind the interface ``score`` needs."""

    def __init__(self, path: Path) -> None:
        from edge_aae.detector import AAEDetector

        self.detector = AAEDetector.load(path)
        self.max_nan_run = self.detector.config.max_nan_run
        self.max_gap_factor = self.detector.config.max_gap_factor

    def score(self, data: Any) -> Any:
        return self.detector.score(data)


def _open_model(path: Path) -> Any:
    if (path / "model.json").is_file():
        return _RunScorer(path)
    if (path / "manifest.json").is_file():
        from edge_aae.gateway.scorer import BundleScorer

        return BundleScorer(path)
    raise UsageError(f"{path}: neither a run directory (model.json) nor a bundle (manifest.json)")


def cmd_sample(args: argparse.Namespace) -> int:
    """``edge-aae sample``."""
    from edge_aae.detector import AAEDetector

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
    print(f"wrote {args.n} synthetic windows of {det.config.window_len} steps to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``edge-aae export``."""
    if not args.run.is_dir():
        raise UsageError(f"{args.run}: no such run directory")
    from export.bundle import build_bundle

    rep = build_bundle(args.run, args.out, target=args.target, int8=not args.no_int8, sign_dir=args.sign,
                       force=args.force, version=args.model_version)
    f = rep.fp32
    rows: list[list[object]] = [["FP32 ONNX vs torch: max |Δscore| / spread", f"{f.max_rel_diff:.2e}",
                                 f"<= {f.limit:.0e}", "pass" if f.passed else "FAIL"]]
    if rep.int8 is not None:
        q = rep.int8
        rows += [["INT8 form tried last", {"static": "static (int8 weights and activations)",
                                           "weights": "weights-only (FP32 arithmetic)"}.get(
                      rep.int8_quantization, rep.int8_quantization), "", ""],
                 ["INT8 vs FP32: alert decision agreement", f"{q.decision_agreement:.4f}",
                  f">= {q.limits['decision_agreement']}", _ok(q.decision_agreement >= q.limits["decision_agreement"])],
                 ["INT8 vs FP32: Spearman rank correlation", f"{q.spearman:.4f}",
                  f">= {q.limits['spearman']}", _ok(q.spearman >= q.limits["spearman"])],
                 ["INT8 vs FP32: Spearman on normal windows alone", f"{q.spearman_normal:.4f}",
                  f">= {q.limits['spearman_normal']}", _ok(q.spearman_normal >= q.limits["spearman_normal"])],
                 ["INT8 vs FP32: top channel on flagged", f"{q.top_channel_agreement:.4f}",
                  f">= {q.limits['top_channel_agreement']}",
                  _ok(q.top_channel_agreement >= q.limits["top_channel_agreement"])],
                 ["INT8: unfused weight DequantizeLinear", str(rep.unfused_dequant), "0",
                  _ok(rep.unfused_dequant == 0)]]
    _print_table(["parity gate", "value", "limit", ""], rows)
    if len(rep.int8_attempts) > 1 or (rep.int8_attempts and not rep.int8_attempts[0]["passed"]):
        print("INT8 variants tried, in order (the first that passes ships):")
        _print_table(["form", "FP32 layers", "calibration", "gate", "missed by"],
                     [[a["quantization"], ", ".join(a["fp32_layers"]) or "none", a["calibration"],
                       "pass" if a["passed"] else "FAIL",
                       "; ".join(f"{f['criterion']} {f['value']} < {f['limit']} (by {f['short_by']})"
                                 for f in a["failed"]) or "-"] for a in rep.int8_attempts])
    sizes = ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in rep.sizes.items())
    print(f"model.onnx = {rep.default_kind.upper()}: {rep.default_reason}")
    print(f"sizes: {sizes}" + ("; batch-1 latency: " + ", ".join(f"{k} {v:.0f} us" for k, v in rep.latency_us.items())
                               if rep.latency_us else ""))
    print(f"wrote bundle {rep.bundle} (model.onnx, model.fp32.onnx, manifest.json, parity.json"
          + (", manifest.sig)" if rep.signed else ")"))
    return 0


def _ok(flag: bool) -> str:
    return "pass" if flag else "FAIL"


def cmd_keygen(args: argparse.Namespace) -> int:
    """``edge-aae keygen``."""
    from export.signing import generate_keypair

    private, public = generate_keypair(args.out)
    print(f"wrote {private} (keep it secret, mode 0600) and {public} (give it to gateways)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``edge-aae verify``: exit 0 when every check passes, 1 otherwise."""
    from edge_aae.gateway.bundle import verify_bundle

    problems = verify_bundle(args.bundle, args.pubkey)
    if problems:
        for p in problems:
            print(f"FAILED: {p}", file=sys.stderr)
        return 1
    what = "hashes and signature" if args.pubkey else "hashes (no --pubkey: signature not checked)"
    print(f"{args.bundle}: OK ({what})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``edge-aae serve``: torch-free."""
    from edge_aae.gateway.serve import check_config, serve

    overrides = {"broker_url": args.broker, "gateway_id": args.gateway,
                 "model": str(args.model) if args.model else None}
    if args.check_config:
        return check_config(args.check_config, overrides)
    return serve(args.config, overrides, logging.DEBUG if args.verbose else logging.INFO)


def cmd_deploy(args: argparse.Namespace) -> int:
    """``edge-aae deploy`` (torch-free)."""
    from edge_aae.deploy import deploy_bundle, read_password

    if args.chunk_kb < 1:
        raise UsageError("--chunk-kb must be at least 1")
    return deploy_bundle(args.bundle, args.broker, args.gateway, root=args.root, asset=args.asset,
                         tls_ca=args.tls_ca, username=args.username,
                         password=read_password(args.password_file, args.username), chunk_kb=args.chunk_kb,
                         wait_s=args.wait)


def cmd_demo(args: argparse.Namespace) -> int:
    """``edge-aae demo``."""
    from edge_aae.demo import run_demo

    logging.getLogger().setLevel(logging.ERROR)
    return run_demo(args.out, args.broker, args.fast)


def cmd_alerts(args: argparse.Namespace) -> int:
    """``edge-aae alerts`` (torch-free)."""
    from edge_aae.alerts_view import run_alerts

    logging.getLogger().setLevel(logging.ERROR)  # the table is the output; paho retries are expected
    return run_alerts(args.broker, root=args.root, gateway=args.gateway, asset=args.asset, tls_ca=args.tls_ca,
                      username=args.username, password_file=args.password_file, as_json=args.json)


def cmd_bench_train(args: argparse.Namespace) -> int:
    """``edge-aae bench train``."""
    from edge_aae.bench_train import run_train_bench

    _, table = run_train_bench(args.out, args.seed)
    return _publish_bench(args.update, "train", "Training on the synthetic pump", table,
                          f"edge-aae bench train --seed {args.seed}")


def cmd_bench_speed(args: argparse.Namespace) -> int:
    """``edge-aae bench speed``."""
    if not (args.run / "model.json").is_file():
        raise UsageError(f"{args.run}: no run directory (run `edge-aae bench train` first, or pass --run)")
    from export.bench_speed import run_speed_bench

    return _publish_bench(args.update, "speed", "Inference speed", run_speed_bench(args.run),
                          f"edge-aae bench speed --run {args.run}")


def cmd_bench_quality(args: argparse.Namespace) -> int:
    """``edge-aae bench quality``."""
    import dataclasses

    from edge_aae.config import TrainConfig
    from export.bench_quality import run_quality_bench

    if not args.path.is_dir():
        raise UsageError(f"--path {args.path}: no such folder")
    cfg = TrainConfig(relative_channels=args.relative_channels, score_stat=args.score_stat,
                      threshold=args.threshold, preset=args.preset)
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.set:
        cfg = TrainConfig.from_dict(cfg.to_dict() | _parse_settings(args.set), source="--set")
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
    section = (f"quality-{args.dataset}" + ("-preset-none" if args.preset == "none" else "")
               + ("-relative" if args.relative_channels else "")
               + ("" if args.score_stat == "error" else f"-{args.score_stat}")
               + ("-custom" if args.set else ""))
    out = args.out / section.removeprefix("quality-")
    if args.interpretation_inclusive:
        command += " --interpretation-inclusive"
    _, table = run_quality_bench(args.dataset, args.path, out, cfg, args.limit,
                                 interpretation_inclusive=args.interpretation_inclusive)
    layout = "SMD layout" if args.dataset == "smd" else "folder layout"
    title = "SKAB" if args.dataset == "skab" else f"{args.path.resolve().name.upper()} ({layout})"
    details = ([f"{args.relative_channels} scored by shape"] if args.relative_channels else []) + (
        [f"{args.score_stat} score, threshold {args.threshold}"] if args.score_stat != "error" else [])
    title += "".join(f", {d}" for d in details)
    return _publish_bench(args.update, section, f"Quality: {title}", table, command)


def _parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to TrainConfig values, typed by the field's default.

    Raises:
        UsageError: an item without ``=``, an unknown key, or a value of the wrong type.

    """
    from edge_aae.config import TrainConfig

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
        try:
            out[key] = value if kind is str else kind(value)
        except ValueError:
            raise UsageError(f"--set {item}: {key} needs {'an integer' if kind is int else 'a number'}, "
                             f"got {value!r}") from None
    return out


def cmd_bench_daemon(args: argparse.Namespace) -> int:
    """``edge-aae bench daemon`` (torch-free; needs mosquitto)."""
    from edge_aae.bench_daemon import run_daemon_bench

    if args.readings < 1000 or args.assets < 1:
        raise UsageError("--readings must be >= 1000 and --assets >= 1")
    _, table = run_daemon_bench(args.bundle, args.readings, args.assets)
    return _publish_bench(args.update, "daemon", "Gateway daemon throughput", table,
                          f"edge-aae bench daemon --bundle {args.bundle} --readings {args.readings} "
                          f"--assets {args.assets}")


def _publish_bench(markdown: Path | None, name: str, title: str, table: str, command: str) -> int:
    """Print a benchmark table and, with ``--update``, write it into that Markdown file's section."""
    print(table)
    if markdown:
        from edge_aae.benchmarks import update_section

        update_section(markdown, name, f"## {title}\n\n{table}", command)
        print(f"updated {markdown}")
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
