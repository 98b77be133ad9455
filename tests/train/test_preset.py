"""The auto preset: settings from the training series alone, recorded with reasons, never from labels."""

from __future__ import annotations

import json

import numpy as np

from edge_aae.core.data import SensorData, assemble_series
from edge_aae.train import synth
from edge_aae.train.config import TrainConfig
from edge_aae.train.detector import AAEDetector
from edge_aae.train.preset import LEVEL_NEFF_MIN, choose_settings, drift_and_slowness, level_observations

FAST = {"epochs": 3, "patience": 2, "windows_per_epoch": 1500}


def pump(rows: int, warm_channel: bool, seed: int = 0, labels: np.ndarray | None = None):
    res = synth.generate(seed=seed, train_rows=max(rows, 1000), test_rows=2400, faults_per_kind=1)
    x = res.train[:rows].copy()
    if warm_channel:  # a bearing temperature that warms up through the normal run
        j = synth.CHANNELS.index("bearing_temp_c")
        x[:, j] += np.linspace(0, 12 * x[:, j].std(), rows)
    ts = np.arange(rows, dtype=np.float64)
    return assemble_series("pump.csv", list(synth.CHANNELS), ts, x, labels)


def test_a_drifting_slow_channel_is_scored_by_shape_and_a_stationary_one_is_not():
    cfg, decisions = choose_settings(pump(14400, warm_channel=True), TrainConfig())
    assert cfg.relative_channels == "bearing_temp_c"
    why = {d.key: d.reason for d in decisions}
    assert "drift" in why["relative_channels"]
    cfg, decisions = choose_settings(pump(14400, warm_channel=False), TrainConfig())
    assert cfg.relative_channels == ""
    assert "no slow channel" in {d.key: d.reason for d in decisions}["relative_channels"]


def test_a_slow_channel_whose_level_was_seen_a_few_times_is_scored_by_shape():
    rows = 400  # a short stretch: the temperature goes round a slow cycle four times, no net drift
    rng = np.random.default_rng(3)
    t = np.arange(rows, dtype=np.float64)
    x = rng.normal(size=(rows, 3))
    x[:, 2] = 5 * np.sin(2 * np.pi * t / 100) + 0.1 * rng.normal(size=rows)
    data = assemble_series("rig.csv", ["flow", "pressure", "temp"], t, x, None)
    seen = level_observations(data.values)
    assert seen[2] < LEVEL_NEFF_MIN <= seen[:2].min()
    assert drift_and_slowness(data.values)[0][2] < 3  # the block medians alone would not pick it
    cfg, decisions = choose_settings(data, TrainConfig())
    assert cfg.relative_channels == "temp"
    assert "seen" in {d.key: d.reason for d in decisions}["relative_channels"]


def test_many_slow_channels_with_rarely_seen_levels_keep_their_levels():
    # a slow cycle seen a few times makes a channel's level "rarely seen"; on a third of the
    # channels (rounded up) that is a few thermal channels, beyond it the process moves as a whole
    rows, n = 400, 12
    rng = np.random.default_rng(4)
    t = np.arange(rows, dtype=np.float64)

    def rig(slow: int) -> SensorData:
        x = rng.normal(size=(rows, n))
        for j in range(slow):
            x[:, j] = 5 * np.sin(2 * np.pi * t / 100 + j) + 0.1 * rng.normal(size=rows)
        return assemble_series("rig.csv", [f"c{i}" for i in range(n)], t, x, None)

    four, _ = choose_settings(rig(4), TrainConfig())
    assert four.relative_channels == "c0,c1,c2,c3"
    five, decisions = choose_settings(rig(5), TrainConfig())
    assert five.relative_channels == ""
    assert "no slow channel" in {d.key: d.reason for d in decisions}["relative_channels"]


def test_short_training_picks_the_shift_score_long_training_keeps_the_error_score():
    short, d = choose_settings(pump(400, warm_channel=False), TrainConfig())
    assert (short.score_stat, short.threshold) == ("shift", "t2")
    long, _ = choose_settings(pump(9000, warm_channel=False), TrainConfig())
    assert (long.score_stat, long.threshold) == ("error", "pot")
    assert long.window_len == short.window_len == 32


def wide(rows: int, channels: int = 52):
    return assemble_series("wide.csv", [f"c{i}" for i in range(channels)], np.arange(float(rows)),
                           np.random.default_rng(0).normal(size=(rows, channels)), None)


def test_a_short_series_with_many_channels_gets_shorter_windows_for_its_t2_limit():
    plant, d = choose_settings(wide(500), TrainConfig())  # 52 channels: ~30 independent windows of 32 samples
    assert (plant.window_len, plant.score_stat, plant.threshold) == (8, "shift", "t2")
    why = {x.key: x.reason for x in d}
    assert "too few for a T² limit" in why["window_len"]
    assert {x.key: x.value for x in d}["window_len"] == 8
    mid, _ = choose_settings(wide(500, channels=24), TrainConfig())  # 16 samples are enough for 24 channels
    assert (mid.window_len, mid.score_stat) == (16, "shift")
    tiny, d = choose_settings(wide(150), TrainConfig())  # not even 8 samples give enough: nothing to gain
    assert (tiny.window_len, tiny.score_stat, tiny.threshold) == (32, "error", "pot")
    assert "too few for a T² limit" in {x.key: x.reason for x in d}["score_stat"]
    given, _ = choose_settings(wide(500), TrainConfig(window_len=24))  # a window given explicitly stays
    assert given.window_len == 24


def plant(seed: int, rows: int, channels: int = 52, factors: int = 8) -> np.ndarray:
    """``(rows, channels)`` of a process plant: slow AR(1) factors mixed into many channels, plus noise."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(channels, factors)) * (rng.random((channels, factors)) < 0.4)
    phi = rng.uniform(0.9, 0.99, size=factors)  # serially correlated: far fewer independent windows than windows
    f = np.zeros((rows, factors))
    state = rng.normal(size=factors)
    for t in range(rows):
        state = phi * state + np.sqrt(1 - phi ** 2) * rng.normal(size=factors)
        f[t] = state
    z = f @ mix.T + rng.uniform(0.2, 0.6, size=channels) * rng.normal(size=(rows, channels))
    level = rng.uniform(10, 3000, size=channels)
    return level + level * rng.uniform(0.002, 0.02, size=channels) * z


def test_a_short_wide_plant_raises_few_false_alarms_and_catches_a_step():
    # 52 channels, 500 training rows: the case where the plain defaults flagged 4-20 % of normal
    # windows against a 0.1 % target (an empirical tail of a few hundred correlated windows)
    x = plant(1, 3500)
    names = [f"x{i:02d}" for i in range(x.shape[1])]

    def series(values: np.ndarray, start: float) -> SensorData:
        return assemble_series("plant.csv", names, start + np.arange(float(len(values))), values, None)

    det = AAEDetector(TrainConfig()).fit(series(x[:500], 0.0))
    assert (det.config_.score_stat, det.config_.threshold) == ("shift", "t2")
    normal = det.score(series(x[500:], 500.0))  # the same run continued: 3,000 normal rows
    assert np.mean(normal.is_anomaly == 1) <= 0.01
    faulty = x[500:].copy()
    faulty[1000:, 3] += 3 * x[:500, 3].std()  # one channel steps by three of its training spreads
    step = det.score(series(faulty, 500.0))
    assert np.mean(step.is_anomaly[step.ends >= 1000 + det.config_.window_len] == 1) >= 0.9


def test_explicit_settings_and_preset_none_are_left_alone():
    data = pump(400, warm_channel=True)
    cfg, _ = choose_settings(data, TrainConfig(relative_channels="flow_m3h", score_stat="shift"))
    assert cfg.relative_channels == "flow_m3h"
    assert cfg.threshold == "pot"
    none, decisions = choose_settings(data, TrainConfig(preset="none"))
    assert none == TrainConfig(preset="none")
    assert decisions == []


def test_stationary_noise_is_neither_drifting_nor_slow():
    drift, slow = drift_and_slowness(np.random.default_rng(1).normal(size=(4000, 3)))
    assert (drift < 1).all()
    assert (slow > 0.8).all()


def test_the_preset_never_reads_labels_and_is_recorded(tmp_path):
    labels = np.zeros(3000, np.int8)
    labels[1000:1200] = 1
    a = AAEDetector(TrainConfig(**FAST)).fit(pump(3000, True, labels=labels))
    shuffled = np.random.default_rng(0).permutation(labels)
    b = AAEDetector(TrainConfig(**FAST)).fit(pump(3000, True, labels=shuffled))
    assert a.config == b.config
    assert a.threshold_ == b.threshold_
    a.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["preset"]["name"] == "auto"
    assert {d["key"] for d in meta["preset"]["decisions"]} >= {"relative_channels", "score_stat", "latent_dim"}
    assert "bearing_temp_c" in meta["config"]["relative_channels"].split(",")
