"""systemd: the notify protocol against a live daemon, and the unit file against the configs."""

from __future__ import annotations

import configparser
import socket
import time
import tomllib
from pathlib import Path

from edge_aae.devtools.daemon_process import DaemonProcess, write_config

ROOT = Path(__file__).resolve().parents[2]


def test_daemon_says_ready_feeds_the_watchdog_and_says_stopping(broker, bundle, tmp_path, monkeypatch):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(1.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    daemon = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    got: list[dict[str, str]] = []

    def receive_until(key: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(4096).decode()
            except TimeoutError:
                continue
            got.append(dict(line.split("=", 1) for line in data.splitlines()))
            if key in got[-1]:
                return
        raise AssertionError(f"no {key} from the daemon: {got[-3:]}\n{daemon.log()[-1500:]}")

    try:
        receive_until("READY", 30)
        receive_until("WATCHDOG", 5)
        receive_until("WATCHDOG", 5)  # fed again, about every second
        assert any(m.get("STATUS") == "healthy" for m in got), got  # health rides along with each ping
        assert daemon.terminate() == 0
        receive_until("STOPPING", 10)
    finally:
        daemon.close()
        sock.close()


def test_unit_file_matches_the_configs_and_the_image():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keys are case-sensitive in systemd
    unit.read(ROOT / "firmware_configs" / "edge-aae.service")
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert "serve --config /etc/edge-aae/gateway.toml" in svc["ExecStart"]
    assert svc["Restart"] == "on-failure"
    assert float(svc["WatchdogSec"]) >= 10  # fed every second: generous for a slow SD card
    assert svc["User"] not in ("root", "")
    assert svc["StateDirectory"] == "edge-aae"
    assert "password" not in (ROOT / "firmware_configs" / "edge-aae.service").read_text().split("[Unit]")[1].lower()
    state = Path("/var/lib") / svc["StateDirectory"]
    for path in sorted((ROOT / "firmware_configs").glob("*.toml")):
        cfg = tomllib.loads(path.read_text())
        if not str(cfg["outbox"]["dir"]).startswith("/"):
            continue  # the developer config keeps relative paths
        for key in (cfg["outbox"]["dir"], cfg["update"]["models_dir"]):
            assert Path(key).is_relative_to(state), f"{path.name}: {key} outside {state}"
