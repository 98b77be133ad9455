"""firmware_configs/mosquitto-bridge.conf on a real pair of brokers: a gateway's local mosquitto
bridged to a central one carries the gateway's reports out, updates in, and keeps readings local;
a central outage loses no alert."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "firmware_configs" / "mosquitto-bridge.conf"


def bridged(tmp_path: Path) -> tuple[Mosquitto, Mosquitto]:
    central = Mosquitto(tmp_path / "central")
    central.start()
    text = CONF.read_text().replace("GATEWAY_ID", "gw1").replace("central.example.com:8883",
                                                                 f"127.0.0.1:{central.port}")
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("bridge_cafile"))  # no TLS here
    local = Mosquitto(tmp_path / "local", extra_conf=text + "\n")
    local.start()
    return central, local


def wait_bridge(central: Mosquitto) -> None:
    rec = Recorder(central.port, "edge-aae/gw1/bridge")
    try:
        assert rec.wait_for(lambda r: any(p == b"1" for t, p, _ in r.messages), 15), "bridge never connected"
    finally:
        rec.close()


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
