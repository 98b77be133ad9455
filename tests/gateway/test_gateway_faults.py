"""Faults an operator meets, against a real mosquitto: refused PUBACKs and subscriptions, wrong credentials,
a full disk under the outbox, a dead network loop; and MQTT-level fuzzing of a live daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_series
from export.bench import redteam

OPEN_EXCEPT_ALERTS = """
topic readwrite edge-aae/gw1/sensors/#
topic readwrite edge-aae/gw1/status
topic readwrite edge-aae/gw1/errors
topic readwrite edge-aae/gw1/anomaly/+/score
topic read edge-aae/#
"""


def acl_broker(tmp_path: Path, acl: str) -> tuple[Mosquitto, Path]:
    path = tmp_path / "acl"
    path.write_text(acl)
    b = Mosquitto(tmp_path / "broker", extra_conf=f"acl_file {path}\n")
    b.start()
    return b, path


def reload_acl(b: Mosquitto, path: Path, acl: str) -> None:
    path.write_text(acl)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGHUP)


def stats(rec: Recorder) -> dict:
    online = [m for m in rec.json("gw1/status") if m.get("state") == "online"]
    return online[-1]["stats"] if online else {}


def fault_rows(synth_dir: Path):
    return load_series(synth_dir / "test.csv").slice_rows(0, 420)  # holds the first fault, raised and cleared


def test_a_refused_puback_keeps_the_alert_until_the_broker_takes_it(synth_dir, bundle, tmp_path):
    b, acl = acl_broker(tmp_path, OPEN_EXCEPT_ALERTS)
    rec = Recorder(b.port, "edge-aae/#")
    d = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), b.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("healthy") for m in r.json("gw1/status")), 30), d.log()[-2000:]
        pub = publisher(b.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", fault_rows(synth_dir), batch=20)
        assert rec.wait_for(lambda r: any(e["reason"] == "puback_refused" for e in r.json("gw1/errors")), 30), \
            d.log()[-2000:]
        assert rec.wait_for(lambda r: stats(r).get("outbox_depth", 0) >= 1, 10)
        assert not rec.json("/alert")
        assert "refused alert" in d.log()
        # the broker's operator fixes the ACL: every kept alert now leaves, none lost
        reload_acl(b, acl, OPEN_EXCEPT_ALERTS + "topic readwrite edge-aae/gw1/anomaly/#\n")
        assert rec.wait_for(lambda r: stats(r).get("outbox_depth", 1) == 0 and r.json("/alert"), 60), d.log()[-2000:]
        s = stats(rec)
        assert len({a["id"] for a in rec.json("/alert")}) == s["alerts_raised"] + s["alerts_cleared"] >= 1
        assert s["drops"]["puback_refused"] >= 1
        pub.disconnect()
    finally:
        rec.close()
        d.close()
        b.stop()


def test_a_broker_that_withholds_readings_makes_the_gateway_unhealthy(bundle, tmp_path):
    deaf = ("topic write edge-aae/gw1/sensors/#\ntopic readwrite edge-aae/gw1/status\n"
            "topic readwrite edge-aae/gw1/errors\ntopic readwrite edge-aae/gw1/anomaly/#\n")
    b, acl = acl_broker(tmp_path, deaf)
    rec = Recorder(b.port, "edge-aae/gw1/status")
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra="[broker]\nkeepalive_s = 6\n")
    d = DaemonProcess(tmp_path, cfg, b.url)
    heartbeat = tmp_path / "outbox" / "heartbeat"
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("gw1/status")), 30)
        time.sleep(12)  # probes every keepalive_s / 2 = 3 s; unhealthy after 2 periods + 2 s
        assert not heartbeat.exists(), "a gateway that cannot receive must not look healthy"
        status = [m for m in rec.json("gw1/status") if m.get("state") == "online"][-1]
        assert status["healthy"] is False
        assert "readings do not reach the gateway" in status["problem"]
        assert "unhealthy: readings do not reach" in d.log()
        reload_acl(b, acl, OPEN_EXCEPT_ALERTS)
        assert rec.wait_for(lambda r: any(m.get("healthy") for m in r.json("gw1/status")), 20), d.log()[-2000:]
        assert rec.wait_for(lambda _r: heartbeat.exists(), 10)
        max_age = int(heartbeat.read_text().split()[1])
        assert max_age == 6  # broker.keepalive_s: the health check's limit
    finally:
        rec.close()
        d.close()
        b.stop()


def test_wrong_credentials_are_said_plainly_and_leave_the_gateway_unhealthy(bundle, tmp_path, monkeypatch):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw1", "right"], check=True, capture_output=True)
    pw.chmod(0o600)
    b = Mosquitto(tmp_path / "broker", extra_conf=f"allow_anonymous false\npassword_file {pw}\n")
    b.start()
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox",
                       extra='[broker]\nusername = "gw1"\npassword_env = "GW_PW"\nreconnect_max_s = 2\n')
    monkeypatch.setenv("GW_PW", "wrong")
    d = DaemonProcess(tmp_path, cfg, b.url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and d.log().lower().count("not authorized") < 3:
            time.sleep(0.2)
        assert d.log().lower().count("not authorized") >= 3, d.log()[-2000:]
        assert not (tmp_path / "outbox" / "heartbeat").exists()
        assert d.proc.poll() is None  # it keeps trying: the operator may fix the broker side
    finally:
        d.close()
        b.stop()


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs holding the outbox, filled up once the daemon started (root only, like CI)."""
    mnt = tmp_path / "outbox"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.fail(f"this test needs to mount a small tmpfs (run as root, as CI does): {res.stderr.strip()}")

    def fill() -> None:
        try:
            with (mnt / "filler").open("wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass  # ENOSPC: full

    yield mnt, fill
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_under_the_outbox_loses_no_alert(full_disk, synth_dir, bundle, tmp_path):
    mnt, fill = full_disk
    b = Mosquitto(tmp_path / "broker")
    b.start()
    rec = Recorder(b.port, "edge-aae/#")
    d = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, mnt), b.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("healthy") for m in r.json("gw1/status")), 30), d.log()[-2000:]
        fill()
        pub = publisher(b.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", fault_rows(synth_dir), batch=20)
        assert rec.wait_for(lambda r: any(e["reason"] == "outbox_error" for e in r.json("gw1/errors")), 30), \
            d.log()[-2000:]
        time.sleep(2.5)
        s = stats(rec)
        assert s["alerts_raised"] >= 1
        assert rec.wait_for(lambda r: len({a["id"] for a in r.json("/alert")}) == s["alerts_raised"]
                            + s["alerts_cleared"], 20)
        assert rec.wait_for(lambda r: stats(r).get("outbox_depth") == 0, 10)
        assert s["drops"]["outbox_error"] >= 1
        pub.disconnect()
    finally:
        rec.close()
        d.close()
        b.stop()


def test_a_dead_network_loop_is_noticed_and_restarted(bundle, tmp_path):
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon

    b = Mosquitto(tmp_path / "broker")
    b.start()
    cfg = load_gateway_config(write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), {"broker_url": b.url})
    d = Daemon(cfg)
    worker = threading.Thread(target=d.run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not d.transport.healthy()[0]:
            time.sleep(0.1)
        assert d.transport.healthy()[0]
        d.transport.client.loop_stop()  # paho's network thread is gone, as if an exception had killed it
        # the worker's watchdog (every second) may already have restarted it by the time we look
        assert (d.transport.healthy() == (False, "MQTT network loop not running")
                or d.stats.counts["network_loop_restarts"] == 1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not d.transport.healthy()[0]:
            time.sleep(0.1)
        assert d.transport.healthy()[0]
        assert d.stats.counts["network_loop_restarts"] == 1
    finally:
        d.stop()
        worker.join(20)
        b.stop()


# ---- MQTT-level fuzzing: a live daemon, a real broker, a good asset scored throughout --------------

@pytest.fixture(scope="module")
def live(bundle, synth_dir, tmp_path_factory):
    from export.signing import generate_keypair

    tmp = tmp_path_factory.mktemp("fuzz")
    generate_keypair(tmp / "keys")
    normal = load_series(synth_dir / "train.csv")
    t = redteam.Target(tmp, bundle, tmp / "keys", normal.values[:600], list(normal.channels))
    t.channels = list(normal.channels)
    yield t
    t.close()


BIG = st.integers(min_value=-(10**600), max_value=10**600)
SCALAR = (st.none() | st.booleans() | st.integers() | BIG | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=30) | st.just(10**400) | st.just(-(10**400)) | st.just(5e-324) | st.just(1.7e308))
JSON = st.recursive(SCALAR, lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=12), kids,
                                                                                         max_size=6), max_leaves=40)
# Topic names the broker accepts (it disconnects a client for control characters or non-characters).
ASSET = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="/+#"), min_size=1,
                max_size=250)


def readings_like(channels: list[str]):
    values = st.dictionaries(st.sampled_from(channels) | st.text(max_size=8), SCALAR | st.lists(SCALAR, max_size=5),
                             max_size=len(channels) + 2)
    return st.fixed_dictionaries({"ts": SCALAR | st.lists(SCALAR, max_size=5), "values": values},
                                 optional={"seq": SCALAR, "extra": JSON})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_through_mosquitto_never_silences_the_gateway(live, data):
    kind = data.draw(st.sampled_from(["readings", "json", "bytes", "update"]))
    if kind == "readings":
        payload = json.dumps(data.draw(readings_like(live.channels)), allow_nan=True).encode()
    elif kind == "json":
        payload = json.dumps(data.draw(JSON), allow_nan=True).encode()
    elif kind == "bytes":
        payload = data.draw(st.binary(max_size=300))
    else:
        msg = data.draw(st.fixed_dictionaries({"update_id": SCALAR | st.text(max_size=70),
                                               "kind": st.sampled_from(["header", "chunk", "x"]) | SCALAR},
                                              optional={"index": SCALAR, "data": SCALAR, "count": SCALAR,
                                                        "chunks": JSON, "manifest": SCALAR, "signature": SCALAR,
                                                        "sha256": SCALAR, "asset": SCALAR}))
        payload = json.dumps(msg, allow_nan=True).encode()
    topic = ("edge-aae/gw1/model/update" if kind == "update"
             else f"edge-aae/gw1/sensors/{data.draw(st.sampled_from(['pump1', 'good']) | ASSET)}")
    deadline = time.monotonic() + 10
    while not live.attacker.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    info = live.attacker.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    assert info.is_published(), topic


def test_after_the_fuzz_the_gateway_still_scores_and_contained_nothing(live):
    live.send([b"{}"], topic="edge-aae/gw1/sensors/pump1")  # flush the fuzzer's queue
    assert live.wait_good(20), live.daemon.log()[-3000:]
    time.sleep(1.5)
    status = live.status()
    assert status["healthy"] is True
    assert status["stats"].get("internal_errors", 0) == 0, live.daemon.log()[-3000:]
    assert status["stats"]["messages_rejected"] > 50
    assert os.path.getsize(live.tmp / "outbox" / "heartbeat") > 0


def test_an_unresolvable_broker_host_is_named_as_a_dns_failure(bundle, tmp_path):
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox")
    daemon = DaemonProcess(tmp_path, cfg, "mqtt://no-such-host.invalid:1883")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "cannot be resolved (DNS" not in daemon.log():
            time.sleep(0.2)
        assert "broker host 'no-such-host.invalid' cannot be resolved (DNS" in daemon.log(), daemon.log()[-1500:]
        assert daemon.proc.poll() is None  # it keeps retrying: a name can start resolving later
    finally:
        daemon.close()


def test_the_subscriber_does_not_report_its_own_close_as_a_lost_connection(broker, caplog):
    from edge_aae.client.subscriber import AlertSubscriber

    sub = AlertSubscriber(broker.url)
    sub.start()
    assert sub.connected.wait(10)
    caplog.clear()
    sub.close()
    time.sleep(0.3)
    assert not [r for r in caplog.records if "disconnected" in r.getMessage()]
