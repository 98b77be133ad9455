"""``AssetStream.push_many`` (the batch fast path) gives exactly what ``push`` one by one gives."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_aae.gateway.stream import AssetStream


def make(stride: int) -> AssetStream:
    return AssetStream(window_len=8, n_channels=3, stride=stride, sample_period_s=1.0, gap_factor=5.0,
                       reorder_tolerance_s=2.0)


@settings(max_examples=150, deadline=None)
@given(stride=st.integers(1, 5), batches=st.lists(st.integers(1, 30), min_size=1, max_size=8),
       gaps=st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.5, 3.0, 9.0, -1.0, 0.0]), min_size=300, max_size=300),
       seed=st.integers(0, 1000))
def test_push_many_equals_push_one_by_one(stride, batches, gaps, seed):
    rng = np.random.default_rng(seed)
    fast, slow = make(stride), make(stride)
    t, g = 1000.0, 0
    for size in batches:
        ts = []
        for _ in range(size):
            t += gaps[g % len(gaps)]
            g += 1
            ts.append(t)
        ts_arr = np.array(ts)
        x = rng.normal(size=(size, 3)).astype(np.float32)
        expected_w, expected_t, outcomes = [], [], []
        for tt, row in zip(ts_arr, x, strict=True):
            outcome, w = slow.push(float(tt), row)
            outcomes.append(outcome)
            if w is not None:
                expected_w.append(w)
                expected_t.append(tt)
        got = fast.push_many(ts_arr, x)
        if got is None:  # not the plain case: the caller pushes one by one
            for tt, row in zip(ts_arr, x, strict=True):
                fast.push(float(tt), row)
            continue
        assert all(o is None for o in outcomes)  # only plain batches take the fast path
        windows, end_ts = got
        assert windows.shape[0] == len(expected_w)
        if expected_w:
            np.testing.assert_array_equal(windows, np.stack(expected_w))
            np.testing.assert_array_equal(end_ts, np.array(expected_t))
        assert fast.filled == slow.filled
        assert fast.newest_ts == slow.newest_ts
