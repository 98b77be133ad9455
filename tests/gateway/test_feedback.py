"""Operator feedback round trip on a live daemon and a real mosquitto: ``edge-aae ack``, ``mute``,
``label`` and ``collect``; refused commands say why; a muted asset's alerts are still raised,
marked ``muted``."""

import csv
import json
import sqlite3
import threading

from edge_aae.core.contract import schema_for_topic, validation_errors
from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_series
from tests.cli.test_cli import run_cli
from tests.client.test_recorder import RecordProcess, wait_until


def cli(broker, *args):
    return run_cli(*args, "--broker", broker.url, "--gateway", "gw1", "--wait", "20")


def test_ack_mute_label_collect_round_trip(broker, bundle, synth_dir, tmp_path):
    test = load_series(synth_dir / "test.csv", label_col="label")
    half = len(test.timestamps) // 2
    first, second = test.slice_rows(0, half), test.slice_rows(half, len(test.timestamps))
    rec = Recorder(broker.port, "edge-aae/gw1/#")
    db = tmp_path / "history.db"
    history = RecordProcess(tmp_path, broker, f"sqlite:///{db}")
    d = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    try:
        wait_until(lambda: "connected to" in history.log(), 30, "the recorder")
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30)
        pub = publisher(broker.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", first, batch=20)
        assert rec.wait_for(lambda r: any(a["event"] == "cleared" for a in r.json("/alert")), 60), d.log()[-2000:]
        alert = next(a for a in rec.json("/alert") if a["event"] == "cleared")
        assert "muted" not in alert

        p = cli(broker, "ack", alert["alert_id"], "--by", "ops")
        assert p.returncode == 0, p.stderr
        assert "ack applied" in p.stdout

        p = cli(broker, "ack", "feedfacefeedface")
        assert p.returncode == 1
        assert "not one this gateway raised" in p.stderr
        assert "Traceback" not in p.stderr

        p = cli(broker, "label", alert["alert_id"], "false_alarm", "--note", "valve test")
        assert p.returncode == 0, p.stderr
        kept = int(p.stdout.split("; ")[1].split()[0])
        assert kept >= 32  # the window before the alert began, and the alert itself

        p = cli(broker, "mute", "pump9", "--for", "2h")
        assert p.returncode == 1
        assert "pump9" in p.stderr
        p = cli(broker, "mute", "pump1", "--for", "2h")
        assert p.returncode == 0, p.stderr
        assert "muted until" in p.stdout
        p = run_cli("mute", "pump1", "--for", "soon", "--broker", broker.url, "--gateway", "gw1")
        assert p.returncode == 2
        assert "--for 'soon'" in p.stderr

        pub.publish("edge-aae/gw1/feedback", b"{not json", qos=1).wait_for_publish(5)
        bad = json.dumps({"command": "reboot", "id": "x1"})
        pub.publish("edge-aae/gw1/feedback", bad, qos=1).wait_for_publish(5)
        assert rec.wait_for(lambda r: any(e.get("reason") == "feedback_unknown_command" for e in r.json("/errors")),
                            20)
        assert rec.wait_for(lambda r: any(x["id"] == "x1" for x in r.json("/feedback/state")[-1]["recent"]), 20)
        state = rec.json("/feedback/state")[-1]
        outcomes = {r["id"]: r for r in state["recent"]}
        assert outcomes["x1"]["outcome"] == "refused"
        assert "pump1" in state["mutes"]

        before = len(rec.json("/alert"))
        publish_series(pub, "edge-aae/gw1/sensors/pump1", second, batch=20)
        assert rec.wait_for(lambda r: len(r.json("/alert")) > before + 1, 60)
        later = rec.json("/alert")[before:]
        assert all(a.get("muted") is True for a in later)  # still raised and published, marked

        out = tmp_path / "collected"
        p = cli(broker, "collect", "--out", out)
        assert p.returncode == 0, p.stderr
        files = sorted(out.glob("pump1_*_false_alarm.csv"))
        assert len(files) == 1
        rows = list(csv.reader(files[0].open()))
        assert rows[0] == ["timestamp", *test.channels]
        assert len(rows) - 1 == kept
        labels = json.loads((out / "labels.json").read_text())
        assert labels[0]["note"] == "valve test"
        assert labels[0]["alert_id"] == alert["alert_id"]
        # the recorder kept it all: muted alerts marked, the ack and the label, the gateway's outcomes
        def scored(r):
            online = [m for m in r.json("/status") if m.get("state") == "online"]
            return online[-1]["stats"]["windows_scored"] if online else 0

        assert rec.wait_for(lambda r: scored(r) >= len(test.timestamps) - 2 * 31, 60)
        rec.wait_for(lambda r: False, 2)  # the last alerts of the stream
        later = rec.json("/alert")[before:]
        n_alerts = len({a["id"] for a in rec.json("/alert")})
        con = sqlite3.connect(db)
        wait_until(lambda: con.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == n_alerts, 30, "alert rows")
        muted = con.execute("SELECT COUNT(*) FROM alerts WHERE payload LIKE '%\"muted\": true%'").fetchone()[0]
        assert muted == len({a["id"] for a in later})
        cmds = dict(con.execute("SELECT command, COUNT(*) FROM feedback GROUP BY command").fetchall())
        assert cmds["ack"] == 2  # one for a known alert, one refused
        assert cmds["label"] == 1
        refused = con.execute("SELECT COUNT(*) FROM feedback_outcomes WHERE outcome = 'refused'").fetchone()[0]
        assert refused >= 3
        con.close()
        assert history.terminate() == 0
        p = run_cli("history", "--db", f"sqlite:///{db}", "--since", "520w")
        assert p.returncode == 0, p.stderr
        assert "acknowledged: 1" in p.stdout
        assert "false_alarm" in p.stdout
        for topic, payload, _ in rec.messages:  # what the daemon sent follows the contract
            schema = schema_for_topic(topic)
            if schema and topic != "edge-aae/gw1/feedback" and "/sensors/" not in topic:
                assert not validation_errors(json.loads(payload), schema), (topic, payload[:300])
        pub.disconnect()
    finally:
        rec.close()
        d.close()
        history.close()


def test_a_command_the_gateway_dropped_as_busy_says_so(broker):
    import pytest

    from edge_aae.client.feedback import send_command
    from edge_aae.client.rollout import BrokerLogin
    from edge_aae.core.errors import EdgeAAEError

    login = BrokerLogin(broker.url)
    # no gateway at all: the plain timeout
    with pytest.raises(EdgeAAEError, match="offline, feedback disabled"):
        send_command(login, "gw1", {"command": "ack", "alert_id": "a1"}, wait_s=1.0)
    # a gateway whose feedback queue is full reports feedback_queue_full instead of answering
    busy = publisher(broker.port, client_id="busy-gw")
    error = json.dumps({"ts": 1.0, "gateway": "gw1", "asset": "", "reason": "feedback_queue_full", "detail": "full"})
    busy.on_message = lambda c, _u, _m: c.publish("edge-aae/gw1/errors", error, qos=0)
    subscribed = threading.Event()
    busy.on_subscribe = lambda *_: subscribed.set()
    busy.subscribe("edge-aae/gw1/feedback", qos=1)
    assert subscribed.wait(10)
    try:
        with pytest.raises(EdgeAAEError, match="feedback_queue_full .*send the command again later"):
            send_command(login, "gw1", {"command": "ack", "alert_id": "a1"}, wait_s=2.0)
    finally:
        busy.disconnect()
        busy.loop_stop()
