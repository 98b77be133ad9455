"""Prometheus ``/metrics``: the counters move while a real mosquitto feeds the daemon readings."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import free_port
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_series
from edge_aae.gateway.metrics import render
from edge_aae.gateway.stats import Stats

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> dict[str, float]:
    """``name{labels}`` -> value; every line is a comment or a well-formed sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) edge_aae_", line) or not line, line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(resp.read().decode("utf-8"))


def test_render_is_valid_text_format_with_a_cumulative_histogram():
    stats = Stats()
    for ms in (0.03, 0.3, 0.3, 7.0, 5000.0):
        stats.latency(ms)
    stats.add("readings_in", 5)
    stats.drop("queue_full", 2)
    page = parse(render(stats.snapshot(3, 1), stats.latency_histogram(), {"default": {"name": "pump", "version":
                                                                                      "1.2.0"}}, True))
    assert page["edge_aae_readings_received_total"] == 5
    assert page['edge_aae_dropped_total{reason="queue_full"}'] == 2
    assert page['edge_aae_inference_latency_seconds_bucket{le="5e-05"}'] == 1
    assert page['edge_aae_inference_latency_seconds_bucket{le="0.0005"}'] == 3
    assert page['edge_aae_inference_latency_seconds_bucket{le="1"}'] == 4
    assert page['edge_aae_inference_latency_seconds_bucket{le="+Inf"}'] == 5
    assert page["edge_aae_inference_latency_seconds_count"] == 5
    assert page["edge_aae_queue_depth"] == 3
    assert page['edge_aae_model_info{name="pump",slot="default",version="1.2.0"}'] == 1


def test_metrics_move_during_a_replay(broker, bundle, synth_dir, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra=f"[metrics]\nport = {port}\n")
    rec = Recorder(broker.port, "edge-aae/gw1/#")
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30), daemon.log()
        before = scrape(port)
        assert before["edge_aae_healthy"] == 1
        assert before['edge_aae_model_info{name="edge-aae",slot="default",version="1.0.0"}'] == 1
        test = load_series(synth_dir / "test.csv", label_col="label").slice_rows(0, 400)
        pub = publisher(broker.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", test, batch=20)
        deadline = time.monotonic() + 30
        after = scrape(port)
        while (after["edge_aae_windows_scored_total"] < 400 - 31 or after["edge_aae_readings_received_total"] < 400) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
            after = scrape(port)
        # the daemon's own probe readings count too: at least the 400 sent
        assert after["edge_aae_readings_received_total"] >= 400, after
        assert after["edge_aae_windows_scored_total"] == 400 - 31
        assert after['edge_aae_inference_latency_seconds_bucket{le="+Inf"}'] > 0
        assert after["edge_aae_resident_memory_bytes"] > 1e6
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert err.value.code == 404
        assert daemon.terminate() == 0
        pub.disconnect()
    finally:
        daemon.close()
        rec.close()


def test_a_metrics_port_in_use_is_one_line_at_start(bundle, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra=f"[metrics]\nport = {port}\n")
        p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "serve", "--config", str(cfg), "--broker",
                            "mqtt://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert f"metrics.port: cannot listen on 127.0.0.1:{port}" in p.stderr


def test_idle_connections_cannot_use_up_the_daemons_threads_or_files(broker, bundle, tmp_path):
    from edge_aae.gateway.metrics import MAX_CONNECTIONS, REQUEST_TIMEOUT_S

    port = free_port()
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra=f"[metrics]\nport = {port}\n")
    rec = Recorder(broker.port, "edge-aae/gw1/#")
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    idle: list[socket.socket] = []
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30), daemon.log()
        pid = daemon.proc.pid
        fds_before = len(os.listdir(f"/proc/{pid}/fd"))
        for _ in range(300):  # connect, send nothing, keep the socket open
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.0)
        threads = int(next(x for x in open(f"/proc/{pid}/status") if x.startswith("Threads:")).split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        assert fds <= fds_before + MAX_CONNECTIONS + 5, (fds_before, fds)
        assert threads <= 12 + MAX_CONNECTIONS, threads
        # the held connections are dropped after the request timeout: scraping works again
        deadline = time.monotonic() + REQUEST_TIMEOUT_S + 10
        while True:
            try:
                page = scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "/metrics never answered again"
                time.sleep(0.3)
        assert page["edge_aae_healthy"] == 1
        assert daemon.proc.poll() is None
    finally:
        for s in idle:
            s.close()
        daemon.close()
        rec.close()
