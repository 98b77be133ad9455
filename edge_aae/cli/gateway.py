"""The gateway subcommand: ``serve`` (torch-free)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add ``serve`` to the top-level parser's subparsers."""
    p = sub.add_parser("serve", help="run the gateway daemon: MQTT readings in, scores and alerts out",
                       description="Run the gateway daemon. Example: edge-aae serve --config "
                                   "firmware_configs/x86-dev.toml --broker mqtt://localhost:1883")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", type=Path, metavar="FILE", help="gateway TOML (see firmware_configs/)")
    g.add_argument("--check-config", type=Path, metavar="FILE", help="validate FILE, list every problem, exit")
    g.add_argument("--print-default-config", action="store_true",
                   help="print a complete TOML with every key, its default and what it does, then exit")
    p.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT (overrides the file)")
    p.add_argument("--gateway", metavar="ID", help="gateway id (overrides the file)")
    p.add_argument("--model", type=Path, metavar="BUNDLE", help="default bundle for every asset (overrides)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``edge-aae serve``."""
    if args.print_default_config:
        from edge_aae.gateway.config import default_config_text

        print(default_config_text(), end="")
        return 0
    from edge_aae.gateway.serve import check_config, serve

    overrides = {"broker_url": args.broker, "gateway_id": args.gateway,
                 "model": str(args.model) if args.model else None}
    if args.check_config:
        return check_config(args.check_config, overrides)
    return serve(args.config, overrides, logging.DEBUG if args.verbose else logging.INFO)
