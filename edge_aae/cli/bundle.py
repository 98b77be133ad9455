"""Bundle subcommands: ``export`` (the only path into the ``export`` toolchain), ``keygen``, ``verify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_aae.cli.common import pass_fail, print_table
from edge_aae.core.errors import UsageError


def register(sub: Any) -> None:
    """Add this side's subcommands to the top-level parser's subparsers."""
    p = sub.add_parser("export", help="export a run to an ONNX bundle (INT8 + FP32, parity-gated)",
                       description="Export a run directory to a bundle: one ONNX graph (raw window in, score and "
                                   "per-channel contributions out), INT8 when it passes the parity gate. "
                                   "Example: edge-aae export runs/pump --out bundles/pump --sign keys")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by train")
    p.add_argument("--out", required=True, type=Path, metavar="BUNDLE", help="bundle folder to write (replaced)")
    p.add_argument("--target", default=None, help="x86_64 or arm64 (default: this machine)")
    p.add_argument("--no-int8", action="store_true", help="ship FP32 only")
    p.add_argument("--sign", type=Path, metavar="KEYDIR", help="sign manifest.json with KEYDIR/private.pem")
    p.add_argument("--force", action="store_true", help="write the bundle even if the FP32 parity gate fails")
    p.add_argument("--model-version", help="model version (dot-separated integers; default: UTC time)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing bundles",
                       description="Make an Ed25519 key pair: KEYDIR/private.pem (mode 0600, keep it on the "
                                   "workstation) and KEYDIR/public.pem (for gateways). Example: edge-aae keygen "
                                   "--out keys")
    p.add_argument("--out", required=True, type=Path, metavar="KEYDIR", help="folder to write the two PEM files")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("verify", help="check a bundle's hashes and (with --pubkey) its signature",
                       description="Check a bundle's file hashes and, with --pubkey, its signature. Exit 0 when "
                                   "every check passes. Example: edge-aae verify bundles/pump --pubkey keys")
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle folder")
    p.add_argument("--pubkey", type=Path, help="public.pem, or the KEYDIR holding it")
    p.set_defaults(func=cmd_verify)


def cmd_export(args: argparse.Namespace) -> int:
    """``edge-aae export``."""
    if not args.run.is_dir():
        raise UsageError(f"{args.run}: no such run directory")
    from export.bundle import build_bundle

    rep = build_bundle(args.run, args.out, target=args.target, int8=not args.no_int8, sign_dir=args.sign,
                       force=args.force, version=args.model_version)
    f = rep.fp32
    rows: list[list[object]] = [["FP32 ONNX vs torch: max |Δscore| / spread", f"{f.max_rel_diff:.2e}",
                                 f"<= {f.limit:.0e}", pass_fail(f.passed)]]
    if rep.int8 is not None:
        q = rep.int8
        rows += [["INT8 form tried last", {"static": "static (int8 weights and activations)",
                                           "weights": "weights-only (FP32 arithmetic)"}.get(
                      rep.int8_quantization, rep.int8_quantization), "", ""]]
        rows += [[f"INT8 vs FP32: {label}", f"{getattr(q, key):.4f}", f">= {q.limits[key]}",
                  pass_fail(getattr(q, key) >= q.limits[key])]
                 for key, label in (("decision_agreement", "alert decision agreement"),
                                    ("spearman", "Spearman rank correlation"),
                                    ("spearman_normal", "Spearman on normal windows alone"),
                                    ("top_channel_agreement", "top channel on flagged"))]
        if rep.unfused_dequant is None:  # counted only where onnxruntime runs on the target's CPU
            rows.append(["INT8: unfused weight DequantizeLinear", "not measured", "0",
                         f"the host is not the {rep.target} target"])
        else:
            rows.append(["INT8: unfused weight DequantizeLinear", str(rep.unfused_dequant), "0",
                         pass_fail(rep.unfused_dequant == 0)])
    print_table(["parity gate", "value", "limit", ""], rows)
    g = rep.gate_windows
    if g and rep.int8 is not None:
        print(f"INT8 gate windows: {g['validation']:,} validation" + (
            f" + {g['training']:,} training (a short validation stretch)" if g["training"] else "")
            + f" normal, {g['injected_faults']:,} with injected faults")
    if len(rep.int8_attempts) > 1 or (rep.int8_attempts and not rep.int8_attempts[0]["passed"]):
        print("INT8 variants tried, in order (the first that passes ships):")
        print_table(["form", "FP32 layers", "calibration", "gate", "missed by"],
                    [[a["quantization"], ", ".join(a["fp32_layers"]) or "none", a["calibration"],
                      pass_fail(a["passed"]),
                      "; ".join(f"{f['criterion']} {f['value']} < {f['limit']} (by {f['short_by']})"
                                for f in a["failed"]) or "-"] for a in rep.int8_attempts])
    sizes = ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in rep.sizes.items())
    print(f"model.onnx = {rep.default_kind.upper()}: {rep.default_reason}")
    lat = rep.latency_us
    print(f"sizes: {sizes}" + ("; latency per window (batch 1 / batch 64): " + ", ".join(
        f"{k} {lat[k]:.0f} / {lat.get(f'{k}_b64', float('nan')):.0f} us" for k in ("fp32", "int8") if k in lat)
        if lat else ""))
    print(f"wrote bundle {rep.bundle} (model.onnx, model.fp32.onnx, manifest.json, parity.json"
          + (", manifest.sig)" if rep.signed else ")"))
    return 0


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
