import numpy as np
import pytest

from edge_aae.core.metrics import auroc, precision_recall_f1


def test_auroc_hand_computed():
    # positives 0.8, 0.4; negatives 0.5, 0.1: 3 of 4 pairs ordered
    assert auroc(np.array([1, 0, 1, 0]), np.array([0.8, 0.5, 0.4, 0.1])) == pytest.approx(0.75)


def test_auroc_ties_count_half():
    assert auroc(np.array([1, 0]), np.array([1.0, 1.0])) == pytest.approx(0.5)


def test_auroc_one_class_is_nan():
    assert np.isnan(auroc(np.zeros(3), np.arange(3.0)))


def test_precision_recall_f1():
    p, r, f = precision_recall_f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert (p, r, f) == (0.5, 0.5, 0.5)


from edge_aae.core.metrics import (  # noqa: E402
    auprc,
    best_f1,
    event_metrics,
    far_mar,
    localization,
    nab_score,
    pa_k_curve,
    point_adjust,
    segments,
)


def test_auprc_hand_computed():
    # ranked: 1 (P), 0.8 (N), 0.6 (P): AP = 1/2 * 1 + 1/2 * 2/3
    assert auprc(np.array([1, 0, 1]), np.array([1.0, 0.8, 0.6])) == pytest.approx(0.5 + 1 / 3)
    assert auprc(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.8, 0.2])) == pytest.approx(1.0)


def test_best_f1_is_the_oracle():
    f1, thr = best_f1(np.array([0, 1, 1, 0, 0]), np.array([0.1, 0.9, 0.7, 0.8, 0.0]))
    # top 2: {0.9 P, 0.8 N} -> 0.5; top 3: 2 TP of 3 flagged, 2 positives -> F1 = 0.8
    assert f1 == pytest.approx(0.8)
    assert thr == pytest.approx(0.7)


def test_point_adjust_segment_starting_at_index_0():
    y = np.array([1, 1, 1, 0, 0, 1, 1])
    p = np.array([0, 0, 1, 0, 1, 0, 0])
    assert segments(y) == [(0, 3), (5, 7)]
    assert point_adjust(y, p).tolist() == [1, 1, 1, 0, 1, 0, 0]


def test_pa_k_at_0_equals_point_adjustment_and_100_equals_raw():
    y = np.array([0, 1, 1, 1, 1, 0, 1, 1, 0])
    p = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0])
    ks, f1s, area = pa_k_curve(y, p)
    assert f1s[0] == pytest.approx(precision_recall_f1(y, point_adjust(y, p))[2])
    assert f1s[-1] == pytest.approx(precision_recall_f1(y, p)[2])
    assert min(f1s) <= area <= max(f1s)
    # K = 30: segment 1 has 1/4 flagged (not > 30 %), segment 2 has 2/2
    assert point_adjust(y, p, 30).tolist() == [0, 0, 1, 0, 0, 1, 1, 1, 0]


def test_event_metrics():
    y = np.array([0, 1, 1, 0, 0, 1, 1, 0, 0, 0])
    p = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 1])
    ts = np.arange(10) * 8640.0  # 10 points over 0.9 day
    m = event_metrics(y, p, ts)
    assert m["events"] == 2
    assert m["events_detected"] == 1
    assert m["time_to_detect_s_mean"] == pytest.approx(8640.0)
    assert m["false_alarms"] == 2
    assert m["false_alarms_per_day"] == pytest.approx(2 / 0.9)


def test_localization_hitrate_and_ndcg():
    contributions = np.array([[0.9, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    truth = [{0, 2}, {1}]
    m = localization(contributions, truth, (100, 150))
    # row 1: k=2 top {0,1} -> 1/2; row 2: k=1 top {3} -> 0
    assert m["hitrate@100"] == pytest.approx(0.25)
    # @150: row 1 k=3 top {0,1,2} -> 1; row 2 k=2 (round(1.5)=2) top {3,2} -> 0
    assert m["hitrate@150"] == pytest.approx(0.5)
    # NDCG@100 row 1: gains [1,0] -> 1 / (1 + 1/log2(3)); row 2: 0
    assert m["ndcg@100"] == pytest.approx((1 / (1 + 1 / np.log2(3))) / 2)


def test_localization_k_larger_than_the_channel_count():
    m = localization(np.array([[0.3, 0.2, 0.1]]), [{0, 1, 2}], (150,))
    assert m["hitrate@150"] == pytest.approx(1.0)
    assert m["ndcg@150"] == pytest.approx(1.0)


def test_far_mar():
    far, mar = far_mar(np.array([0, 0, 0, 0, 1, 1]), np.array([1, 0, 0, 0, 1, 0]))
    assert (far, mar) == (0.25, 0.5)


def test_nab_scores_bounds():
    cps = [100.0, 500.0]
    assert nab_score(cps, [100.0, 500.0])["standard"] == pytest.approx(100.0)
    assert nab_score(cps, [])["standard"] == pytest.approx(0.0)
    late = nab_score(cps, [150.0, 550.0])["standard"]
    assert 0 < late < 100
    noisy = nab_score(cps, [100.0, 500.0, 300.0, 320.0])
    assert noisy["low_fp"] < noisy["standard"] < 100
    # one on-time detection, one false alarm, one miss (standard profile), by hand
    tp = 2 / (1 + np.exp(5 * -1.0)) - 1  # detection at the window start: y = -1
    raw, null, perfect = tp - 0.11 - 1.0, -2.0, 2 * tp
    assert nab_score(cps, [100.0, 300.0])["standard"] == pytest.approx(100 * (raw - null) / (perfect - null))
