"""The latent score's distance to the code bank: the nearest code, exactly, for any bank size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_aae.train.model import BANK_NEIGHBOURS, LatentPrior, ScoreGraph


def _graph() -> ScoreGraph:
    return ScoreGraph(torch.nn.Identity(), torch.nn.Identity(), LatentPrior("gaussian", 4), 32, 8, 0.5, 0.5)


def _brute(z: np.ndarray, bank: np.ndarray) -> np.ndarray:
    return np.sqrt(((z[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1)).min(1)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 1000])
def test_distance_is_the_nearest_codes_for_any_bank_size(k):
    rng = np.random.default_rng(k)
    bank = rng.standard_normal((k, 4)).astype(np.float32)
    g = _graph()
    g.set_code_bank(bank)
    assert tuple(g.bank_neighbours.shape) == (k, min(k, BANK_NEIGHBOURS))
    assert (g.bank_neighbours[:, 0] == torch.arange(k)).all()  # each code itself first
    z = rng.standard_normal((300, 4)).astype(np.float32)
    np.testing.assert_allclose(g.latent_distance(torch.from_numpy(z)).numpy(), _brute(z, bank), atol=1e-6)


@pytest.mark.parametrize("spread", [1e-3, 1e-2, 3e-2])
def test_crowded_codes_are_measured_within_the_rankings_rounding(spread):
    """Codes of neighbouring windows crowd together, and the float32 ranking cannot order codes
    whose squared distances differ by less than its rounding: the code measured is then one of
    those, never farther (in squared distance) than the rounding of the ranking's terms."""
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((50, 4)) * 2
    bank = (centres[:, None, :] + rng.standard_normal((50, 20, 4)) * spread).reshape(-1, 4).astype(np.float32)
    g = _graph()
    g.set_code_bank(bank)
    z = (bank[rng.integers(0, len(bank), 2000)] + rng.standard_normal((2000, 4)) * spread / 2).astype(np.float32)
    got = g.latent_distance(torch.from_numpy(z)).numpy().astype(np.float64)
    want = _brute(z, bank)
    assert (got >= want - 1e-6).all()
    # |b|² - 2 z·b in float32: its terms are at most this large, its rounding a few eps of that
    terms = (np.linalg.norm(bank, axis=1) ** 2).max() + 2 * np.linalg.norm(z, axis=1).max() * np.linalg.norm(
        bank, axis=1).max()
    assert (got**2 - want**2 <= 8 * np.finfo(np.float32).eps * terms).all()
    if spread >= 3e-2:  # codes apart by more than the rounding: the nearest, exactly
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_identical_codes_keep_each_code_first():
    bank = np.repeat(np.random.default_rng(2).standard_normal((10, 4)).astype(np.float32), 5, axis=0)
    g = _graph()
    g.set_code_bank(bank)
    assert (g.bank_neighbours[:, 0] == torch.arange(50)).all()
    assert g.latent_distance(torch.from_numpy(bank[:7])).abs().max().item() == 0.0
