import numpy as np
import pytest

from edge_aae.thresholds import compute_threshold, fit_gpd, pot_threshold, quantile_threshold


@pytest.mark.parametrize("risk", [1e-3, 1e-4])
def test_pot_on_exponential_data_within_10_percent_of_analytic_quantile(risk):
    rng = np.random.default_rng(42)
    rate = 0.5
    x = rng.exponential(1 / rate, 50_000)
    analytic = -np.log(risk) / rate
    assert pot_threshold(x, risk) == pytest.approx(analytic, rel=0.10)


def test_pot_extrapolates_beyond_the_sample_where_a_quantile_cannot():
    x = np.random.default_rng(0).exponential(1.0, 2_000)
    # 1e-5 of 2,000 points is beyond the largest sample
    assert pot_threshold(x, 1e-5) > x.max()


def test_gpd_fit_recovers_heavy_tail():
    y = np.random.default_rng(3).pareto(3.0, 20_000)  # Lomax: GPD with xi = 1/3, sigma = 1/3
    xi, sigma = fit_gpd(y)
    assert xi == pytest.approx(1 / 3, abs=0.05)
    assert sigma == pytest.approx(1 / 3, rel=0.1)


def test_quantile_threshold():
    x = np.arange(1000.0)
    assert quantile_threshold(x, 0.01) == pytest.approx(np.quantile(x, 0.99))


def test_compute_threshold_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown threshold method"):
        compute_threshold(np.arange(10.0), "magic", 0.01)


def test_threshold_needs_finite_scores():
    with pytest.raises(ValueError, match="no finite scores"):
        quantile_threshold(np.array([np.nan, np.inf]), 0.01)


def test_normal_reference_adds_training_scores_only_when_validation_is_too_small_for_pot():
    from edge_aae.thresholds import normal_reference, pot_min_scores

    assert pot_min_scores(0.98) == 500
    train = np.arange(1000.0)
    small, large = np.ones(74), np.ones(600)
    assert normal_reference(small, train).size == 1074
    np.testing.assert_array_equal(normal_reference(large, train), large)


def test_small_training_set_fits_its_threshold_on_training_and_validation_scores(synth_dir):
    from edge_aae.config import TrainConfig
    from edge_aae.data import load_series
    from edge_aae.detector import AAEDetector

    cfg = TrainConfig(epochs=2)
    det = AAEDetector(cfg).fit(load_series(synth_dir / "train.csv").slice_rows(0, 400))
    assert det.val_scores_.size < 500
    train_scores = det.score_windows(det.load_calibration()["train"])[0]
    expected = compute_threshold(np.r_[det.val_scores_, train_scores], "pot", cfg.target_far)
    assert det.threshold_ == pytest.approx(expected)
    assert det.threshold_ >= np.quantile(train_scores, 0.99)
