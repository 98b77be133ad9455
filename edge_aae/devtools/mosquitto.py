"""A local mosquitto broker on a free loopback port: for the demo, benchmarks and tests.

It runs as a child process with its own config, persistence and log in one folder,
and can be stopped, killed and restarted on the same port.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edge_aae.core.errors import EdgeAAEError

log = logging.getLogger(__name__)

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto(install: bool = True) -> str:
    """Path of the mosquitto binary; installs it with apt-get when missing and possible.

    Raises:
        EdgeAAEError: not found and not installable (the message says what to do).

    """
    for c in CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        log.info("mosquitto not found; installing it with apt-get")
        subprocess.run(["apt-get", "install", "-y", "mosquitto"], check=False, capture_output=True, timeout=300)
        for c in CANDIDATES:
            found = shutil.which(c)
            if found:
                return found
    raise EdgeAAEError("mosquitto is not installed and could not be installed here: run "
                       "`sudo apt-get install -y mosquitto` (Debian/Ubuntu) or `brew install mosquitto` (macOS), "
                       "or pass --broker mqtt://HOST:PORT to use a broker you already have")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """``start()``, ``stop()`` (SIGTERM), ``kill()`` (SIGKILL), ``restart()``; same port and persistence."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "",
                 tls: dict[str, Path] | None = None) -> None:
        """Write the config; the broker is not started yet.

        ``tls``: ``{"ca", "cert", "key"}`` files make the listener TLS-only (``mqtts://``).
        """
        self.tls = tls
        self.binary = find_mosquitto()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + (f"cafile {tls['ca']}\ncertfile {tls['cert']}\nkeyfile {tls['key']}\ntls_version tlsv1.2\n"
               if tls else "")
            + ("allow_anonymous true\n" if "allow_anonymous" not in extra_conf else "")
            + f"persistence true\npersistence_location {self.dir}/\nautosave_interval 1\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            "max_queued_messages 100000\n"
            # as firmware_configs/mosquitto-bridge.conf sets up a gateway's broker: Nagle's
            # algorithm off, or readings and scores wait on delayed TCP acknowledgements
            "set_tcp_nodelay true\n"
            # started as root, mosquitto drops to the 'mosquitto' user and then cannot write its
            # log or persistence file here: stay the user that owns the folder
            + ("user root\n" if os.geteuid() == 0 else "") + extra_conf)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` (``mqtts://`` with TLS)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                raise EdgeAAEError(f"mosquitto exited at start: {err} {log[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise EdgeAAEError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM and wait (mosquitto saves its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop, then start on the same port."""
        self.stop()
        self.start()
