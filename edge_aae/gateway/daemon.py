"""The gateway daemon: MQTT readings -> windows -> onnxruntime -> scores, alerts and status.

Threads: paho's network thread runs the callbacks, which only parse a payload
and put it on a bounded queue (full: the oldest readings are dropped and
counted). One worker thread (the caller of :meth:`Daemon.run`) forms windows,
micro-batches them across assets, runs the sessions and publishes; while readings
wait in the queue, a scoring thread runs each batch's sessions as the worker handles
the previous batch's results and forms the next windows (:meth:`Daemon._score`). Alerts go
through the durable :class:`~edge_aae.gateway.outbox.Outbox` and leave it only
once the broker acknowledged them (a PUBACK with a failure reason keeps them).

The MQTT side (paho, reconnects, subscriptions, the health probe, alert delivery) is
:class:`~edge_aae.gateway.transport.Transport`; this module is the pipeline it hands messages
to (queue, windows, scoring, alerting, model slots and swaps), joined by
:class:`~edge_aae.gateway.transport.Handlers`. What a paho callback raises is counted,
logged and reported here on the errors topic (``internal_error``).

The heartbeat file is touched only while the gateway is *healthy*: connected, its
subscriptions granted, paho's network thread alive, and its own probe, published to
``ROOT/GW/sensors/_probe``, coming back through the readings subscription (a broker ACL that
silently withholds readings, or a subscription lost in a broker restart, fails that last test).
The heartbeat file holds ``<unix seconds> <keepalive_s>``: a health check fails when it is
older than that.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.alerting import AlertEvent, AlertTracker
from edge_aae.core.errors import ConfigError
from edge_aae.core.protocol import ALERT_QOS, DRIFT_QOS, ERRORS_QOS, FEEDBACK_QOS, SCORE_QOS, STATUS_QOS, Topics
from edge_aae.core.unseen_state import UnseenStateTracker
from edge_aae.gateway.bundle import verify_bundle
from edge_aae.gateway.clock import PERIOD_S, SensorClock
from edge_aae.gateway.config import GatewayConfig, outbox_capacity
from edge_aae.gateway.drift import DriftMonitor, Reference
from edge_aae.gateway.feedback import Feedback, FeedbackError, parse_command
from edge_aae.gateway.homeassistant import Announcements, discovery_messages
from edge_aae.gateway.memtrim import HEAP_TRIM_EVERY_S, TRIM_AFTER_S, limit_arenas, trim_heap, trim_memory
from edge_aae.gateway.metrics import MetricsServer
from edge_aae.gateway.metrics import render as render_metrics
from edge_aae.gateway.outbox import Outbox
from edge_aae.gateway.payload import FutureTimestamp, PayloadError, Readings, parse_readings
from edge_aae.gateway.ratelimit import TokenBucket
from edge_aae.gateway.registry import AssetBinding, ModelRegistry, ModelSlot
from edge_aae.gateway.score_json import ScoreMessages
from edge_aae.gateway.scorer import OnnxModel
from edge_aae.gateway.sdnotify import Notifier
from edge_aae.gateway.stats import Stats, rss_mb
from edge_aae.gateway.stream import AssetStream
from edge_aae.gateway.transport import Handlers, Transport
from edge_aae.gateway.updater import Updater
from edge_aae.gateway.updates import ModelStore, over_slowdown

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.2  # the worker's wait for readings while none come (housekeeping runs every 0.2 s)

MAX_ASSET_LEN = 200  # longer asset names are rejected (bad_asset)
STATUS_MAX_ASSETS = 100  # the status lists at most this many assets and counts the rest
NONFINITE_ROLLBACK_BATCHES = 3  # this many batches in a row with non-finite scores roll an update back
CYCLE_READINGS_PER_BATCH = 4  # the worker takes about 4 x runtime.batch_max readings per cycle, across assets
# Feedback (labels, collects) runs on the worker that scores every asset: it gets at most about this
# long per cycle, the rest waits for the next cycles, and beyond FEEDBACK_MAX_PENDING messages waiting
# new ones are refused (feedback_queue_full). A burst of cheap commands can no longer hold scoring.
FEEDBACK_CYCLE_S = 0.02
FEEDBACK_MAX_PENDING = 500
HEARTBEAT_S = 5.0  # OUTBOX_DIR/heartbeat is touched this often while healthy: a container health check reads it


def adaptive_linger(linger_s: float, linger_max_s: float, busy_s: float) -> float:
    """How long the worker lingers for more readings once the first came (seconds).

    ``runtime.linger_ms`` while the last batch scored quickly, and as long as it took (up to
    ``runtime.linger_max_ms``) when it took longer: near its capacity a gateway fed one reading
    per message then scores larger batches, at less CPU per reading, while one far below it
    keeps the short wait. 0 when lingering is off (``linger_ms = 0``).
    """
    if linger_s <= 0:
        return 0.0
    return min(linger_max_s, max(linger_s, busy_s))


def _usable_installed(store: ModelStore, asset: str, damaged: list[str]) -> Path | None:
    """The installed update of ``asset`` ('' = default) if intact, else the previous one; None: neither.

    A bundle whose files no longer match its signed manifest (a worn SD card, a power cut during a
    write outside the updater) is passed over with an error, never opened: the gateway comes up on
    the previous version or the configured bundle instead of failing at every restart.
    """
    for path in store.candidates(asset):
        problems = verify_bundle(path)  # the files against the manifest (its signature was checked at install)
        if not problems:
            return path
        what = f"models.assets.{asset}" if asset else "models.default"
        damaged.append(f"{what}: the installed update {path.name} is damaged ({'; '.join(problems)[:200]}); "
                       "passed over for the version before it, else the configured bundle (deploy a newer version to "
                       "replace it)")
        log.error("%s", damaged[-1])
    return None


def _with_installed_models(cfg: GatewayConfig, store: ModelStore, damaged: list[str]) -> GatewayConfig:
    """The config with bundles replaced by those a past update installed (``current.json``), if intact."""
    import dataclasses

    m = cfg.models
    default = _usable_installed(store, "", damaged)
    assets = {}
    for a, spec in m.assets.items():
        installed = _usable_installed(store, a, damaged) if spec.bundle else None
        assets[a] = dataclasses.replace(spec, bundle=str(installed)) if installed is not None else spec
    if default is not None:
        log.info("using the installed update %s for models.default", default)
    models = dataclasses.replace(m, default=str(default) if default is not None else m.default, assets=assets)
    return dataclasses.replace(cfg, models=models)


class Due:
    """Windows waiting to be scored, as blocks ``(asset, end_ts (m,), windows (m, L, C))``.

    A batch message's windows stay one block (one strided gather in the stream, one slice of
    the scores). Windows of single readings are gathered per asset into one block (lists until
    :attr:`blocks` stacks them), so a gateway fed one reading per message does per-block work once per asset
    and cycle, not once per reading. Each asset's windows keep their order.
    """

    def __init__(self) -> None:
        """Empty."""
        self._blocks: list[tuple[str, Any, Any]] = []
        self._open: dict[str, int] = {}  # asset -> index of its block of single windows still open
        self.windows = 0

    def add(self, asset: str, end_ts: np.ndarray, windows: np.ndarray) -> None:
        """Append one block (``windows`` of shape ``(m, L, C)``)."""
        if len(end_ts):
            self._open.pop(asset, None)  # later single windows start a new block after this one
            self._blocks.append((asset, end_ts, windows))
            self.windows += len(end_ts)

    def add_one(self, asset: str, end_ts: float, window: np.ndarray) -> None:
        """Append one window ``(L, C)`` of ``asset`` (to its open block of single windows)."""
        i = self._open.get(asset)
        if i is None:
            self._open[asset] = len(self._blocks)
            self._blocks.append((asset, [end_ts], [window]))
        else:
            self._blocks[i][1].append(end_ts)
            self._blocks[i][2].append(window)
        self.windows += 1

    @property
    def blocks(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Every block as arrays (lists of single windows stacked once)."""
        for i, (asset, ts, w) in enumerate(self._blocks):
            if isinstance(ts, list):
                self._blocks[i] = (asset, np.array(ts, dtype=np.float64), np.stack(w))
        self._open.clear()
        return self._blocks

    def clear(self) -> None:
        """Forget every block."""
        self._blocks.clear()
        self._open.clear()
        self.windows = 0

    def __bool__(self) -> bool:
        return bool(self._blocks)


@dataclass
class _Flight:
    """One model's share of a batch: its windows, scored now or on the scoring thread."""

    slot: ModelSlot
    scorer: OnnxModel  # the model that scores them (a rollback may change the slot's before they are handled)
    blocks: list[tuple[str, np.ndarray, np.ndarray]]  # (asset, end_ts (m,), windows (m, L, C)), in batch order
    batch: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    future: Future[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = field(default_factory=Future)


def _infer(scorer: OnnxModel, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``score_windows`` and its time in milliseconds per window."""
    t0 = time.perf_counter()
    score, channel_scores, latent = scorer.score_windows(batch)
    return score, channel_scores, latent, (time.perf_counter() - t0) * 1e3 / max(1, len(batch))


@dataclass
class _Item:
    asset: str
    readings: Readings


@dataclass
class _CollectJob:
    """A ``collect`` being published: the kept files still to send (``None``: the done message)."""

    request_id: str
    topic: str
    count: int
    pending: deque[Path | None]
    last: Any = None  # paho's MQTTMessageInfo of the message in flight


def _published(info: Any) -> bool:
    """Whether the broker has the message (one paho could not queue or send counts as finished)."""
    try:
        return bool(info.is_published())
    except (ValueError, RuntimeError):
        return True


class ReadingQueue:
    """Bounded in readings (not messages) and fair across assets.

    When full, the oldest readings of the asset with the most readings queued are dropped
    and counted, so a flood on one asset cannot evict another's readings.
    """

    def __init__(self, max_readings: int, stats: Stats) -> None:
        """Empty queue."""
        self.max_readings = max_readings
        self._per: dict[str, deque[_Item]] = {}
        self._counts: Counter[str] = Counter()
        self._n = 0
        self._cond = threading.Condition()
        self._stats = stats
        self._dropped: Counter[str] = Counter()  # readings per asset, since the last take_dropped()
        self._refused: Counter[str] = Counter()  # messages refused unparsed per asset, likewise

    def put(self, item: _Item) -> None:
        """Enqueue; may drop the oldest readings of the largest backlog to stay within the bound."""
        k = len(item.readings.ts)
        with self._cond:
            self._per.setdefault(item.asset, deque()).append(item)
            self._counts[item.asset] += k
            self._n += k
            while self._n > self.max_readings and sum(len(d) for d in self._per.values()) > 1:
                victim = max(self._counts, key=lambda a: self._counts[a])
                old = self._per[victim].popleft()
                m = len(old.readings.ts)
                self._counts[victim] -= m
                self._n -= m
                if not self._per[victim]:
                    del self._per[victim], self._counts[victim]
                self._stats.drop("queue_full", m)
                self._dropped[victim] += m
            self._cond.notify()

    def get_all(self, timeout_s: float, budget: int | None = None, linger_s: float = 0.0) -> list[_Item]:
        """What is queued, waiting up to ``timeout_s`` for the first item.

        With ``linger_s``, when fewer than a quarter of the budget's readings are queued once the
        first came, it waits that long more (without a wake-up per reading) and takes what came by
        then: a gateway fed one reading per message then scores a few windows per call instead of
        one, at a fraction of the CPU per reading and, near its capacity, a lower tail latency.

        With a ``budget`` (readings), at most about that many are taken, shared across the
        assets (whole messages; only one larger than an asset's whole share is split, the rest
        staying queued in order): one asset's backlog cannot make the worker's cycle long while
        the others' readings wait.
        Each asset's readings stay in arrival order; the smallest backlogs come first.
        """
        with self._cond:
            if not self._n and not self._per:
                self._cond.wait(timeout_s)
            short = linger_s > 0 and 0 < self._n < (budget or self.max_readings) // CYCLE_READINGS_PER_BATCH
        if short:
            time.sleep(linger_s)
        with self._cond:
            order = sorted(self._per, key=lambda a: self._counts[a])
            if budget is None:
                items = [it for a in order for it in self._per[a]]
                self._per.clear()
                self._counts.clear()
                self._n = 0
                return items
            items = []
            quota = max(1, budget // max(1, len(order)))
            for a in order:
                dq, taken = self._per[a], 0
                while dq and taken < quota:
                    item = dq.popleft()
                    k = len(item.readings.ts)
                    if k > quota and taken == 0:  # only a message larger than the whole share is split
                        r = item.readings
                        dq.appendleft(_Item(a, Readings(r.ts[quota:], r.values[quota:], r.seq)))
                        item, k = _Item(a, Readings(r.ts[:quota], r.values[:quota], r.seq)), quota
                    elif k > quota - taken and taken > 0:
                        dq.appendleft(item)  # whole messages only: it goes first next cycle
                        break
                    items.append(item)
                    taken += k
                self._counts[a] -= taken
                self._n -= taken
                if not dq:
                    del self._per[a], self._counts[a]
            return items

    def admits(self, asset: str) -> bool:
        """Whether ``asset`` is within its fair share of the queue (checked before a message is parsed).

        An asset is over its share once it holds half the queue, or more than an equal split among
        the assets with readings waiting. Refusing its messages unparsed keeps the MQTT callback fast
        under a flood, so the other assets' messages behind it in the same connection still get in.
        """
        with self._cond:
            held = self._counts.get(asset, 0)
            if held == 0:
                return True
            others = len(self._per) - (1 if asset in self._per else 0)
            return held < self.max_readings / (2 + others)

    def refuse(self, asset: str) -> None:
        """Count a message refused unparsed for being over its asset's share (``over_share``, in messages)."""
        self._stats.drop("over_share")
        with self._cond:
            self._refused[asset] += 1

    def take_dropped(self) -> dict[str, tuple[int, int]]:
        """``asset -> (readings dropped, messages refused unparsed)`` since the last call."""
        with self._cond:
            out = {a: (self._dropped.get(a, 0), self._refused.get(a, 0)) for a in {*self._dropped, *self._refused}}
            self._dropped.clear()
            self._refused.clear()
            return out

    def __len__(self) -> int:
        """Readings waiting."""
        with self._cond:
            return self._n


@dataclass
class _AssetState:
    binding: AssetBinding
    stream: AssetStream
    tracker: AlertTracker
    windows: int = 0
    seen: float = 0.0  # monotonic time of its latest readings
    monitor: DriftMonitor | None = None
    monitor_model: str = ""  # the model version the monitor's figures belong to
    monitor_published: float = 0.0
    score_messages: ScoreMessages | None = None  # the score message template of the current model
    score_scorer: Any = None  # the scorer it was made for
    unseen: UnseenStateTracker | None = None  # the model's unseen-state rule over this asset's windows


class Daemon:
    """One gateway. Construct (loads and checks models), then :meth:`run` until :meth:`stop`."""

    def __init__(self, cfg: GatewayConfig) -> None:
        """Open every bundle and the outbox; nothing touches the network yet.

        Raises:
            ConfigError, ModelMismatchError: a bundle or mapping unusable (names the key and file).

        """
        self.cfg = cfg
        if cfg.runtime.trim_memory:
            limit_arenas()  # before the network and scoring threads allocate
        self.topics = Topics(cfg.topic_root, cfg.gateway_id)
        self.stats = Stats()
        self.store: ModelStore | None = None
        damaged: list[str] = []
        if cfg.update.enabled:
            self.store = ModelStore(Path(cfg.update.models_dir))
            cfg = self.cfg = _with_installed_models(cfg, self.store, damaged)
        self.registry = ModelRegistry(cfg)
        self.updater = (Updater(cfg, self.registry, self.store, self._report_update)
                        if self.store is not None else None)
        self.queue = ReadingQueue(cfg.runtime.queue_max_readings, self.stats)
        self._pending_reports: deque[tuple[str, str, str]] = deque(maxlen=1000)
        self._pending_reports.extend(("", "model_damaged", d) for d in damaged)  # on the errors topic once connected
        self.outbox = Outbox(Path(cfg.outbox.dir), outbox_capacity(cfg), self._outbox_problem)
        self.heartbeat = Path(cfg.outbox.dir) / "heartbeat"
        self.announcements = Announcements(Path(cfg.outbox.dir))
        fb = cfg.feedback
        self.feedback = (Feedback(Path(fb.dir) if fb.dir else Path(cfg.outbox.dir).parent / "labelled",
                                  fb.keep_readings, fb.max_labelled) if fb.enabled else None)
        self._feedback_in: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._collect: _CollectJob | None = None  # a collect being published, one kept file at a time
        self.assets: dict[str, _AssetState] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()  # assets, the one silent longest first (worker only)
        self._stop = threading.Event()
        self._reported_health: bool | None = None
        self._next_heartbeat = 0.0
        self._unhealthy_logged = ("", 0.0)
        self._errors_limit = TokenBucket(cfg.publish.errors_per_s)
        self.clock = SensorClock(cfg.stream.max_future_s)  # used on paho's thread only
        self._internal_logged = 0
        self._started = time.time()
        self.metrics: MetricsServer | None = None
        if cfg.metrics.port:
            try:
                self.metrics = MetricsServer(cfg.metrics.bind, cfg.metrics.port, self._metrics_page)
            except OSError as exc:
                raise ConfigError(f"{cfg.path or 'config'}: metrics.port: cannot listen on "
                                  f"{cfg.metrics.bind}:{cfg.metrics.port}: {exc.strerror or exc}") from None
        self.systemd = Notifier()
        self._ready_sent = False
        self._trim_at: float | None = None  # monotonic time of the next memory trim (runtime.trim_memory)
        self._heap_trim_at = 0.0  # earliest monotonic time of the next heap trim after a busy spell
        self._busy_since_heap_trim = False  # readings processed since the last heap trim
        self._in_flight: list[_Flight] = []  # the batch on the scoring thread, its results not yet handled
        self._scoring_pool: ThreadPoolExecutor | None = None  # started at the first backlog (see _score)
        self.transport = Transport(cfg, self.topics, self.stats, self.outbox,
                                   Handlers(message=self._on_message, connected=self._on_connected,
                                            status_payload=self._status_payload, report=self._report_error,
                                            internal_error=self._internal_error),
                                   updates=self.updater is not None, feedback=self.feedback is not None)

    # ---- what the transport hands over -------------------------------------------------------------------------------

    def _internal_error(self, where: str, exc: BaseException, topic: str) -> None:
        """What a callback raised: counted, logged (bounded) and reported; never re-raised."""
        try:
            self.stats.add("internal_errors")
            self._internal_logged += 1
            if self._internal_logged <= 20 or self._internal_logged % 1000 == 0:
                log.error("internal error in %s (contained, #%d): %s: %s", where, self._internal_logged,
                          type(exc).__name__, exc, exc_info=self._internal_logged <= 3)
            asset = self.topics.asset_of(topic) or ""
            self._reject(asset, "internal_error", f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
        except Exception:  # noqa: S110 - the last line of defence must not raise either
            pass

    def _on_connected(self) -> None:
        """The broker took the connection: the status now; Home Assistant configs announced or withdrawn."""
        self._publish_status()
        if self.cfg.homeassistant.enabled:
            for asset, state in list(self.assets.items()):
                self._announce(asset, state.binding.slot)
        else:
            withdrawn = self.announcements.clear()
            for topic in withdrawn:
                self.transport.publish(topic, b"", qos=1, retain=True)
            if withdrawn:
                log.info("Home Assistant discovery off: withdrew %d entity config(s)", len(withdrawn))

    def _announce(self, asset: str, slot: ModelSlot) -> None:
        """Publish (retained) Home Assistant discovery configs for one asset."""
        msgs = discovery_messages(self.cfg.homeassistant.discovery_prefix, self.topics, asset, slot.model_ref)
        for topic, payload in msgs.items():
            self.transport.publish(topic, json.dumps(payload), qos=1, retain=True)
        self.announcements.add(list(msgs))

    def _on_message(self, topic: str, payload: bytes) -> None:
        """Parse and enqueue only (on paho's thread): the hot path runs in the worker."""
        if topic == self.topics.model_update:
            if self.updater is not None:
                self.updater.submit(payload)
            return
        if topic == self.topics.feedback:
            if self.feedback is None:
                return
            if len(payload) > 65536:
                self._reject("", "feedback_too_large", f"a feedback message of {len(payload)} bytes (at most 65536)")
            elif self._feedback_in.qsize() >= FEEDBACK_MAX_PENDING:
                self._reject("", "feedback_queue_full", f"{FEEDBACK_MAX_PENDING} feedback messages are waiting "
                             "already; this one is dropped: send it again later")
            else:
                self._feedback_in.put(bytes(payload))  # applied by the worker, between batches
            return
        asset = self.topics.asset_of(topic)
        if asset is None:
            return
        if len(asset) > MAX_ASSET_LEN:
            self._reject(asset[:MAX_ASSET_LEN], "bad_asset", f"asset name of {len(asset)} characters "
                         f"(at most {MAX_ASSET_LEN})")
            return
        state = self.assets.get(asset)
        binding = state.binding if state is not None else self.registry.binding(asset)
        if binding is None:
            self._reject(asset, "unknown_asset", "no model configured for this asset")
            return
        if not self.queue.admits(asset):
            self.queue.refuse(asset)
            return
        channels = binding.slot.scorer.channels
        wall = time.time()
        try:
            readings = parse_readings(payload, channels, binding.channel_map,
                                      max_bytes=self.cfg.stream.max_payload_bytes,
                                      max_readings=self.cfg.stream.max_batch_readings, lookup=binding.lookup,
                                      max_ts=self.clock.limit(wall))
        except PayloadError as exc:
            if isinstance(exc, FutureTimestamp):
                self._clock_learned(self.clock.refused(exc.newest - wall, time.monotonic()))
            self._reject(asset, exc.reason, exc.detail)
            return
        if len(readings.ts):
            self._clock_learned(self.clock.accepted(float(readings.ts[-1]) - wall, time.monotonic()))
        if readings.missing:  # the streaming rule: a reading with a missing value is dropped, not an error
            self.stats.drop("missing_value", readings.missing)
        if not len(readings.ts):
            return
        self.stats.add("readings_in", len(readings.ts))
        self.queue.put(_Item(asset, readings))

    def _clock_learned(self, lead_s: float | None) -> None:
        """The sensors' clocks were found ahead of the gateway's by ``lead_s`` (None: nothing new)."""
        if lead_s is None:
            return
        if lead_s > 0:
            log.error("every reading of the last %.0f s was ahead of this gateway's clock: the clock is about %.0f s "
                      "behind the sensors' (no RTC, no NTP?); readings are now judged against the sensors' time",
                      PERIOD_S, lead_s)
            self._report_error("", "clock_behind", f"the gateway's clock is about {lead_s:.0f} s behind its sensors' "
                               "(every reading was ahead of it); set it (NTP) - readings are accepted meanwhile")
        else:
            log.warning("the gateway's clock agrees with its sensors' again")

    def _reject(self, asset: str, reason: str, detail: str, readings: int = 0) -> None:
        """Count a rejected input and report it on the errors topic."""
        self.stats.add("messages_rejected")
        self.stats.drop(reason, max(readings, 1))
        self._report_error(asset, reason, detail)

    def _report_error(self, asset: str, reason: str, detail: str) -> None:
        """Publish on the errors topic (QoS 0, token-bucket rate limit; the excess is counted)."""
        if not self._errors_limit.take():
            self.stats.add("errors_suppressed")
            return
        payload = {"ts": time.time(), "gateway": self.cfg.gateway_id, "asset": asset[:MAX_ASSET_LEN],
                   "reason": reason, "detail": detail[:300]}
        self.transport.publish(self.topics.errors, json.dumps(payload), qos=ERRORS_QOS)

    def _outbox_problem(self, reason: str, detail: str) -> None:
        """From the outbox (any thread): count now, report from the worker."""
        self.stats.drop(reason)
        self._pending_reports.append(("", reason, detail))

    def _publish_status(self) -> None:
        """The retained ``online`` status, now (health, models in service, stats)."""
        self.transport.publish(self.topics.status, self._status_payload("online"), qos=STATUS_QOS, retain=True)

    def _status_payload(self, state: str) -> str:
        out: dict[str, Any] = {"state": state, "gateway": self.cfg.gateway_id, "ts": time.time()}
        if state == "online":
            healthy, why = self.transport.healthy()
            out["since"] = self._started
            out["healthy"] = healthy
            if why:
                out["problem"] = why
            out["models"] = self.registry.describe()
            out["max_packet_bytes"] = self.cfg.broker.max_packet_bytes  # edge-aae deploy sizes its chunks by it
            names = sorted(self.assets)
            out["assets"] = names[:STATUS_MAX_ASSETS]
            out["assets_total"] = len(names)
            out["stats"] = self.stats.snapshot(len(self.queue), len(self.outbox))
            if self.clock.lead_s > 0:  # the gateway's clock is behind its sensors' (see gateway.clock)
                out["clock_behind_s"] = round(self.clock.lead_s, 1)
        return json.dumps(out)

    # ---- worker -----------------------------------------------------------------------------

    def _state(self, asset: str) -> _AssetState | None:
        state = self.assets.get(asset)
        if state is not None:
            return state
        binding = self.registry.binding(asset)
        if binding is None:
            return None
        if (len(self.assets) >= self.cfg.runtime.max_assets and asset not in self.cfg.models.assets
                and not self._make_room()):
            return None
        b = binding.slot.scorer.bundle
        s = self.cfg.stream
        gap_factor = s.gap_factor or b.stream_rule.gap_factor  # 0: the bundle's rule, as offline scoring uses
        stream = AssetStream(b.window_len, len(b.channels), b.stride, b.manifest.sample_period_s, gap_factor,
                             s.reorder_tolerance_s)
        state = _AssetState(binding, stream, self._new_tracker())
        self.assets[asset] = state
        self._recent[asset] = None
        log.info("new asset %s -> %s %s", asset[:MAX_ASSET_LEN], b.name, b.version)
        if self.cfg.homeassistant.enabled:
            self._announce(asset, binding.slot)
        return state

    def _make_room(self) -> bool:
        """runtime.max_assets reached: drop the asset silent longest if it may go (see RuntimeConfig)."""
        now, idle_s = time.monotonic(), self.cfg.runtime.asset_idle_s
        for asset in list(itertools.islice(self._recent, 16)):  # the longest silent first
            state = self.assets[asset]
            if now - state.seen < idle_s:
                return False  # every later one was heard from more recently
            if state.tracker.active is None and asset not in self.cfg.models.assets:
                del self.assets[asset], self._recent[asset]
                self.stats.add("assets_dropped")
                log.info("asset %s silent for %.0f s: its place goes to a new asset (runtime.max_assets = %d)",
                         asset[:MAX_ASSET_LEN], now - state.seen, self.cfg.runtime.max_assets)
                return True
        return False

    def _ingest(self, items: list[_Item], due: Due) -> None:
        now = time.monotonic()
        for k, item in enumerate(items):
            state = self._state(item.asset)
            if state is None:
                self._reject(item.asset, "too_many_assets", f"limit runtime.max_assets = "
                             f"{self.cfg.runtime.max_assets} (an asset silent for runtime.asset_idle_s = "
                             f"{self.cfg.runtime.asset_idle_s:g} s makes room)", readings=len(item.readings.ts))
                continue
            state.seen = now
            self._recent.move_to_end(item.asset)
            rejected: dict[str, int] = {}
            self.stats.add("readings_processed", len(item.readings.ts))
            if self.feedback is not None:
                self.feedback.note_readings(item.asset, item.readings.ts, item.readings.values,
                                            state.binding.slot.scorer.channels)
            batch = state.stream.push_many(item.readings.ts, item.readings.values) \
                if len(item.readings.ts) > 1 else None
            if batch is not None:  # a plain batch message: in order, no gap, no repeat; its windows at once
                windows, end_ts = batch
                due.add(item.asset, end_ts, windows)
                if due.windows >= self.cfg.runtime.batch_max:
                    self._score(due, backlog=k + 1 < len(items) or len(self.queue) > 0)
                    due.clear()
                continue
            for ts, row in zip(item.readings.ts, item.readings.values, strict=True):
                outcome, window = state.stream.push(float(ts), row)
                if outcome in ("duplicate", "late"):
                    rejected[outcome] = rejected.get(outcome, 0) + 1
                elif outcome == "gap_reset":
                    self.stats.add("gap_resets")
                    if state.unseen is not None:
                        state.unseen.reset()
                elif outcome == "stream_reset":
                    self.stats.add("stream_resets")
                    state.tracker = self._new_tracker()
                    if state.unseen is not None:
                        state.unseen.reset()
                    self._report_error(item.asset, "stream_reset", f"more than {state.stream.window_len} readings "
                                       "in a row were older than the newest one (a clock jump?); the stream starts "
                                       f"over at {float(ts):.3f}")
                if window is not None:
                    due.add_one(item.asset, float(ts), window)
            for reason, n in rejected.items():
                what = "already received" if reason == "duplicate" else "older than the reorder tolerance"
                self._reject(item.asset, reason, f"{n} reading(s) {what}", readings=n)
            if due.windows >= self.cfg.runtime.batch_max:
                self._score(due, backlog=k + 1 < len(items) or len(self.queue) > 0)
                due.clear()

    def _new_tracker(self) -> AlertTracker:
        a = self.cfg.alerting
        return AlertTracker(a.k, a.n, a.m, a.min_duration_s, a.cooldown_s)

    def _score(self, due: Due, backlog: bool = False) -> None:
        """Score the due windows and handle their results, one model's windows per session call.

        With ``backlog`` (more readings wait to be windowed), the windows go to the scoring thread
        and the worker handles the previous batch's results, then forms the next windows, while
        onnxruntime runs (it releases the GIL): the daemon's Python work overlaps inference instead
        of adding to it. One batch is in flight at most; its results are handled in order before
        any later one, and at once when the queue runs empty (:meth:`_drain`), so a gateway that
        keeps up scores every window as soon as before. Without ``backlog``, in this thread.
        """
        groups: dict[int, _Flight] = {}
        for block in due.blocks:
            slot = self.assets[block[0]].binding.slot
            flight = groups.get(id(slot))
            if flight is None:
                flight = groups[id(slot)] = _Flight(slot, slot.scorer, [])
            flight.blocks.append(block)
        flights = list(groups.values())
        for f in flights:
            f.batch = f.blocks[0][2] if len(f.blocks) == 1 else np.concatenate([b[2] for b in f.blocks])
        if backlog:
            pool = self._scoring_pool
            if pool is None:
                pool = self._scoring_pool = ThreadPoolExecutor(1, thread_name_prefix="edge-aae-infer")
            for f in flights:
                f.future = pool.submit(_infer, f.scorer, f.batch)
            previous, self._in_flight = self._in_flight, flights
            self._finish(previous)
            return
        self._drain()
        for f in flights:
            try:
                f.future.set_result(_infer(f.scorer, f.batch))
            except Exception as exc:  # onnxruntime errors have no common base; handled in _finish
                f.future.set_exception(exc)
        self._finish(flights)

    def _drain(self) -> None:
        """Handle the results of the batch in flight, if any (waits for its inference)."""
        flights, self._in_flight = self._in_flight, []
        if flights:
            self._finish(flights)

    def _drop_in_flight(self) -> None:
        """A worker error: the batch in flight is counted as dropped, not handled."""
        flights, self._in_flight = self._in_flight, []
        for f in flights:
            f.future.cancel()
            self.stats.drop("worker_error", len(f.batch))

    def _shutdown_scoring(self) -> None:
        """Handle the batch in flight, then stop the scoring thread."""
        self._drain()
        if self._scoring_pool is not None:
            self._scoring_pool.shutdown(wait=True)
            self._scoring_pool = None

    def _finish(self, flights: list[_Flight]) -> None:
        """Each flight's scores: checks, latency, then scores, alerts and drift per asset."""
        for f in flights:
            slot, scorer, blocks = f.slot, f.scorer, f.blocks
            n = len(f.batch)
            try:
                score, channel_scores, latent, ms = f.future.result()
            except Exception as exc:  # onnxruntime errors have no common base; keep the loop alive
                log.error("inference failed on %s: %s", slot.key, exc)
                self.stats.drop("inference_error", n)
                self._report_error("", "inference_error", f"{slot.key}: {str(exc)[:200]}")
                if slot.scorer is scorer:
                    self._maybe_roll_back(slot, f"inference error: {exc}")
                continue
            finite = np.isfinite(score)
            if not np.all(finite):
                slot.nonfinite_run += 1
                bad = int((~finite).sum())
                self.stats.drop("non_finite_score", bad)
                first_bad = int(np.argmin(finite))
                owner = next(b[0] for b, end in zip(blocks, np.cumsum([len(b[1]) for b in blocks]), strict=True)
                             if first_bad < end)
                self._report_error(owner, "non_finite_score",
                                   f"{slot.key} ({scorer.bundle.version}) scored {bad} of {n} window(s) "
                                   "non-finite")
                if slot.scorer is scorer and self._maybe_roll_back(
                        slot, "non-finite scores", any_time=slot.nonfinite_run >= NONFINITE_ROLLBACK_BATCHES):
                    continue
            else:
                slot.nonfinite_run = 0
            self.stats.latency(ms)
            if slot.scorer is scorer:  # not a batch the slot's previous model scored before a rollback
                slot.latency_ms = ms if slot.latency_ms is None else 0.9 * slot.latency_ms + 0.1 * ms
                if self._health_check(slot):
                    continue
            self.stats.add("windows_scored", n)
            # one call per asset (its windows in order), however the blocks interleave assets
            rows: dict[str, list[np.ndarray]] = {}
            times: dict[str, list[np.ndarray]] = {}
            start = 0
            for asset, end_ts, _ in blocks:
                rows.setdefault(asset, []).append(np.arange(start, start + len(end_ts)))
                times.setdefault(asset, []).append(end_ts)
                start += len(end_ts)
            batch = f.batch
            # each window's channel means as one batched product with 1/L weights: 8x faster than
            # batch.mean(axis=1) on (128, 32, 8) float32 windows, which reduces along a strided axis
            means = (np.full(batch.shape[1], 1.0 / batch.shape[1], batch.dtype) @ batch
                     if self.cfg.monitor.enabled else None)
            for asset, parts in rows.items():
                if asset not in self.assets:  # dropped for a new asset meanwhile (runtime.max_assets)
                    continue
                ix = parts[0] if len(parts) == 1 else np.concatenate(parts)
                ts = times[asset][0] if len(parts) == 1 else np.concatenate(times[asset])
                self._publish_results(asset, ts, score[ix], channel_scores[ix], latent[ix], scorer)
                if means is not None:
                    self._monitor(scorer, asset, ts, means[ix], score[ix], latent[ix])

    def _monitor(self, scorer: OnnxModel, asset: str, end_ts: np.ndarray, means: np.ndarray,
                 score: np.ndarray, latent: np.ndarray) -> None:
        """Feed one asset's drift monitor its windows (``means``: each window's channel means, ``(m, C)``).

        Publishes the state on a change and every ``publish_interval_s``.
        """
        finite = np.isfinite(score)
        if not finite.all():
            end_ts, means, score, latent = end_ts[finite], means[finite], score[finite], latent[finite]
        if not len(end_ts):
            return
        now = time.monotonic()
        b = scorer.bundle
        state = self.assets[asset]
        if state.monitor is None or state.monitor_model != b.version:  # a new model starts a new horizon
            ref = Reference.from_manifest(b.manifest.monitor, b.manifest.target_far, len(b.channels))
            state.monitor = DriftMonitor(self.cfg.monitor, ref, b.channels)
            state.monitor_model, state.monitor_published = b.version, now
        monitor = state.monitor
        if len(end_ts) == 1:  # a few list appends per window; the numpy work every 20 windows
            changed = monitor.add(bool(score[0] > scorer.threshold), float(latent[0]), means[0], float(end_ts[0]))
        else:
            changed = monitor.add_block(score > scorer.threshold, latent, means, float(end_ts[-1]))
        if changed:
            log.warning("asset %s: model %s %s is %s (%s)", asset, b.name, b.version, monitor.state,
                        monitor.last_figures)
            self.stats.add(f"drift_{monitor.state}")
        if changed or now - state.monitor_published >= self.cfg.monitor.publish_interval_s:
            state.monitor_published = now
            payload = monitor.payload(asset, self.cfg.gateway_id, {"name": b.name, "version": b.version})
            self.transport.publish(self.topics.drift(asset), json.dumps(payload), qos=DRIFT_QOS, retain=True)

    def _apply_feedback(self) -> bool:
        """Operator commands received since the last batch: apply, confirm on the retained state.

        Returns whether feedback work is left for the next cycle (commands waiting, a collect being
        published): the worker then does not wait long for readings.
        """
        if self.feedback is None:
            return False
        self._advance_collect()
        if self._feedback_in.empty():  # every worker cycle: the common case is cheap
            return self._collect is not None
        self._drain()  # a mute or label applies after the windows scored before it
        changed = False
        deadline = time.monotonic() + FEEDBACK_CYCLE_S
        while time.monotonic() < deadline:
            try:
                raw = self._feedback_in.get_nowait()
            except queue.Empty:
                break
            changed = True
            cid, command = "", ""
            try:
                cmd = parse_command(raw)
                cid, command = cmd.id, cmd.command
                if cmd.command == "collect" and self._collect is not None:
                    job = self._collect
                    raise FeedbackError("collect_in_progress", f"collect {job.request_id!r} is still being published "
                                        f"({job.count - len(job.pending) + 1} of {job.count + 1} messages); "
                                        "send collect again once its done message has arrived")
                window_len = max((s.binding.slot.scorer.window_len for s in self.assets.values()), default=1)
                # assets seen, or configured by name: a mute for a name never seen is refused (a typo)
                known = set(self.assets) | {a for a in self.registry.describe() if a != "default"}
                outcome = self.feedback.apply(cmd, known, window_len)
                log.info("feedback %s %s: %s", cmd.command, cmd.id, outcome["detail"])
                if cmd.command == "collect":
                    files = self.feedback.labelled_files()
                    self._collect = _CollectJob(cmd.id, self.topics.feedback_collected(cmd.id), len(files),
                                                deque([*files, None]))
            except FeedbackError as exc:
                self.feedback.refuse(cid or exc.cid, command or exc.command, exc.reason, str(exc))
                self._report_error("", f"feedback_{exc.reason}", str(exc))
        if changed:
            self.transport.publish(self.topics.feedback_state,
                                   json.dumps(self.feedback.state_payload(self.cfg.gateway_id)),
                                   qos=FEEDBACK_QOS, retain=True)
        return not self._feedback_in.empty() or self._collect is not None

    def _advance_collect(self) -> None:
        """Publish the collect's next kept labelled alert once the broker has the previous one.

        Every kept alert on ``ROOT/GW/feedback/collected/ID``, then ``{"done": true, "count": N}``.
        One message in flight at a time: a collect holds one file in memory, however many are kept,
        and waits while the broker is away.
        """
        job = self._collect
        if job is None or not self.transport.connected.is_set():
            return
        deadline = time.monotonic() + FEEDBACK_CYCLE_S
        while time.monotonic() < deadline:
            if job.last is not None and not _published(job.last):
                return
            if not job.pending:
                self._collect = None
                return
            f = job.pending.popleft()
            if f is None:
                payload = json.dumps({"done": True, "count": job.count}).encode()
            else:
                try:
                    payload = f.read_bytes()
                except OSError as exc:  # dropped since (the bound on kept files), or unreadable
                    log.error("cannot read %s: %s", f, exc)
                    continue
            job.last = self.transport.publish(job.topic, payload, qos=FEEDBACK_QOS)

    def drift_states(self) -> dict[str, str]:
        """Each asset's drift state (assets not yet judged are ``ok``)."""
        return {a: (s.monitor.state if s.monitor is not None else "ok") for a, s in list(self.assets.items())}

    def _health_check(self, slot: ModelSlot) -> bool:
        """In an update's health window: latency and memory against the previous model. True: rolled back."""
        if slot.previous is None or time.monotonic() > slot.health_until:
            return False
        slot.health_batches += 1
        u = self.cfg.update
        grown = rss_mb() - slot.rss_at_swap
        if grown > u.max_model_mb:
            return self._maybe_roll_back(slot, f"memory grew by {grown:.0f} MB (update.max_model_mb = "
                                               f"{u.max_model_mb:.0f})")
        if (slot.baseline_ms is not None and slot.latency_ms is not None and slot.health_batches >= 5
                and over_slowdown(slot.latency_ms, slot.baseline_ms, u.max_slowdown)):
            return self._maybe_roll_back(slot, f"inference {slot.latency_ms:.2f} ms per window, over "
                                               f"{u.max_slowdown:g}x the previous model's {slot.baseline_ms:.2f} ms")
        return False

    # ---- model updates ----------------------------------------------------------------------

    def _report_update(self, outcome: dict[str, Any]) -> None:
        """Retained outcome of the latest update on ``ROOT/GW/model``."""
        payload = {"gateway": self.cfg.gateway_id, "ts": time.time()} | outcome
        self.stats.add(f"updates_{outcome['event']}")
        self.transport.publish(self.topics.model, json.dumps(payload), qos=1, retain=True)

    def _apply_swaps(self) -> None:
        """Between batches: switch slots to newly installed models."""
        if self.updater is None:
            return
        swapped = False
        if not self.updater.swaps.empty():
            self._drain()  # the old model's batch in flight is handled before the new model takes over
        while not self.updater.swaps.empty():
            swap = self.updater.swaps.get_nowait()
            slot = swap.slot
            slot.previous, slot.scorer = slot.scorer, swap.scorer
            slot.health_until = time.monotonic() + self.cfg.update.health_window_s
            slot.update_id = swap.update_id
            slot.baseline_ms, slot.latency_ms = slot.latency_ms, None
            slot.rss_at_swap = rss_mb()
            slot.health_batches = slot.nonfinite_run = 0
            swapped = True
            if self.cfg.runtime.trim_memory:
                self._trim_at = time.monotonic() + TRIM_AFTER_S
            log.info("now scoring with %s %s (was %s)", swap.scorer.bundle.name, swap.version, swap.previous_version)
            self._report_update({"event": "installed", "update_id": swap.update_id, "asset": slot.asset,
                                 "version": swap.version, "previous": swap.previous_version})
        if swapped and self.transport.connected.is_set():  # the model in service, for deploy's cross-check
            self._publish_status()
        now = time.monotonic()
        for slot in self.registry.slots():
            if slot.previous is not None and now > slot.health_until:
                slot.previous = None  # passed its health window

    def _maybe_roll_back(self, slot: ModelSlot, reason: str, any_time: bool = False) -> bool:
        """Go back to the previous model: within an update's health window, or ``any_time``. True if it did."""
        if self.store is None:
            return False
        previous = slot.previous if slot.previous is not None and time.monotonic() <= slot.health_until else None
        if previous is None and any_time:
            folder = self.store.previous(slot.asset)
            if folder is not None:
                try:
                    previous = OnnxModel.open(folder, None, self.cfg.runtime.threads)
                except Exception as exc:
                    log.error("cannot reopen the previous model %s: %s", folder, exc)
        if previous is None:
            return False
        bad = slot.scorer.bundle.version
        slot.scorer, slot.previous = previous, None
        slot.latency_ms, slot.baseline_ms, slot.nonfinite_run = None, None, 0
        self.store.rollback(slot.asset)
        log.error("model %s misbehaved (%s); rolled back to %s", bad, reason, slot.scorer.bundle.version)
        self._report_update({"event": "rolled_back", "update_id": slot.update_id, "asset": slot.asset,
                             "version": bad, "previous": slot.scorer.bundle.version, "reason": reason})
        if self.transport.connected.is_set():
            self._publish_status()
        return True

    def _publish_results(self, asset: str, end_ts: np.ndarray, score: np.ndarray, channel_scores: np.ndarray,
                         latent: np.ndarray, scorer: OnnxModel) -> None:
        """One asset's scored block (scored by ``scorer``): score messages per ``publish.scores``, then alerts."""
        state = self.assets[asset]
        first = state.windows
        state.windows += len(end_ts)
        finite = np.isfinite(score)
        if not finite.all():  # counted and reported per batch in _score
            end_ts, score, latent = end_ts[finite], score[finite], latent[finite]
            channel_scores = channel_scores[finite]
            if not len(end_ts):
                return
        p = self.cfg.publish
        if p.scores == "every":
            pick = np.arange(len(end_ts))
        elif p.scores == "every_nth":
            pick = np.flatnonzero((first + np.arange(1, len(end_ts) + 1)) % p.every_n == 0)
        else:
            pick = np.zeros(0, np.int64)
        if len(pick):
            topic = self.topics.score(asset)
            enc = state.score_messages
            if enc is None or state.score_scorer is not scorer or enc.threshold != scorer.threshold:
                enc = state.score_messages = ScoreMessages(asset, scorer.channels, scorer.threshold, scorer.model_ref)
                state.score_scorer = scorer
            rows = channel_scores[pick].astype(np.float64).round(6).tolist()
            lat = latent[pick].astype(np.float64)
            lat_values = [round(v, 6) if np.isfinite(v) else None for v in lat.tolist()]
            publish = self.transport.publish
            for payload in enc.encode_many(end_ts[pick].tolist(), score[pick].astype(np.float64).round(6).tolist(),
                                           lat_values, rows):
                publish(topic, payload, qos=SCORE_QOS)
        rule = scorer.bundle.manifest.unseen_state
        held = None
        if rule is not None:  # a sustained latent excess counts as over the threshold (same rule offline)
            if state.unseen is None or state.unseen.rule != rule:
                state.unseen = UnseenStateTracker(rule)
            held = state.unseen.update_many(latent)
        for event in state.tracker.update_many(end_ts, score, scorer.threshold, channel_scores, scorer.channels,
                                               self.cfg.alerting.top_channels, held):
            self._send_alert(asset, event, scorer)

    def _send_alert(self, asset: str, event: AlertEvent, scorer: OnnxModel) -> None:
        self.stats.add(f"alerts_{event.event}")
        b = scorer.bundle
        payload = {"id": event.id, "alert_id": event.alert_id, "event": event.event,
                   "gateway": self.cfg.gateway_id, "asset": asset, "ts": event.ts, "since": event.since,
                   "score": round(event.score, 6), "peak_score": round(event.peak_score, 6),
                   "threshold": event.threshold, "top_channels": event.top_channels,
                   "model": {"name": b.name, "version": b.version}, "cause": event.cause}
        if self.feedback is not None:
            self.feedback.note_alert(asset, event.event, event.alert_id, event.since, event.ts)
            if self.feedback.is_muted(asset):
                payload["muted"] = True  # raised and recorded as ever; consumers may keep quiet
                self.stats.add("alerts_muted")
        log.info("alert %s on %s (score %.2f, threshold %.2f, top %s)", event.event, asset, event.score,
                 event.threshold, event.top_channels[0]["channel"] if event.top_channels else "-")
        data = json.dumps(payload).encode("utf-8")
        self.transport.send_durable(self.topics.alert(asset), data, ALERT_QOS)  # a full disk: held in memory

    # ---- life cycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (safe from a signal handler)."""
        self._stop.set()

    def _warn_if_insecure(self) -> None:
        b = self.cfg.broker
        if self.cfg.update.enabled and not (b.tls and b.username):
            log.warning("!" * 78)
            log.warning("[update] enabled = true on a broker connection without %s: anyone who can reach the "
                        "broker can read update outcomes and forge them (deploy cross-checks the status, but use "
                        "mqtts:// with broker.username, and an ACL like the README's)",
                        " and ".join(w for w, ok in (("TLS", b.tls), ("credentials", bool(b.username))) if not ok))
            log.warning("!" * 78)

    def run(self) -> int:
        """Connect (a broker that is down is retried), process until :meth:`stop`, shut down cleanly.

        Returns:
            0 (the exit status).

        """
        b = self.cfg.broker
        self._warn_if_insecure()
        if self.updater is not None:
            self.updater.start()
        self.transport.start()
        if self.metrics is not None:
            self.metrics.start()
        log.info("gateway %s serving %s on %s:%d (topics under %s)", self.cfg.gateway_id,
                 ", ".join(f"{k}={v['name']} {v['version']}" for k, v in self.registry.describe().items()),
                 b.host, b.port, self.topics.base)
        wait_s = self.cfg.runtime.batch_wait_ms / 1e3
        linger_s = self.cfg.runtime.linger_ms / 1e3
        linger_max_s = max(linger_s, self.cfg.runtime.linger_max_ms / 1e3)
        busy_s = 0.0  # how long the last batch took to ingest and score
        next_stats = time.monotonic() + self.cfg.publish.stats_interval_s
        next_outbox = next_heartbeat = 0.0
        if self.cfg.runtime.trim_memory:
            self._trim_at = time.monotonic() + TRIM_AFTER_S
        due = Due()
        idle = False
        while not self._stop.is_set():
            try:
                self._apply_swaps()
                feedback_left = self._apply_feedback()
                # the queue hands over the moment readings arrive: a longer wait when idle only
                # saves wake-ups (an idle gateway should cost next to no CPU)
                items = self.queue.get_all(max(wait_s, IDLE_WAIT_S) if idle and not feedback_left else wait_s,
                                           budget=CYCLE_READINGS_PER_BATCH * self.cfg.runtime.batch_max,
                                           linger_s=adaptive_linger(linger_s, linger_max_s, busy_s))
                idle = not items
                self._busy_since_heap_trim |= not idle
                started = time.perf_counter()
                self._ingest(items, due)
                if due:
                    self._score(due, backlog=len(self.queue) > 0)
                if not len(self.queue):  # nothing waits: the batch in flight is handled now, not after the next
                    self._drain()
                busy_s = time.perf_counter() - started
            except Exception:  # one bad batch must not stop the gateway
                log.exception("worker error; the batch is dropped and the loop goes on")
                self.stats.drop("worker_error", due.windows)
                self._drop_in_flight()
            due.clear()
            now = time.monotonic()
            try:
                if now >= next_outbox:
                    next_outbox = now + 0.2
                    self.transport.service_outbox()
                    self._flush_reports()
                if now >= next_heartbeat:
                    next_heartbeat = now + 1.0
                    self._watchdog(now)
                if now >= next_stats:
                    next_stats = now + self.cfg.publish.stats_interval_s
                    self._report_stats()
                if self._trim_at is not None and now >= self._trim_at:
                    self._trim_at = None
                    self._trim_memory()
                elif idle and self._busy_since_heap_trim and now >= self._heap_trim_at and self.cfg.runtime.trim_memory:
                    # memory a burst of readings freed goes back while nothing waits
                    self._heap_trim_at, self._busy_since_heap_trim = now + HEAP_TRIM_EVERY_S, False
                    trim_heap()
            except Exception:  # e.g. a full disk under the outbox: log, keep scoring
                log.exception("housekeeping error; retrying")
        self._shutdown()
        return 0

    def _flush_reports(self) -> None:
        """Report what the outbox and the queue dropped (from the worker, rate-limited)."""
        while self._pending_reports:
            asset, reason, detail = self._pending_reports.popleft()
            self._report_error(asset, reason, detail)
        for asset, (n, m) in self.queue.take_dropped().items():
            self._report_error(asset, "queue_full", f"{n} reading(s) dropped and {m} message(s) refused unparsed: "
                               "this asset's backlog exceeded its share of runtime.queue_max_readings = "
                               f"{self.cfg.runtime.queue_max_readings}")

    def _watchdog(self, now: float) -> None:
        """Heartbeat while healthy; the transport's probes, loop restarts and resubscriptions.

        systemd's watchdog is fed here, every second, whatever the broker's state: it proves the
        worker loop runs (a stuck loop gets the daemon restarted), while MQTT health is the
        heartbeat file's and the status topic's business (restarting cannot fix a broker outage).
        """
        self.transport.maintain(now, self._stop.is_set())
        healthy, why = self.transport.healthy()
        if not self._ready_sent:
            self._ready_sent = True
            self.systemd.send(READY="1", STATUS=f"serving as {self.cfg.gateway_id}")
        self.systemd.send(WATCHDOG="1", STATUS="healthy" if healthy else f"unhealthy: {why}")
        if healthy != self._reported_health and self.transport.connected.is_set():
            self._reported_health = healthy  # the retained status says so at once, not at the next stats
            self._publish_status()
        if healthy:
            if now >= self._next_heartbeat:  # an SD card need not be written every second
                self._next_heartbeat = now + HEARTBEAT_S
                self.heartbeat.write_text(f"{time.time():.0f} {self.cfg.broker.keepalive_s}\n", encoding="ascii")
            self._unhealthy_logged = ("", 0.0)
            return
        if why != self._unhealthy_logged[0] or now - self._unhealthy_logged[1] > 60:
            self._unhealthy_logged = (why, now)
            log.warning("unhealthy: %s", why)

    def _trim_memory(self) -> None:
        """runtime.trim_memory: give start-up pages back (see :mod:`edge_aae.gateway.memtrim`)."""
        self._heap_trim_at = time.monotonic() + HEAP_TRIM_EVERY_S
        done = trim_memory()
        if done is not None:
            log.info("memory trim: RSS %.1f -> %.1f MB (%d file mappings paged out, %d refused)",
                     done.rss_before_mb, done.rss_after_mb, done.mappings - done.failed, done.failed)

    def _metrics_page(self) -> str:
        """The Prometheus page (called from the metrics server's thread)."""
        return render_metrics(self.stats.snapshot(len(self.queue), len(self.outbox)), self.stats.latency_histogram(),
                              self.registry.describe(), self.transport.healthy()[0], self.drift_states())

    def _report_stats(self) -> None:
        snap = self.stats.snapshot(len(self.queue), len(self.outbox))
        log.info("stats: %s", json.dumps(snap))
        if self.transport.connected.is_set():
            self._publish_status()

    def _shutdown(self) -> None:
        """Stop intake, drain the queue, flush the outbox (bounded), publish offline, disconnect."""
        log.info("shutting down: draining %d queued reading(s)", len(self.queue))
        self.systemd.send(STOPPING="1", STATUS="draining and flushing the outbox")
        self.transport.stop_intake()
        due = Due()
        self._ingest(self.queue.get_all(0), due)
        if due:
            self._score(due)
        self._shutdown_scoring()
        deadline = time.monotonic() + self.cfg.outbox.flush_timeout_s
        while len(self.outbox) and time.monotonic() < deadline:
            self.transport.service_outbox()
            time.sleep(0.05)
        if len(self.outbox):
            log.warning("%d alert(s) not yet acknowledged stay in the outbox %s for the next start",
                        len(self.outbox), self.outbox.dir)
        self._report_stats()
        if self.updater is not None:
            self.updater.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.transport.close()
        self.systemd.close()
        log.info("stopped")
