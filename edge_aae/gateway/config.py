"""The daemon's TOML configuration: typed, frozen, validated once at start.

Every problem is collected (not just the first) and names the file and the
dotted key, so ``edge-aae serve --check-config`` can list them all. Unknown keys
are rejected: a typo must not silently fall back to a default. Secrets never
live in the file: the broker password comes from an environment variable or a
file named here.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_aae.core.errors import ConfigError, UsageError
from edge_aae.core.protocol import parse_broker_url

SCORE_PUBLISHING = ("every", "every_nth", "none")
MQTT_MAX_PACKET = 268_435_455  # the largest packet MQTT's length field can describe
PACKET_OVERHEAD = 1024  # fixed header, topic and properties of a message, beyond its payload
MIN_PACKET_BYTES = 65_536 + PACKET_OVERHEAD  # a feedback command or an update header of usual size fits
SECRET_MODE_MASK = 0o007  # a secret readable or writable by every user on the device is refused


def default_config_text() -> str:
    """The annotated TOML with every key and its default (``serve --print-default-config``).

    Read from beside this module (package data of the installed package): ``importlib.resources``
    would load ``tempfile``, ``shutil``, ``bz2`` and ``lzma`` into the daemon for it (0.5 MB).
    """
    return Path(__file__).with_name("default_config.toml").read_text(encoding="utf-8")


def check_secret_file(path: Path, what: str) -> None:
    """Refuse a secret (password file) that other users on the device can read.

    Raises:
        ConfigError: world-accessible, with the one-line fix.

    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # a missing file is reported where it is read
    if mode & SECRET_MODE_MASK:
        raise ConfigError(f"{what}: {path} is readable by other users (mode {mode & 0o777:o}); "
                          f"fix with: chmod 600 {path}")


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how to connect. ``tls`` is implied by ``tls_ca`` or an ``mqtts://`` URL.

    ``max_packet_bytes`` is sent to the broker as the connection's MQTT 5 Maximum Packet Size: the
    broker discards, for this gateway, any message larger than that (payload, topic and
    properties) instead of sending it. paho reads a whole message into memory before any check of
    ours can refuse it (a 200 MB reading message made the daemon's RSS peak at 665 MB), so a
    gateway on an open broker could be knocked over by memory; with the limit, such a message
    never reaches it. Messages between ``stream.max_payload_bytes`` and this limit still arrive
    and are refused as ``oversized``. Update chunks must fit too: the status carries the limit and
    ``edge-aae deploy`` checks its chunks against it.
    """

    host: str = "localhost"
    port: int = 1883
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    keepalive_s: int = 30
    client_id: str = ""
    session_expiry_s: int = 86400
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    max_packet_bytes: int = 4_194_304

    def password(self) -> str | None:
        """The password from ``password_env`` or ``password_file`` (None when neither is set).

        Raises:
            ConfigError: the variable is unset or the file cannot be read.

        """
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"broker.password_env: environment variable {self.password_env} is not set")
            return value
        if self.password_file:
            check_secret_file(Path(self.password_file), "broker.password_file")
            try:
                return Path(self.password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"broker.password_file: cannot read {self.password_file} ({exc.strerror})") from None
        return None


@dataclass(frozen=True)
class AssetModel:
    """A per-asset bundle and/or channel mapping (sensor name -> model channel name)."""

    bundle: str = ""
    channel_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelsConfig:
    """Which bundle scores which asset."""

    default: str = ""
    model_file: str = ""
    channel_map: dict[str, str] = field(default_factory=dict)
    assets: dict[str, AssetModel] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeConfig:
    """Threads, queue and micro-batching.

    ``max_assets``, ``asset_idle_s``: assets scored at once; when that many are, a new asset takes the
    place of the one silent longest if that one has been silent ``asset_idle_s`` seconds and has no
    active alert (else the new asset's readings are refused: ``too_many_assets``). Assets named in
    ``models.assets`` are always scored and never give their place away.

    ``linger_ms``, ``linger_max_ms``: once a reading is queued and few others are, the worker waits
    ``linger_ms`` for more; when its last batch took longer than that to score, as long as that
    batch took, up to ``linger_max_ms`` (``daemon.adaptive_linger``). 0 for ``linger_ms``: never.

    ``trim_memory``: once the daemon has started (and after each model swap), hand the pages of
    library code used only at start-up back to the kernel, and after a burst of readings the heap
    memory it freed, at an idle moment, at most every 10 s; and keep glibc to two malloc arenas
    rather than one per thread (:mod:`edge_aae.gateway.memtrim`).
    """

    threads: int = 1
    queue_max_readings: int = 20000
    batch_max: int = 128
    batch_wait_ms: float = 20.0
    linger_ms: float = 1.0
    linger_max_ms: float = 5.0
    max_assets: int = 1000
    asset_idle_s: float = 60.0
    trim_memory: bool = True


@dataclass(frozen=True)
class StreamConfig:
    """How readings become windows.

    ``gap_factor``: a time step over this many sample periods resets the asset's window; 0 (the
    default) takes the bundle's streaming rule, the one ``score BUNDLE`` applies offline.
    ``reorder_tolerance_s``: a reading at most this much older than the newest is placed in order;
    older ones are dropped and counted. ``max_payload_bytes``: larger messages are rejected.
    ``max_future_s``: readings this far ahead of the gateway's clock are rejected
    (``future_timestamp``): one bad clock must not blind an asset. When for a minute every reading
    is ahead and none is accepted, the gateway's own clock is taken to be behind
    (:mod:`edge_aae.gateway.clock`) and the limit moves with the sensors' time (``clock_behind``).
    """

    gap_factor: float = 0.0
    reorder_tolerance_s: float = 2.0
    max_future_s: float = 300.0
    max_payload_bytes: int = 262144
    max_batch_readings: int = 10000


@dataclass(frozen=True)
class AlertingConfig:
    """Raise after ``k`` of the last ``n`` windows over threshold; clear after ``m`` under in a row."""

    k: int = 3
    n: int = 5
    m: int = 10
    min_duration_s: float = 0.0
    cooldown_s: float = 30.0
    top_channels: int = 3


@dataclass(frozen=True)
class PublishConfig:
    """Score publishing (``every``, ``every_nth`` with ``every_n``, or ``none``) and rate limits."""

    scores: str = "every"
    every_n: int = 10
    stats_interval_s: float = 60.0
    errors_per_s: float = 10.0


@dataclass(frozen=True)
class OutboxConfig:
    """The durable alert outbox: a directory, bounded in messages.

    ``max_messages = 0`` (the default) sizes it for a day of broker outage at the most alerts
    the ``[alerting]`` settings allow (a raise and a clear per ``cooldown_s`` per asset), for
    the configured assets, never below 10,000; see :func:`outbox_capacity`.
    """

    dir: str = "outbox"
    max_messages: int = 0
    flush_timeout_s: float = 5.0


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery: each asset appears as a problem binary sensor (alert) and a score sensor.

    Turning ``enabled`` off removes what an earlier run announced (empty retained configs).
    """

    enabled: bool = False
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus text format on ``http://bind:port/metrics``; ``port = 0`` turns it off."""

    port: int = 0
    bind: str = "127.0.0.1"


@dataclass(frozen=True)
class MonitorConfig:
    """Drift and health per asset, on the device (:mod:`edge_aae.gateway.drift`); counts are windows."""

    enabled: bool = True
    horizon_windows: int = 1800
    min_windows: int = 300
    alert_rate_factor: float = 20.0
    latent_limit: float = 3.0
    outside_share: float = 0.25
    retrain_after_windows: int = 7200
    clear_fraction: float = 0.5
    clear_windows: int = 300
    publish_interval_s: float = 60.0


@dataclass(frozen=True)
class FeedbackConfig:
    """Operator feedback on ``ROOT/GW/feedback`` (:mod:`edge_aae.gateway.feedback`).

    ``dir``: where labelled alerts' readings are kept (default: ``labelled`` beside the outbox).
    """

    enabled: bool = True
    keep_readings: int = 3600
    max_labelled: int = 200
    dir: str = ""


@dataclass(frozen=True)
class UpdateConfig:
    """Over-the-air model updates on ``ROOT/GW/model/update`` (off unless a public key is set).

    ``models_dir`` holds installed versions and ``current.json``; ``health_window_s`` after a
    swap, an inference error, a non-finite score, inference more than ``max_slowdown`` times
    slower than the previous model's, or memory grown by more than ``max_model_mb`` rolls the
    update back (a candidate that already fails the last two on its golden windows is refused).
    ``max_bytes`` bounds all updates being assembled together, in memory.
    """

    enabled: bool = False
    public_key: str = ""
    models_dir: str = "models"
    max_bytes: int = 50_000_000
    health_window_s: float = 30.0
    chunk_timeout_s: float = 300.0
    max_slowdown: float = 5.0
    max_model_mb: float = 512.0


@dataclass(frozen=True)
class GatewayConfig:
    """The whole daemon configuration."""

    gateway_id: str
    topic_root: str = "edge-aae"
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    path: str = ""

    def redacted(self) -> dict[str, Any]:
        """The config as a dict, safe to log (it holds no secrets, only where they come from)."""
        return dataclasses.asdict(self)


def _check_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, types.UnionType):
        return any(_check_type(value, h) for h in typing.get_args(hint))
    return False


def _build(cls: type[Any], table: Any, prefix: str, problems: list[str]) -> Any:
    """Make ``cls`` from a TOML table, recording every problem with its dotted key."""
    if not isinstance(table, dict):
        problems.append(f"{prefix or 'top level'}: expected a table")
        return cls() if prefix else None
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "path"}
    for key in table:
        if key not in names:
            problems.append(f"{prefix}{key}: unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in table or f.name == "path":
            continue
        value, hint, key = table[f.name], hints[f.name], f"{prefix}{f.name}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, value, key + ".", problems)
        elif hint == dict[str, AssetModel]:
            if not isinstance(value, dict):
                problems.append(f"{key}: expected a table of assets")
                continue
            kwargs[f.name] = {a: _build(AssetModel, v, f"{key}.{a}.", problems) for a, v in value.items()}
        elif hint == dict[str, str]:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                problems.append(f"{key}: expected a table of sensor name = \"model channel\"")
                continue
            kwargs[f.name] = dict(value)
        elif not _check_type(value, hint):
            problems.append(f"{key}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}")
        else:
            kwargs[f.name] = float(value) if hint is float else value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        problems.append(f"{prefix or 'top level'}: {exc}")
        return None


def _check_values(cfg: GatewayConfig, problems: list[str]) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    gid = cfg.gateway_id
    need(bool(gid) and not any(c in gid for c in "+#/ ") ,
         f"gateway_id: {gid!r} must be non-empty, without spaces, '/', '+' or '#'")
    need(bool(cfg.topic_root) and not any(c in cfg.topic_root for c in "+# "),
         f"topic_root: {cfg.topic_root!r} must be non-empty, without spaces, '+' or '#'")
    b = cfg.broker
    need(1 <= b.port <= 65535, f"broker.port: {b.port} is not in 1..65535")
    need(5 <= b.keepalive_s <= 3600, f"broker.keepalive_s: {b.keepalive_s} is not in 5..3600")
    need(not (b.password_env and b.password_file), "broker: set password_env or password_file, not both")
    need(bool(b.username) or not (b.password_env or b.password_file), "broker: a password needs a username")
    need(0 < b.reconnect_min_s <= b.reconnect_max_s,
         "broker.reconnect_min_s / reconnect_max_s: need 0 < min <= max")
    need(bool(b.tls_cert) == bool(b.tls_key), "broker: tls_cert and tls_key go together")
    need(b.max_packet_bytes >= MIN_PACKET_BYTES, f"broker.max_packet_bytes: {b.max_packet_bytes} < {MIN_PACKET_BYTES}")
    need(b.max_packet_bytes <= MQTT_MAX_PACKET, f"broker.max_packet_bytes: {b.max_packet_bytes} is over MQTT's "
         f"limit of {MQTT_MAX_PACKET}")
    need(b.max_packet_bytes >= cfg.stream.max_payload_bytes + PACKET_OVERHEAD,
         f"broker.max_packet_bytes: {b.max_packet_bytes} leaves no room for a reading message of "
         f"stream.max_payload_bytes = {cfg.stream.max_payload_bytes} (need at least that plus {PACKET_OVERHEAD})")
    m = cfg.models
    need(bool(m.default) or bool(m.assets), "models: set models.default or at least one models.assets.NAME.bundle")
    need(m.model_file in ("", "model.onnx", "model.fp32.onnx"),
         f"models.model_file: {m.model_file!r} is not model.onnx or model.fp32.onnx")
    for name, asset in m.assets.items():
        need(bool(asset.bundle) or bool(m.default), f"models.assets.{name}.bundle: needed (no models.default)")
        need("/" not in name and "+" not in name and "#" not in name,
             f"models.assets.{name}: asset names cannot hold '/', '+' or '#'")
    r = cfg.runtime
    need(1 <= r.threads <= 64, f"runtime.threads: {r.threads} is not in 1..64")
    need(r.queue_max_readings >= 100, f"runtime.queue_max_readings: {r.queue_max_readings} < 100")
    need(1 <= r.batch_max <= 4096, f"runtime.batch_max: {r.batch_max} is not in 1..4096")
    need(0 <= r.batch_wait_ms <= 10000, f"runtime.batch_wait_ms: {r.batch_wait_ms} is not in 0..10000")
    need(0 <= r.linger_ms <= 1000, f"runtime.linger_ms: {r.linger_ms} is not in 0..1000")
    need(0 <= r.linger_max_ms <= 1000, f"runtime.linger_max_ms: {r.linger_max_ms} is not in 0..1000")
    need(r.max_assets >= 1, f"runtime.max_assets: {r.max_assets} < 1")
    need(r.asset_idle_s > 0, f"runtime.asset_idle_s: {r.asset_idle_s} must be > 0 (seconds)")
    s = cfg.stream
    need(s.gap_factor == 0 or s.gap_factor > 1, f"stream.gap_factor: {s.gap_factor} must be 0 (the bundle's rule) "
         "or > 1")
    need(s.reorder_tolerance_s >= 0, f"stream.reorder_tolerance_s: {s.reorder_tolerance_s} < 0")
    need(s.max_payload_bytes >= 256, f"stream.max_payload_bytes: {s.max_payload_bytes} < 256")
    need(s.max_batch_readings >= 1, f"stream.max_batch_readings: {s.max_batch_readings} < 1")
    need(s.max_future_s >= 0, f"stream.max_future_s: {s.max_future_s} < 0")
    a = cfg.alerting
    need(1 <= a.k <= a.n, f"alerting.k / alerting.n: need 1 <= k <= n (k={a.k}, n={a.n})")
    need(a.m >= 1, f"alerting.m: {a.m} < 1")
    need(a.min_duration_s >= 0 and a.cooldown_s >= 0, "alerting.min_duration_s / cooldown_s: must be >= 0")
    need(a.top_channels >= 1, f"alerting.top_channels: {a.top_channels} < 1")
    p = cfg.publish
    need(p.scores in SCORE_PUBLISHING, f"publish.scores: {p.scores!r} is not one of {', '.join(SCORE_PUBLISHING)}")
    need(p.every_n >= 1, f"publish.every_n: {p.every_n} < 1")
    need(p.stats_interval_s >= 1, f"publish.stats_interval_s: {p.stats_interval_s} < 1")
    need(p.errors_per_s > 0, f"publish.errors_per_s: {p.errors_per_s} must be > 0")
    h = cfg.homeassistant
    need(bool(h.discovery_prefix) and not any(c in h.discovery_prefix for c in "+# "),
         f"homeassistant.discovery_prefix: {h.discovery_prefix!r} must be non-empty, without spaces, '+' or '#'")
    mt = cfg.metrics
    need(0 <= mt.port <= 65535, f"metrics.port: {mt.port} is not in 0..65535 (0: off)")
    need(bool(mt.bind), "metrics.bind: must be an address, e.g. 127.0.0.1 (0.0.0.0: every interface)")
    fb = cfg.feedback
    need(fb.keep_readings >= 10, f"feedback.keep_readings: {fb.keep_readings} < 10")
    need(fb.max_labelled >= 1, f"feedback.max_labelled: {fb.max_labelled} < 1")
    mo = cfg.monitor
    need(mo.horizon_windows >= 10, f"monitor.horizon_windows: {mo.horizon_windows} < 10")
    need(1 <= mo.min_windows <= mo.horizon_windows,
         f"monitor.min_windows: {mo.min_windows} must be between 1 and monitor.horizon_windows")
    need(mo.alert_rate_factor > 1, f"monitor.alert_rate_factor: {mo.alert_rate_factor} must be > 1")
    need(mo.latent_limit > 0, f"monitor.latent_limit: {mo.latent_limit} must be > 0")
    need(0 < mo.outside_share <= 1, f"monitor.outside_share: {mo.outside_share} must be in (0, 1]")
    need(0 < mo.clear_fraction < 1, f"monitor.clear_fraction: {mo.clear_fraction} must be in (0, 1)")
    need(mo.clear_windows >= 1 and mo.retrain_after_windows >= 1,
         "monitor.clear_windows / retrain_after_windows: must be >= 1")
    need(mo.publish_interval_s >= 1, f"monitor.publish_interval_s: {mo.publish_interval_s} < 1")
    u = cfg.update
    need(not u.enabled or bool(u.public_key), "update.public_key: required when update.enabled is true")
    need(u.max_bytes >= 1000, f"update.max_bytes: {u.max_bytes} < 1000")
    need(u.health_window_s >= 0 and u.chunk_timeout_s > 0, "update.health_window_s / chunk_timeout_s: must be >= 0")
    need(u.max_slowdown > 1, f"update.max_slowdown: {u.max_slowdown} must be > 1")
    need(u.max_model_mb > 0, f"update.max_model_mb: {u.max_model_mb} must be > 0")
    o = cfg.outbox
    need(bool(o.dir), "outbox.dir: must be set")
    need(o.max_messages == 0 or o.max_messages >= 10, f"outbox.max_messages: {o.max_messages} < 10 (0: automatic)")
    need(o.flush_timeout_s >= 0, f"outbox.flush_timeout_s: {o.flush_timeout_s} < 0")


def outbox_capacity(cfg: GatewayConfig) -> int:
    """``outbox.max_messages``, or with 0 the automatic size: a day of broker outage.

    At most two alert events (raised, cleared) per ``cooldown_s + min_duration_s`` per asset,
    for the assets the config names (at least one), at least 10,000 and at most 1,000,000.
    """
    if cfg.outbox.max_messages:
        return cfg.outbox.max_messages
    a = cfg.alerting
    per_asset_day = 2 * 86400 / max(a.cooldown_s + a.min_duration_s, 1.0)
    return int(min(1_000_000, max(10_000, per_asset_day * max(1, len(cfg.models.assets)))))


def device_problems(cfg: GatewayConfig) -> list[str]:
    """What only the device has: TLS files, the password, deployed bundles (checked at daemon start)."""
    problems = []
    b = cfg.broker
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(b, key)
        if value and not Path(value).is_file():
            problems.append(f"broker.{key}: {value} does not exist")
    try:
        b.password()
    except ConfigError as exc:
        problems.append(str(exc))
    bundles = [("models.default", cfg.models.default)] + [
        (f"models.assets.{a}.bundle", m.bundle) for a, m in cfg.models.assets.items() if m.bundle]
    for key, bundle in bundles:
        if bundle and not (Path(bundle) / "manifest.json").is_file():
            problems.append(f"{key}: {bundle} is not a bundle (no manifest.json)")
    if cfg.update.enabled and not Path(cfg.update.public_key).is_file():
        problems.append(f"update.public_key: {cfg.update.public_key} does not exist")
    return problems


def _resolve(path: Path, value: str) -> str:
    """Relative paths in the file are relative to the file's folder."""
    if not value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (path.parent / p))


def read_gateway_config(path: Path, overrides: dict[str, Any] | None = None) -> tuple[GatewayConfig | None, list[str]]:
    """Parse and validate ``path``; returns the config (None if unusable) and every problem found.

    ``overrides`` (from command-line flags) may set ``broker_url``, ``gateway_id`` and ``model``.
    Relative paths in the file are taken relative to its folder; problems are ``"FILE: key: message"``.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: no such config file"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read ({exc})"]
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{path}: not valid TOML ({exc})"]
    overrides = overrides or {}
    problems: list[str] = []
    if overrides.get("gateway_id"):
        raw["gateway_id"] = overrides["gateway_id"]
    if overrides.get("model"):
        raw.setdefault("models", {})
        if isinstance(raw["models"], dict):
            raw["models"]["default"] = str(Path(overrides["model"]).resolve())
    if overrides.get("broker_url"):
        try:
            host, port, tls = parse_broker_url(overrides["broker_url"])
        except UsageError as exc:
            problems.append(str(exc))
        else:
            raw.setdefault("broker", {})
            if isinstance(raw["broker"], dict):
                raw["broker"].update({"host": host, "port": port, "tls": tls or bool(raw["broker"].get("tls_ca"))})
    if "gateway_id" not in raw:
        problems.append("gateway_id: required (or pass --gateway)")
        raw["gateway_id"] = "?"
    cfg = _build(GatewayConfig, raw, "", problems)
    if cfg is None:
        return None, [f"{path}: {p}" for p in problems]
    b = cfg.broker
    broker = dataclasses.replace(b, tls=b.tls or bool(b.tls_ca), tls_ca=_resolve(path, b.tls_ca),
                                 tls_cert=_resolve(path, b.tls_cert), tls_key=_resolve(path, b.tls_key),
                                 password_file=_resolve(path, b.password_file))
    models = dataclasses.replace(
        cfg.models, default=_resolve(path, cfg.models.default),
        assets={k: dataclasses.replace(v, bundle=_resolve(path, v.bundle)) for k, v in cfg.models.assets.items()})
    outbox = dataclasses.replace(cfg.outbox, dir=_resolve(path, cfg.outbox.dir))
    update = dataclasses.replace(cfg.update, public_key=_resolve(path, cfg.update.public_key),
                                 models_dir=_resolve(path, cfg.update.models_dir))
    cfg = dataclasses.replace(cfg, broker=broker, models=models, outbox=outbox, update=update, path=str(path))
    _check_values(cfg, problems)
    return cfg, [f"{path}: {p}" for p in problems]


def load_gateway_config(path: Path, overrides: dict[str, Any] | None = None) -> GatewayConfig:
    """Like :func:`read_gateway_config` plus :func:`device_problems`, but raises on any problem.

    Raises:
        ConfigError: listing every problem, one per line.

    """
    cfg, problems = read_gateway_config(path, overrides)
    if cfg is not None and not problems:
        problems = [f"{path}: {p}" for p in device_problems(cfg)]
    if problems or cfg is None:
        raise ConfigError("\n".join(problems) or f"{path}: unusable config")
    return cfg
