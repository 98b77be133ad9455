"""Self-supervised check: synthetic faults injected into held-out normal windows.

No label is read. The held-out *normal* validation windows are copied and one channel of each
copy is given a fault of a known kind (the kinds ``edge-aae synth`` simulates, plus a swap that
keeps every value in range but breaks the combination). A candidate setting is judged by how
many of these it flags at a fixed false-alarm rate on the untouched validation windows: the
preset uses it to weigh the latent score against reconstruction for this data set.

Magnitudes are in units of each channel's robust spread (the scaler's), so the check means the
same on any sensor. Faults go into the most recent part of each window, which the score weighs
most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

INJECTED_KINDS = ("spike", "level_shift", "drift", "stuck", "noise", "swap")
CHECK_FAR = 0.01  # flagged share of untouched validation windows the comparison is made at
MAX_WINDOWS = 400  # validation windows faulted per kind (bounds the cost)


def inject(windows: np.ndarray, spread: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Copies of raw ``windows`` ``(n, L, C)`` with one fault of ``kind`` each, on a random channel.

    Args:
        windows: raw normal windows, sensor units.
        spread: ``(C,)`` each channel's robust spread (sensor units).
        kind: one of :data:`INJECTED_KINDS`.
        rng: random source (which channel, sign, partner window).

    """
    out = np.array(windows, dtype=np.float64, copy=True)
    n, length, n_ch = out.shape
    rows = np.arange(n)
    ch = rng.integers(0, n_ch, n)
    sign = rng.choice([-1.0, 1.0], n)
    s = spread[ch] * sign  # (n,)
    half = length // 2
    if kind == "spike":
        out[rows, -2:, ch] += 6.0 * s[:, None]
    elif kind == "level_shift":
        out[rows, half:, ch] += 3.0 * s[:, None]
    elif kind == "drift":
        out[rows, :, ch] += 4.0 * s[:, None] * np.linspace(0.0, 1.0, length)[None, :]
    elif kind == "stuck":
        out[rows, half:, ch] = out[rows, half - 1, ch][:, None]
    elif kind == "noise":
        out[rows, half:, ch] += 2.0 * spread[ch][:, None] * rng.standard_normal((n, length - half))
    elif kind == "swap":  # in range, out of combination: the channel taken from another moment
        partner = rng.permutation(n)
        out[rows, :, ch] = windows[partner, :, ch]
    else:
        raise ValueError(f"unknown injected fault kind {kind!r} ({', '.join(INJECTED_KINDS)})")
    return out


@dataclass(frozen=True)
class WeightCheck:
    """Detection of injected faults per candidate latent weight, at :data:`CHECK_FAR`."""

    weights: tuple[float, ...]
    detection: dict[float, dict[str, float]]  # weight -> kind -> share flagged

    def mean(self, weight: float) -> float:
        """Mean share flagged over the kinds."""
        return float(np.mean(list(self.detection[weight].values())))

    def best(self, default: float) -> float:
        """The weight that flags the most; ``default`` unless another is clearly better (by 0.01)."""
        top = max(self.weights, key=self.mean)
        return top if self.mean(top) > self.mean(default) + 0.01 else default


def check_latent_weights(score_parts: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                         val_windows: np.ndarray, spread: np.ndarray, weights: tuple[float, ...],
                         seed: int = 0) -> WeightCheck:
    """Compare ``reconstruction + w * latent`` for each ``w`` on injected faults.

    Args:
        score_parts: raw windows -> (normalized reconstruction score, normalized latent score).
        val_windows: raw held-out normal windows ``(n, L, C)``.
        spread: ``(C,)`` robust spread per channel, sensor units.
        weights: candidate latent weights.
        seed: random seed of the injection.

    """
    rng = np.random.default_rng(seed)
    base = val_windows
    if base.shape[0] > MAX_WINDOWS:
        base = base[np.sort(rng.choice(base.shape[0], MAX_WINDOWS, replace=False))]
    rec_v, lat_v = score_parts(val_windows)
    faulted = {k: score_parts(inject(base, spread, k, rng)) for k in INJECTED_KINDS}
    detection: dict[float, dict[str, float]] = {}
    for w in weights:
        thr = float(np.quantile(rec_v + w * lat_v, 1.0 - CHECK_FAR))
        detection[w] = {k: float(np.mean(r + w * lat > thr)) for k, (r, lat) in faulted.items()}
    return WeightCheck(tuple(weights), detection)
