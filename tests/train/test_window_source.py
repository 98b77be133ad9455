"""Training windows cut per batch from the series match the stacked windows they replace."""

import numpy as np
import pytest
import torch

from edge_aae.core.windows import gather_windows, remove_level
from edge_aae.train.config import TrainConfig, load_train_config
from edge_aae.train.window_source import WindowSource


def test_batches_equal_the_stacked_windows_with_level_removed():
    rng = np.random.default_rng(0)
    series = rng.normal(size=(500, 3)).astype(np.float32) + np.array([0, 5, -3], np.float32)
    ends = np.arange(15, 500, 2)
    mask = np.array([0, 1, 0], np.float32)
    src = WindowSource(series, ends, 16, mask)
    assert src.shape == (ends.size, 16, 3)
    idx = torch.tensor([0, 7, 100, ends.size - 1])
    expected = remove_level(gather_windows(series, ends[idx.numpy()], 16), mask)
    np.testing.assert_allclose(src.batch(idx).numpy(), expected, rtol=1e-6, atol=1e-6)
    stacked = WindowSource.from_windows(expected)
    assert stacked.shape == expected.shape
    np.testing.assert_array_equal(stacked.batch(torch.tensor([2, 1])).numpy(), expected[[2, 1]])


def test_window_ends_outside_the_series_are_refused():
    with pytest.raises(ValueError, match="outside"):
        WindowSource(np.zeros((50, 2), np.float32), np.array([10, 50]), 8)
    with pytest.raises(ValueError, match="outside"):
        WindowSource(np.zeros((50, 2), np.float32), np.array([3]), 8)


def test_the_old_key_max_train_windows_still_reads_as_the_per_epoch_budget(tmp_path, caplog):
    f = tmp_path / "train.toml"
    f.write_text("[train]\nmax_train_windows = 3000\n")
    cfg = load_train_config(f)
    assert cfg.windows_per_epoch == 3000
    assert "max_train_windows is now windows_per_epoch" in caplog.text
    assert TrainConfig().windows_per_epoch == 12000
