"""Subscribers: the AsyncAPI contract, the schemas, `edge-aae alerts`, AlertSubscriber, Home Assistant."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from edge_aae.client.subscriber import Alert, AlertSubscriber, BrokerRefused, GatewayStatus, InvalidMessage
from edge_aae.core.asyncapi import EXAMPLES, inline_refs, render_yaml
from edge_aae.core.contract import SCHEMAS, load_schema, schema_for_topic, validation_errors
from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_series
from tests.cli.test_resume import ctrl_c_enabled

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"


def test_asyncapi_document_is_current_and_well_formed():
    stale = "docs/asyncapi.yaml is stale: python -m edge_aae.core.asyncapi > docs/asyncapi.yaml"
    assert DOC.read_text() == render_yaml(), stale
    doc = yaml.safe_load(DOC.read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["broker"]["bindings"]["mqtt"]["lastWill"]["retain"] is True

    def resolve(ref: str):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    for name, ch in doc["channels"].items():
        params = set(ch.get("parameters", {}))
        in_address = {p.strip("{}") for p in ch["address"].split("/") if p.startswith("{")}
        assert in_address == params, name
        for m in ch["messages"].values():
            resolve(m["$ref"])
    expected_qos = {"receiveReadings": (1, False), "sendScore": (0, False), "sendAlert": (1, False),
                    "sendStatus": (1, True), "sendDrift": (1, True), "sendError": (0, False),
                    "receiveModelUpdate": (1, False), "receiveFeedback": (1, False), "sendFeedbackState": (1, True),
                    "sendModelOutcome": (1, True), "sendProbe": (1, False), "receiveProbe": (1, False)}
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive")
        resolve(op["channel"]["$ref"])
        for m in op["messages"]:
            resolve(m["$ref"])
        b = op["bindings"]["mqtt"]
        assert (b["qos"], b["retain"]) == expected_qos[name]
    for name, msg in doc["components"]["messages"].items():
        schema = msg["payload"]["schema"]
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema == inline_refs(load_schema(name))  # the shipped schema, not a copy that drifts
        for ex in msg["examples"]:
            jsonschema.validate(ex["payload"], schema)


@pytest.mark.parametrize("name", SCHEMAS)
def test_own_validator_agrees_with_jsonschema(name):
    schema = load_schema(name)
    good = EXAMPLES[name]
    cases = [good]
    for key in list(good):
        broken = copy.deepcopy(good)
        del broken[key]
        cases.append(broken)
        wrong = copy.deepcopy(good)
        wrong[key] = {"unexpected": [1]} if not isinstance(good[key], dict) else "text"
        cases.append(wrong)
    cases += [copy.deepcopy(good) | {"extra_key": 1}, [], "x", None]
    for case in cases:
        ours = not validation_errors(case, name)
        theirs = jsonschema.Draft202012Validator(schema).is_valid(case)
        assert ours == theirs, (name, case, validation_errors(case, name))


def test_schema_for_topic():
    assert schema_for_topic("edge-aae/gw1/anomaly/pump/alert") == "alert"
    assert schema_for_topic("edge-aae/gw1/anomaly/pump/score") == "score"
    assert schema_for_topic("edge-aae/gw1/status") == "status"
    assert schema_for_topic("edge-aae/gw1/errors") == "error"
    assert schema_for_topic("edge-aae/gw1/sensors/pump") == "readings"
    assert schema_for_topic("edge-aae/gw1/model/update") == "update_chunk"
    assert schema_for_topic("edge-aae/gw1/model") == "model_outcome"


def test_daemon_alert_reaches_cli_and_client_then_offline(broker, bundle, synth_dir, tmp_path):
    test = load_series(synth_dir / "test.csv", label_col="label")
    first_fault = json.loads((synth_dir / "faults.json").read_text())["faults"][0]
    segment = test.slice_rows(max(0, first_fault["start"] - 300), first_fault["end"] + 200)
    cli = subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "alerts", "--broker", broker.url, "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_enabled)
    got: list[Alert] = []
    statuses: list[GatewayStatus] = []
    sub = AlertSubscriber(broker.url, on_alert=got.append, on_status=statuses.append).start()
    assert sub.subscribed.wait(10)
    rec = Recorder(broker.port, "edge-aae/#")
    daemon = DaemonProcess(tmp_path, write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox"), broker.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30)
        pub = publisher(broker.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", segment, batch=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(a.event == "raised" for a in got):
            time.sleep(0.1)
        raised = [a for a in got if a.event == "raised"]
        assert raised, "AlertSubscriber got no raised alert"
        a = raised[0]
        assert a.gateway == "gw1"
        assert a.asset == "pump1"
        assert a.model_version == "1.0.0"
        assert a.top_channels
        assert 0 < a.top_channels[0][1] <= 1
        assert a.ratio > 1
        daemon.kill()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(s.state == "offline" for s in statuses):
            time.sleep(0.1)
        assert any(s.state == "offline" and s.gateway == "gw1" for s in statuses)
        time.sleep(0.5)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        cli_alerts = [x for x in lines if x["type"] == "alert" and x["event"] == "raised"]
        assert cli_alerts
        assert cli_alerts[0]["id"] == a.id
        assert {"asset", "since", "top_channels", "score_over_threshold", "model_version"} <= set(cli_alerts[0])
        assert any(x["type"] == "status" and x["state"] == "offline" for x in lines)
        # every message of the run follows the contract
        for topic, payload, _ in rec.messages:
            if payload:
                assert not validation_errors(json.loads(payload), schema_for_topic(topic)), topic
        pub.disconnect()
    finally:
        sub.close()
        rec.close()
        daemon.close()
        if cli.poll() is None:
            cli.kill()


def test_invalid_alert_messages_are_reported_not_raised(broker):
    invalid: list[InvalidMessage] = []
    sub = AlertSubscriber(broker.url, on_invalid=invalid.append).start()
    assert sub.subscribed.wait(10)
    pub = publisher(broker.port)
    good = EXAMPLES["alert"]
    for payload in (b"{broken", json.dumps({"event": "raised"}).encode(), json.dumps(good).encode(),
                    json.dumps(good).encode()):  # the last one is a duplicate
        pub.publish("edge-aae/gw9/anomaly/pump7/alert", payload, qos=1).wait_for_publish(5)
    events = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (len(invalid) < 2 or not events):
        e = sub.get(timeout_s=0.2)
        if e is not None:
            events.append(e)
    time.sleep(0.3)
    while (e := sub.get(timeout_s=0.1)) is not None:
        events.append(e)
    assert len(invalid) == 2
    assert "not JSON" in invalid[0].reason
    assert "missing required" in invalid[1].reason
    assert [e.id for e in events if isinstance(e, Alert)] == [good["id"]]
    sub.close()
    pub.disconnect()


def test_wrong_credentials_are_reported_plainly(tmp_path):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "watcher", "right"], check=True, capture_output=True)
    os.chmod(pw, 0o600)
    b = Mosquitto(tmp_path / "auth-broker", extra_conf=f"allow_anonymous false\npassword_file {pw}\n")
    b.start()
    try:
        (tmp_path / "pwfile").write_text("wrong\n")
        res = subprocess.run([sys.executable, "-m", "edge_aae.cli", "alerts", "--broker", b.url, "--username",
                              "watcher", "--password-file", str(tmp_path / "pwfile")],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 1
        assert "refused the connection" in res.stderr
        assert "Traceback" not in res.stderr
        sub = AlertSubscriber(b.url, username="watcher", password="wrong").start()
        with pytest.raises(BrokerRefused):
            sub.get(timeout_s=10)
        sub.close()
        ok = AlertSubscriber(b.url, username="watcher", password="right").start()
        assert ok.connected.wait(10)
        ok.close()
    finally:
        b.stop()


def test_home_assistant_discovery_announced_then_withdrawn(broker, bundle, synth_dir, tmp_path):
    test = load_series(synth_dir / "test.csv").slice_rows(0, 100)
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra="[homeassistant]\nenabled = true\n")
    rec = Recorder(broker.port, "edge-aae/#")
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30)
        pub = publisher(broker.port)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", test, batch=50)
        ha = Recorder(broker.port, "homeassistant/#")
        assert ha.wait_for(lambda r: len(r.messages) >= 2, 20)
        configs = {t: json.loads(p) for t, p, retained in ha.messages}
        binary = next(v for t, v in configs.items() if "/binary_sensor/" in t)
        sensor = next(v for t, v in configs.items() if "/sensor/" in t and "/binary_sensor/" not in t)
        assert binary["device_class"] == "problem"
        assert binary["state_topic"] == "edge-aae/gw1/anomaly/pump1/alert"
        assert sensor["state_topic"] == "edge-aae/gw1/anomaly/pump1/score"
        assert binary["availability_topic"] == "edge-aae/gw1/status"
        ha.close()
        assert daemon.terminate() == 0
        daemon.close()
        cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false"))
        daemon = DaemonProcess(tmp_path, cfg, broker.url)
        assert rec.wait_for(lambda r: sum(m.get("state") == "online" for m in r.json("/status")) >= 2, 30)
        time.sleep(1)
        after = Recorder(broker.port, "homeassistant/#")
        time.sleep(1)
        assert not [t for t, p, retained in after.messages if p], "discovery configs still retained"
        after.close()
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()


def test_an_unseen_state_alert_says_so_in_the_table_and_json():
    import io

    from edge_aae.client.alerts_view import LiveTable, event_json
    from edge_aae.client.subscriber import parse_alert

    topic = "edge-aae/gw9/anomaly/pump7/alert"
    msg = copy.deepcopy(EXAMPLES["alert"]) | {"cause": "unseen_state", "score": 1.0}
    alert = parse_alert(topic, json.dumps(msg).encode())
    assert isinstance(alert, Alert)
    assert alert.cause == "unseen_state"
    out = io.StringIO()
    LiveTable(out, redraw=False).update(alert)
    assert "unseen operating state (flow_m3h 81%" in out.getvalue()
    assert event_json(alert)["cause"] == "unseen_state"
    older = {k: v for k, v in EXAMPLES["alert"].items() if k != "cause"}  # gateways before the rule
    parsed = parse_alert(topic, json.dumps(older).encode())
    assert isinstance(parsed, Alert)
    assert parsed.cause == "score"
    bad = parse_alert(topic, json.dumps(msg | {"cause": "mood"}).encode())
    assert isinstance(bad, InvalidMessage)
