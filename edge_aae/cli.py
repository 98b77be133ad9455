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
from edge_aae.errors import EdgeAAEError, UsageError

log = logging.getLogger("edge_aae")

# flag name -> TrainConfig field, for `train`
TRAIN_FLAGS = {
    "epochs": int, "window_len": int, "stride": int, "arch": str, "hidden": int, "latent_dim": int,
    "prior": str, "n_components": int, "adversarial_weight": float, "latent_weight": float,
    "batch_size": int, "lr": float, "seed": int, "device": str, "threshold": str, "target_far": float,
    "patience": int, "max_train_windows": int,
}


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
    for name, typ in TRAIN_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, dest=name)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score a CSV with a run directory or exported bundle")
    p.add_argument("model", type=Path, metavar="MODEL", help="run directory or bundle")
    _add_data_args(p, label=True)
    p.add_argument("--out", required=True, type=Path, help="scores CSV to write")
    p.set_defaults(func=cmd_score)

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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


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
    rows = [("epochs run / best", f"{len(rep['history'])} / {rep['best_epoch']}"),
            ("validation loss", f"{last['val_loss']:.5f}"),
            ("discriminator accuracy", f"{last['disc_acc']:.2f}"),
            ("MMD² codes vs prior", f"{rep['mmd_codes_vs_prior']:.4f}"),
            (f"threshold ({config.threshold}, far {config.target_far:g})", f"{det.threshold_:.4f}"),
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


def cmd_score(args: argparse.Namespace) -> int:
    """``edge-aae score``."""
    from edge_aae.data import load_series
    from edge_aae.scores import write_scores_csv

    if not args.model.exists():
        raise UsageError(f"{args.model}: no such run directory or bundle")
    scorer = _open_model(args.model)
    data = load_series(args.data, time_col=args.time_col, channels=_channels(args), label_col=args.label_col,
                       max_nan_run=scorer.max_nan_run, max_gap_factor=scorer.max_gap_factor)
    result = scorer.score(data)
    write_scores_csv(args.out, result)
    flagged = int(result.is_anomaly.sum())
    print(f"scored {result.score.size} windows of {args.data}; {flagged} over threshold "
          f"{result.threshold:.4f}; wrote {args.out}")
    if data.labels is not None:
        from edge_aae.metrics import auroc

        print(f"window AUROC (label of each window's last sample): {auroc(data.labels[result.ends], result.score):.4f}")
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
        rows += [["INT8 vs FP32: alert decision agreement", f"{q.decision_agreement:.4f}",
                  f">= {q.limits['decision_agreement']}", _ok(q.decision_agreement >= q.limits["decision_agreement"])],
                 ["INT8 vs FP32: Spearman rank correlation", f"{q.spearman:.4f}",
                  f">= {q.limits['spearman']}", _ok(q.spearman >= q.limits["spearman"])],
                 ["INT8 vs FP32: top channel on flagged", f"{q.top_channel_agreement:.4f}",
                  f">= {q.limits['top_channel_agreement']}",
                  _ok(q.top_channel_agreement >= q.limits["top_channel_agreement"])],
                 ["INT8: unfused weight DequantizeLinear", str(rep.unfused_dequant), "0",
                  _ok(rep.unfused_dequant == 0)]]
    _print_table(["parity gate", "value", "limit", ""], rows)
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
