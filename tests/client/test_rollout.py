"""Rollouts to several live daemons on one real mosquitto: abort, canary, --all, and the fleet table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder
from export.bundle import build_bundle
from export.signing import generate_keypair, load_private_key, sign_bundle


@pytest.fixture(scope="module")
def versions(trained_run, bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("rollout")
    keys, other = d / "keys", d / "other-keys"
    generate_keypair(keys)
    generate_keypair(other)
    v1 = d / "v1"
    shutil.copytree(bundle, v1)
    sign_bundle(v1, load_private_key(keys))
    for v in ("2.0.0", "3.0.0"):
        build_bundle(trained_run, d / v, target="x86_64", version=v, sign_dir=keys, int8=False)
    return {"keys": keys, "other": other, "v1": v1, "v2": d / "2.0.0", "v3": d / "3.0.0"}


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_aae.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


def versions_in_service(broker: Mosquitto) -> dict[str, str]:
    p = cli("fleet", "--broker", broker.url, "--json", "--wait", "1")
    assert p.returncode == 0, p.stderr
    return {d["gateway"]: d["models"]["default"]["version"] for d in map(json.loads, p.stdout.splitlines())
            if d.get("state") == "online"}


def test_rollout_abort_canary_all_and_fleet(tmp_path, broker, versions):
    rec = Recorder(broker.port, "edge-aae/#")
    daemons = []
    try:
        for gw, keys in (("gw1", "keys"), ("gw2", "keys"), ("gw3", "keys"), ("odd", "other")):
            extra = (f'[update]\nenabled = true\npublic_key = "{versions[keys] / "public.pem"}"\n'
                     f'models_dir = "{tmp_path / gw / "models"}"\nhealth_window_s = 2\n')
            cfg = write_config(tmp_path / f"{gw}.toml", versions["v1"], tmp_path / gw / "outbox", extra=extra,
                               gateway=gw)
            daemons.append(DaemonProcess(tmp_path, cfg, broker.url))
        assert rec.wait_for(lambda r: len({m["gateway"] for m in r.json("/status") if m.get("state") == "online"})
                            == 4, 60), daemons[0].log()[-2000:]

        # one gateway holds another owner's key: it refuses, and the rollout stops there
        p = cli("deploy", versions["v2"], "--broker", broker.url, "--gateway", "odd,gw1,gw2,gw3",
                "--max-parallel", "1", "--abort-after", "1", "--wait", "30")
        assert p.returncode == 1, p.stdout + p.stderr
        rows = {line.split()[0]: line for line in p.stdout.splitlines()[1:5]}
        assert "refused" in rows["odd"], p.stdout
        assert "signature" in rows["odd"], p.stdout
        for gw in ("gw1", "gw2", "gw3"):
            assert "skipped" in rows[gw], p.stdout
        assert "installed on 0 of 4" in p.stdout
        assert versions_in_service(broker) == {"gw1": "1.0.0", "gw2": "1.0.0", "gw3": "1.0.0", "odd": "1.0.0"}

        # a canary first, watched healthy, then the rest
        mark = len(rec.messages)
        p = cli("deploy", versions["v2"], "--broker", broker.url, "--gateway", "gw1,gw2,gw3", "--canary", "1",
                "--canary-wait", "3", "--wait", "30")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "canary: healthy" in p.stdout
        assert "installed on 3 of 3" in p.stdout
        topics = [t for t, _, _ in rec.messages[mark:]]
        canary_done = next(i for i, (t, payload, _) in enumerate(rec.messages[mark:])
                           if t == "edge-aae/gw1/model" and b'"installed"' in payload)
        assert all(i > canary_done for i, t in enumerate(topics) if t.startswith(("edge-aae/gw2/model/update",
                                                                                  "edge-aae/gw3/model/update")))
        assert versions_in_service(broker) == {"gw1": "2.0.0", "gw2": "2.0.0", "gw3": "2.0.0", "odd": "1.0.0"}

        # --all: every online gateway; the odd one refuses, the others install, the exit says so
        p = cli("deploy", versions["v3"], "--broker", broker.url, "--all", "--max-parallel", "4", "--wait", "30")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "installed on 3 of 4" in p.stdout
        assert versions_in_service(broker) == {"gw1": "3.0.0", "gw2": "3.0.0", "gw3": "3.0.0", "odd": "1.0.0"}

        p = cli("fleet", "--broker", broker.url)
        assert p.returncode == 0, p.stderr
        assert "4 gateway(s), 4 online" in p.stdout
        assert "default=3.0.0" in p.stdout
    finally:
        for d in daemons:
            d.close()
        rec.close()


def test_rollout_usage_errors(tmp_path, versions):
    p = cli("deploy", versions["v2"], "--broker", "mqtt://127.0.0.1:1", "--gateways-file", tmp_path / "none.txt")
    assert p.returncode == 2
    assert "--gateways-file" in p.stderr
    (tmp_path / "empty.txt").write_text("# nobody\n\n")
    p = cli("deploy", versions["v2"], "--broker", "mqtt://127.0.0.1:1", "--gateways-file", tmp_path / "empty.txt")
    assert p.returncode == 2
    assert "no gateway ids" in p.stderr
    p = cli("deploy", versions["v2"], "--broker", "mqtt://127.0.0.1:1", "--gateway", "a,a", "--canary", "1")
    assert p.returncode == 2
    assert "listed twice" in p.stderr
