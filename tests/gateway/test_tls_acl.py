"""TLS, passwords and ACLs on a real mosquitto: who may connect, publish and push models."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_aae.client.subscriber import AlertSubscriber, BrokerRefused
from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.replay import publish_series
from tests.gateway.tls_certs import make_ca_and_server

USERS = {"gw1": "gw1-secret", "ops": "ops-secret", "plc": "plc-secret", "owner": "owner-secret"}
ACL = """
user gw1
topic readwrite edge-aae/gw1/#

user ops
topic read edge-aae/#
topic write edge-aae/+/feedback

user plc
topic write edge-aae/gw1/sensors/#

user owner
topic write edge-aae/+/model/update
topic read edge-aae/+/model
"""


@pytest.fixture
def secure_broker(tmp_path):
    certs = make_ca_and_server(tmp_path / "certs")
    pw = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run(["mosquitto_passwd", "-b", *([] if i else ["-c"]), str(pw), user, password],
                       check=True, capture_output=True)
    pw.chmod(0o600)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    acl.chmod(0o600)
    b = Mosquitto(tmp_path / "broker", tls=certs,
                  extra_conf=f"allow_anonymous false\npassword_file {pw}\nacl_file {acl}\n")
    b.start()
    yield b, certs
    b.stop()


class Client:
    """A TLS paho client recording messages and PUBACK reason codes."""

    def __init__(self, port: int, ca, user: str | None, topic: str | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, object] = {}
        self.rc: object = None
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if user:
            self.c.username_pw_set(user, USERS[user])
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc)

        def on_connect(c, _u, _f, rc, _p):
            self.rc = rc
            if not rc.is_failure and topic:
                c.subscribe(topic, qos=1)
            self.ready.set()

        self.c.on_connect = on_connect
        self.c.on_subscribe = lambda *_: self.ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.3)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_daemon_over_tls_and_the_acl_holds(secure_broker, bundle, synth_dir, tmp_path, monkeypatch):
    broker, certs = secure_broker
    extra = ""
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra=extra)
    cfg.write_text(cfg.read_text() + f'[broker]\ntls_ca = "{certs["ca"]}"\nusername = "gw1"\n'
                   'password_env = "GW1_PASSWORD"\n')
    monkeypatch.setenv("GW1_PASSWORD", USERS["gw1"])
    ops = Client(broker.port, certs["ca"], "ops", "edge-aae/#")
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t.endswith("/status") for t, _ in ops.messages):
            time.sleep(0.1)
        assert any(json.loads(p)["state"] == "online" for t, p in ops.messages if t.endswith("/status")), \
            daemon.log()[-2000:]
        plc = Client(broker.port, certs["ca"], "plc")
        publish_series(plc.c, "edge-aae/gw1/sensors/pump1", load_series(synth_dir / "test.csv").slice_rows(0, 100),
                       batch=20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(t.endswith("/score") for t, _ in ops.messages):
            time.sleep(0.1)
        assert any(t == "edge-aae/gw1/anomaly/pump1/score" for t, _ in ops.messages)

        # no credentials: refused, plainly
        anon = AlertSubscriber(broker.url, tls_ca=str(certs["ca"])).start()
        with pytest.raises(BrokerRefused):
            anon.get(timeout_s=10)
        anon.close()

        # a gateway cannot publish outside its own prefix
        gw = Client(broker.port, certs["ca"], "gw1")
        mid = gw.c.publish("edge-aae/gw2/anomaly/pump1/alert", b'{"forged": true}', qos=1).mid
        time.sleep(1)
        assert getattr(gw.acks.get(mid), "is_failure", False), gw.acks
        assert not any(t.startswith("edge-aae/gw2/") for t, _ in ops.messages)

        # a read-only subscriber cannot push a model; the model owner can reach the topic
        (tmp_path / "ops.pw").write_text(USERS["ops"])
        res = subprocess.run([sys.executable, "-m", "edge_aae.cli", "deploy", str(bundle), "--broker", broker.url,
                              "--gateway", "gw1", "--tls-ca", str(certs["ca"]), "--username", "ops",
                              "--password-file", str(tmp_path / "ops.pw"), "--wait", "0"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 1
        assert "did not accept the update" in res.stderr
        assert not any(t.endswith("/model/update") for t, _ in ops.messages)
        owner = Client(broker.port, certs["ca"], "owner")
        mid = owner.c.publish("edge-aae/gw1/model/update", b"{}", qos=1).mid
        time.sleep(1)
        assert not getattr(owner.acks.get(mid), "is_failure", True)
        for c in (plc, gw, owner):
            c.close()
    finally:
        ops.close()
        daemon.close()
