"""Over-the-air updates against a live daemon: refusals with reasons, install, restart on the new model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_aae.core.contract import schema_for_topic, validation_errors
from edge_aae.core.data import load_series
from edge_aae.core.update_format import Header, pack_bundle, parse_update_message, update_messages, version_key
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_series
from edge_aae.gateway.updates import ModelStore, load_public_key, unpack_verified, verify_header
from export.bundle import build_bundle
from export.signing import generate_keypair, load_private_key, sign_bundle


def one_window(asset: str, ts: float, window: np.ndarray):  # -> daemon.Due
    """A scoring queue holding one window of ``asset``."""
    from edge_aae.gateway.daemon import Due

    due = Due()
    due.add(asset, np.array([ts]), window[None])
    return due


@pytest.fixture(scope="module")
def signed(trained_run, bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("signed")
    keys = d / "keys"
    generate_keypair(keys)
    v1 = d / "v1"
    shutil.copytree(bundle, v1)
    sign_bundle(v1, load_private_key(keys))
    v2 = d / "v2"
    build_bundle(trained_run, v2, target="x86_64", version="2.0.0", sign_dir=keys)
    unsigned = d / "unsigned"
    shutil.copytree(v2, unsigned)
    (unsigned / "manifest.sig").unlink()
    tampered = d / "tampered"
    shutil.copytree(v2, tampered)
    data = bytearray((tampered / "model.fp32.onnx").read_bytes())
    data[-10] ^= 0xFF
    (tampered / "model.fp32.onnx").write_bytes(bytes(data))
    mismatched = d / "mismatched"
    shutil.copytree(v2, mismatched)
    m = json.loads((mismatched / "manifest.json").read_text())
    m["channels"] = [c.upper() for c in m["channels"]]
    m["model"]["version"] = "3.0.0"
    (mismatched / "manifest.json").write_text(json.dumps(m))
    sign_bundle(mismatched, load_private_key(keys))  # signed by the owner, but for another machine
    return {"keys": keys, "v1": v1, "v2": v2, "unsigned": unsigned, "tampered": tampered, "mismatched": mismatched}


def deploy(path: Path, broker: Mosquitto) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_aae.cli", "deploy", str(path), "--broker", broker.url,
                           "--gateway", "gw1", "--chunk-kb", "32", "--wait", "30"],
                          capture_output=True, text=True, timeout=90)


def verified_files(bundle_dir: Path, keys: Path) -> dict[str, bytes]:
    """A bundle's files as the gateway gets them: header verified, archive unpacked in memory."""
    msgs = update_messages(bundle_dir, "u1", 1 << 30)
    header = parse_update_message(msgs[0], 10**8)
    assert isinstance(header, Header)
    verified = verify_header(header, load_public_key(keys / "public.pem"), 10**8)
    return unpack_verified(pack_bundle(bundle_dir), verified)


def test_update_messages_round_trip_and_versions_compare(signed):
    msgs = update_messages(signed["v2"], "u1", 30_000)
    header = parse_update_message(msgs[0], 10**8)
    chunks = [parse_update_message(m, 10**8) for m in msgs[1:]]
    assert isinstance(header, Header)
    assert header.count == len(chunks) >= 2
    assert b"".join(c.data for c in chunks) == pack_bundle(signed["v2"])
    assert "parity.json" not in unpack_verified(pack_bundle(signed["v2"]),
                                                verify_header(header, load_public_key(signed["keys"]), 10**8))
    assert version_key("2026.11.23.1200") > version_key("2026.11.23.959") > version_key("1.0.0")
    assert version_key("9999.x/../../victim") < version_key("0")


def test_store_survives_a_crash_mid_install(tmp_path, signed):
    store = ModelStore(tmp_path / "models")
    files = verified_files(signed["v1"], signed["keys"])
    staging = store.stage("u1", files)
    store.install(staging, "1.0.0")
    staging2 = store.stage("u2", files)  # crash here: staging left behind
    assert staging2.exists()
    again = ModelStore(tmp_path / "models")
    assert not staging2.exists()
    assert again.installed() == tmp_path / "models" / "v1.0.0"
    (tmp_path / "models" / "current.json.tmp").write_text("{half")  # crash while writing the pointer
    assert ModelStore(tmp_path / "models").installed() == tmp_path / "models" / "v1.0.0"


def test_updates_are_refused_with_reasons_then_installed_and_kept(tmp_path, signed, synth_dir):
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    extra = (f'[update]\nenabled = true\npublic_key = "{signed["keys"] / "public.pem"}"\n'
             f'models_dir = "{tmp_path / "models"}"\nhealth_window_s = 5\n')
    cfg = write_config(tmp_path / "gw.toml", signed["v1"], tmp_path / "outbox", extra=extra)
    rec = Recorder(broker.port, "edge-aae/#")
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30)
        for name, reason in [("unsigned", "not signed"), ("tampered", "sha256"), ("v1", "not newer"),
                             ("mismatched", "do not match")]:
            res = deploy(signed[name], broker)
            assert res.returncode == 1, (name, res.stdout, res.stderr)
            assert f"refused: {reason}" in res.stdout or ("refused" in res.stdout and reason in res.stdout), \
                (name, res.stdout)
        res = deploy(signed["v2"], broker)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "installed" in res.stdout
        for topic, payload, _ in rec.messages:  # outcomes and chunks follow the contract too
            if payload and topic.split("/")[-1] in ("model", "update"):
                assert not validation_errors(json.loads(payload), schema_for_topic(topic)), topic
        outcome = [m for m in rec.json("edge-aae/gw1/model") if m.get("event") == "installed"]
        assert outcome
        assert outcome[-1]["version"] == "2.0.0"
        assert outcome[-1]["previous"] == "1.0.0"
        pub = publisher(broker.port)
        test = load_series(synth_dir / "test.csv").slice_rows(0, 200)
        publish_series(pub, "edge-aae/gw1/sensors/pump1", test, batch=20)
        assert rec.wait_for(lambda r: any(m["model"]["version"] == "2.0.0" for m in r.json("/score")), 20)
        assert daemon.terminate() == 0
        daemon.close()
        daemon = DaemonProcess(tmp_path, cfg, broker.url)
        assert rec.wait_for(lambda r: any(m.get("state") == "online" and
                                          m["models"]["default"]["version"] == "2.0.0"
                                          for m in r.json("/status")), 30), daemon.log()[-2000:]
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()
        broker.stop()


def test_deploy_sizes_its_chunks_by_the_gateways_packet_limit(tmp_path, signed):
    """The broker drops messages over the gateway's Maximum Packet Size: deploy says so before sending."""
    from edge_aae.gateway.config import MIN_PACKET_BYTES

    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    extra = (f'[update]\nenabled = true\npublic_key = "{signed["keys"] / "public.pem"}"\n'
             f'models_dir = "{tmp_path / "models"}"\n[broker]\nmax_packet_bytes = {MIN_PACKET_BYTES}\n'
             '[stream]\nmax_payload_bytes = 4096\n')
    cfg = write_config(tmp_path / "gw.toml", signed["v1"], tmp_path / "outbox", extra=extra)
    rec = Recorder(broker.port, "edge-aae/gw1/#")
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30)
        assert rec.json("/status")[-1]["max_packet_bytes"] == MIN_PACKET_BYTES
        too_big = subprocess.run([sys.executable, "-m", "edge_aae.cli", "deploy", str(signed["v2"]), "--broker",
                                  broker.url, "--gateway", "gw1", "--chunk-kb", "128", "--wait", "5"],
                                 capture_output=True, text=True, timeout=60)
        assert too_big.returncode != 0
        assert "--chunk-kb 48" in too_big.stderr, too_big.stderr
        assert "max_packet_bytes" in too_big.stderr
        assert not any(t.endswith("/model/update") for t, _, _ in rec.messages)  # nothing was sent
        res = deploy(signed["v2"], broker)  # 32 KiB chunks fit
        assert res.returncode == 0, res.stdout + res.stderr
        # a reading message over the packet limit never reaches the daemon; one under it is refused as oversized
        pub = publisher(broker.port)
        for size in (MIN_PACKET_BYTES * 2, 8192):
            pub.publish("edge-aae/gw1/sensors/pump1", b" " * size, qos=1).wait_for_publish(10)
        assert rec.wait_for(lambda r: any(m.get("reason") == "oversized" for m in r.json("/errors")), 10)
        time.sleep(2.5)  # two more stats intervals: the big one would have been counted by then
        assert rec.json("/status")[-1]["stats"]["drops"].get("oversized") == 1, rec.json("/status")[-1]
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()
        broker.stop()


def test_a_model_that_misbehaves_in_its_health_window_is_rolled_back(tmp_path, signed):
    from edge_aae.gateway.config import load_gateway_config
    from edge_aae.gateway.daemon import Daemon
    from edge_aae.gateway.scorer import OnnxModel
    from edge_aae.gateway.updater import PendingSwap
    from edge_aae.gateway.updates import ModelStore

    store = ModelStore(tmp_path / "models")
    store.install(store.stage("a", verified_files(signed["v1"], signed["keys"])), "1.0.0")
    extra = (f'[update]\nenabled = true\npublic_key = "{signed["keys"] / "public.pem"}"\n'
             f'models_dir = "{tmp_path / "models"}"\nhealth_window_s = 60\n')
    cfg = write_config(tmp_path / "gw.toml", signed["v1"], tmp_path / "outbox", extra=extra)
    daemon = Daemon(load_gateway_config(cfg, {"broker_url": "mqtt://127.0.0.1:1"}))
    slot = daemon.registry.default
    assert slot.scorer.bundle.version == "1.0.0"
    staging = store.stage("b", verified_files(signed["v2"], signed["keys"]))
    final = store.install(staging, "2.0.0")
    daemon.updater.swaps.put(PendingSwap(slot, OnnxModel.open(final), "b", "2.0.0", "1.0.0"))
    daemon._apply_swaps()
    assert slot.scorer.bundle.version == "2.0.0"
    assert store.installed() == final

    def broken(_windows):
        raise RuntimeError("simulated onnxruntime failure")

    slot.scorer.score_windows = broken
    window = np.zeros((slot.scorer.window_len, len(slot.scorer.channels)), np.float32)
    daemon.assets["pump1"] = daemon._state("pump1")
    daemon._score(one_window("pump1", 1.0, window))
    assert slot.scorer.bundle.version == "1.0.0"
    assert store.installed() == tmp_path / "models" / "v1.0.0"
    assert daemon.stats.snapshot(0, 0)["drops"]["inference_error"] == 1
    assert daemon.stats.counts["updates_rolled_back"] == 1


class _Sleeper:
    """Stands in for a model: ``score_windows`` takes ``ms`` per call, ``burst_ms`` on its first ``burst`` calls."""

    def __init__(self, ms: float, burst: int = 0, burst_ms: float = 0.0) -> None:
        self.ms, self.burst, self.burst_ms, self.calls = ms, burst, burst_ms, 0

    def score_windows(self, windows: np.ndarray) -> None:
        self.calls += 1
        time.sleep((self.burst_ms if self.calls <= self.burst else self.ms) / 1e3)


def test_the_speed_check_refuses_a_slow_model_and_not_a_moment_of_load():
    from edge_aae.gateway.updates import UpdateRefused, check_speed

    windows = np.zeros((1, 4, 2), np.float32)
    with pytest.raises(UpdateRefused, match="update.max_slowdown = 5"):
        check_speed(_Sleeper(1.0), _Sleeper(12.0), windows, max_slowdown=5.0)
    # the host busy while the candidate was first timed (its first five calls): measured again, it passes
    busy = _Sleeper(1.0, burst=5, burst_ms=12.0)
    check_speed(_Sleeper(1.0), busy, windows, max_slowdown=5.0)
    assert busy.calls == 20
    # a sound model is timed once
    sound = _Sleeper(1.0)
    check_speed(_Sleeper(1.0), sound, windows, max_slowdown=5.0)
    assert sound.calls == 5
