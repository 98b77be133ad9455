"""A recording paho subscriber for tests."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

KEEP_MAX_BYTES = 4 * 2**20  # a larger payload is kept as b"" (the red team's huge messages pass by)


class Recorder:
    """Subscribes to ``topic_filter`` and keeps every (topic, payload, retain) it receives.

    Payloads over :data:`KEEP_MAX_BYTES` are kept empty: the message is seen, its bytes not held.
    """

    def __init__(self, port: int, topic_filter: str, client_id: str | None = None, qos: int = 1,
                 persistent: bool = False) -> None:
        """Connect and subscribe (waits for the subscription)."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=qos)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
        self.client.reconnect_delay_set(1, 2)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscription not acknowledged")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            payload = bytes(msg.payload) if len(msg.payload) <= KEEP_MAX_BYTES else b""
            self.messages.append((msg.topic, payload, bool(msg.retain)))

    def json(self, suffix: str) -> list[dict[str, Any]]:
        """Decoded payloads of topics ending with ``suffix``."""
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p]

    def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> bool:
        """Poll ``predicate(self)`` until true or the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def publisher(port: int, client_id: str = "", max_inflight: int | None = None) -> mqtt.Client:
    """A connected MQTT v5 client on the loopback broker, network loop running, unbounded queue."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.reconnect_delay_set(1, 2)
    c.max_queued_messages_set(0)
    if max_inflight is not None:
        c.max_inflight_messages_set(max_inflight)  # paho refuses this once connected
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c
