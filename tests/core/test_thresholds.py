import numpy as np
import pytest

from edge_aae.core.thresholds import compute_threshold, f_quantile, fit_gpd, pot_threshold, quantile_threshold, t2_limit


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
    from edge_aae.core.thresholds import normal_reference, pot_min_scores

    assert pot_min_scores(0.98) == 500
    train = np.arange(1000.0)
    small, large = np.ones(74), np.ones(600)
    assert normal_reference(small, train).size == 1074
    np.testing.assert_array_equal(normal_reference(large, train), large)


def test_small_training_set_fits_its_threshold_on_training_and_validation_scores(synth_dir):
    from edge_aae.core.data import load_series
    from edge_aae.train.config import TrainConfig
    from edge_aae.train.detector import AAEDetector

    cfg = TrainConfig(epochs=2, preset="none")  # the error score and POT rule, not the preset's shift score
    det = AAEDetector(cfg).fit(load_series(synth_dir / "train.csv").slice_rows(0, 400))
    assert det.val_scores_.size < 500
    train_scores = det.score_windows(det.load_calibration()["train"])[0]
    assert 5 < det.threshold_span_ < 32  # overlapping windows: one score per ~1/sum(w^2) windows is independent
    expected = compute_threshold(np.r_[det.val_scores_, train_scores], "pot", cfg.target_far, span=det.threshold_span_,
                                 floor=det.score_floor())
    assert det.threshold_ == pytest.approx(expected)
    assert det.score_floor() < 0  # the error score is a robust z: centred on the typical window
    assert np.quantile(train_scores, 0.99) <= det.threshold_ < 100 * max(np.quantile(train_scores, 0.99), 1.0)


@pytest.mark.parametrize(("q", "d1", "d2", "expected"), [
    (0.95, 5, 10, 3.3258),  # printed F tables
    (0.99, 1, 1, 4052.18),
    (0.999, 8, 12, 7.7104),
    (0.5, 4, 4, 1.0),  # F(d, d) has median 1
])
def test_f_quantile_matches_tables(q, d1, d2, expected):
    assert f_quantile(q, d1, d2) == pytest.approx(expected, rel=1e-3)


def test_f_quantile_agrees_with_simulation():
    rng = np.random.default_rng(0)
    f = (rng.chisquare(3, 400_000) / 3) / (rng.chisquare(7, 400_000) / 7)
    assert f_quantile(0.9, 3, 7) == pytest.approx(np.quantile(f, 0.9), rel=0.01)


def test_t2_limit_tends_to_chi_square_and_widens_for_few_observations():
    chi2_8_999 = 26.1245  # chi-square table, 8 degrees of freedom, 0.999
    assert t2_limit(8, 1e7, 1e-3) == pytest.approx(chi2_8_999, rel=1e-3)
    assert t2_limit(8, 30, 1e-3) > 1.8 * t2_limit(8, 1e7, 1e-3)
    assert t2_limit(8, 3, 1e-3) == t2_limit(8, 10, 1e-3)  # n raised to p + 2


def test_t2_limit_holds_its_false_alarm_rate_with_an_estimated_covariance():
    # Gaussian channels with correlation: mean and covariance from n points, then new points
    rng = np.random.default_rng(1)
    p, n, far = 4, 25, 0.05
    mix = rng.normal(size=(p, p))
    exceed = []
    for _ in range(400):
        ref = rng.normal(size=(n, p)) @ mix
        new = rng.normal(size=(200, p)) @ mix
        d = new - ref.mean(0)
        t2 = np.einsum("nc,cd,nd->n", d, np.linalg.inv(np.cov(ref, rowvar=False)), d)
        exceed.append((t2 > t2_limit(p, n, far)).mean())
    assert np.mean(exceed) == pytest.approx(far, abs=0.01)


def test_t2_threshold_is_one_in_shift_score_units():
    assert compute_threshold(np.arange(10.0), "t2", 1e-3) == 1.0


def test_small_sample_limit_widens_for_few_independent_scores_and_holds_its_rate():
    from edge_aae.core.thresholds import prediction_limit, t_quantile

    assert t_quantile(0.975, 10) == pytest.approx(2.228, abs=2e-3)
    rng = np.random.default_rng(0)
    few = prediction_limit(rng.lognormal(0, 1, 300), 1e-3, 20)
    many = prediction_limit(rng.lognormal(0, 1, 300), 1e-3, 300)
    assert few > many > np.exp(3.0)
    exceed = []
    for _ in range(300):  # 20 independent normal scores each time; new scores over the limit: about the target
        ref = rng.lognormal(0, 1, 20)
        exceed.append((rng.lognormal(0, 1, 2000) > prediction_limit(ref, 0.01, 20)).mean())
    assert 0.003 < np.mean(exceed) < 0.03  # within 3x the target (robust spread from 20 points is noisy)


def test_small_sample_limit_of_a_centred_score_works_above_its_floor():
    from edge_aae.core.thresholds import prediction_limit

    rng = np.random.default_rng(3)
    positive = rng.lognormal(0, 0.5, 400)  # e.g. an RMS error
    centred = (positive - np.median(positive)) / 0.3  # the same scores as a robust z: about half negative
    floor = -np.median(positive) / 0.3
    limit = prediction_limit(centred, 1e-3, 30, floor=floor)
    assert limit == pytest.approx((prediction_limit(positive, 1e-3, 30) - np.median(positive)) / 0.3)
    assert centred.max() < limit < 10 * centred.max()
    # without the floor the log of the negative half is clamped and the limit runs away
    assert prediction_limit(centred, 1e-3, 30) > 100 * limit
