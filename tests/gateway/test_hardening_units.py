"""Hardening, piece by piece: parser, stream, queue, outbox, update verification, contained callbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edge_aae.core.errors import ConfigError, UsageError
from edge_aae.core.update_format import (
    Header,
    UpdateRefused,
    check_version,
    parse_update_message,
    update_messages,
    version_dir,
)
from edge_aae.devtools.daemon_process import write_config
from edge_aae.gateway.config import read_gateway_config
from edge_aae.gateway.daemon import Due, ReadingQueue, _Item, adaptive_linger
from edge_aae.gateway.outbox import Outbox
from edge_aae.gateway.payload import PayloadError, Readings, parse_readings
from edge_aae.gateway.stats import Stats
from edge_aae.gateway.stream import AssetStream
from edge_aae.gateway.updates import ModelStore, load_public_key, unpack_verified, verify_header
from export.bench import redteam

CH = ["a", "b"]


def one_window(asset: str, ts: float, window: np.ndarray) -> Due:
    """A scoring queue holding one window of ``asset``."""
    due = Due()
    due.add(asset, np.array([ts]), window[None])
    return due


def reason(raw: str, **kw) -> str:
    try:
        parse_readings(raw.encode(), CH, {}, max_bytes=10**7, max_readings=1000, **kw)
    except PayloadError as exc:
        return exc.reason
    return "accepted"


@pytest.mark.parametrize(("raw", "why"), [
    ('{"ts": 1' + "0" * 400 + ', "values": {"a": 1, "b": 2}}', "invalid_value"),
    ('{"ts": 1700000000, "values": {"a": 1' + "0" * 400 + ', "b": 2}}', "invalid_value"),
    ('{"ts": [1700000000, 1' + "0" * 400 + '], "values": {"a": [1, 1], "b": [2, 2]}}', "invalid_value"),
    ('{"ts": 1700000000, "values": {"a": 1, "b": 2}, "seq": 1' + "0" * 30 + "}", "invalid_value"),
    ('{"ts": 1' + "0" * 5000 + ', "values": {}}', "invalid_value"),
    ('{"ts": 1e999, "values": {"a": 1, "b": 2}}', "bad_timestamp"),
    ('{"ts": 1700000000, "values": {"a": 1e-400, "b": 2}}', "accepted"),
])
def test_numbers_out_of_range_are_rejected_not_raised(raw, why):
    assert reason(raw) == why


def test_future_timestamps_are_rejected():
    now = time.time()
    assert reason(f'{{"ts": {now + 1000}, "values": {{"a": 1, "b": 2}}}}', max_ts=now + 300) == "future_timestamp"
    assert reason(f'{{"ts": {now + 10}, "values": {{"a": 1, "b": 2}}}}', max_ts=now + 300) == "accepted"
    with pytest.raises(PayloadError, match="looks like milliseconds"):  # a device sending epoch ms is told so
        parse_readings(f'{{"ts": {now * 1000:.0f}, "values": {{"a": 1, "b": 2}}}}'.encode(), CH, {}, max_bytes=10**7,
                       max_readings=1000, max_ts=now + 300)


def test_a_run_of_late_readings_restarts_the_stream():
    s = AssetStream(window_len=4, n_channels=1, stride=1, sample_period_s=1.0, gap_factor=5, reorder_tolerance_s=2)
    x = np.zeros(1, np.float32)
    assert s.push(5000.0, x)[0] is None
    outcomes = [s.push(100.0 + i, x)[0] for i in range(8)]
    assert outcomes[:4] == ["late"] * 4
    assert outcomes[4] == "stream_reset"
    assert outcomes[5:] == [None, None, None]
    assert s.push(108.0, x)[1] is not None  # scored again


def readings(n: int) -> Readings:
    return Readings(np.arange(n, dtype=np.float64), np.zeros((n, 2), np.float32))


def test_queue_drops_from_the_largest_backlog_only():
    q = ReadingQueue(1000, Stats())
    q.put(_Item("good", readings(10)))
    for _ in range(20):
        q.put(_Item("flood", readings(200)))
    assert not q.admits("flood")  # over its share: the next message is refused before parsing
    assert q.admits("good")
    items = q.get_all(0)
    assert sum(len(i.readings.ts) for i in items if i.asset == "good") == 10
    assert sum(len(i.readings.ts) for i in items) <= 1000
    assert set(q.take_dropped()) == {"flood"}
    q.refuse("flood")
    assert q.take_dropped() == {"flood": (0, 1)}


def test_a_worker_cycle_is_bounded_and_shared_across_assets():
    q = ReadingQueue(100_000, Stats())
    q.put(_Item("flood", readings(5000)))
    q.put(_Item("good", readings(3)))
    taken = q.get_all(0, budget=256)
    assert [i.asset for i in taken][0] == "good"
    assert sum(len(i.readings.ts) for i in taken if i.asset == "good") == 3
    assert sum(len(i.readings.ts) for i in taken if i.asset == "flood") == 128
    assert len(q) == 5000 - 128
    rest = q.get_all(0)
    assert np.array_equal(rest[0].readings.ts, np.arange(128, 5000, dtype=np.float64))  # in order, nothing lost


def test_the_linger_follows_the_last_batch_only_under_load(tmp_path):
    assert adaptive_linger(0.001, 0.005, 0.0003) == 0.001  # a quick batch: the configured linger
    assert adaptive_linger(0.001, 0.005, 0.003) == 0.003  # a slow one: as long as it took
    assert adaptive_linger(0.001, 0.005, 0.5) == 0.005  # never over linger_max_ms
    assert adaptive_linger(0.0, 0.005, 0.5) == 0.0  # linger_ms = 0 turns lingering off
    q = ReadingQueue(1000, Stats())
    q.put(_Item("a", readings(1)))
    t0 = time.perf_counter()
    assert len(q.get_all(0.1, budget=256, linger_s=adaptive_linger(0.001, 0.05, 0.03))) == 1
    assert time.perf_counter() - t0 >= 0.03  # one reading queued: it waited the linger for more
    (tmp_path / "gw.toml").write_text('gateway_id = "gw1"\n[models]\ndefault = "b"\n[runtime]\nlinger_max_ms = -1\n')
    _, problems = read_gateway_config(tmp_path / "gw.toml")
    assert any("runtime.linger_max_ms: -1.0 is not in 0..1000" in p for p in problems), problems


def test_outbox_keeps_messages_in_memory_when_the_disk_refuses(tmp_path):
    reports = []
    box = Outbox(tmp_path / "ob", max_messages=10, report=lambda r, d: reports.append(r))
    (tmp_path / "ob").rename(tmp_path / "gone")
    (tmp_path / "ob").write_text("not a folder any more")  # every write now fails
    key = box.put("t/1", b'{"id": 1}')
    assert reports == ["outbox_error"]
    assert box.get(key).payload == b'{"id": 1}'
    assert len(box) == 1
    box.ack(key)
    assert len(box) == 0


def test_outbox_drops_are_reported(tmp_path):
    reports = []
    box = Outbox(tmp_path, max_messages=10, report=lambda r, d: reports.append(r))
    for i in range(13):
        box.put("t", json.dumps({"i": i}).encode())
    assert reports.count("outbox_full") == 3


def test_default_outbox_holds_a_day_of_alerts(tmp_path, bundle):
    from edge_aae.gateway.config import load_gateway_config, outbox_capacity

    assets = "".join(f'[models.assets.p{i}]\n' for i in range(40))
    cfg = load_gateway_config(write_config(tmp_path / "gw.toml", bundle, tmp_path / "ob", extra=assets))
    assert outbox_capacity(cfg) >= 40 * 2 * 86400 / (cfg.alerting.cooldown_s + cfg.alerting.min_duration_s)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from export.signing import generate_keypair

    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d)
    return d


def header_of(bundle_dir: Path) -> Header:
    h = parse_update_message(update_messages(bundle_dir, "u1", 1 << 30)[0], 10**8)
    assert isinstance(h, Header)
    return h


def test_versions_are_integers_and_folders_are_derived():
    assert check_version("2026.11.23.1200") == (2026, 11, 23, 1200)
    assert version_dir("01.2") == "v1.2"
    for bad in ["9999.x/../../../victim", "../1", "1.2 ", "１２", "", "1..2", "1" * 10, None, 3]:
        with pytest.raises(UpdateRefused):
            check_version(bad)


def test_signed_manifests_naming_paths_or_sparse_members_are_refused(bundle, keys, tmp_path):
    pub = load_public_key(keys)
    for files in ({"/etc/passwd": {"sha256": "0" * 64, "bytes": 10}},
                  {"../model.onnx": {"sha256": "0" * 64, "bytes": 10}},
                  {"model.onnx": {"sha256": "0" * 64}}):
        evil = redteam.resign(bundle, tmp_path / "evil", keys, lambda m, f=files: m.update(files=f))
        with pytest.raises(UpdateRefused) as exc:
            verify_header(header_of(evil), pub, 10**8)
        assert exc.value.signed
    good = redteam.resign(bundle, tmp_path / "good", keys, redteam.with_version("2.0.0"))
    verified = verify_header(header_of(good), pub, 10**8)
    with pytest.raises(UpdateRefused, match="plain file|unexpected"):
        unpack_verified(redteam.sparse_archive(), verified)
    (good / "manifest.sig").unlink()
    unsigned = header_of(good)
    with pytest.raises(UpdateRefused, match="not signed"):
        verify_header(unsigned, pub, 10**8)


def test_store_never_installs_outside_its_folder(tmp_path):
    store = ModelStore(tmp_path / "models")
    staging = store.stage("u1", {"manifest.json": b"{}"})
    with pytest.raises(UpdateRefused):
        store.install(staging, "1.0/../../x")
    with pytest.raises(UpdateRefused):
        store.stage("u2", {"../escape": b"x"})


def test_world_readable_secrets_are_refused(tmp_path, bundle):
    from edge_aae.gateway.config import load_gateway_config
    from export.signing import generate_keypair, load_private_key

    pw = tmp_path / "pw"
    pw.write_text("secret")
    pw.chmod(0o644)
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "ob",
                       extra=f'[broker]\nusername = "gw1"\npassword_file = "{pw}"\n')
    with pytest.raises(ConfigError, match=f"chmod 600 {pw}"):
        load_gateway_config(cfg)
    res = subprocess.run([sys.executable, "-m", "edge_aae.cli", "serve", "--check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert "chmod 600" in res.stderr
    pw.chmod(0o600)
    load_gateway_config(cfg)
    generate_keypair(tmp_path / "k")
    (tmp_path / "k" / "private.pem").chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        load_private_key(tmp_path / "k")


def test_export_refuses_a_version_that_is_not_integers(trained_run, tmp_path):
    from export.bundle import build_bundle

    with pytest.raises(UsageError, match="--model-version"):
        build_bundle(trained_run, tmp_path / "b", version="1.0/../../x")


def make_daemon(tmp_path, bundle, extra=""):
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon

    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra=extra)
    return Daemon(load_gateway_config(cfg, {"broker_url": "mqtt://127.0.0.1:1"}))


def test_no_exception_escapes_a_callback(tmp_path, bundle, monkeypatch):
    import edge_aae.gateway.daemon as daemon_mod

    d = make_daemon(tmp_path, bundle)
    msg = mqtt.MQTTMessage(topic=b"edge-aae/gw1/sensors/pump1")
    msg.payload = b'{"ts": 1, "values": {}}'

    def boom(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(daemon_mod, "parse_readings", boom)
    t = d.transport
    t._on_message(t.client, None, msg)  # must not raise
    monkeypatch.setattr(t, "_subscribe", boom)
    rc = type("RC", (), {"is_failure": False})()
    t._on_connect(t.client, None, None, rc, None)
    t._on_publish(t.client, None, 1, None, None)
    assert d.stats.counts["internal_errors"] == 2
    assert d.stats.drops["internal_error"] == 2


def test_repeated_non_finite_scores_roll_back_after_the_health_window(tmp_path, bundle, keys):
    from edge_aae.core.update_format import pack_bundle

    v1 = redteam.resign(bundle, tmp_path / "v1", keys, redteam.with_version("1.0.0"))
    v2 = redteam.resign(bundle, tmp_path / "v2", keys, redteam.with_version("2.0.0"))
    pub = load_public_key(keys)
    store = ModelStore(tmp_path / "models")
    for v, uid in ((v1, "a"), (v2, "b")):
        files = unpack_verified(pack_bundle(v), verify_header(header_of(v), pub, 10**8))
        store.install(store.stage(uid, files), json.loads((v / "manifest.json").read_text())["model"]["version"])
    extra = (f'[update]\nenabled = true\npublic_key = "{keys / "public.pem"}"\n'
             f'models_dir = "{tmp_path / "models"}"\nhealth_window_s = 0\n')
    d = make_daemon(tmp_path, v1, extra)
    slot = d.registry.default
    assert slot.scorer.bundle.version == "2.0.0"  # the installed update, long past its health window
    assert slot.previous is None
    real = slot.scorer.score_windows

    def nan_scores(w):
        s, c, z = real(w)
        return np.full_like(s, np.nan), c, z

    slot.scorer.score_windows = nan_scores
    window = np.zeros((slot.scorer.window_len, len(slot.scorer.channels)), np.float32)
    d.assets["pump1"] = d._state("pump1")
    for _ in range(3):
        d._score(one_window("pump1", 1.0, window))
    assert slot.scorer.bundle.version == "1.0.0"
    assert d.stats.drops["non_finite_score"] == 3
    assert d.stats.counts["updates_rolled_back"] == 1
    assert os.path.basename(store.installed()) == "v1.0.0"


def test_health_check_reads_the_heartbeat(tmp_path):
    from edge_aae.gateway.health import heartbeat_age, main

    hb = tmp_path / "heartbeat"
    assert heartbeat_age(hb)[0] is False
    hb.write_text(f"{time.time():.0f} 30\n")
    assert main([str(hb)]) == 0
    hb.write_text(f"{time.time() - 31:.0f} 30\n")
    ok, why = heartbeat_age(hb)
    assert not ok
    assert "limit 30 s" in why
    assert main([str(hb)]) == 1


def test_a_model_much_slower_in_its_health_window_is_rolled_back(tmp_path, bundle, keys):
    from edge_aae.core.update_format import pack_bundle
    from edge_aae.gateway.scorer import OnnxModel
    from edge_aae.gateway.updater import PendingSwap

    v1 = redteam.resign(bundle, tmp_path / "v1", keys, redteam.with_version("1.0.0"))
    v2 = redteam.resign(bundle, tmp_path / "v2", keys, redteam.with_version("2.0.0"))
    pub = load_public_key(keys)
    store = ModelStore(tmp_path / "models")
    store.install(store.stage("a", unpack_verified(pack_bundle(v1), verify_header(header_of(v1), pub, 10**8))),
                  "1.0.0")
    extra = (f'[update]\nenabled = true\npublic_key = "{keys / "public.pem"}"\n'
             f'models_dir = "{tmp_path / "models"}"\nhealth_window_s = 60\n')
    d = make_daemon(tmp_path, v1, extra)
    slot = d.registry.default
    window = np.zeros((slot.scorer.window_len, len(slot.scorer.channels)), np.float32)
    d.assets["pump1"] = d._state("pump1")
    for _ in range(5):
        d._score(one_window("pump1", 1.0, window))  # the running model's latency is the baseline
    final = store.install(store.stage("b", unpack_verified(pack_bundle(v2), verify_header(header_of(v2), pub, 10**8))),
                          "2.0.0")
    d.updater.swaps.put(PendingSwap(slot, OnnxModel.open(final), "b", "2.0.0", "1.0.0"))
    d._apply_swaps()
    assert slot.scorer.bundle.version == "2.0.0"
    real = slot.scorer.score_windows

    def slow(w):
        time.sleep(0.02)  # 20 ms per call: far over 5x the baseline plus 0.2 ms
        return real(w)

    slot.scorer.score_windows = slow
    for _ in range(6):
        d._score(one_window("pump1", 2.0, window))
    assert slot.scorer.bundle.version == "1.0.0"
    assert d.stats.counts["updates_rolled_back"] == 1
    assert os.path.basename(store.installed()) == "v1.0.0"


def test_a_full_asset_table_makes_room_only_from_silent_assets_without_an_alert(tmp_path, bundle, monkeypatch):
    from edge_aae.core.alerting import AlertEvent
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon, Due, _Item
    from edge_aae.gateway.payload import Readings

    channels = json.loads((bundle / "manifest.json").read_text())["channels"]
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", runtime="max_assets = 3\nasset_idle_s = 60",
                       extra=f'[models.assets.pinned]\nbundle = "{bundle}"\n')
    d = Daemon(load_gateway_config(cfg, {"broker_url": "mqtt://127.0.0.1:1"}))
    clock = [1000.0]
    monkeypatch.setattr("edge_aae.gateway.daemon.time.monotonic", lambda: clock[0])

    def feed(*assets):
        items = [_Item(a, Readings(np.array([clock[0]]), np.zeros((1, len(channels)), np.float32))) for a in assets]
        d._ingest(items, Due())

    feed("a", "b", "c")
    feed("d")  # full, nobody silent long enough: refused
    assert set(d.assets) == {"a", "b", "c"}
    clock[0] += 30
    feed("b", "c")
    clock[0] += 40  # "a" silent 70 s, "b" and "c" 40 s
    d.assets["a"].tracker.active = AlertEvent("raised", "x", 0.0, 0.0, 1.0, 1.0, 1.0)  # an open alert stays
    feed("d")
    assert set(d.assets) == {"a", "b", "c"}
    d.assets["a"].tracker.active = None
    feed("d")
    assert set(d.assets) == {"b", "c", "d"}
    feed("pinned")  # named in models.assets: always scored, over the limit
    assert "pinned" in d.assets
    assert d.stats.counts["assets_dropped"] == 1


def test_a_damaged_installed_update_is_passed_over_at_start(tmp_path, bundle, keys):
    """A worn SD card must not keep the gateway from starting: the version before it is served."""
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon
    from edge_aae.gateway.updates import ModelStore

    models = tmp_path / "models"
    store = ModelStore(models)
    for version in ("2.0.0", "3.0.0"):
        src = redteam.resign(bundle, tmp_path / version, keys, redteam.with_version(version))
        files = {p.name: p.read_bytes() for p in src.iterdir()
                 if p.is_file() and (p.suffix == ".onnx" or p.name.startswith("manifest"))}
        final = store.install(store.stage(f"u{version[0]}", files), version)
    onnx = final / json.loads((final / "manifest.json").read_text())["default_model"]
    onnx.write_bytes(onnx.read_bytes()[:1000])  # 3.0.0 lost the end of its model file
    update = f'[update]\nenabled = true\npublic_key = "{keys / "public.pem"}"\nmodels_dir = "{models}"\n'
    cfg = load_gateway_config(write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox", extra=update),
                              {"broker_url": "mqtt://127.0.0.1:1"})
    d = Daemon(cfg)
    assert d.registry.describe()["default"]["version"] == "2.0.0"
    assert [r[1] for r in d._pending_reports] == ["model_damaged"]
    assert "3.0.0" in d._pending_reports[0][2]
    # both installed versions damaged: the configured bundle
    prev_onnx = store.folder("2.0.0") / onnx.name
    prev_onnx.write_bytes(prev_onnx.read_bytes()[:-10])
    d = Daemon(cfg)
    assert d.registry.describe()["default"]["version"] == "1.0.0"
    assert len(d._pending_reports) == 2
