"""The unseen-state rule: a sustained latent excess, the same offline, on the gateway and in the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_aae.core.alerting import AlertTracker
from edge_aae.core.manifest import Manifest
from edge_aae.core.unseen_state import UnseenStateRule, UnseenStateTracker, stream_breaks


def test_a_ramp_passes_and_a_held_state_is_flagged():
    rule = UnseenStateRule.for_window(3.0, window_len=32, stride=1)
    assert (rule.span, rule.needed) == (64, 64)
    latent = np.zeros(400)
    latent[50:110] = 5.0  # 60 windows over: a ramp through a region training saw little of
    latent[200:360] = 5.0  # 160 windows over: the machine stays there
    latent[300] = 2.0  # one window under: the count starts again
    flags = rule.flags(latent)
    assert not flags[:200].any()
    assert flags[200 + rule.needed - 1:300].all()
    assert not flags[200:200 + rule.needed - 1].any()
    assert not flags[300:301 + rule.needed - 1].any()
    assert flags[301 + rule.needed - 1:360].all()
    assert not flags[360:].any()  # it clears with the first window under
    partial = UnseenStateRule(3.0, span=64, share=0.8)
    assert partial.needed == 52
    assert partial.flags(latent)[251:300].all()


def test_the_live_tracker_gives_the_offline_flags_in_any_chunks():
    rng = np.random.default_rng(3)
    rule = UnseenStateRule(1.0, span=20, share=0.7)
    latent = np.repeat(rng.normal(0.5, 1.0, 120), 5)  # runs of 5 over or under
    want = rule.flags(latent)
    assert want.any()
    assert not want.all()
    tracker = UnseenStateTracker(rule)
    got, i = [], 0
    while i < latent.size:
        n = int(rng.integers(1, 40))
        got.append(tracker.update_many(latent[i:i + n]))
        i += n
    np.testing.assert_array_equal(np.concatenate(got), want)


def test_counting_starts_over_at_a_gap():
    rule = UnseenStateRule(1.0, span=10, share=1.0)
    latent = np.full(30, 2.0)
    ends = np.r_[np.arange(15), np.arange(100, 115)]  # a gap after the 15th window
    flags = rule.flags(latent, stream_breaks(ends, 1))
    assert flags[9:15].all()
    assert not flags[15:24].any()
    assert flags[24:].all()
    tracker = UnseenStateTracker(rule)
    tracker.update_many(latent[:15])
    tracker.reset()
    np.testing.assert_array_equal(tracker.update_many(latent[15:]), flags[15:])


def test_json_round_trip_and_a_bad_rule_named():
    rule = UnseenStateRule(2.5, 64)
    assert UnseenStateRule.from_json(json.loads(json.dumps(rule.to_json())), "x") == rule
    assert UnseenStateRule.from_json(None, "x") is None
    with pytest.raises(ValueError, match="manifest.json: unseen_state"):
        UnseenStateRule.from_json({"level": 1.0, "span": 0}, "manifest.json: unseen_state")
    with pytest.raises(ValueError, match="unseen_state"):
        UnseenStateRule.from_json({"span": 3}, "unseen_state")
    with pytest.raises(ValueError, match="span <= 100000"):
        UnseenStateRule.from_json({"level": 1.0, "span": 10**9}, "unseen_state")


def test_a_held_window_counts_as_over_the_threshold_for_alerts():
    tracker = AlertTracker(k=3, n=5, m=2, min_duration_s=0.0, cooldown_s=0.0)
    ts = np.arange(6, dtype=float)
    score = np.zeros(6)  # every score under the threshold
    held = np.array([0, 1, 1, 1, 0, 0], dtype=bool)
    events = tracker.update_many(ts, score, 1.0, np.zeros((6, 2)), ["a", "b"], 1, held)
    assert [e.event for e in events] == ["raised", "cleared"]
    assert [e.cause for e in events] == ["unseen_state", "unseen_state"]
    assert AlertTracker(3, 5, 2, 0.0, 0.0).update_many(ts, score, 1.0, np.zeros((6, 2)), ["a", "b"]) == []


def test_a_run_and_its_bundle_carry_the_rule(trained_run: Path, bundle: Path):
    meta = json.loads((trained_run / "model.json").read_text())
    manifest = Manifest.from_json(json.loads((bundle / "manifest.json").read_text()))
    assert meta["unseen_state_reason"].startswith("on: latent score over")  # enough validation windows
    assert manifest.unseen_state is not None
    assert manifest.unseen_state == UnseenStateRule.from_json(meta["unseen_state"], "model.json")
    bad = json.loads((bundle / "manifest.json").read_text()) | {"unseen_state": {"level": "x", "span": 4}}
    with pytest.raises(Exception, match="unseen_state"):
        Manifest.from_json(bad)
