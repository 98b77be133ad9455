"""Synthetic faults for the self-check: each kind changes what it says and nothing else."""

from __future__ import annotations

import numpy as np

from edge_aae.train.selfcheck import KINDS, MAGNITUDES, detection_by_kind, inject_faults, mean_detection


def normal_windows(n=40, length=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (n, length, channels)) + np.array([10.0, -5.0, 0.0])


def test_every_kind_and_magnitude_is_injected_once_per_base_window():
    w = normal_windows()
    faults = inject_faults(w, np.ones(3), seed=1)
    assert faults.windows.shape == (len(KINDS) * len(MAGNITUDES) * 40, 16, 3)
    assert np.bincount(faults.kinds).tolist() == [len(MAGNITUDES) * 40] * len(KINDS)
    assert faults.windows.dtype == w.dtype


def test_a_spike_moves_only_the_last_reading_of_one_channel():
    w = normal_windows()
    faults = inject_faults(w, np.full(3, 0.5), seed=2)
    spikes = faults.windows[faults.kinds == KINDS.index("spike")][:40]
    diff = spikes - w  # the base windows are all 40, in order
    changed = np.argwhere(np.abs(diff) > 1e-12)
    assert (changed[:, 1] == 15).all()
    assert np.bincount(changed[:, 0], minlength=40).tolist() == [1] * 40
    assert np.allclose(np.abs(diff[np.abs(diff) > 1e-12]), 2 * MAGNITUDES[0] * 0.5)


def test_constant_channels_are_left_alone_and_stuck_holds_a_value():
    w = normal_windows()
    w[:, :, 1] = 3.0
    faults = inject_faults(w, np.ones(3), seed=3, movable=np.array([True, False, True]))
    assert np.all(faults.windows[:, :, 1] == 3.0)
    stuck = faults.windows[faults.kinds == KINDS.index("stuck")]
    flat = np.ptp(stuck[:, 8:, :], axis=1) < 1e-12  # (n, C): which channel stopped moving
    assert (flat[:, [0, 2]].sum(axis=1) == 1).all()


def test_detection_counts_each_kind_apart():
    kinds = np.array([0, 0, 1, 1])
    by_kind = detection_by_kind(np.array([2.0, 0.0, 2.0, 2.0]), kinds, 1.0)
    assert by_kind == {KINDS[0]: 0.5, KINDS[1]: 1.0}
    assert mean_detection(by_kind) == 0.75


def test_the_parity_gate_injects_the_same_kinds_one_per_window():
    from export.parity import inject_faults as gate_faults

    w = np.random.default_rng(5).normal(size=(8, 16, 3)).astype(np.float32)
    out = gate_faults(w, np.ones(3), seed=4)
    assert out.shape == w.shape
    changed = np.abs(out - w) > 1e-6  # (n, L, C)
    for i in range(8):
        chans = np.flatnonzero(changed[i].any(axis=0))
        assert len(chans) == 1  # one channel per window
        steps = np.flatnonzero(changed[i, :, chans[0]])
        kind = i % 4
        if kind == 0:  # spike: the last 1-3 readings
            assert steps.min() >= 13
        elif kind in (1, 2):  # level shift, stuck: the last half
            assert steps.min() >= 8
        if kind == 2:
            assert np.ptp(out[i, 8:, chans[0]]) == 0  # held
        if kind == 3:  # drift: grows along the window
            d = np.abs(out[i, :, chans[0]] - w[i, :, chans[0]])
            assert d[-1] > d[1] > 0
