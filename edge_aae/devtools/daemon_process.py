"""Run ``edge-aae serve`` as a subprocess against a test broker, with torch made unimportable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NO_TORCH = "raise ImportError('torch is not available on a gateway (blocked by the test)')\n"


def block_torch(tmp: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import torch`` fail."""
    d = tmp / "no_torch"
    (d / "torch").mkdir(parents=True, exist_ok=True)
    (d / "torch" / "__init__.py").write_text(NO_TORCH)
    return d


def write_config(path: Path, bundle: Path, outbox: Path, extra: str = "", gateway: str = "gw1",
                 runtime: str = "") -> Path:
    """A gateway config for tests: fast stats, generous error rate limit; ``runtime``: more [runtime] keys."""
    path.write_text(f'''gateway_id = "{gateway}"
[models]
default = "{bundle}"
[runtime]
batch_wait_ms = 5
{runtime}
[alerting]
k = 3
n = 5
m = 10
cooldown_s = 30
[publish]
stats_interval_s = 1
errors_per_s = 1000
[outbox]
dir = "{outbox}"
''' + extra)
    return path


class DaemonProcess:
    """``edge-aae serve`` in a child process; stdout/stderr go to a log file."""

    def __init__(self, tmp: Path, config: Path, broker_url: str) -> None:
        """Start it (returns at once; wait on the status topic for ``online``)."""
        self.log_path = tmp / f"daemon-{time.monotonic_ns()}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(block_torch(tmp)), env.get("PYTHONPATH", "")])
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "serve", "--config", str(config),
                                      "--broker", broker_url], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)

    def log(self) -> str:
        """Everything the daemon printed so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 20) -> int:
        """SIGTERM and wait; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL."""
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        """Make sure it is gone."""
        if self.proc.poll() is None:
            self.kill()
        self._log.close()
