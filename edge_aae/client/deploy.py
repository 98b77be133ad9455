"""``edge-aae deploy``: push a signed bundle to a gateway over MQTT and report what it did with it."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_aae.core.errors import EdgeAAEError, UsageError
from edge_aae.core.protocol import MODEL_QOS, UPDATE_QOS, Topics, parse_broker_url
from edge_aae.core.update_format import UpdateRefused, check_version, update_messages
from edge_aae.gateway.bundle import SIGNATURE, read_manifest

STATUS_WAIT_S = 2.0  # how long to wait for the gateway's retained status before sending (packet size)
PACKET_MARGIN = 64  # an MQTT publish packet beyond its topic and payload: headers, packet id, properties
CHUNK_JSON_BYTES = 200  # a chunk message beyond its base64 data: update id, kind, index
STATUS_CONFIRM_S = 30.0  # after "installed", how long to wait for the status to show the version in service


def deploy_bundle(bundle: Path, broker: str, gateway: str, *, root: str = "edge-aae", asset: str = "",
                  tls_ca: str = "", username: str = "", password: str | None = None, chunk_kb: int = 128,
                  wait_s: float = 60.0, out: TextIO = sys.stdout, report: dict[str, Any] | None = None) -> int:
    """Publish ``bundle`` to ``ROOT/GW/model/update`` and wait for the outcome on ``ROOT/GW/model``.

    ``report``, when given, is filled with ``outcome`` (``installed``, ``refused``, ``rolled_back``,
    ``no answer``, ``not confirmed``), ``previous``, ``version`` and ``reason``.

    Returns:
        0 when the gateway reports ``installed`` and its status then shows the new version in
        service (a forged ``installed`` on an open broker is not enough); 1 when it refused or
        rolled back, or said nothing within ``wait_s`` (0: do not wait).

    Raises:
        UsageError: not a bundle, or a bad broker URL.
        EdgeAAEError: the broker refused the connection or did not acknowledge the chunks.

    """
    report = {} if report is None else report
    manifest = read_manifest(bundle)
    if not (bundle / SIGNATURE).is_file():
        print(f"warning: {bundle} is not signed; a gateway with updates enabled will refuse it", file=sys.stderr)
    try:
        check_version(manifest.model.version)
    except (UpdateRefused, KeyError, TypeError) as exc:
        raise UsageError(f"{bundle}: {exc} (export with --model-version 1.2.3)") from None
    host, port, tls = parse_broker_url(broker)
    update_id = uuid.uuid4().hex[:16]
    chunks = update_messages(bundle, update_id, chunk_kb * 1024, asset)
    archive_kib = sum(len(c) for c in chunks[1:]) * 3 / 4 / 1024
    answers: list[dict[str, Any]] = []  # every answer for this update, in arrival order
    got = threading.Event()
    statuses: list[dict[str, Any]] = []
    topics = Topics(root, gateway)
    status_topic = topics.status
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        else:
            c.subscribe([(topics.model, MODEL_QOS), (status_topic, 1)])
        connected.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if msg.topic == status_topic:
            statuses.append(data)
        elif data.get("update_id") == update_id:
            answers.append(data)
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
        _check_packet_size(chunks, topics.model_update, gateway, statuses)
        version = manifest.model.version
        report.update(version=version, previous="", outcome="no answer", reason="")
        out.write(f"deploying {manifest.model.name} {version} ({archive_kib:.0f} KiB in "
                  f"{len(chunks) - 1} chunk(s)) to {topics.model_update} as update {update_id}\n")
        for payload in chunks:
            info = client.publish(topics.model_update, payload, qos=UPDATE_QOS)
            info.wait_for_publish(timeout=30)
            if not info.is_published() or denied:
                why = denied[0] if denied else "no acknowledgement"
                raise EdgeAAEError(f"the broker did not accept the update ({why}): is this user allowed to "
                                   f"publish to {topics.model_update}?")
        if wait_s <= 0:
            out.write("sent (not waiting for the outcome)\n")
            return 0
        if not got.wait(wait_s):
            report["reason"] = f"nothing within {wait_s:.0f} s (offline? updates disabled?)"
            out.write(f"no outcome from gateway {gateway} within {wait_s:.0f} s (offline? updates disabled?)\n")
            return 1
        outcome = answers[0]
        event = outcome.get("event")
        detail = outcome.get("reason") or f"version {outcome.get('version')} (was {outcome.get('previous')})"
        report.update(outcome=str(event), previous=str(outcome.get("previous") or ""),
                      reason=str(outcome.get("reason") or ""))
        out.write(f"gateway {gateway}: {event}: {detail}\n")
        if event != "installed":
            return 1
        key = asset or "default"

        def in_service() -> str | None:
            for st in reversed(statuses):
                models = st.get("models")
                if st.get("state") == "online" and isinstance(models, dict) and isinstance(models.get(key), dict):
                    return str(models[key].get("version"))
            return None

        def contradicted() -> dict[str, Any] | None:
            """A later answer for this update that is not "installed" (the gateway's own, after a forged one)."""
            return next((o for o in answers if o.get("event") != "installed"), None)

        deadline = time.monotonic() + min(STATUS_CONFIRM_S, max(wait_s, 1.0))
        while in_service() != version and time.monotonic() < deadline and contradicted() is None:
            time.sleep(0.1)
        serving = in_service()
        other = contradicted()
        if serving != version and other is not None:
            why = other.get("reason") or f"version {other.get('version')}"
            report.update(outcome=str(other.get("event")), reason=str(other.get("reason") or ""))
            out.write(f"gateway {gateway}: {other.get('event')}: {why} (an 'installed' for this update came "
                      f"first, which its status does not confirm: the outcome may be forged, an open broker?)\n")
            return 1
        if serving != version:
            report.update(outcome="not confirmed", reason=f"status shows {key} = {serving or 'nothing'} in service")
            out.write(f"gateway {gateway} reported installed, but its status shows {key} = {serving or 'nothing'} "
                      f"in service, not {version}: the outcome may be forged (an open broker?)\n")
            return 1
        out.write(f"gateway {gateway}: status confirms {version} in service\n")
        return 0
    finally:
        client.disconnect()
        client.loop_stop()


def _check_packet_size(chunks: list[bytes], topic: str, gateway: str, statuses: list[dict[str, Any]],
                       wait_s: float = STATUS_WAIT_S) -> None:
    """Refuse an update whose messages the gateway's broker would drop as too large for it.

    The gateway's retained status says how large a message it accepts (``max_packet_bytes``;
    the broker discards larger ones for it without a word). A gateway whose status predates the
    field, or that has never been online, is not checked.

    Raises:
        UsageError: a message is larger than the gateway accepts (the error says which
            ``--chunk-kb`` fits).

    """
    deadline = time.monotonic() + wait_s
    while not statuses and time.monotonic() < deadline:  # the retained status comes right after SUBACK
        time.sleep(0.02)
    limits = [st["max_packet_bytes"] for st in statuses
              if isinstance(st.get("max_packet_bytes"), int) and st["max_packet_bytes"] > 0]
    if not limits:
        return
    limit = limits[-1]
    room = limit - len(topic.encode()) - PACKET_MARGIN
    header, body = chunks[0], chunks[1:]
    if len(header) > room:
        raise UsageError(f"gateway {gateway} accepts MQTT messages up to {limit} bytes (its broker.max_packet_bytes) "
                         f"and this update's header is {len(header)} bytes (the manifest): raise the gateway's "
                         "broker.max_packet_bytes")
    largest = max((len(c) for c in body), default=0)
    if largest > room:
        fits_kb = max(1, int((room - CHUNK_JSON_BYTES) * 3 / 4 / 1024))
        raise UsageError(f"gateway {gateway} accepts MQTT messages up to {limit} bytes (its broker.max_packet_bytes) "
                         f"and this update's chunks are up to {largest} bytes: deploy with --chunk-kb {fits_kb} "
                         "or less")


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
