"""The gateway daemon end to end: a real mosquitto, ``edge-aae serve`` in a torch-less subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edge_aae.core.contract import schema_for_topic, validation_errors
from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_acked, publish_series, reading_batches
from edge_aae.gateway.scorer import BundleScorer

ROOT = Path(__file__).resolve().parents[2]


def wait_online(rec: Recorder, timeout_s: float = 30) -> None:
    assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), timeout_s), \
        "daemon never published online"


def retained_status(port: int, gateway: str = "gw1") -> dict:
    r = Recorder(port, f"edge-aae/{gateway}/status")
    try:
        assert r.wait_for(lambda x: bool(x.messages), 10)
        topic, payload, retained = r.messages[0]
        assert retained
        return json.loads(payload)
    finally:
        r.close()


def test_alerts_for_every_fault_then_offline_on_sigkill(broker, bundle, synth_dir, tmp_path):
    test = load_series(synth_dir / "test.csv", label_col="label")
    faults = json.loads((synth_dir / "faults.json").read_text())["faults"]
    window_len = json.loads((bundle / "manifest.json").read_text())["window_len"]
    rec = Recorder(broker.port, "edge-aae/#")
    daemon = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    try:
        wait_online(rec)
        status = retained_status(broker.port)
        assert status["state"] == "online"
        assert status["models"]["default"]["version"] == "1.0.0"
        pub = publisher(broker.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", test, batch=20)
        n_windows = len(test.timestamps) - window_len + 1
        assert rec.wait_for(lambda r: len(r.json("/score")) >= n_windows, 60), daemon.log()[-2000:]
        scores = rec.json("/anomaly/pump1/score")
        assert {"ts", "score", "threshold", "channel_scores", "model"} <= set(scores[0])
        assert len(scores[0]["channel_scores"]) == len(test.channels)
        time.sleep(0.5)
        alerts = rec.json("/anomaly/pump1/alert")
        raised = [a for a in alerts if a["event"] == "raised"]
        cleared = {a["alert_id"] for a in alerts if a["event"] == "cleared"}
        slack = window_len  # a window ending after the fault still contains it
        for f in faults:
            inside = [a for a in raised if f["start_ts"] <= a["ts"] <= f["end_ts"] + slack]
            assert inside, f"no alert raised inside fault {f}"
            assert any(a["alert_id"] in cleared for a in inside), f"alert in fault {f} never cleared"
            assert inside[0]["top_channels"][0]["channel"]
            assert 0 < inside[0]["top_channels"][0]["share"] <= 1
        outside = [a for a in raised
                   if not any(f["start_ts"] <= a["ts"] <= f["end_ts"] + slack for f in faults)]
        assert len(outside) <= 2, outside
        assert {"id", "event", "ts", "since", "score", "threshold", "top_channels", "model"} <= set(raised[0])
        daemon.kill()
        assert rec.wait_for(lambda r: any(m.get("state") == "offline" for m in r.json("/status")), 15)
        assert retained_status(broker.port)["state"] == "offline"
        for topic, payload, _ in rec.messages:  # every message follows docs/asyncapi.yaml's schemas
            assert not validation_errors(json.loads(payload), schema_for_topic(topic)), (topic, payload[:200])
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()


def test_broker_restarts_lose_no_alert(broker, bundle, synth_dir, tmp_path):
    test = load_series(synth_dir / "test.csv", label_col="label")
    rec = Recorder(broker.port, "edge-aae/gw1/#", client_id="alert-watcher", persistent=True)
    daemon = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    try:
        wait_online(rec)
        pub = publisher(broker.port, client_id="replayer")
        payloads = list(reading_batches(test, 20))
        restarts_at = {len(payloads) // 3, 2 * len(payloads) // 3}
        for i, p in enumerate(payloads):
            if i in restarts_at:
                broker.restart()
            publish_acked(pub, "edge-aae/gw1/sensors/pump1", p)  # keeps readings in order across restarts
            time.sleep(0.005)
        def scored(r: Recorder) -> int:
            online = [m for m in r.json("/status") if m.get("state") == "online"]
            return online[-1]["stats"]["windows_scored"] if online else 0

        # readings are QoS 1 with persistent sessions: none is lost, a few may come twice
        assert rec.wait_for(lambda r: scored(r) >= len(test.timestamps) - 31, 90), (scored(rec), daemon.log()[-3000:])
        time.sleep(1)
        assert daemon.terminate() == 0
        assert rec.wait_for(lambda r: any(m.get("state") == "offline" for m in r.json("/status")), 15)
        final = [m for m in rec.json("/status") if m.get("state") == "online"][-1]["stats"]
        alerts = rec.json("/anomaly/pump1/alert")
        ids = {a["id"] for a in alerts}
        assert final["alerts_raised"] >= 5
        assert len(ids) == final["alerts_raised"] + final["alerts_cleared"], (final, sorted(ids))
        assert final["outbox_depth"] == 0
        assert daemon.log().count("connected to 127.0.0.1") >= 3
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()


BAD = [
    b"{not json",
    b"[1, 2, 3]",
    b'{"ts": 1700000000, "values": {"speed_rpm": 1}}',
    b'{"ts": 1700000000, "values": {"nope": 1}}',
    b'{"ts": [1, 2], "values": {"speed_rpm": [1]}}',
    b'{"ts": 1700000000, "values": {"speed_rpm": NaN}}',
    b'{"ts": 1700000000, "values": {"speed_rpm": "fast"}}',
    b"x" * 300_000,
]


def test_bad_input_is_reported_and_good_data_scored_as_if_absent(broker, bundle, synth_dir, tmp_path):
    test = load_series(synth_dir / "test.csv", label_col="label").slice_rows(0, 600)
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox").read_text()
    cfg = cfg.replace(f'default = "{bundle}"', f'assets.pump1.bundle = "{bundle}"\nassets.pump2.bundle = "{bundle}"')
    (tmp_path / "gw.toml").write_text(cfg)
    rec = Recorder(broker.port, "edge-aae/#")
    daemon = DaemonProcess(tmp_path, tmp_path / "gw.toml", broker.url)
    try:
        wait_online(rec)
        pub = publisher(broker.port)
        good = list(reading_batches(test, 10))
        sent_bad = 0
        for i, p in enumerate(good):
            pub.publish("edge-aae/gw1/sensors/pump1", p, qos=1)
            pub.publish("edge-aae/gw1/sensors/pump2", p, qos=1)
            bad = BAD[i % len(BAD)]
            pub.publish("edge-aae/gw1/sensors/pump1", bad, qos=1)
            sent_bad += 1
            if i and i % 7 == 0:  # a replayed (duplicate) batch and an old one (backwards in time)
                pub.publish("edge-aae/gw1/sensors/pump1", good[i], qos=1)
                pub.publish("edge-aae/gw1/sensors/pump1", good[i - 5], qos=1)
                sent_bad += 2
            if i % 10 == 0:
                pub.publish("edge-aae/gw1/sensors/ghost", good[i], qos=1)
                sent_bad += 1
        n_windows = len(test.timestamps) - 32 + 1
        assert rec.wait_for(lambda r: len(r.json("/pump1/score")) >= n_windows
                            and len(r.json("/pump2/score")) >= n_windows, 60), daemon.log()[-2000:]
        assert rec.wait_for(lambda r: len(r.json("/errors")) >= sent_bad, 20)
        errors = rec.json("/errors")
        assert len(errors) == sent_bad
        reasons = {e["reason"] for e in errors}
        assert {"invalid_json", "not_object", "missing_channel", "unknown_channel", "length_mismatch",
                "non_finite", "non_numeric", "oversized", "duplicate", "late", "unknown_asset"} <= reasons
        offline = BundleScorer(bundle).score(test)
        for asset in ("pump1", "pump2"):
            got = {m["ts"]: m["score"] for m in rec.json(f"/{asset}/score")}
            assert len(got) == len(offline.score)
            want = dict(zip(offline.timestamps.tolist(), offline.score.tolist(), strict=True))
            np.testing.assert_allclose([got[t] for t in want], list(want.values()), rtol=1e-5, atol=1e-5)
        assert daemon.proc.poll() is None
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_aae.cli", *args], capture_output=True, text=True, timeout=60)


def test_missing_bundle_is_refused_at_start(tmp_path, broker):
    cfg = write_config(tmp_path / "gw.toml", tmp_path / "no-such-bundle", tmp_path / "outbox")
    res = run_cli("serve", "--config", str(cfg), "--broker", broker.url)
    assert res.returncode == 1
    assert "models.default" in res.stderr
    assert "no-such-bundle" in res.stderr


def test_channel_map_that_does_not_match_the_bundle_is_refused(tmp_path, broker, bundle):
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox")
    cfg.write_text(cfg.read_text().replace("[runtime]", '[models.channel_map]\nCurrent = "amps"\n[runtime]'))
    res = run_cli("serve", "--config", str(cfg), "--broker", broker.url)
    assert res.returncode == 1
    assert "amps" in res.stderr
    assert "models.channel_map" in res.stderr


def test_check_config_lists_problems(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('gateway_id = "gw1"\n[runtime]\nthreads = 0\nspin = true\n')
    res = run_cli("serve", "--check-config", str(bad))
    assert res.returncode == 1
    assert "runtime.threads" in res.stderr
    assert "runtime.spin: unknown key" in res.stderr
    assert "models:" in res.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "firmware_configs").glob("*.toml")), ids=lambda p: p.name)
def test_firmware_configs_pass_check_config(path):
    res = run_cli("serve", "--check-config", str(path))
    assert res.returncode == 0, res.stderr
    def keys(table, prefix=""):
        for k, v in table.items():
            yield prefix + k
            if isinstance(v, dict):
                yield from keys(v, f"{prefix}{k}.")

    secretish = [k for k in keys(tomllib.loads(path.read_text()))
                 if any(w in k.lower() for w in ("password", "token", "secret"))
                 and not k.endswith(("password_env", "password_file"))]
    assert not secretish, f"{path.name}: secrets belong in the environment or a file: {secretish}"


def test_firmware_configs_cover_the_gateway_types():
    names = {p.stem for p in (ROOT / "firmware_configs").glob("*.toml")}
    assert {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "industrial-arm64", "x86-dev"} <= names


def test_broker_down_at_start_is_waited_for(tmp_path, bundle):
    broker = Mosquitto(tmp_path / "late-broker")
    daemon = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    try:
        time.sleep(3)
        assert daemon.proc.poll() is None, daemon.log()
        assert "not reachable" in daemon.log()
        broker.start()
        rec = Recorder(broker.port, "edge-aae/gw1/status")
        wait_online(rec)
        rec.close()
        assert daemon.terminate() == 0
        assert retained_status(broker.port)["state"] == "offline"
    finally:
        daemon.close()
        broker.stop()
