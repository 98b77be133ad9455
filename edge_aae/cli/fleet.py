"""Subcommands on the broker's other side: ``alerts`` and ``deploy`` (torch-free)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edge_aae.core.errors import UsageError


def _add_broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--root", default="edge-aae", help="topic root (default: edge-aae)")
    p.add_argument("--tls-ca", default="", metavar="FILE", help="CA certificate for mqtts://")
    p.add_argument("--username", default="", metavar="U", help="MQTT user name")
    p.add_argument("--password-file", type=Path, metavar="FILE",
                   help="file holding the password (default: $EDGE_AAE_MQTT_PASSWORD when --username is given)")


def register(sub: Any) -> None:
    """Add ``alerts`` and ``deploy`` to the top-level parser's subparsers."""
    p = sub.add_parser("alerts", help="watch alerts and gateway status across a fleet (live table or JSON lines)",
                       description="Watch alerts and gateway status. Example: edge-aae alerts --broker "
                                   "mqtt://localhost:1883 --gateway pump-gw-01")
    _add_broker_args(p)
    p.add_argument("--gateway", default="+", help="only this gateway (default: all)")
    p.add_argument("--asset", default="+", help="only this asset (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("deploy", help="push a signed bundle to a gateway over MQTT (over-the-air update)",
                       description="Push a signed bundle to a gateway and wait for its outcome. Example: "
                                   "edge-aae deploy bundles/pump --broker mqtt://localhost:1883 --gateway pump-gw-01")
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="signed bundle folder")
    _add_broker_args(p)
    p.add_argument("--gateway", required=True, metavar="GW", help="gateway id")
    p.add_argument("--asset", default="", help="replace this asset's model (default: the gateway's default model)")
    p.add_argument("--chunk-kb", type=int, default=128, help="split the bundle into messages of this size "
                                                             "(default: 128)")
    p.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the outcome (0: none; default: 60)")
    p.set_defaults(func=cmd_deploy)


def cmd_alerts(args: argparse.Namespace) -> int:
    """``edge-aae alerts``."""
    from edge_aae.client.alerts_view import run_alerts

    logging.getLogger().setLevel(logging.ERROR)  # the table is the output; paho retries are expected
    return run_alerts(args.broker, root=args.root, gateway=args.gateway, asset=args.asset, tls_ca=args.tls_ca,
                      username=args.username, password_file=args.password_file, as_json=args.json)


def cmd_deploy(args: argparse.Namespace) -> int:
    """``edge-aae deploy``."""
    from edge_aae.client.deploy import deploy_bundle, read_password

    if args.chunk_kb < 1:
        raise UsageError("--chunk-kb must be at least 1")
    return deploy_bundle(args.bundle, args.broker, args.gateway, root=args.root, asset=args.asset,
                         tls_ca=args.tls_ca, username=args.username,
                         password=read_password(args.password_file, args.username), chunk_kb=args.chunk_kb,
                         wait_s=args.wait)
