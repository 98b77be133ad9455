"""The daemon bench's latency probe: publisher and listener as processes of their own, on a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[2]


def test_paced_publisher_and_listener_time_each_message(broker, tmp_path):
    probe = [sys.executable, "-m", "export.bench.latency_probe"]
    msgs = [{"topic": f"edge-aae/bench/sensors/a{i % 2}", "payload": json.dumps({"ts": 1.7e9 + i, "values": {}}),
             "key": f"a{i % 2}/{1.7e9 + i!r}"} for i in range(60)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(m) for m in msgs) + "\n")
    ready = tmp_path / "ready"
    listener = subprocess.Popen([*probe, "listen", str(broker.port), "edge-aae/bench/sensors/+", "60",
                                 str(tmp_path / "at.json"), str(ready), "30"], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert listener.poll() is None, "listener exited"
        assert time.monotonic() < deadline, "listener did not subscribe"
        time.sleep(0.05)
    t0 = time.monotonic()
    subprocess.run([*probe, "publish", str(broker.port), str(tmp_path / "m.jsonl"), "200", str(tmp_path / "s.json")],
                   check=True, cwd=ROOT, timeout=60)
    assert time.monotonic() - t0 >= 60 / 200  # paced, not flat out
    assert listener.wait(30) == 0
    arrived, sent = json.loads((tmp_path / "at.json").read_text()), json.loads((tmp_path / "s.json").read_text())
    assert set(arrived) == set(sent) == {m["key"] for m in msgs}
    delays = np.array([arrived[k] - sent[k] for k in sent])
    assert (delays > 0).all()  # one clock for both processes
    assert (delays < 5).all()
