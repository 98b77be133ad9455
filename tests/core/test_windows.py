import numpy as np
import pytest

from edge_aae.core.windows import RobustScaler, gather_windows, window_ends


def test_window_ends_stay_inside_segments():
    ends = window_ends([(0, 10), (12, 15), (20, 26)], window_len=4, stride=1)
    assert ends.tolist() == [3, 4, 5, 6, 7, 8, 9, 23, 24, 25]  # segment (12, 15) is too short


def test_window_ends_stride():
    assert window_ends([(0, 10)], window_len=4, stride=3).tolist() == [3, 6, 9]


def test_window_ends_rejects_bad_args():
    with pytest.raises(ValueError, match="window_len"):
        window_ends([(0, 10)], window_len=0)


def test_gather_windows_content_and_shape():
    values = np.arange(20, dtype=np.float64).reshape(10, 2)  # row i = (2i, 2i+1)
    w = gather_windows(values, np.array([3, 9]), window_len=4)
    assert w.shape == (2, 4, 2)
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w[0], values[0:4])
    np.testing.assert_array_equal(w[1], values[6:10])


def test_robust_scaler_median_iqr():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(5.0, 2.0, 20000), rng.normal(-1.0, 0.5, 20000)]
    x[:100, 0] = 1e6  # outliers barely move a robust scaler
    s = RobustScaler().fit(x)
    np.testing.assert_allclose(s.center_, [5.0, -1.0], atol=0.05)
    np.testing.assert_allclose(s.scale_, [2.0, 0.5], rtol=0.05)
    z = s.transform(x[100:])
    assert abs(float(np.median(z[:, 1]))) < 0.05


def test_robust_scaler_constant_channel_does_not_divide_by_zero():
    x = np.c_[np.ones(100), np.arange(100.0)]
    s = RobustScaler().fit(x)
    assert np.all(s.scale_ > 0)
    assert np.isfinite(s.transform(x)).all()


def test_robust_scaler_round_trip():
    s = RobustScaler().fit(np.random.default_rng(1).normal(size=(50, 3)))
    t = RobustScaler.from_dict(s.to_dict())
    np.testing.assert_array_equal(s.center_, t.center_)
    np.testing.assert_array_equal(s.scale_, t.scale_)
