"""Fit-time checks that keep a bad training set from producing a meaningless model or threshold."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_aae.core.data import assemble_series
from edge_aae.core.errors import DataError
from edge_aae.core.thresholds import compute_threshold
from edge_aae.core.windows import RobustScaler, resolution
from edge_aae.train.config import TrainConfig
from edge_aae.train.detector import AAEDetector

FAST = {"epochs": 4, "patience": 2, "windows_per_epoch": 1500}


def series(values: np.ndarray, name: str = "t.csv"):
    ts = np.arange(values.shape[0], dtype=np.float64)
    return assemble_series(name, [f"c{i}" for i in range(values.shape[1])], ts, values.astype(np.float64), None)


def test_scaler_never_scales_a_quantized_channel_finer_than_half_its_step():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 1, 5000), np.round(rng.normal(32, 0.2, 5000)), np.full(5000, 7.0)]
    s = RobustScaler().fit(x)
    assert resolution(x)[1] == pytest.approx(1.0)
    assert s.scale_[1] >= 0.5
    assert s.scale_[0] == pytest.approx(1.0, rel=0.1)
    assert list(s.constant_) == [False, False, True]
    assert RobustScaler.from_dict(s.to_dict()).constant_.tolist() == [False, False, True]


def test_a_constant_channel_is_named_once(caplog):
    rng = np.random.default_rng(1)
    x = np.c_[np.sin(np.arange(3000) / 20) + rng.normal(0, 0.1, 3000), rng.normal(0, 1, 3000), np.zeros(3000)]
    with caplog.at_level(logging.WARNING):
        det = AAEDetector(TrainConfig(**FAST)).fit(series(x))
    lines = [r.getMessage() for r in caplog.records if "constant in the training data" in r.getMessage()]
    assert len(lines) == 1
    assert "c2" in lines[0]
    assert det.report_["constant_channels"] == ["c2"]


def test_validation_unlike_training_is_an_error_naming_the_channel():
    rng = np.random.default_rng(2)
    x = np.c_[rng.normal(0, 1, 3000), rng.normal(0, 1, 3000), rng.normal(0, 1e-5, 3000)]
    x[2600:, 2] += 0.5  # a near-constant channel moves in the last stretch (the validation split)
    with pytest.raises(DataError, match=r"validation loss .* the training loss.*c2"):
        AAEDetector(TrainConfig(**FAST)).fit(series(x))


def test_t2_with_too_few_independent_windows_falls_back_to_a_threshold_that_can_fire(caplog):
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, (500, 1))
    x = base + rng.normal(0, 0.5, (500, 24))  # 24 channels, 500 rows: far fewer independent windows than 2 x 24
    cfg = TrainConfig(score_stat="shift", threshold="t2", **FAST)
    with caplog.at_level(logging.WARNING):
        det = AAEDetector(cfg).fit(series(x))
    assert det.threshold_rule_ == "pot"
    assert det.threshold_ == det.thresholds_["pot"] != 1.0
    assert any("using the POT threshold" in r.getMessage() for r in caplog.records)
    assert not any("POT:" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records
                   if "quantile" in r.getMessage() and det.threshold_rule_ != "pot")
    normal = det.score(series(base[:400] + rng.normal(0, 0.5, (400, 24))))
    assert normal.is_anomaly.mean() < 0.2


def test_pot_fallback_is_quiet_when_pot_is_not_the_rule(caplog):
    with caplog.at_level(logging.DEBUG):
        compute_threshold(np.arange(100.0), "pot", 1e-3, warn=False)
    assert all(r.levelno < logging.WARNING for r in caplog.records)
