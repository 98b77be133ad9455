"""`edge-aae replay`: a CSV published as one asset's readings, in order, each acknowledged."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from edge_aae.core.data import assemble_series
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import ReplayPlan, replay


def write_csv(path, rows=23):
    lines = ["timestamp,a,b"]
    for i in range(rows):
        b = "" if i == 5 else f"{i * 0.5:.1f}"  # one missing cell
        lines.append(f"{1_700_000_000 + 2 * i},{i},{b}")
    path.write_text("\n".join(lines) + "\n")


def test_replay_publishes_every_reading_in_order(broker, tmp_path):
    write_csv(tmp_path / "s.csv")
    rec = Recorder(broker.port, "edge-aae/gw1/sensors/#")
    try:
        p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "replay", str(tmp_path / "s.csv"),
                            "--broker", broker.url, "--gateway", "gw1", "--asset", "pump1", "--rate", "0",
                            "--batch", "4", "--quiet"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "published 23 readings" in p.stdout
        assert rec.wait_for(lambda r: sum(len(m["ts"]) for m in r.json("/pump1")) >= 23, 10)
        msgs = rec.json("/pump1")
        ts = [t for m in msgs for t in m["ts"]]
        a = [v for m in msgs for v in m["values"]["a"]]
        b = [v for m in msgs for v in m["values"]["b"]]
        assert ts == [1_700_000_000 + 2 * i for i in range(23)]
        assert a == list(range(23))
        assert b[5] is None  # a missing value travels as null
        assert b[6] == 3.0
        assert [len(m["ts"]) for m in msgs] == [4, 4, 4, 4, 4, 3]
    finally:
        rec.close()


def test_replay_paces_by_the_recorded_time_and_loops_forward(broker):
    n = 10
    data = assemble_series("s", ["a"], 1_700_000_000.0 + np.arange(n), np.arange(n, dtype=float)[:, None], None)
    rec = Recorder(broker.port, "edge-aae/gw1/sensors/#")
    client = publisher(broker.port)
    try:
        t0 = time.monotonic()
        sent = replay(client, "edge-aae/gw1/sensors/p", data, ReplayPlan(speed=20.0, loop=True),
                      stop=lambda: time.monotonic() - t0 > 1.2)
        elapsed = time.monotonic() - t0
        assert 20 <= sent <= 30  # 20 readings a second for about 1.2 s: more than one lap
        assert elapsed >= 0.9
        assert rec.wait_for(lambda r: len(r.json("/p")) >= sent, 10)
        ts = [m["ts"] for m in rec.json("/p")]
        assert all(b > a for a, b in zip(ts, ts[1:], strict=False))  # the second lap goes on in time
        assert ts[n] == ts[n - 1] + 1.0
    finally:
        client.disconnect()
        rec.close()


def test_replay_usage_errors_exit_2(tmp_path):
    write_csv(tmp_path / "s.csv")
    for extra in (["--broker", "http://x"], ["--broker", "mqtt://127.0.0.1:1", "--batch", "0"],
                  ["--broker", "mqtt://127.0.0.1:1", "--asset", "a/b"]):
        args = ["--gateway", "gw1", "--asset", "p", *extra]
        p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "replay", str(tmp_path / "s.csv"), *args],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (extra, p.stderr)
        assert "Traceback" not in p.stderr
