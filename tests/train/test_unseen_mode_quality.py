"""The AAE flags an operating state never seen in training; reconstruction alone does not (full-size run)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_aae.core.data import load_series
from edge_aae.train import synth
from edge_aae.train.config import TrainConfig
from edge_aae.train.detector import AAEDetector
from export.bench.quality import normal_windows


@pytest.mark.slow  # two full-size trainings, about 2 minutes: `make bench` runs it
def test_unseen_mode_is_flagged_by_the_unseen_state_rule_at_the_normal_false_alarm_rate(tmp_path):
    # the data as `bench train` writes and reads it (the CSV's rounding changes the trained model)
    r = synth.generate(0, kinds=synth.ALL_FAULT_KINDS)
    synth.write_dataset(tmp_path, r, 0)
    train = load_series(tmp_path / "train.csv")
    test = load_series(tmp_path / "test.csv", label_col="label")
    recall, held_recall = {}, {}
    for name, adv in (("aae", 0.1), ("ae", 0.0)):
        det = AAEDetector(TrainConfig(seed=0, adversarial_weight=adv)).fit(train)
        assert det.unseen_rule_ is not None
        res = det.score(test)
        assert res.unseen_state is not None
        clean = normal_windows(r.labels, det.config_.window_len)[res.ends]
        inside = np.zeros(res.ends.size, dtype=bool)
        for f in r.faults:
            if f.kind == synth.UNSEEN_MODE:
                inside |= (res.ends >= f.start) & (res.ends < f.end)
        recall[name] = float(res.is_anomaly[inside].mean())
        held_recall[name] = float(res.unseen_state[inside].mean())
        over = res.score > res.threshold
        assert over[inside].mean() < 0.05  # the score alone misses it: every channel is in range
        assert res.unseen_state[clean].mean() <= 0.003  # the rule keeps the 0.1 % target within 3x
    # 0.25 against 0.02 in the recorded run; 0.10 for the AAE with the same data read from arrays
    # instead of the CSV (BENCHMARKS.md: 0.00 to 0.25 over seeds): a floor, not the typical figure
    assert recall["aae"] >= 0.05
    assert held_recall["aae"] >= held_recall["ae"]
