"""``edge-aae deploy``: push a signed bundle to a gateway over MQTT and report what it did with it."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_aae.errors import EdgeAAEError, UsageError
from edge_aae.gateway.bundle import SIGNATURE, read_manifest
from edge_aae.gateway.config import parse_broker_url
from edge_aae.gateway.updates import chunk_messages, pack_bundle


def deploy_bundle(bundle: Path, broker: str, gateway: str, *, root: str = "edge-aae", asset: str = "",
                  tls_ca: str = "", username: str = "", password: str | None = None, chunk_kb: int = 128,
                  wait_s: float = 60.0, out: TextIO = sys.stdout) -> int:
    """Publish ``bundle`` to ``ROOT/GW/model/update`` and wait for the outcome on ``ROOT/GW/model``.

    Returns:
        0 when the gateway reports ``installed``; 1 when it refused or rolled back, or said nothing
        within ``wait_s`` (0: do not wait).

    Raises:
        UsageError: not a bundle, or a bad broker URL.
        EdgeAAEError: the broker refused the connection or did not acknowledge the chunks.

    """
    manifest = read_manifest(bundle)
    if not (bundle / SIGNATURE).is_file():
        print(f"warning: {bundle} is not signed; a gateway with updates enabled will refuse it", file=sys.stderr)
    host, port, tls = parse_broker_url(broker)
    archive = pack_bundle(bundle)
    update_id = uuid.uuid4().hex[:16]
    chunks = chunk_messages(archive, update_id, chunk_kb * 1024, asset)
    outcome: dict[str, Any] = {}
    got = threading.Event()
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        else:
            c.subscribe(f"{root}/{gateway}/model", qos=1)
        connected.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("update_id") == update_id:
            outcome.update(data)
            got.set()

    denied: list[str] = []

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
        if getattr(rc, "is_failure", False):
            denied.append(str(rc))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(20)
    client.on_publish = on_publish
    if tls:
        client.tls_set(ca_certs=tls_ca or None)
    if username:
        client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        raise EdgeAAEError(f"cannot reach the broker at {host}:{port} ({exc})") from None
    client.loop_start()
    try:
        if not connected.wait(15) or refused:
            raise EdgeAAEError(f"broker {host}:{port} refused the connection: {refused[0] if refused else 'timeout'}")
        version = manifest["model"]["version"]
        out.write(f"deploying {manifest['model']['name']} {version} ({len(archive) / 1024:.0f} KiB in "
                  f"{len(chunks)} chunk(s)) to {root}/{gateway}/model/update as update {update_id}\n")
        for payload in chunks:
            info = client.publish(f"{root}/{gateway}/model/update", payload, qos=1)
            info.wait_for_publish(timeout=30)
            if not info.is_published() or denied:
                why = denied[0] if denied else "no acknowledgement"
                raise EdgeAAEError(f"the broker did not accept the update ({why}): is this user allowed to "
                                   f"publish to {root}/{gateway}/model/update?")
        if wait_s <= 0:
            out.write("sent (not waiting for the outcome)\n")
            return 0
        if not got.wait(wait_s):
            out.write(f"no outcome from gateway {gateway} within {wait_s:.0f} s (offline? updates disabled?)\n")
            return 1
        event = outcome.get("event")
        detail = outcome.get("reason") or f"version {outcome.get('version')} (was {outcome.get('previous')})"
        out.write(f"gateway {gateway}: {event}: {detail}\n")
        return 0 if event == "installed" else 1
    finally:
        client.disconnect()
        client.loop_stop()


def read_password(password_file: Path | None, username: str, env: str = "EDGE_AAE_MQTT_PASSWORD") -> str | None:
    """The password from a file, else from the environment when a username is given.

    Raises:
        UsageError: the file cannot be read.

    """
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--password-file {password_file}: cannot read it ({exc.strerror})") from None
    return os.environ.get(env) if username else None
