import json

import numpy as np
import pytest

from edge_aae.train import synth


def test_deterministic_for_a_seed():
    a = synth.generate(seed=7, train_rows=3000, test_rows=4800)
    b = synth.generate(seed=7, train_rows=3000, test_rows=4800)
    c = synth.generate(seed=8, train_rows=3000, test_rows=4800)
    np.testing.assert_array_equal(a.test, b.test)
    assert a.faults == b.faults
    assert not np.array_equal(a.test, c.test)


def test_faults_cover_six_kinds_and_match_labels():
    r = synth.generate(seed=0, train_rows=3000, test_rows=7200)
    assert {f.kind for f in r.faults} == set(synth.FAULT_KINDS)
    expected = np.zeros_like(r.labels)
    for f in r.faults:
        expected[f.start:f.end] = 1
        assert set(f.channels) <= set(synth.CHANNELS)
    np.testing.assert_array_equal(r.labels, expected)


def test_channels_are_correlated_through_load():
    r = synth.generate(seed=0, train_rows=3000, test_rows=2400, faults_per_kind=1)
    corr = np.corrcoef(r.train.T)
    i, j = synth.CHANNELS.index("current_a"), synth.CHANNELS.index("flow_m3h")
    assert corr[i, j] > 0.9


def test_write_dataset(tmp_path):
    r = synth.generate(seed=1, train_rows=2000, test_rows=2400, faults_per_kind=1)
    synth.write_dataset(tmp_path, r, seed=1)
    header = (tmp_path / "test.csv").read_text().splitlines()[0].split(",")
    assert header == ["timestamp", *synth.CHANNELS, "label"]
    assert "label" not in (tmp_path / "train.csv").read_text().splitlines()[0]
    meta = json.loads((tmp_path / "faults.json").read_text())
    assert len(meta["faults"]) == 6
    assert {"kind", "start", "end", "channels"} <= set(meta["faults"][0])


def test_unseen_mode_is_opt_in_and_stays_inside_the_training_range():
    assert "unseen_mode" not in {f.kind for f in synth.generate(seed=2, train_rows=3000, test_rows=4800).faults}
    r = synth.generate(seed=2, train_rows=6000, test_rows=5600, faults_per_kind=1, kinds=synth.ALL_FAULT_KINDS)
    unseen = [f for f in r.faults if f.kind == "unseen_mode"]
    assert len(unseen) == 1
    f = unseen[0]
    assert r.labels[f.start:f.end].all()
    lo, hi = r.train.min(axis=0), r.train.max(axis=0)
    seg = r.test[f.start:f.end]
    assert ((seg >= lo) & (seg <= hi)).all()  # every channel in range: only the combination is new
    load_channel = r.test[f.start:f.end, synth.CHANNELS.index("speed_rpm")]
    assert abs(np.median(load_channel) - (600 + 900 * np.array(synth.UNSEEN_LOADS))).min() < 30


def test_unseen_mode_is_labelled_while_the_machine_is_at_the_unseen_load():
    # the label spans the ramp-settled stretch: not the rows before the drive got there, not fewer
    for seed in (0, 1):
        r = synth.generate(seed, kinds=synth.ALL_FAULT_KINDS)
        load = (r.test[:, synth.CHANNELS.index("speed_rpm")] - 600) / 900
        for f in (f for f in r.faults if f.kind == "unseen_mode"):
            target = min(synth.UNSEEN_LOADS, key=lambda v: abs(v - np.median(load[f.start:f.end])))
            assert abs(np.mean(load[f.start:f.start + 20]) - target) < synth.UNSEEN_BAND
            assert abs(np.mean(load[f.end - 20:f.end]) - target) < synth.UNSEEN_BAND
            if f.start >= 40:  # the drive was still on its way just before
                assert abs(np.mean(load[f.start - 40:f.start - 20]) - target) > synth.UNSEEN_BAND
            assert abs(np.mean(load[f.end + 20:f.end + 40]) - target) > synth.UNSEEN_BAND
            assert r.labels[f.start:f.end].all()
            assert not r.labels[f.end:f.end + 1].any()


def test_unknown_fault_kinds_are_refused():
    with pytest.raises(ValueError, match="meteor"):
        synth.generate(seed=0, kinds=("meteor",))


def test_more_channels_add_derived_sensors_and_keep_the_pump_channels(tmp_path):
    base = synth.generate(seed=3, train_rows=3000, test_rows=4800)
    wide = synth.generate(seed=3, train_rows=3000, test_rows=4800, channels=12)
    assert wide.channels == [*synth.CHANNELS, "aux_00", "aux_01", "aux_02", "aux_03"]
    assert wide.train.shape == (3000, 12)
    np.testing.assert_array_equal(wide.train[:, :8], base.train)
    np.testing.assert_array_equal(wide.test[:, :8], base.test)
    # each derived sensor follows the pump: well explained by the 8 pump channels
    coef, *_ = np.linalg.lstsq(np.c_[wide.train[:, :8], np.ones(3000)], wide.train[:, 8:], rcond=None)
    resid = wide.train[:, 8:] - np.c_[wide.train[:, :8], np.ones(3000)] @ coef
    assert (resid.std(axis=0) < 0.2 * wide.train[:, 8:].std(axis=0)).all()
    synth.write_dataset(tmp_path, wide, seed=3)
    header = (tmp_path / "train.csv").read_text().splitlines()[0].split(",")
    assert header == ["timestamp", *wide.channels]
    assert json.loads((tmp_path / "faults.json").read_text())["channels"] == wide.channels
    with pytest.raises(ValueError, match="at least 8"):
        synth.generate(seed=3, train_rows=3000, test_rows=4800, channels=5)


def test_the_csv_holds_the_values_to_four_decimals(tmp_path):
    r = synth.generate(seed=1, train_rows=3000, test_rows=4800)
    synth.write_dataset(tmp_path, r, seed=1)
    lines = (tmp_path / "test.csv").read_text().splitlines()
    assert len(lines) == 4801
    first = lines[1].split(",")
    assert first[0] == f"{r.test_ts[0]:.1f}"
    assert first[1:9] == [f"{v:.4f}" for v in r.test[0]]
    assert first[9] == str(int(r.labels[0]))
