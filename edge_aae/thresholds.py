"""Label-free thresholds from scores of normal data (numpy only).

Both methods take scores where higher is more anomalous and a target false
alarm rate (the fraction of normal windows allowed over the threshold).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

MIN_EXCESSES = 10


def quantile_threshold(scores: np.ndarray, target_far: float) -> float:
    """The ``1 - target_far`` empirical quantile of normal scores."""
    x = _finite(scores)
    if not 0 < target_far < 1:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    return float(np.quantile(x, 1.0 - target_far))


def fit_gpd(excesses: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood generalized Pareto fit to positive excesses.

    Uses Grimshaw's reduction to a one-dimensional search over ``theta = xi/sigma``.

    Returns:
        ``(xi, sigma)``: shape and scale; ``xi == 0`` is the exponential tail.

    """
    y = np.asarray(excesses, dtype=np.float64)
    if y.size < 2 or not np.all(y > 0):
        raise ValueError("need at least two positive excesses")
    n = y.size
    ymax = float(y.max())

    def profile(theta: float) -> float:
        if abs(theta) < 1e-12:
            return -n * math.log(float(y.mean())) - n
        xi = float(np.mean(np.log1p(theta * y)))
        if xi / theta <= 0:
            return -math.inf
        return -n * math.log(xi / theta) - n * (xi + 1)

    lo = -1.0 / ymax * (1 - 1e-6)
    hi = 1e3 / float(y.mean())
    grid = np.concatenate([-np.geomspace(-lo, -lo * 1e-6, 200), [0.0], np.geomspace(hi * 1e-9, hi, 300)])
    values = np.array([profile(t) for t in grid])
    best = int(np.argmax(values))
    a = grid[max(best - 1, 0)]
    b = grid[min(best + 1, grid.size - 1)]
    golden = (math.sqrt(5) - 1) / 2
    c, d = b - golden * (b - a), a + golden * (b - a)
    for _ in range(80):
        if profile(c) > profile(d):
            b = d
        else:
            a = c
        c, d = b - golden * (b - a), a + golden * (b - a)
    theta = (a + b) / 2
    if profile(theta) < values[best]:
        theta = float(grid[best])
    if abs(theta) < 1e-12:
        return 0.0, float(y.mean())
    xi = float(np.mean(np.log1p(theta * y)))
    return xi, xi / theta


def pot_threshold(scores: np.ndarray, target_far: float, init_quantile: float = 0.98) -> float:
    """Peaks-over-threshold threshold (Siffer et al. 2017) for a target risk.

    Fits a generalized Pareto distribution to the excesses over the
    ``init_quantile`` of the scores and solves for the level exceeded with
    probability ``target_far``. Falls back to the empirical quantile when the
    tail has fewer than 10 points or the target is not in the tail.
    """
    x = _finite(scores)
    if not 0 < target_far < 1:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    t = float(np.quantile(x, init_quantile))
    excess = x[x > t] - t
    n, n_t = x.size, excess.size
    ratio = target_far * n / max(n_t, 1)
    if n_t < MIN_EXCESSES or ratio >= 1:
        log.warning("POT: %d excesses over the %.3f quantile of %d scores; using the empirical quantile",
                    n_t, init_quantile, n)
        return quantile_threshold(x, target_far)
    xi, sigma = fit_gpd(excess)
    if abs(xi) < 1e-9:
        return t - sigma * math.log(ratio)
    return t + sigma / xi * (ratio ** (-xi) - 1)


def compute_threshold(scores: np.ndarray, method: str, target_far: float,
                      init_quantile: float = 0.98) -> float:
    """Dispatch to ``pot`` or ``quantile``."""
    if method == "pot":
        return pot_threshold(scores, target_far, init_quantile)
    if method == "quantile":
        return quantile_threshold(scores, target_far)
    raise ValueError(f"unknown threshold method {method!r} (pot, quantile)")


def pot_min_scores(init_quantile: float = 0.98) -> int:
    """Fewest scores for which POT has ``MIN_EXCESSES`` points over its initial quantile."""
    return math.ceil(MIN_EXCESSES / (1.0 - init_quantile))


def normal_reference(val_scores: np.ndarray, train_scores: np.ndarray | Callable[[], np.ndarray],
                     init_quantile: float = 0.98) -> np.ndarray:
    """The normal scores a threshold is fitted on.

    The validation windows alone when there are enough of them for POT's tail fit
    (``pot_min_scores``); otherwise the training windows' scores as well. A small
    validation split is one short stretch at the end of the training data (80 s of
    a 400-row SKAB file) and misses the normal variation seen earlier. Training
    scores are in-sample, so they are lower on average; what they add is the high
    tail of the earlier stretches.

    Args:
        val_scores: ``(n_val,)`` scores of the held-out validation windows.
        train_scores: ``(n_train,)`` scores of training windows, or a function that
            computes them (called only when they are needed).
        init_quantile: POT's initial quantile.

    """
    val = np.asarray(val_scores, dtype=np.float64).ravel()
    if val.size >= pot_min_scores(init_quantile):
        return val
    extra = train_scores() if callable(train_scores) else train_scores
    log.info("%d validation windows are too few for a tail fit; the threshold also uses %d training "
             "windows' scores", val.size, np.size(extra))
    return np.concatenate([val, np.asarray(extra, dtype=np.float64).ravel()])


def _finite(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no finite scores to set a threshold from")
    return x
