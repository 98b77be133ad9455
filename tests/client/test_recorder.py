"""``edge-aae record`` and ``history`` against a real mosquitto and a real PostgreSQL (and SQLite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_series
from tests.cli.test_cli import run_cli

PG_BASE = os.environ.get("EDGE_AAE_TEST_PG", "postgresql://127.0.0.1:5432/test")


@pytest.fixture
def pg():
    """A fresh schema in the machine's PostgreSQL; its URL; dropped after."""
    import psycopg  # the dev extra installs it
    schema = f"rec_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_BASE} is needed for this test (set EDGE_AAE_TEST_PG): {exc}")
    admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    try:
        yield url, lambda sql: psycopg.connect(url).execute(sql).fetchall()
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


class RecordProcess:
    def __init__(self, tmp: Path, broker: Mosquitto, db: str, *extra: str) -> None:
        self.log_path = tmp / f"record-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "record", "--broker", broker.url,
                                      "--db", db, *extra], stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def wait_until(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def alert(gateway: str, asset: str, n: int) -> bytes:
    return json.dumps({"id": f"{gateway}-{asset}-{n}", "alert_id": f"a{n}", "event": "raised", "gateway": gateway,
                       "asset": asset, "ts": 1.7e9 + n, "since": 1.7e9 + n - 5, "score": 3.0, "peak_score": 3.5,
                       "threshold": 1.0, "top_channels": [{"channel": "Pressure", "share": 0.7}],
                       "model": {"name": "pump", "version": "1.0.0"}}).encode()


def test_record_survives_a_recorder_sigkill_and_a_broker_restart(tmp_path, broker, pg, bundle, synth_dir):
    url, sql = pg
    daemon = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    rec = RecordProcess(tmp_path, broker, url, "--client-id", "rec-test")
    watch = Recorder(broker.port, "edge-aae/gw1/status")
    pub = None
    try:
        wait_until(lambda: any(m.get("state") == "online" for m in watch.json("/status")), 30, "the daemon")
        wait_until(lambda: "connected to" in rec.log(), 30, "the recorder")
        test = load_series(synth_dir / "test.csv", label_col="label")
        third = len(test.timestamps) // 3
        pub = publisher(broker.port)
        part = tmp_path / "first-third.csv"  # the first third as an operator would: edge-aae replay of a CSV
        lines = (synth_dir / "test.csv").read_text().splitlines()
        part.write_text("\n".join(lines[:third + 1]) + "\n")
        p = run_cli("replay", part, "--broker", broker.url, "--gateway", "gw1", "--asset", "pump1", "--rate", "0",
                    "--batch", "20", "--quiet", "--channels", ",".join(test.channels))
        assert p.returncode == 0, p.stderr
        wait_until(lambda: sql("SELECT count(*) FROM alerts")[0][0] >= 2, 60, "alerts in the database")
        rec.proc.kill()  # SIGKILL: whatever it had not committed is still unacknowledged at the broker
        rec.close()
        publish_series(pub, "edge-aae/gw1/sensors/pump1", test.slice_rows(third, 2 * third), batch=20)
        time.sleep(2)
        rec = RecordProcess(tmp_path, broker, url, "--client-id", "rec-test")
        wait_until(lambda: "session resumed" in rec.log(), 30, "the recorder's session to resume")
        pub.disconnect()
        broker.stop()  # a broker restart (persistence saved), then the rest of the data
        broker.start()
        pub = publisher(broker.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", test.slice_rows(2 * third, len(test.timestamps)), batch=20)
        assert daemon.terminate() == 0  # drains, flushes its outbox, publishes its final stats
        stats = [m["stats"] for m in watch.json("/status") if m.get("state") == "online" and "stats" in m]
        final = stats[-1]
        assert final["alerts_raised"] >= 5
        expected = final["alerts_raised"] + final["alerts_cleared"]
        wait_until(lambda: sql("SELECT count(*) FROM alerts")[0][0] >= expected, 60,
                   f"{expected} alert messages in the database")
        time.sleep(1)
        rows = sql("SELECT alert_id, event, count(*) FROM alerts GROUP BY alert_id, event")
        assert all(n == 1 for _, _, n in rows), rows  # exactly once
        assert sum(n for _, _, n in rows) == expected
        assert sum(1 for _, e, _ in rows if e == "raised") == final["alerts_raised"]
        assert rec.terminate() == 0
    finally:
        if pub is not None:
            pub.disconnect()
        watch.close()
        rec.close()
        daemon.close()


def test_two_recorders_in_one_share_group_split_without_doubles(tmp_path, broker, pg):
    url, sql = pg
    recs = [RecordProcess(tmp_path, broker, url, "--share", "hist", "--client-id", f"rec-{i}") for i in (1, 2)]
    pub = publisher(broker.port)
    try:
        for r in recs:
            wait_until(lambda r=r: "connected to" in r.log(), 30, "a recorder")
        time.sleep(0.5)
        for n in range(300):
            pub.publish(f"edge-aae/gw{n % 3}/anomaly/pump{n % 2}/alert", alert(f"gw{n % 3}", f"pump{n % 2}", n),
                        qos=1).wait_for_publish(10)
        wait_until(lambda: sql("SELECT count(*) FROM alerts")[0][0] >= 300, 60, "300 rows")
        time.sleep(1)
        assert sql("SELECT count(*), count(DISTINCT id) FROM alerts")[0] == (300, 300)
        for r in recs:
            assert r.terminate() == 0
        written = [int(r.log().split("recorded ")[1].split(" ")[0]) for r in recs]
        assert all(w > 0 for w in written), written  # both took a share
        assert sum(written) == 300
    finally:
        pub.disconnect()
        for r in recs:
            r.close()


def test_sqlite_history_and_a_database_that_is_down(tmp_path, broker):
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    rec = RecordProcess(tmp_path, broker, db)
    down = RecordProcess(tmp_path, broker, "postgresql://127.0.0.1:1/none?connect_timeout=1", "--client-id", "down")
    pub = publisher(broker.port)
    try:
        wait_until(lambda: "connected to" in rec.log(), 30, "the recorder")
        for n in range(5):
            pub.publish("edge-aae/gw1/anomaly/pump1/alert", alert("gw1", "pump1", n), qos=1).wait_for_publish(10)
            pub.publish("edge-aae/gw1/anomaly/pump1/alert", alert("gw1", "pump1", n), qos=1).wait_for_publish(10)
        pub.publish("edge-aae/gw1/anomaly/pump1/alert", b'{"id": 5}', qos=1).wait_for_publish(10)
        wait_until(lambda: "invalid message skipped" in rec.log(), 30, "the invalid message")
        assert rec.terminate() == 0
        wait_until(lambda: "database unavailable" in down.log(), 30, "the down database to be reported")
        assert down.proc.poll() is None  # it waits; it does not exit
        assert down.terminate() == 0
        p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "history", "--db", db, "--since", "100000d",
                            "--out", str(tmp_path / "h")], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        line = next(ln for ln in p.stdout.splitlines() if "pump1" in ln)
        assert line.split()[:3] == ["gw1", "pump1", "5"]  # five alerts, each once although sent twice
        assert "Pressure" in line
        assert (tmp_path / "h" / "history.html").stat().st_size > 200
        p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "history", "--db", db, "--since", "7 days"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2
        assert "--since" in p.stderr
    finally:
        pub.disconnect()
        rec.close()
        down.close()


def test_a_database_connection_lost_mid_run_loses_nothing(tmp_path, broker, pg):
    import psycopg

    url, sql = pg
    rec = RecordProcess(tmp_path, broker, url + "&application_name=rec_lost", "--client-id", "rec-lost")
    pub = publisher(broker.port)
    try:
        wait_until(lambda: "connected to" in rec.log(), 30, "the recorder")
        for n in range(100):
            pub.publish("edge-aae/gw1/anomaly/pump1/alert", alert("gw1", "pump1", n), qos=1).wait_for_publish(10)
        wait_until(lambda: sql("SELECT count(*) FROM alerts")[0][0] >= 100, 30, "the first 100 rows")
        with psycopg.connect(PG_BASE, autocommit=True) as admin:  # the database drops the recorder's session
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE application_name = 'rec_lost'").fetchall()
        assert killed == [(True,)]
        for n in range(100, 200):
            pub.publish("edge-aae/gw1/anomaly/pump1/alert", alert("gw1", "pump1", n), qos=1).wait_for_publish(10)
        wait_until(lambda: sql("SELECT count(*) FROM alerts")[0][0] >= 200, 60, "all 200 rows")
        assert sql("SELECT count(*), count(DISTINCT id) FROM alerts")[0] == (200, 200)
        assert "database write failed" in rec.log()
        assert rec.terminate() == 0
    finally:
        pub.disconnect()
        rec.close()


def test_scores_are_sampled_one_in_n_per_asset(tmp_path, broker):
    import sqlite3

    db = tmp_path / "scores.db"
    rec = RecordProcess(tmp_path, broker, f"sqlite:///{db}", "--scores-every", "5", "--client-id", "rec-scores")
    pub = publisher(broker.port)
    try:
        wait_until(lambda: "connected to" in rec.log(), 30, "the recorder")
        for asset in ("pump1", "pump2"):
            for n in range(10):
                score = {"ts": 1.7e9 + n, "asset": asset, "score": 0.5, "threshold": 1.0, "latent_score": 0.1,
                         "channel_scores": {"Pressure": 1.0}, "model": {"name": "pump", "version": "1.0.0"}}
                pub.publish(f"edge-aae/gw7/anomaly/{asset}/score", json.dumps(score), qos=1).wait_for_publish(10)

        def rows():
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT gateway, asset, ts FROM scores ORDER BY asset, ts").fetchall()

        wait_until(lambda: db.exists() and len(rows()) >= 4, 30, "sampled scores")
        time.sleep(0.5)
        assert rows() == [("gw7", "pump1", 1.7e9), ("gw7", "pump1", 1.7e9 + 5),
                          ("gw7", "pump2", 1.7e9), ("gw7", "pump2", 1.7e9 + 5)]
        assert rec.terminate() == 0
    finally:
        pub.disconnect()
        rec.close()
