"""The self-supervised check: synthetic faults injected into held-out normal windows.

``train`` reports, per kind, the share of injected faults its label-free threshold flags
(``report.json``, ``self_check``): a sensitivity report, not a choice (choosing the score by it
made SKAB and ASD worse; README, Known limits). The faults are generic versions of the kinds
``edge-aae synth`` knows, in units of each channel's robust spread (the scaler's), placed at the
end of the window where the score looks hardest:

* ``spike``: the last reading of one channel jumps;
* ``level_shift``: one channel steps up or down for the last half of the window;
* ``drift``: one channel ramps away over the whole window;
* ``stuck``: one channel holds its value for the last half of the window;
* ``broken_correlation``: one channel's readings come from another, unrelated window (its own
  values, out of step with the rest);
* ``vibration_onset``: one channel's noise grows for the last half of the window;
* ``unseen_mode``: half the channels come from another window: each in its normal range, the
  combination one the data never showed.

The first four are also what the export's parity gate injects (:func:`export.parity.inject_faults`):
one place defines each kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("spike", "level_shift", "drift", "stuck", "broken_correlation", "vibration_onset", "unseen_mode")
MAGNITUDES = (3.0, 6.0)  # robust spreads: a fault that should be caught, and one that must be
MAX_BASE_WINDOWS = 300  # normal windows each kind is injected into (a sample, beyond)


@dataclass(frozen=True)
class InjectedFaults:
    """Faulty copies of normal windows: ``windows (n, L, C)`` raw, ``kinds (n,)`` index into :data:`KINDS`."""

    windows: np.ndarray
    kinds: np.ndarray


# The fault kinds as in-place edits of raw windows ``w (n, L, C)`` (float64): ``rows (m,)`` the windows
# hit, ``c (m,)`` the channel of each, ``size (m,)`` the signed size in sensor units. The self-check
# below and the export's parity gate (:func:`export.parity.inject_faults`) both inject through these.


def spike(w: np.ndarray, rows: np.ndarray, c: np.ndarray, size: np.ndarray, width: int = 1) -> None:
    """The last ``width`` readings of channel ``c`` jump by ``size``."""
    w[rows, -width:, c] += size[:, None]


def level_shift(w: np.ndarray, rows: np.ndarray, c: np.ndarray, size: np.ndarray) -> None:
    """Channel ``c`` steps by ``size`` for the last half of the window."""
    w[rows, w.shape[1] // 2:, c] += size[:, None]


def drift(w: np.ndarray, rows: np.ndarray, c: np.ndarray, size: np.ndarray) -> None:
    """Channel ``c`` ramps from 0 to ``size`` over the whole window."""
    w[rows, :, c] += size[:, None] * np.linspace(0.0, 1.0, w.shape[1])


def stuck(w: np.ndarray, rows: np.ndarray, c: np.ndarray, offset: np.ndarray | None = None) -> None:
    """Channel ``c`` holds its mid-window value (plus ``offset``, if given) for the last half."""
    half = w.shape[1] // 2
    held = w[rows, half, c] + (offset if offset is not None else 0.0)
    w[rows, half:, c] = held[:, None]


def inject_faults(normal: np.ndarray, spread: np.ndarray, seed: int = 0,
                  movable: np.ndarray | None = None) -> InjectedFaults:
    """Copies of raw normal windows ``(n, L, C)`` with one synthetic fault each, every kind and magnitude.

    Args:
        normal: raw normal windows (sensor units).
        spread: ``(C,)`` each channel's robust spread (sensor units): the fault sizes' unit.
        seed: for the windows, channels and signs drawn.
        movable: ``(C,)`` bool, the channels a fault may hit (default: all); constant channels
            are best left out, a change in them is trivially anomalous.

    """
    rng = np.random.default_rng(seed)
    n, length, n_ch = normal.shape
    chans = np.flatnonzero(movable) if movable is not None and np.any(movable) else np.arange(n_ch)
    base_idx = rng.choice(n, min(n, MAX_BASE_WINDOWS), replace=False) if n > MAX_BASE_WINDOWS else np.arange(n)
    out, kinds = [], []
    half = length // 2
    for k, kind in enumerate(KINDS):
        for mag in MAGNITUDES:
            w = normal[base_idx].astype(np.float64, copy=True)
            m = w.shape[0]
            c = rng.choice(chans, m)
            sign = rng.choice((-1.0, 1.0), m)
            rows = np.arange(m)
            size = mag * spread[c] * sign  # (m,)
            other = normal[rng.integers(0, n, m)].astype(np.float64)  # unrelated windows
            if kind == "spike":
                spike(w, rows, c, 2.0 * size)  # a single reading must stand out further
            elif kind == "level_shift":
                level_shift(w, rows, c, size)
            elif kind == "drift":
                drift(w, rows, c, size)
            elif kind == "stuck":
                stuck(w, rows, c)  # the value held is itself a normal one
            elif kind == "broken_correlation":
                w[rows, :, c] = other[rows, :, c]
            elif kind == "vibration_onset":
                w[rows, half:, c] += rng.normal(0.0, 1.0, (m, length - half)) * (mag / 2.0) * spread[c][:, None]
            else:  # unseen_mode: half the movable channels from another time
                pick = rng.random((m, n_ch)) < 0.5
                pick[:, np.setdiff1d(np.arange(n_ch), chans)] = False
                w = np.where(pick[:, None, :], other, w)
            out.append(w)
            kinds.append(np.full(m, k))
    return InjectedFaults(np.concatenate(out).astype(normal.dtype), np.concatenate(kinds))


def detection_by_kind(scores: np.ndarray, kinds: np.ndarray, threshold: float) -> dict[str, float]:
    """Share of injected windows of each kind whose score exceeds ``threshold``."""
    flagged = np.asarray(scores) > threshold
    return {kind: float(flagged[kinds == k].mean()) for k, kind in enumerate(KINDS) if np.any(kinds == k)}


def mean_detection(by_kind: dict[str, float]) -> float:
    """Every kind counts the same."""
    return float(np.mean(list(by_kind.values()))) if by_kind else 0.0
