"""``edge-aae record``: alerts, statuses, drift states, operator feedback and (optionally) scores into a database.

Nothing is lost and nothing is doubled:

* the MQTT session is persistent (fixed client id, ``clean_start`` false, a week's session
  expiry) and every message is acknowledged **after** its row is committed (paho's manual
  acknowledgement). A recorder that is killed, or a database that goes away, leaves the
  unacknowledged messages with the broker, which delivers them again;
* rows are keyed on the message (an alert's ``id``), so a copy delivered twice is one row;
* ``share``: several recorders on one MQTT 5 shared subscription (``$share/GROUP/...``) split
  the messages between them; retained statuses are not delivered to shared subscriptions (MQTT 5),
  so each recorder also takes the live status messages only.

A database that is down at start is waited for (one line, then retries); while it is down
later, messages wait in memory unacknowledged, and the broker stops sending once its in-flight
window is full.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_aae.client.history_db import HistoryDb, open_db, parse_db_url
from edge_aae.core.contract import schema_for_topic, validation_errors
from edge_aae.core.errors import EdgeAAEError, UsageError
from edge_aae.core.protocol import parse_broker_url

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
BATCH = 200
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class RecordOptions:
    """What ``edge-aae record`` was asked to do."""

    broker: str
    db: str
    root: str = "edge-aae"
    share: str = ""
    client_id: str = ""
    scores_every: int = 0  # 0: no scores; N: one score message in N per asset
    tls_ca: str = ""
    username: str = ""
    password: str | None = None


def default_client_id(share: str) -> str:
    """A client id stable across restarts on this host (the persistent session is keyed on it)."""
    return f"edge-aae-record-{share or 'solo'}-{socket.gethostname()}"[:64]


class HistoryRecorder:
    """Subscribe, write, acknowledge. :meth:`run` until :meth:`stop`."""

    def __init__(self, opts: RecordOptions) -> None:
        """Check the URLs (nothing connects yet).

        Raises:
            UsageError: a malformed broker or database URL, or a bad share group name.

        """
        parse_db_url(opts.db)
        self.host, self.port, tls = parse_broker_url(opts.broker)
        if opts.share and any(c in opts.share for c in "+#/ "):
            raise UsageError(f"--share {opts.share!r}: a group name without spaces, '/', '+' or '#'")
        if opts.scores_every < 0:
            raise UsageError("--scores-every must be >= 0 (0: no scores)")
        self.opts = opts
        self.client_id = opts.client_id or default_client_id(opts.share)
        self._stop = threading.Event()
        self._inbox: queue.Queue[tuple[int, int, str, dict[str, Any]]] = queue.Queue()
        self._score_count: dict[str, int] = {}
        self.written = 0
        self.invalid = 0
        self._connected = threading.Event()
        self._refused: list[str] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if tls:
            client.tls_set(ca_certs=opts.tls_ca or None)
        if opts.username:
            client.username_pw_set(opts.username, opts.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self.client = client

    # ---- MQTT side ---------------------------------------------------------------------------
    def _filters(self) -> list[str]:
        prefix = f"$share/{self.opts.share}/" if self.opts.share else ""
        root = self.opts.root
        out = [f"{prefix}{root}/+/anomaly/+/alert", f"{prefix}{root}/+/status", f"{prefix}{root}/+/anomaly/+/drift",
               f"{prefix}{root}/+/feedback", f"{prefix}{root}/+/feedback/state"]
        if self.opts.scores_every:
            out.append(f"{prefix}{root}/+/anomaly/+/score")
        return out

    def _on_connect(self, c: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._refused.append(str(rc))
            self._connected.set()
            return
        c.subscribe([(f, 1) for f in self._filters()])
        log.info("connected to %s:%d as %s (session %s)", self.host, self.port, self.client_id,
                 "resumed" if getattr(flags, "session_present", False) else "new")
        self._connected.set()

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            kind = schema_for_topic(msg.topic) or "status"
            try:
                payload = json.loads(msg.payload)
            except ValueError:
                payload = None
            schema = kind
            problems = validation_errors(payload, schema) if isinstance(payload, dict) else ["not a JSON object"]
            if kind == "status" and isinstance(payload, dict) and not payload.get("ts"):
                problems = problems or ["no ts"]
            if problems:
                self.invalid += 1
                log.warning("%s: invalid message skipped (%s)", msg.topic, problems[0])
                c.ack(msg.mid, msg.qos)
                return
            assert isinstance(payload, dict)
            parts = msg.topic.split("/")
            if len(parts) >= 3:  # the gateway is in the topic (score and feedback messages do not repeat it)
                gw = {"status": parts[-2], "feedback": parts[-2], "feedback_state": parts[-3]}.get(
                    kind, parts[-4] if len(parts) >= 5 else parts[-2])
                payload.setdefault("gateway", gw)
            if kind == "score":
                key = f"{payload.get('gateway')}/{payload.get('asset')}"
                n = self._score_count[key] = self._score_count.get(key, 0) + 1
                if (n - 1) % self.opts.scores_every:
                    c.ack(msg.mid, msg.qos)
                    return
            self._inbox.put((msg.mid, msg.qos, kind, payload))
        except Exception:  # never into paho's thread
            log.exception("%s: could not take the message", msg.topic)

    # ---- database side -----------------------------------------------------------------------
    def _open_db(self) -> HistoryDb | None:
        """Connect, retrying with backoff until the database answers or :meth:`stop`."""
        delay, said = 1.0, False
        while not self._stop.is_set():
            try:
                db = open_db(self.opts.db)
                if said:
                    log.warning("database is back")
                return db
            except UsageError:
                raise
            except Exception as exc:
                if not said:
                    log.warning("database unavailable (%s); retrying, messages wait unacknowledged",
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    said = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return None

    def _drain(self, timeout_s: float) -> list[tuple[int, int, str, dict[str, Any]]]:
        batch: list[tuple[int, int, str, dict[str, Any]]] = []
        try:
            batch.append(self._inbox.get(timeout=timeout_s))
            while len(batch) < BATCH:
                batch.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        return batch

    def run(self) -> int:
        """Record until :meth:`stop`; returns the exit status (0)."""
        db = self._open_db()
        if db is None:
            return 0
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            self.client.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        except OSError as exc:
            db.close()
            raise EdgeAAEError(f"cannot reach the broker at {self.host}:{self.port} ({exc})") from None
        self.client.loop_start()
        try:
            if not self._connected.wait(15) or self._refused:
                raise EdgeAAEError(f"broker {self.host}:{self.port} refused the connection: "
                                   f"{self._refused[0] if self._refused else 'timeout'}")
            pending: list[tuple[int, int, str, dict[str, Any]]] = []
            while not self._stop.is_set() or pending or not self._inbox.empty():
                if not pending:
                    pending = self._drain(0.2)
                    if not pending:
                        continue
                try:
                    now = time.time()
                    db.write([(kind, payload, now) for _, _, kind, payload in pending])
                except Exception as exc:
                    log.warning("database write failed (%s); reconnecting", str(exc).strip().splitlines()[0]
                                if str(exc).strip() else type(exc).__name__)
                    try:
                        db.close()
                    except Exception as close_exc:  # already gone
                        log.debug("closing the lost connection: %s", close_exc)
                    reopened = self._open_db()
                    if reopened is None:
                        break  # stopped while the database was away: the broker keeps the rest
                    db = reopened
                    continue
                for mid, qos, _, _ in pending:
                    self.client.ack(mid, qos)
                self.written += len(pending)
                pending = []
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            db.close()
        log.info("recorded %d message(s), skipped %d invalid", self.written, self.invalid)
        return 0

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect (safe from a signal handler)."""
        self._stop.set()
