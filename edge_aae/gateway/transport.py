"""The daemon's MQTT side: paho, reconnects, subscriptions, its own health probe, and alert delivery.

:class:`Transport` owns the paho client and everything that depends only on the broker:
connecting (a broker that is down is retried), subscriptions (a refused one is retried and
makes the gateway unhealthy), the readings-path probe, the PUBACK bookkeeping and the
durable delivery of alerts from the :class:`~edge_aae.gateway.outbox.Outbox`. What arrives
is handed to the pipeline through :class:`Handlers`; the pipeline (queue, windows, scoring,
alerting, model slots) lives in :mod:`edge_aae.gateway.daemon`. The two are joined only by
those callbacks, the way an MQTT communicator and a dispatcher are kept apart.

No exception escapes a paho callback: one would kill paho's network thread and leave a
deaf gateway whose process still looks alive. Each callback is wrapped; what it raises is
handed to ``Handlers.internal_error`` (counted, logged and reported by the pipeline), and
the message is acknowledged.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_aae.core.protocol import FEEDBACK_QOS, SENSOR_QOS, STATUS_QOS, UPDATE_QOS, Topics, unreachable
from edge_aae.gateway.config import GatewayConfig
from edge_aae.gateway.identity import session_client_id
from edge_aae.gateway.mqtt_client import mqtt
from edge_aae.gateway.outbox import Outbox
from edge_aae.gateway.stats import Stats

log = logging.getLogger(__name__)

RESEND_AFTER_S = 30.0
PUBACK_RETRY_MAX_S = 60.0
PROBE_MAX_S = 15.0  # the readings-path probe goes out every min(15, keepalive_s / 2) seconds


@dataclass(frozen=True)
class Handlers:
    """What the transport hands to the pipeline (all called on paho's network thread but ``report``).

    Attributes:
        message: a message on a subscribed topic other than the probe: ``(topic, payload)``.
        connected: the broker accepted the connection (publish the status, announce assets).
        status_payload: the retained status for ``"online"`` / ``"offline"`` (also the last will).
        report: publish an error report ``(asset, reason, detail)`` (rate-limited by the pipeline).
        internal_error: a callback raised: ``(where, exception, topic or "")``.

    """

    message: Callable[[str, bytes], None]
    connected: Callable[[], None]
    status_payload: Callable[[str], str]
    report: Callable[[str, str, str], None]
    internal_error: Callable[[str, BaseException, str], None]


def _contained(fn: Callable[..., None]) -> Callable[..., None]:
    """Wrap a paho callback so that nothing it raises reaches paho's network thread."""

    @functools.wraps(fn)
    def wrapper(self: Transport, *args: Any) -> None:
        try:
            fn(self, *args)
        except Exception as exc:
            msg = args[-1] if args else None
            topic = msg.topic if isinstance(msg, mqtt.MQTTMessage) else ""
            try:
                self.handlers.internal_error(fn.__name__, exc, topic)
            except Exception:  # noqa: S110 - the last line of defence must not raise either
                pass

    return wrapper


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged a QoS 1 publish.

    ``is_published()`` raises for a message published while disconnected (its return code
    says so) even after paho re-sent it on reconnect and got the PUBACK; the flag it
    reads is then the only record of that acknowledgement.
    """
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return bool(getattr(info, "_published", False))


class Transport:
    """The paho client of one gateway, its subscriptions, health and alert delivery."""

    def __init__(self, cfg: GatewayConfig, topics: Topics, stats: Stats, outbox: Outbox, handlers: Handlers,
                 *, updates: bool = False, feedback: bool = False) -> None:
        """Build the client (nothing touches the network until :meth:`start`)."""
        self.cfg = cfg
        self.topics = topics
        self.stats = stats
        self.outbox = outbox
        self.handlers = handlers
        self.updates = updates
        self.feedback = feedback
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.intake = threading.Event()  # cleared at shutdown: messages are no longer handed on
        self.intake.set()
        self._lock = threading.Lock()
        self._inflight: dict[str, tuple[mqtt.MQTTMessageInfo, float]] = {}
        self._watching = False  # whether paho's on_publish is set
        self._puback_failed: dict[int, tuple[str, float]] = {}
        self._retry: dict[str, tuple[int, float]] = {}  # outbox key -> (refusals, next attempt)
        self._sub_mid: int | None = None
        self._resubscribe_at = 0.0
        self.probe_every = min(PROBE_MAX_S, cfg.broker.keepalive_s / 2)
        self._probe_nonces: deque[str] = deque(maxlen=8)
        self._probe_back = -float("inf")  # monotonic time the last probe came back
        self._next_probe = 0.0
        self.client_id = ""
        self.client = self._make_client()

    # ---- paho -------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        b = self.cfg.broker
        client_id = b.client_id or session_client_id(Path(self.cfg.outbox.dir), self.cfg.gateway_id)
        self.client_id = client_id
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        client.will_set(self.topics.status, self.handlers.status_payload("offline"), qos=STATUS_QOS, retain=True)
        if b.tls:
            client.tls_set(ca_certs=b.tls_ca or None, certfile=b.tls_cert or None, keyfile=b.tls_key or None)
        password = b.password()
        if b.username:
            client.username_pw_set(b.username, password)
        client.reconnect_delay_set(min_delay=max(1, int(b.reconnect_min_s)), max_delay=int(b.reconnect_max_s))
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        # on_publish is set only while alerts are in flight (see _watch_pubacks): paho builds a reason
        # code and properties for every publish it hands on, scores included, when one is set
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        return client

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried) and start paho's thread."""
        b = self.cfg.broker
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call,unused-ignore]
        props.SessionExpiryInterval = b.session_expiry_s
        # the broker drops larger messages for us: paho would read one whole into memory first
        props.MaximumPacketSize = b.max_packet_bytes
        self.client.connect_async(b.host, b.port, keepalive=b.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish one message (paho queues it while disconnected)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    @_contained
    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        """Nagle's algorithm off on the broker connection (paho leaves it on).

        With it on, a score or a PUBACK written while an earlier packet waits for the broker's
        TCP acknowledgement is held until that comes, and Linux delays acknowledgements by up to
        40 ms: publish-to-score tails of tens of milliseconds. A socket that is not TCP (a
        websocket wrapper) is left as it is.
        """
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError) as exc:
            log.debug("TCP_NODELAY not set on the broker connection: %s", exc)

    @_contained
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any,
                    _props: Any) -> None:
        if reason_code.is_failure:
            value = getattr(reason_code, "value", 0)
            auth = value in (0x86, 0x87, 4, 5) or "authori" in str(reason_code).lower()
            log.error("broker %s:%d refused the connection: %s%s; retrying", self.cfg.broker.host,
                      self.cfg.broker.port, "not authorized" if auth else str(reason_code),
                      f" ({reason_code}; check broker.username and the password)" if auth else "")
            self.stats.add("connections_refused")
            return
        log.info("connected to %s:%d as %s", self.cfg.broker.host, self.cfg.broker.port, self.client_id)
        self.connected.set()
        self._subscribe(client)
        self.handlers.connected()

    def _subscriptions(self) -> list[tuple[str, int]]:
        subs = [(self.topics.sensors_filter, SENSOR_QOS)]
        if self.updates:
            subs.append((self.topics.model_update, UPDATE_QOS))
        if self.feedback:
            subs.append((self.topics.feedback, FEEDBACK_QOS))
        return subs

    def _subscribe(self, client: mqtt.Client) -> None:
        self.subscribed.clear()
        with self._lock:
            _rc, self._sub_mid = client.subscribe(self._subscriptions())

    @_contained
    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_codes: Any,
                      _props: Any) -> None:
        with self._lock:
            if mid != self._sub_mid:
                return
        failed = [(t, str(rc)) for (t, _q), rc in zip(self._subscriptions(), reason_codes, strict=False)
                  if getattr(rc, "is_failure", False)]
        if failed:
            self.stats.add("subscriptions_refused")
            k = self.stats.counts["subscriptions_refused"]
            self._resubscribe_at = time.monotonic() + min(30.0, 2.5 * 2 ** min(k, 4))
            log.error("the broker refused the subscription(s) %s: the gateway cannot receive and reports itself "
                      "unhealthy; retrying", ", ".join(f"{t} ({rc})" for t, rc in failed))
            return
        self.subscribed.set()
        self._send_probe()

    @_contained
    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            with self._lock:
                self._puback_failed[mid] = (str(reason_code), time.monotonic())

    @_contained
    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any,
                       _props: Any) -> None:
        if self.connected.is_set() and self.intake.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)
        self.connected.clear()
        self.subscribed.clear()

    @_contained
    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        log.warning("%s; retrying", unreachable(self.cfg.broker.host, self.cfg.broker.port))

    @_contained
    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """The probe is the transport's own; everything else goes to the pipeline."""
        if not self.intake.is_set():
            return
        if msg.topic == self.topics.probe:
            self._probe_returned(bytes(msg.payload))
            return
        self.handlers.message(msg.topic, bytes(msg.payload))

    # ---- health -----------------------------------------------------------------------------

    def _send_probe(self) -> None:
        """Publish a probe to ourselves through the readings subscription (QoS 1)."""
        nonce = secrets.token_hex(8)
        self._probe_nonces.append(nonce)
        self._next_probe = time.monotonic() + self.probe_every
        payload = {"probe": nonce, "gateway": self.cfg.gateway_id, "ts": time.time()}
        self.client.publish(self.topics.probe, json.dumps(payload), qos=SENSOR_QOS)

    def _probe_returned(self, raw: bytes) -> None:
        try:
            nonce = json.loads(raw).get("probe")
        except (ValueError, AttributeError, RecursionError):
            return
        if nonce in self._probe_nonces:
            self._probe_back = time.monotonic()

    def healthy(self) -> tuple[bool, str]:
        """Whether readings reach the gateway: network loop alive, connected, subscribed, probe back."""
        thread = getattr(self.client, "_thread", None)
        if thread is None or not thread.is_alive():
            return False, "MQTT network loop not running"
        if not self.connected.is_set():
            return False, "not connected to the broker"
        if not self.subscribed.is_set():
            return False, "subscriptions not granted"
        if time.monotonic() - self._probe_back > 2 * self.probe_every + 2:
            return False, (f"readings do not reach the gateway: its probe on {self.topics.probe} did not come "
                           "back (a broker ACL without read access to the sensors topics?)")
        return True, ""

    def maintain(self, now: float, stopping: bool) -> None:
        """Send a probe when due; restart a dead network loop; retry refused subscriptions."""
        if self.subscribed.is_set() and now >= self._next_probe:
            self._send_probe()
        thread = getattr(self.client, "_thread", None)
        if (thread is None or not thread.is_alive()) and not stopping:
            self.stats.add("network_loop_restarts")
            log.error("the MQTT network loop is not running; restarting it (#%d)",
                      self.stats.counts["network_loop_restarts"])
            self.client._thread = None  # paho refuses loop_start() while it holds a dead thread
            self.client.loop_start()
        elif self.connected.is_set() and not self.subscribed.is_set() and now >= self._resubscribe_at:
            self._resubscribe_at = now + 30.0  # the refusal, if it comes, sets the next attempt
            self._subscribe(self.client)

    # ---- alert delivery ---------------------------------------------------------------------

    def _watch_pubacks(self, on: bool) -> None:
        """Have paho report PUBACKs (their reason codes) only while alerts are in flight."""
        if on != self._watching:
            self.client.on_publish = self._on_publish if on else None
            self._watching = on

    def send_durable(self, topic: str, data: bytes, qos: int) -> None:
        """Keep a message in the outbox (memory when the disk is full) until the broker acknowledges it."""
        self._watch_pubacks(True)
        key = self.outbox.put(topic, data, qos=qos)
        self._inflight[key] = (self.client.publish(topic, data, qos=qos), time.monotonic())

    def _puback_refusal(self, info: mqtt.MQTTMessageInfo, sent: float) -> str | None:
        with self._lock:
            failed = self._puback_failed.get(info.mid)
            if failed is None or failed[1] < sent:
                return None
            del self._puback_failed[info.mid]
            return failed[0]

    def service_outbox(self) -> None:
        """Acknowledge what the broker confirmed; (re)send what is pending and not in flight.

        A PUBACK with a failure reason (not authorized, quota exceeded) keeps the message; it is
        retried with a growing delay, logged, counted (``puback_refused``) and reported.
        """
        now = time.monotonic()
        for key, (info, sent) in list(self._inflight.items()):
            refusal = self._puback_refusal(info, sent)
            if refusal is not None:
                del self._inflight[key]
                n = self._retry.get(key, (0, 0.0))[0] + 1
                delay = min(PUBACK_RETRY_MAX_S, 2.0 ** n)
                self._retry[key] = (n, now + delay)
                self.stats.drop("puback_refused")
                log.error("the broker refused alert %s (%s); kept in the outbox, retry in %.0f s", key, refusal, delay)
                self.handlers.report("", "puback_refused", f"the broker refused an alert ({refusal}); kept, "
                                     f"retrying in {delay:.0f} s")
            elif _acknowledged(info):
                self.outbox.ack(key)
                self._retry.pop(key, None)
                del self._inflight[key]
            elif now - sent > RESEND_AFTER_S and self.connected.is_set():
                del self._inflight[key]  # re-sent below; the subscriber drops the duplicate by id
        with self._lock:
            for mid in [m for m, (_, t) in self._puback_failed.items() if now - t > 300]:
                del self._puback_failed[mid]
        for key in self.outbox.keys():
            if key not in self._inflight and self._retry.get(key, (0, 0.0))[1] <= now:
                m = self.outbox.get(key)
                if m is not None:
                    self._watch_pubacks(True)
                    info = self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                    self._inflight[key] = (info, now)
        if not self._inflight:
            self._watch_pubacks(False)

    # ---- shutdown ---------------------------------------------------------------------------

    def stop_intake(self) -> None:
        """No more messages are handed on; the readings subscription is dropped."""
        self.intake.clear()
        if self.connected.is_set():
            self.client.unsubscribe(self.topics.sensors_filter)

    def close(self) -> None:
        """Publish the retained ``offline`` status (when connected) and disconnect."""
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, self.handlers.status_payload("offline"),
                                       qos=STATUS_QOS, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
