"""firmware_configs/mosquitto-bridge.conf on a real pair of brokers: a gateway's local mosquitto
bridged to a central one carries the gateway's reports out, updates in, and keeps readings local;
a central outage loses no alert; consumers on a shared subscription split the alerts, each once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_aae.devtools.bridge import bridged_pair
from edge_aae.devtools.bridge import wait_bridge as bridge_up
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher


def bridged(tmp_path: Path) -> tuple[Mosquitto, Mosquitto]:
    return bridged_pair(tmp_path)


def wait_bridge(central: Mosquitto) -> None:
    assert bridge_up(central), "bridge never connected"


def test_the_bridge_carries_reports_out_updates_in_and_keeps_readings_local(tmp_path):
    central, local = bridged(tmp_path)
    at_central = Recorder(central.port, "edge-aae/#")
    at_local = Recorder(local.port, "edge-aae/gw1/model/update")
    try:
        wait_bridge(central)
        gw = publisher(local.port)
        for topic in ("anomaly/pump1/alert", "anomaly/pump1/score", "status", "errors", "model", "sensors/pump1"):
            gw.publish(f"edge-aae/gw1/{topic}", json.dumps({"topic": topic}), qos=1).wait_for_publish(5)
        owner = publisher(central.port)
        owner.publish("edge-aae/gw1/model/update", b'{"kind": "header"}', qos=1).wait_for_publish(5)
        assert at_central.wait_for(lambda r: len(r.json("/model")) >= 1 and len(r.json("/alert")) >= 1, 10)
        assert at_local.wait_for(lambda r: len(r.json("/model/update")) == 1, 10)
        time.sleep(0.5)
        seen = {t.removeprefix("edge-aae/gw1/") for t, _, _ in at_central.messages}
        assert {"anomaly/pump1/alert", "anomaly/pump1/score", "status", "errors", "model"} <= seen
        assert "sensors/pump1" not in seen  # readings stay on the gateway
        assert [t for t, _, _ in at_central.messages].count("edge-aae/gw1/model/update") == 1  # no echo back
        gw.disconnect()
        owner.disconnect()
    finally:
        at_central.close()
        at_local.close()
        local.stop()
        central.stop()


def test_a_central_outage_loses_no_alert(tmp_path):
    central, local = bridged(tmp_path)
    consumer = Recorder(central.port, "edge-aae/+/anomaly/+/alert", client_id="alerting", persistent=True)
    try:
        wait_bridge(central)
        consumer.close()
        central.stop()  # the WAN is down: the gateway keeps publishing to its local broker
        gw = publisher(local.port)
        for i in range(20):
            gw.publish("edge-aae/gw1/anomaly/pump1/alert", json.dumps({"n": i}), qos=1).wait_for_publish(5)
        central.start()
        consumer = Recorder(central.port, "edge-aae/+/anomaly/+/alert", client_id="alerting", persistent=True)
        assert consumer.wait_for(lambda r: len(r.json("/alert")) >= 20, 30), len(consumer.json("/alert"))
        assert sorted(m["n"] for m in consumer.json("/alert")) == list(range(20))
        gw.disconnect()
    finally:
        consumer.close()
        local.stop()
        central.stop()


def test_two_consumers_on_a_shared_subscription_split_the_alerts_each_handled_once(tmp_path):
    central, local = bridged(tmp_path)
    group = "$share/alerting/edge-aae/+/anomaly/+/alert"
    a = Recorder(central.port, group, client_id="alerting-a", persistent=True)
    b = Recorder(central.port, group, client_id="alerting-b", persistent=True)
    try:
        wait_bridge(central)
        gw = publisher(local.port)
        for i in range(60):
            msg = gw.publish(f"edge-aae/gw1/anomaly/pump{i % 3}/alert", json.dumps({"id": f"a{i}"}), qos=1)
            msg.wait_for_publish(5)

        def ids(r: Recorder) -> list[str]:
            return [m["id"] for m in r.json("/alert")]

        assert a.wait_for(lambda _: len(ids(a)) + len(ids(b)) >= 60, 20), (len(ids(a)), len(ids(b)))
        time.sleep(0.5)  # a duplicate would arrive now
        got_a, got_b = ids(a), ids(b)
        assert got_a, "consumer b got everything: the load was not shared"
        assert got_b, "consumer a got everything: the load was not shared"
        assert sorted(got_a + got_b) == sorted(f"a{i}" for i in range(60))  # each id once, none lost
        gw.disconnect()
    finally:
        a.close()
        b.close()
        local.stop()
        central.stop()
