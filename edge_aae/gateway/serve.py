"""``edge-aae serve``: load and check the config, then run the daemon until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from edge_aae.gateway.config import device_problems, read_gateway_config

log = logging.getLogger(__name__)


def check_config(path: Path, overrides: dict[str, Any] | None = None) -> int:
    """Print every problem of a config file (and whether its bundles open); 0 when there is none."""
    cfg, problems = read_gateway_config(path, overrides)
    # Things only the device has (secrets, TLS files, deployed bundles) are warnings here:
    # configs are checked on a workstation before they are shipped.
    warnings = ([f"{path}: {w} (needed when the daemon starts)" for w in device_problems(cfg)]
                if cfg is not None and not problems else [])
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: OK (gateway {cfg.gateway_id if cfg else '?'}"
          + (f", {len(warnings)} warning(s))" if warnings else ")"))
    return 0


def serve(path: Path, overrides: dict[str, Any], log_level: int = logging.INFO) -> int:
    """Run the daemon; returns the exit status (0 after a clean shutdown).

    Raises:
        ConfigError, ModelMismatchError, CorruptModelError: refused at start (exit 1).

    """
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon

    logging.getLogger().setLevel(log_level)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    cfg = load_gateway_config(path, overrides)
    daemon = Daemon(cfg)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return daemon.run()
