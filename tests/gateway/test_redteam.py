"""The red-team report against one live daemon on a real mosquitto: each attack as reported, plus variants.

The attacks live in ``export/bench/redteam.py`` (``make drills`` runs them too and writes the table).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import DaemonProcess
from export.bench import redteam


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from export.signing import generate_keypair

    d = tmp_path_factory.mktemp("rt-keys")
    generate_keypair(d)
    return d


@pytest.fixture(scope="module")
def target(bundle, keys, synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("redteam")
    normal = load_series(synth_dir / "train.csv")
    t = redteam.Target(tmp, bundle, keys, normal.values[:600], list(normal.channels),
                       runtime=f"max_assets = {MAX_ASSETS}\nasset_idle_s = {ASSET_IDLE_S}")
    yield t
    t.close()


MAX_ASSETS, ASSET_IDLE_S = 400, 3.0  # smaller than the defaults (1000, 60 s), for time


MAX_WAIT_S = 10.0  # no attack may keep the good asset waiting this long for a score (the drill: 1.6 s at most)


def check(rows):
    bad = [r for r in rows if not r["ok"] or r["good asset's longest wait (s)"] > MAX_WAIT_S]
    assert not bad, json.dumps(bad, indent=1)


def test_no_payload_makes_the_gateway_deaf(target, bundle):
    channel = json.loads((bundle / "manifest.json").read_text())["channels"][0]
    check(redteam.attack_deafening_numbers(target, channel))


def test_a_deafening_message_is_acknowledged_so_a_restart_stays_healthy(target):
    target.send([f'{{"ts": {redteam.HUGE}, "values": {{}}}}'.encode()], topic=f"{redteam.BASE}/sensors/pump9")
    target.daemon.kill()  # QoS 1 with a persistent session: an unacknowledged message would come back
    since = time.time()
    target.daemon = DaemonProcess(target.tmp, target.config, target.broker.url)
    assert target.rec.wait_for(lambda r: any(m.get("healthy") and m["ts"] > since
                                             for m in r.json(f"{redteam.GATEWAY}/status")), 30)
    assert target.wait_good(20), target.daemon.log()[-2000:]


def test_huge_messages_never_reach_the_daemon_and_a_retained_one_cannot_crash_loop_it(target):
    check(redteam.attack_huge_messages(target, megabytes=48))


def test_future_timestamps_cannot_blind_an_asset(target, synth_dir, bundle):
    normal = load_series(synth_dir / "train.csv")
    window_len = json.loads((bundle / "manifest.json").read_text())["window_len"]
    check(redteam.attack_future_timestamp(target, list(normal.channels), normal.values[:200], window_len))


def test_a_sentinel_value_cannot_keep_an_asset_unscored(target, synth_dir, bundle):
    normal = load_series(synth_dir / "train.csv")
    window_len = json.loads((bundle / "manifest.json").read_text())["window_len"]
    check(redteam.attack_sentinel_values(target, list(normal.channels), normal.values[:200], window_len))


def test_updates_are_verified_before_anything_is_written_hashed_or_held(target, bundle):
    check(redteam.attack_update_before_verification(target, bundle))


def test_unsigned_chunks_hold_no_memory(target):
    check(redteam.attack_chunk_flood(target, megabytes=40))


def test_slots_conflicts_and_back_to_back_updates(target, bundle, keys, tmp_path):
    v2 = redteam.resign(bundle, tmp_path / "v2", keys, redteam.with_version("2.0.0"))
    v3 = redteam.resign(bundle, tmp_path / "v3", keys, redteam.with_version("3.0.0"))
    check(redteam.attack_update_races(target, v2, v3))


def test_a_much_slower_signed_model_is_refused(target, bundle, tmp_path):
    check(redteam.attack_slow_model(target, bundle, tmp_path))


def test_a_version_never_becomes_a_path(target, bundle, tmp_path):
    check(redteam.attack_version_path(target, bundle, tmp_path))


def test_a_forged_outcome_does_not_fool_deploy(target, bundle, tmp_path):
    unsigned = tmp_path / "unsigned"
    redteam.resign(bundle, unsigned, target.keys, redteam.with_version("7.0.0"))
    (unsigned / "manifest.sig").unlink()
    check(redteam.attack_forged_outcome(target, unsigned))
    assert redteam.insecure_warning(target), "serve did not warn about updates on an open broker"


def test_long_asset_names_and_a_bounded_status(target, synth_dir):
    check(redteam.attack_long_asset_names(target, list(load_series(synth_dir / "train.csv").channels),
                                          load_series(synth_dir / "train.csv").values[:5]))


def test_a_flood_on_one_asset_does_not_starve_another(target, synth_dir):
    normal = load_series(synth_dir / "train.csv")
    check(redteam.attack_flood(target, list(normal.channels), normal.values[:500], seconds=4))


def test_feedback_bursts_cannot_hold_scoring_or_memory(target, synth_dir):
    normal = load_series(synth_dir / "train.csv")
    check(redteam.attack_feedback_amplification(target, list(normal.channels), normal.values[:200], labels=1200,
                                                collects=100))


def test_nothing_reached_the_internal_error_path(target):
    time.sleep(1.5)
    stats = target.status()["stats"]
    assert stats.get("internal_errors", 0) == 0, stats
    assert target.status()["healthy"] is True


def test_the_red_team_drill_is_wired(tmp_path):
    from export.bench import drills

    assert "red_team" in drills.DRILLS
    assert Path(drills.__file__).read_text().count("redteam.attack_") >= 8


def test_a_guessable_client_id_cannot_take_the_gateways_session(target):
    check(redteam.attack_client_id_takeover(target, seconds=4))



def test_made_up_assets_cannot_keep_a_new_asset_out(target, synth_dir):
    normal = load_series(synth_dir / "train.csv")
    check(redteam.attack_asset_table(target, list(normal.channels), normal.values[:100], MAX_ASSETS, ASSET_IDLE_S))
