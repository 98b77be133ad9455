"""Subscribe to a fleet's alerts and gateway status: typed, validated, reconnecting (torch-free).

    from edge_aae.client.subscriber import AlertSubscriber

    with AlertSubscriber("mqtt://broker.local:1883") as sub:
        for event in sub:                      # Alert or GatewayStatus, duplicates dropped
            print(event)

or with callbacks: ``AlertSubscriber(url, on_alert=f, on_status=g, on_invalid=h).start()``.
Messages that are not valid JSON or break the schema are reported through
``on_invalid`` (and the log), never raised into the caller's loop.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_aae.core.contract import validation_errors
from edge_aae.core.errors import ConfigError, EdgeAAEError
from edge_aae.core.protocol import Topics, parse_broker_url, unreachable

log = logging.getLogger(__name__)


class BrokerRefused(EdgeAAEError):
    """The broker refused the connection (bad credentials or not authorized): retrying will not help."""


@dataclass(frozen=True)
class Alert:
    """One ``raised`` or ``cleared`` event (see ``docs/asyncapi.yaml``)."""

    id: str
    alert_id: str
    event: str
    gateway: str
    asset: str
    ts: float
    since: float
    score: float
    peak_score: float
    threshold: float
    top_channels: list[tuple[str, float]]
    model_name: str
    model_version: str
    topic: str = ""
    cause: str = "score"  # or "unseen_state" (see the alert schema)

    @property
    def ratio(self) -> float:
        """Score over threshold (> 1 is over)."""
        return self.score / self.threshold if self.threshold else float("inf")


@dataclass(frozen=True)
class GatewayStatus:
    """A gateway's retained ``online``/``offline`` status."""

    gateway: str
    state: str
    ts: float
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    retained: bool = False


@dataclass(frozen=True)
class Drift:
    """An asset's retained drift state: ``ok``, ``drifting`` or ``retrain``, and why."""

    gateway: str
    asset: str
    state: str
    since: float
    ts: float
    figures: dict[str, Any]
    channels: list[str]
    model_name: str
    model_version: str
    retained: bool = False


@dataclass(frozen=True)
class InvalidMessage:
    """A message that could not be used, and why."""

    topic: str
    reason: str
    payload: bytes


Event = Alert | GatewayStatus | Drift


def _validated(topic: str, payload: bytes, schema: str) -> Any:
    """The decoded payload, or an :class:`InvalidMessage` saying why it cannot be used."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return InvalidMessage(topic, f"not JSON: {exc}", payload)
    problems = validation_errors(msg, schema)
    return InvalidMessage(topic, "; ".join(problems[:5]), payload) if problems else msg


def parse_alert(topic: str, payload: bytes) -> Alert | InvalidMessage:
    """Validate and convert an alert payload."""
    msg = _validated(topic, payload, "alert")
    if isinstance(msg, InvalidMessage):
        return msg
    return Alert(msg["id"], msg["alert_id"], msg["event"], msg["gateway"], msg["asset"], float(msg["ts"]),
                 float(msg["since"]), float(msg["score"]), float(msg["peak_score"]), float(msg["threshold"]),
                 [(c["channel"], float(c["share"])) for c in msg["top_channels"]],
                 msg["model"]["name"], msg["model"]["version"], topic, str(msg.get("cause", "score")))


def parse_status(topic: str, payload: bytes, retained: bool = False) -> GatewayStatus | InvalidMessage:
    """Validate and convert a status payload (an empty retained payload is not a status)."""
    msg = _validated(topic, payload, "status")
    if isinstance(msg, InvalidMessage):
        return msg
    return GatewayStatus(msg["gateway"], msg["state"], float(msg["ts"]), msg.get("models", {}),
                         msg.get("stats", {}), retained)


def parse_drift(topic: str, payload: bytes, retained: bool = False) -> Drift | InvalidMessage:
    """Validate and convert a drift payload."""
    msg = _validated(topic, payload, "drift")
    if isinstance(msg, InvalidMessage):
        return msg
    return Drift(msg["gateway"], msg["asset"], msg["state"], float(msg["since"]), float(msg["ts"]),
                 dict(msg["figures"]), list(msg["channels"]), msg["model"]["name"], msg["model"]["version"],
                 retained)


class AlertSubscriber:
    """Alerts, drift states and gateway status: ``ROOT/GW/anomaly/ASSET/alert``, ``.../drift``, ``ROOT/GW/status``.

    Args:
        broker: ``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT``.
        root: topic root; ``gateway`` and ``asset`` narrow the subscription (``+`` is every one).
        tls_ca: CA file for ``mqtts://`` (system CAs when empty).
        username, password: broker credentials.
        client_id: a fixed id with a persistent session (alerts queued while away are delivered);
            empty for a throwaway session.
        on_alert, on_status, on_drift, on_invalid: callbacks, run on the network thread.
        dedupe: how many recent alert ids to remember for dropping redeliveries.

    """

    def __init__(self, broker: str, *, root: str = "edge-aae", gateway: str = "+", asset: str = "+",
                 tls_ca: str = "", username: str = "", password: str | None = None, client_id: str = "",
                 on_alert: Callable[[Alert], None] | None = None,
                 on_status: Callable[[GatewayStatus], None] | None = None,
                 on_drift: Callable[[Drift], None] | None = None,
                 on_invalid: Callable[[InvalidMessage], None] | None = None,
                 dedupe: int = 10000) -> None:
        """Configure; nothing connects until :meth:`start` (or ``with`` / iteration)."""
        self.host, self.port, tls = parse_broker_url(broker)
        for name, value in (("root", root), ("gateway", gateway), ("asset", asset)):
            if not value or "#" in value or "/" in value or ("+" in value and value != "+"):
                raise ConfigError(f"{name}: {value!r} must be a single topic level or '+'")
        topics = Topics(root, gateway)
        self.alert_filter = topics.alert(asset)
        self.status_filter = topics.status
        self.drift_filter = topics.drift(asset)
        self.on_alert, self.on_status, self.on_drift, self.on_invalid = on_alert, on_status, on_drift, on_invalid
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe = dedupe
        self._events: queue.Queue[Event | BaseException] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # set once the broker acknowledged the subscriptions
        self.invalid = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._persistent = bool(client_id)
        if tls:
            self.client.tls_set(ca_certs=tls_ca or None)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect_fail = lambda *_: log.warning("%s; retrying", unreachable(self.host, self.port))
        self._started = False

    # -- paho callbacks --------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        if reason_code.is_failure:
            text = str(reason_code)
            if reason_code.value in (0x84, 0x85, 0x86, 0x87, 0x8C, 0x04, 0x05):  # auth / not authorized
                self._events.put(BrokerRefused(f"broker {self.host}:{self.port} refused the connection: {text} "
                                               "(check the username, password and ACL)"))
                client.disconnect()
            else:
                log.warning("broker %s:%d refused the connection: %s; retrying", self.host, self.port, text)
            return
        self.connected.set()
        log.info("connected to %s:%d", self.host, self.port)
        client.subscribe([(self.alert_filter, 1), (self.status_filter, 1), (self.drift_filter, 1)])

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        if self.connected.is_set() and self._started:  # not on the user's own close() (Ctrl-C)
            log.warning("disconnected (%s); reconnecting", reason_code)
        self.connected.clear()
        self.subscribed.clear()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            if not msg.payload:
                return  # a cleared retained status
            parsed: Event | InvalidMessage = parse_status(msg.topic, bytes(msg.payload), bool(msg.retain))
        elif msg.topic.endswith("/drift"):
            if not msg.payload:
                return
            parsed = parse_drift(msg.topic, bytes(msg.payload), bool(msg.retain))
        else:
            parsed = parse_alert(msg.topic, bytes(msg.payload))
        if isinstance(parsed, InvalidMessage):
            self.invalid += 1
            log.warning("invalid message on %s: %s", parsed.topic, parsed.reason)
            if self.on_invalid is not None:
                self._safe(self.on_invalid, parsed)
            return
        if isinstance(parsed, Alert):
            if parsed.id in self._seen:
                return
            self._seen[parsed.id] = None
            while len(self._seen) > self._dedupe:
                self._seen.popitem(last=False)
            if self.on_alert is not None:
                self._safe(self.on_alert, parsed)
        elif isinstance(parsed, Drift):
            if self.on_drift is not None:
                self._safe(self.on_drift, parsed)
        elif self.on_status is not None:
            self._safe(self.on_status, parsed)
        self._events.put(parsed)

    @staticmethod
    def _safe(callback: Callable[[Any], None], arg: Any) -> None:
        try:
            callback(arg)
        except Exception:  # a user callback must not kill the network thread
            log.exception("callback %r failed", callback)

    # -- public ----------------------------------------------------------------------------

    def start(self) -> AlertSubscriber:
        """Connect in the background (a broker that is down is retried)."""
        if not self._started:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 86400 if self._persistent else 0
            self.client.connect_async(self.host, self.port, keepalive=30, clean_start=not self._persistent,
                                      properties=props)
            self.client.loop_start()
            self._started = True
        return self

    def get(self, timeout_s: float | None = None) -> Event | None:
        """The next alert, drift state or status (None after ``timeout_s``).

        Raises:
            BrokerRefused: the broker refused the credentials.

        """
        try:
            item = self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self) -> Iterator[Event]:
        """Alerts and statuses as they arrive, forever (stop with :meth:`close` or Ctrl-C)."""
        self.start()
        while True:
            item = self.get(timeout_s=0.5)
            if item is not None:
                yield item
            elif not self._started:
                return

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        if self._started:
            self._started = False
            self.client.disconnect()
            self.client.loop_stop()

    def __enter__(self) -> AlertSubscriber:
        """Start."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()
