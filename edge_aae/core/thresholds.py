"""Label-free thresholds from scores of normal data (numpy only).

``pot`` and ``quantile`` take scores where higher is more anomalous and a target
false alarm rate (the fraction of normal windows allowed over the threshold).
``t2_limit`` is the parametric limit of Hotelling's T² for the ``shift`` score,
for when there are too few normal windows to trust an empirical tail.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MIN_EXCESSES = 10


def quantile_threshold(scores: np.ndarray, target_far: float) -> float:
    """The ``1 - target_far`` empirical quantile of normal scores."""
    x = _finite(scores)
    if not 0 < target_far < 1:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    return float(np.quantile(x, 1.0 - target_far))


def t2_limit(n_channels: int, n_effective: float, target_far: float) -> float:
    """Hotelling's T² limit for a new observation (SPC "phase II"), in T² units.

    ``p (n + 1) (n - 1) / (n (n - p)) · F(1 - target_far; p, n - p)`` for mean and
    covariance estimated from ``n`` independent normal observations of ``p``
    channels. It is wider than the χ² limit by as much as a small ``n`` leaves the
    covariance uncertain, which is what a short training set needs.

    Args:
        n_channels: ``p``, the dimension of the statistic.
        n_effective: ``n``, the number of independent observations the mean and
            covariance came from (overlapping windows count as fewer); raised to
            ``p + 2`` if smaller.
        target_far: the false alarm rate the limit is for, in (0, 1).

    """
    if not 0 < target_far < 1:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    p = int(n_channels)
    n = max(float(n_effective), p + 2.0)
    factor = p * (n + 1) * (n - 1) / (n * (n - p))
    return factor * f_quantile(1.0 - target_far, p, n - p)


def f_quantile(q: float, d1: float, d2: float) -> float:
    """Quantile ``q`` of the F distribution with ``(d1, d2)`` degrees of freedom."""
    if not 0 < q < 1 or d1 <= 0 or d2 <= 0:
        raise ValueError(f"f_quantile needs 0 < q < 1 and positive degrees of freedom, got {q}, {d1}, {d2}")

    def cdf(f: float) -> float:
        return _betainc(d1 / 2, d2 / 2, d1 * f / (d1 * f + d2))

    lo, hi = 0.0, 1.0
    while cdf(hi) < q:
        lo, hi = hi, hi * 2
        if hi > 1e12:
            return hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * hi:
            break
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` (continued fraction, Lentz's method)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    frac = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            frac *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return math.exp(log_front) * frac / a


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


def t_quantile(q: float, df: float) -> float:
    """One-sided quantile ``q`` (> 0.5) of Student's t with ``df`` degrees of freedom (via F(1, df))."""
    return math.sqrt(f_quantile(2 * q - 1, 1.0, df))


def prediction_limit(scores: np.ndarray, target_far: float, n_effective: float, floor: float = 0.0) -> float:
    """Upper prediction limit of a new normal score, for few independent normal scores.

    ``floor``: the lowest value the score can take (0 for errors and T²; a centred score, such
    as the ``error`` score's robust z, has a negative floor). The distance to it is what is taken
    as log-normal: the log of a score centred on zero would send half of them to the clamp and
    the limit to absurd heights.

    Log scores (over the floor) are taken as normal, with centre and spread (median and MAD, robust to the
    few high scores a normal stretch holds) estimated from ``n_effective`` independent
    observations (overlapping windows count as fewer): ``exp(m + t(1 - far; n - 1) * s *
    sqrt(1 + 1/n))``. With many observations this is the log-normal quantile;
    with few it widens as far as the estimate is uncertain. The empirical quantile of a few
    hundred strongly correlated window scores is about their maximum, which new normal data
    exceeds often; this does not.
    """
    x = _finite(scores) - floor
    x = np.log(np.maximum(x, max(float(np.median(np.abs(x))) * 1e-6, 1e-12)))
    n = max(float(n_effective), 3.0)
    center = float(np.median(x))
    sd = 1.4826 * float(np.median(np.abs(x - center)))  # robust: a few high scores must not widen it
    return floor + float(np.exp(center + t_quantile(1.0 - target_far, n - 1.0) * sd * math.sqrt(1.0 + 1.0 / n)))


def pot_threshold(scores: np.ndarray, target_far: float, init_quantile: float = 0.98, warn: bool = True,
                  span: float = 1.0, floor: float = 0.0) -> float:
    """Peaks-over-threshold threshold (Siffer et al. 2017) for a target risk.

    Fits a generalized Pareto distribution to the excesses over the
    ``init_quantile`` of the scores and solves for the level exceeded with
    probability ``target_far``. When the tail has fewer than 10 points or the
    target is not in the tail, falls back to :func:`prediction_limit` with the
    scores counted as ``len(scores) / span`` independent observations (``span``:
    how many consecutive windows one window's score is correlated with).
    """
    x = _finite(scores)
    if not 0 < target_far < 1:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    t = float(np.quantile(x, init_quantile))
    excess = x[x > t] - t
    n, n_t = x.size, excess.size
    ratio = target_far * n / max(n_t, 1)
    if n_t < MIN_EXCESSES or ratio >= 1:
        limit = max(prediction_limit(x, target_far, n / span, floor), quantile_threshold(x, target_far))
        (log.warning if warn else log.debug)(
            "POT: %d excesses over the %.3f quantile of %d scores (about %.0f independent): too few for a tail "
            "fit; using the small-sample prediction limit %.4g", n_t, init_quantile, n, n / span, limit)
        return limit
    xi, sigma = fit_gpd(excess)
    if abs(xi) < 1e-9:
        return t - sigma * math.log(ratio)
    return float(t + sigma / xi * (ratio ** (-xi) - 1))


def compute_threshold(scores: np.ndarray, method: str, target_far: float,
                      init_quantile: float = 0.98, warn: bool = True, span: float = 1.0, floor: float = 0.0) -> float:
    """Dispatch to ``pot`` or ``quantile``; ``t2`` is 1.0. ``warn``: log a POT fallback as a warning.

    ``span``: consecutive windows one score is correlated with; ``floor``: the lowest value the
    score can take (both for POT's small-sample fallback).

    ``t2`` needs no scores: the ``shift`` score is T² divided by its limit
    (:func:`t2_limit`, fitted with the model), so that limit is 1.0 in score units.
    """
    if method == "t2":
        return 1.0
    if method == "pot":
        return pot_threshold(scores, target_far, init_quantile, warn, span, floor)
    if method == "quantile":
        return quantile_threshold(scores, target_far)
    raise ValueError(f"unknown threshold method {method!r} (pot, quantile, t2)")


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


@dataclass(frozen=True)
class ThresholdFit:
    """A label-free threshold: the rule that set it, its value (score units), and every rule's value.

    ``rule`` may differ from the rule asked for: ``t2`` falls back to ``pot`` when there are too
    few independent windows for its limit to mean anything.
    """

    rule: str
    value: float
    by_rule: dict[str, float]


def fit_threshold(val_scores: np.ndarray, train_scores: np.ndarray | Callable[[], np.ndarray], rule: str,
                  target_far: float, *, init_quantile: float = 0.98, span: float = 1.0,
                  rules: tuple[str, ...] = (), t2_n_effective: float | None = None,
                  n_channels: int = 0, floor: float = 0.0) -> ThresholdFit:
    """The one threshold rule, used by training, by export (per model file) and by the benchmarks.

    Args:
        val_scores: ``(n,)`` scores of held-out normal windows.
        train_scores: training windows' scores (or a function computing them), added when the
            validation windows are too few for a tail fit (:func:`normal_reference`).
        rule: ``pot``, ``quantile`` or ``t2``.
        target_far: false-alarm rate per window the threshold is set for.
        init_quantile: POT's initial quantile.
        span: windows one score is correlated with (the small-sample fallback's effective count).
        rules: other rules to compute as well, for the record (``by_rule``).
        t2_n_effective: independent windows behind the T² limit; with fewer than twice
            ``n_channels`` the ``t2`` rule cannot fire and ``pot`` is used instead.
        n_channels: channels of the model (for that check).
        floor: the lowest value the score can take (the small-sample fallback works above it).

    """
    reference = normal_reference(val_scores, train_scores, init_quantile)
    chosen = rule
    if rule == "t2" and t2_n_effective is not None and t2_n_effective < 2 * n_channels:
        # too few independent windows for the covariance of this many channels: the T² limit
        # comes out wide enough never to fire; the tail of the same scores is used
        chosen = "pot"
        log.warning("threshold t2: about %.0f independent reference windows for %d channels (needs %d); "
                    "using the POT threshold of the same scores instead", t2_n_effective, n_channels,
                    2 * n_channels)
    by_rule = {m: compute_threshold(reference, m, target_far, init_quantile, warn=m == chosen, span=span, floor=floor)
               for m in dict.fromkeys((*rules, rule, chosen))}
    return ThresholdFit(chosen, by_rule[chosen], by_rule)
