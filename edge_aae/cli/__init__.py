"""The ``edge-aae`` command line: one program, one subcommand per task.

Each side registers its own subcommands: :mod:`~edge_aae.cli.workstation` (synth,
train, score, eval, sample), :mod:`~edge_aae.cli.bundle` (export, keygen, verify),
:mod:`~edge_aae.cli.gateway` (serve), :mod:`~edge_aae.cli.fleet` (alerts, deploy),
:mod:`~edge_aae.cli.tools` (demo, bench). This package is the only part of
``edge_aae`` that imports the ``export`` toolchain, and only inside commands.

Exit status: 0 success, 1 bad data or model, 2 usage error, 130 interrupted.
Heavy imports (torch) happen inside the commands that need them, so commands
that run on a gateway (``score BUNDLE``, ``serve``) stay torch-free.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from edge_aae import __version__
from edge_aae.cli import bundle, fleet, gateway, tools, workstation
from edge_aae.core.errors import EdgeAAEError

DESCRIPTION = ("edge-aae: anomaly detection on industrial sensor streams. Train an adversarial autoencoder on a "
               "workstation, export it to one ONNX bundle, run it on gateways over MQTT.")
EPILOG = ("Example: edge-aae synth --out data/pump && edge-aae train --data data/pump/train.csv --out runs/pump && "
          "edge-aae export runs/pump --out bundles/pump. 'edge-aae COMMAND --help' describes each command.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="edge-aae", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"edge-aae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for side in (workstation, bundle, gateway, fleet, tools):
        side.register(sub)
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
        missing = missing_extra(exc)
        if missing is None:
            raise
        print(f"edge-aae {args.command}: error: this needs {missing}, which the base (gateway) install leaves out: "
              "pip install 'edge-aae[train]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)  # on a line of its own, not after a progress bar
        return 130


TRAIN_EXTRA = ("torch", "onnx", "matplotlib", "tqdm")


def missing_extra(exc: ImportError) -> str | None:
    """The ``[train]`` extra's module an ImportError is about, if it is one."""
    name = (exc.name or "").split(".")[0]
    if name in TRAIN_EXTRA:
        return name
    text = str(exc)
    return next((m for m in TRAIN_EXTRA if f"'{m}'" in text or text.startswith(m) or f" {m} " in text), None)
