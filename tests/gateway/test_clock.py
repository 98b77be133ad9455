"""A gateway whose clock is behind its sensors' (no RTC, no NTP) still hears them.

A flood of readings from the future cannot teach it a lead while honest sensors are heard.
"""

from __future__ import annotations

import json

import numpy as np

from edge_aae.core.contract import validation_errors
from edge_aae.devtools.daemon_process import write_config
from edge_aae.gateway.clock import MIN_REFUSED, PERIOD_S, SensorClock


def test_a_clock_behind_is_learned_after_a_period_with_nothing_accepted():
    c = SensorClock(max_future_s=300)
    assert c.limit(1000.0) == 1300.0
    t = 0.0
    for i in range(MIN_REFUSED + 5):  # every reading about an hour ahead: all refused
        c.refused(3600.0 + (i % 3), t)
        t += PERIOD_S / 30
    learned = c.refused(3601.0, t + PERIOD_S)  # the period ends
    assert learned == 3600.0
    assert c.limit(1000.0) == 1000.0 + 3600.0 + 300
    # the clock is set (NTP): readings now come with no lead and are accepted; the lead follows them down
    t += 2 * PERIOD_S
    c.accepted(0.4, t)
    for _ in range(10):
        c.accepted(0.5, t + 1)
    assert c.accepted(0.5, t + PERIOD_S + 1) == 0.4
    c.accepted(-0.2, t + PERIOD_S + 2)
    assert c.accepted(0.1, t + 2 * PERIOD_S + 3) == 0.0
    assert c.lead_s == 0.0


def test_future_readings_teach_nothing_while_honest_ones_are_heard():
    c = SensorClock(max_future_s=300)
    t = 0.0
    for _ in range(3):  # three periods of a flood far in the future beside one honest asset
        for _ in range(200):
            c.refused(1e6, t)
            t += PERIOD_S / 400
        c.accepted(0.2, t)
        t += PERIOD_S / 2
    assert c.lead_s == 0.0


def test_too_few_refusals_teach_nothing():
    c = SensorClock(max_future_s=300)
    for i in range(MIN_REFUSED - 1):
        c.refused(3600.0, i * 2.0)
    c.refused(3600.0, 10 * PERIOD_S)
    assert c.lead_s == 0.0


def test_the_daemon_hears_sensors_ahead_of_its_clock_after_a_period(tmp_path, bundle, monkeypatch):
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon

    channels = json.loads((bundle / "manifest.json").read_text())["channels"]
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox")
    d = Daemon(load_gateway_config(cfg, {"broker_url": "mqtt://127.0.0.1:1"}))
    wall, mono = [1_700_000_000.0], [100.0]
    monkeypatch.setattr("edge_aae.gateway.daemon.time.time", lambda: wall[0])
    monkeypatch.setattr("edge_aae.gateway.daemon.time.monotonic", lambda: mono[0])
    reported = []
    monkeypatch.setattr(d, "_report_error", lambda asset, reason, detail: reported.append(reason))
    values = dict(zip(channels, np.zeros(len(channels)).tolist(), strict=True))

    def send(i):
        d._on_message("edge-aae/gw1/sensors/pump1", json.dumps({"ts": wall[0] + 86400 + i, "values": values}).encode())
        wall[0] += 1.0
        mono[0] += 1.0

    for i in range(int(PERIOD_S) + 1):  # the sensors' clocks are a day ahead of the gateway's
        send(i)
    assert reported.count("future_timestamp") >= MIN_REFUSED
    assert len(d.queue) == 0
    assert "clock_behind" in reported
    for i in range(100, 110):
        send(i)
    assert len(d.queue) == 10  # heard again, judged against the sensors' time
    status = json.loads(d._status_payload("online"))
    assert status["clock_behind_s"] == 86400  # the retained status says so while it lasts
    assert validation_errors(status, "status") == []
