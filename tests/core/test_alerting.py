"""AlertTracker.update_many gives exactly the events and state of update() one window at a time."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_aae.core.alerting import AlertTracker

CHANNELS = ["a", "b", "c"]


def _state(t: AlertTracker) -> tuple:
    active = None if t.active is None else (t.active.alert_id, t.active.since, t.active.peak_score)
    return list(t._recent), t._n_over, t._under, t._last_cleared, active


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.5, 2.0, 3.0]), min_size=1, max_size=12), min_size=1, max_size=12),
       st.integers(1, 3), st.integers(3, 6), st.integers(1, 4))
def test_update_many_equals_update_one_by_one(blocks, k, n, m):
    one, many = AlertTracker(k, n, m, 0.0, 0.0), AlertTracker(k, n, m, 0.0, 0.0)
    rng = np.random.default_rng(0)
    ts = 0.0
    for block in blocks:
        scores = np.array(block)
        times = ts + np.arange(1, len(block) + 1, dtype=np.float64)
        ts = float(times[-1])
        cs = rng.random((len(block), len(CHANNELS)))
        expected = [e for j in range(len(block))
                    if (e := one.update(float(times[j]), float(scores[j]), 1.0, cs[j], CHANNELS)) is not None]
        got = many.update_many(times, scores, 1.0, cs, CHANNELS)
        assert [(e.event, e.ts, e.since, e.peak_score) for e in got] == [
            (e.event, e.ts, e.since, e.peak_score) for e in expected]
        if many.active is not None:  # the episode ids are random: compare the rest
            many.active.alert_id = one.active.alert_id if one.active is not None else many.active.alert_id
        assert _state(many)[:4] == _state(one)[:4]
        assert (many.active is None) == (one.active is None)


def test_a_quiet_block_longer_than_n_keeps_only_the_last_n():
    t = AlertTracker(2, 4, 2, 0.0, 0.0)
    t.update_many(np.arange(3.0), np.array([2.0, 0.0, 0.0]), 1.0, np.zeros((3, 3)), CHANNELS)
    assert t._n_over == 1
    t.update_many(np.arange(3.0, 13.0), np.zeros(10), 1.0, np.zeros((10, 3)), CHANNELS)
    assert t._n_over == 0
    assert [ts for _, ts in t._recent] == [9.0, 10.0, 11.0, 12.0]
