"""``preset = "auto"``: settings chosen from the training series alone, each with its reason.

Nothing here reads a label column, a test file or a result: only the normal training values.
The preset changes a setting only while it is at its default; a value given explicitly (a flag
or a config key that differs from the default) is kept. ``preset = "none"`` keeps every default.

Decisions:

* **Channels scored by shape** (``relative_channels``): a channel whose level moves during the
  normal data (the spread of its block medians over four consecutive blocks exceeds three times
  its typical within-block spread) *and* that moves slowly (its step-to-step noise is under half
  its spread: a temperature, not a noisy flow meter). Its level then says more about warm-up
  than about faults, and the test data will carry it further than training did. If more than
  half the channels qualify, the whole process moved and none is picked. A slow channel also
  qualifies when the training data saw its level fewer than ``LEVEL_NEFF_MIN`` times
  independently (rows over its integrated autocorrelation time): a short stretch of a slowly
  wandering channel cannot tell its normal range, whether or not it happened to drift. Here,
  when more than a third of the channels (rounded up) are such, the process moves as a whole
  (operating modes, or slow disturbances that many channels share), and none is picked by this
  rule: their levels carry the relations between channels that a step, a sensor bias or a drift
  breaks. (On a generated 52-channel plant whose slow disturbances left half the channels' levels
  rarely seen, scoring those 26 by shape cut mean window AUROC from 0.84 to 0.73, and F1 at the
  own threshold from 0.56 to 0.18.) Very slow channels
  (step noise under 0.3 of their spread) that move with a picked one (|correlation| over 0.9)
  join it: a thermal family warms together even where one member drifted less in training.
* **Score and threshold** (``score_stat``, ``threshold``): when the validation split is too
  short for a tail fit (fewer windows than POT needs), the ``shift`` score with its ``t2`` limit,
  provided there are at least twice as many independent windows as channels; otherwise the
  reconstruction ``error`` score with ``pot`` (whose small-sample fallback copes with the rest).
* **Latent size**: half the channels, between 2 and 8 (``latent_dim = 0``).
* **Window length**: the default, except for a short series with many channels: when the
  validation split is too short for a tail fit and the default window leaves fewer than twice as
  many independent windows as channels (no T² limit possible), the longest of 16 and 8 samples
  that leaves enough is taken, with the ``shift`` score and its ``t2`` limit. Shorter windows
  overlap less, so the same rows hold more independent windows (on a 52-channel synthetic plant
  with 500 training rows: 30 at 32 samples, 125 at 8; mean AUPRC 0.53 -> 0.90).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_aae.core.data import SensorData
from edge_aae.core.thresholds import pot_min_scores
from edge_aae.core.windows import window_ends
from edge_aae.train.config import TrainConfig, auto_latent_dim
from edge_aae.train.model import time_weight_span

log = logging.getLogger(__name__)

PRESETS = ("auto", "none")
DRIFT_BLOCKS = 4
DRIFT_LIMIT = 3.0  # block medians spread over this many within-block spreads: the level drifts
SLOW_LIMIT = 0.5  # step noise / (sqrt 2 * spread) under this: a slow channel
FAMILY_LIMIT = 0.3  # once a slow channel drifts, very slow channels that move with it join it
FAMILY_CORR = 0.9  # "move with it": |correlation| over the normal data above this
LEVEL_NEFF_MIN = 30.0  # a slow channel whose level was seen fewer times independently: its range is unknown
RARE_SHARE = 1 / 3  # more than this share of channels (rounded up) with rarely seen levels: the process moves
SHORT_WINDOWS = (16, 8)  # tried, longest first, when the default window leaves too few independent windows


@dataclass(frozen=True)
class Decision:
    """One setting the preset chose, and why (recorded in ``model.json`` and the report)."""

    key: str
    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"key": self.key, "value": self.value, "reason": self.reason}


def _spread(x: np.ndarray) -> np.ndarray:
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    s = (q75 - q25) / 1.349
    return np.where(s > 1e-12, s, x.std(axis=0))


STAT_ROWS = 200_000  # beyond, the statistics below read evenly spaced stretches of this many rows in all
STAT_STRETCHES = 100


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """Rows without a missing value; a long series thinned to ``STAT_STRETCHES`` evenly spaced stretches.

    Consecutive rows stay consecutive within a stretch (first differences keep their meaning) and
    the stretches keep their order in time (block medians still span the whole series).
    """
    if values.shape[0] > STAT_ROWS:
        length = STAT_ROWS // STAT_STRETCHES
        starts = np.linspace(0, values.shape[0] - length, STAT_STRETCHES).astype(np.int64)
        values = np.concatenate([values[a:a + length] for a in starts])
    return values[np.isfinite(values).all(axis=1)]


def drift_and_slowness(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of ``(n, C)`` normal values: level drift and slowness (see the module doc).

    Returns:
        ``drift``: spread of block medians in units of the median within-block spread;
        ``slowness``: robust spread of first differences over ``sqrt(2)`` times the spread
        (about 1 for white noise, near 0 for a slow channel).

    """
    x = _finite_rows(values)
    if x.shape[0] < 4 * DRIFT_BLOCKS:
        return np.zeros(values.shape[1]), np.ones(values.shape[1])
    b = x.shape[0] // DRIFT_BLOCKS
    blocks = [x[k * b:(k + 1) * b] for k in range(DRIFT_BLOCKS)]
    medians = np.array([np.median(blk, axis=0) for blk in blocks])
    within = np.median(np.array([_spread(blk) for blk in blocks]), axis=0)
    drift = (medians.max(axis=0) - medians.min(axis=0)) / np.maximum(within, 1e-12)
    slowness = _spread(np.diff(x, axis=0)) / (np.sqrt(2) * np.maximum(_spread(x), 1e-12))
    return drift, slowness


def level_observations(values: np.ndarray) -> np.ndarray:
    """Per channel of ``(n, C)`` normal values: how many independent observations of its level they hold.

    ``n / (1 + 2 * sum of autocorrelations)``, the sum taken up to the first lag whose
    autocorrelation is not positive (a channel that wanders slowly has few; white noise has ``n``).
    """
    x = _finite_rows(values)
    n = x.shape[0]
    if n < 4 * DRIFT_BLOCKS:
        return np.full(values.shape[1], float(n))
    x = x - x.mean(axis=0)
    var = (x * x).mean(axis=0)
    spec = np.fft.rfft(x, 2 * n, axis=0)
    acf = np.fft.irfft(spec * np.conj(spec), axis=0)[:n // 2] / (n * np.maximum(var, 1e-300))
    out = np.full(x.shape[1], float(n))
    for c in range(x.shape[1]):
        if var[c] <= 0:
            continue
        nonpos = np.flatnonzero(acf[1:, c] <= 0)
        stop = int(nonpos[0]) + 1 if nonpos.size else acf.shape[0]
        out[c] = n / (1.0 + 2.0 * float(acf[1:stop, c].sum()))
    return out


def _joins(values: np.ndarray, channels: list[str], c: str, picked: list[str], slow: np.ndarray) -> bool:
    """Whether channel ``c`` is very slow and moves with one of the ``picked`` drifting channels."""
    i = channels.index(c)
    if slow[i] >= FAMILY_LIMIT:
        return False
    x = _finite_rows(values)
    for p in picked:
        j = channels.index(p)
        if x[:, i].std() > 0 and x[:, j].std() > 0 and abs(float(np.corrcoef(x[:, i], x[:, j])[0, 1])) > FAMILY_CORR:
            return True
    return False


def _window_counts(data: SensorData, cfg: TrainConfig, window_len: int) -> tuple[int, float]:
    """``(validation windows, independent windows)`` the training series gives at ``window_len``."""
    ends = window_ends(data.segments, window_len, cfg.stride)
    span = time_weight_span(window_len, cfg.score_tail, cfg.stride)
    return int(round(ends.size * cfg.val_fraction)), ends.size / span


def choose_settings(data: SensorData, cfg: TrainConfig) -> tuple[TrainConfig, list[Decision]]:
    """The configuration ``auto`` trains with, and its decisions (``cfg`` unchanged for ``none``)."""
    if cfg.preset == "none":
        return cfg, []
    default = TrainConfig()
    decisions: list[Decision] = []
    changes: dict[str, Any] = {}
    channels = list(data.channels)

    if cfg.relative_channels == default.relative_channels:
        drift, slow = drift_and_slowness(data.values)
        seen = level_observations(data.values)
        drifting = [c for c, d, s in zip(channels, drift, slow, strict=True) if d > DRIFT_LIMIT and s < SLOW_LIMIT]
        rare = [c for c, k, s in zip(channels, seen, slow, strict=True) if k < LEVEL_NEFF_MIN and s < SLOW_LIMIT]
        # most channels drift, or many levels are rare: the whole process moves (operating modes, slow
        # disturbances shared by many channels), keep levels: they carry the channels' relations
        caps = (len(channels) // 2, math.ceil(len(channels) * RARE_SHARE))
        picked = [c for c in channels if any(c in group for group, cap in zip((drifting, rare), caps, strict=True)
                                             if len(group) <= cap)]
        if picked:  # the thermal family: very slow channels that move with a drifting one
            picked = [c for c in channels if c in picked or _joins(data.values, channels, c, picked, slow)]
        detail = ", ".join(f"{c} drift {d:.1f} slowness {s:.2f} level seen {k:.0f} times"
                           for c, d, s, k in zip(channels, drift, slow, seen, strict=True) if c in picked)
        changes["relative_channels"] = ",".join(picked)
        decisions.append(Decision("relative_channels", ",".join(picked),
                                  f"a slow channel whose level drifts or was seen too few times independently "
                                  f"(under {LEVEL_NEFF_MIN:.0f}): {detail}" if picked
                                  else "no slow channel's level drifts or is seen too rarely in the normal data"))
    else:
        decisions.append(Decision("relative_channels", cfg.relative_channels, "given explicitly"))

    window_reason = "default" if cfg.window_len == default.window_len else "given explicitly"
    if cfg.score_stat == default.score_stat and cfg.threshold == default.threshold:
        p = len(channels)
        n_val, n_eff = _window_counts(data, cfg, cfg.window_len)
        if n_val < pot_min_scores(cfg.pot_init_quantile) and n_eff < 2 * p and cfg.window_len == default.window_len:
            # a short series with many channels: shorter windows give the T² limit enough independent windows
            for length in SHORT_WINDOWS:
                n_val_s, n_eff_s = _window_counts(data, cfg, length)
                if n_eff_s >= 2 * p:
                    window_reason = (f"{n_eff:.0f} independent windows of {cfg.window_len} samples are too few for a "
                                     f"T² limit on {p} channels; {n_eff_s:.0f} of {length} samples are enough")
                    changes["window_len"] = length
                    n_val, n_eff = n_val_s, n_eff_s
                    break
        if n_val < pot_min_scores(cfg.pot_init_quantile) and n_eff >= 2 * p:
            changes |= {"score_stat": "shift", "threshold": "t2"}
            reason = (f"{n_val} validation windows are too few for a tail fit; {n_eff:.0f} independent windows "
                      f"are enough for the covariance of {p} channels: shift score with its T² limit")
        elif n_val < pot_min_scores(cfg.pot_init_quantile):
            reason = (f"{n_val} validation windows are too few for a tail fit, but {n_eff:.0f} independent windows "
                      f"are too few for a T² limit on {p} channels: error score, POT with its small-sample limit")
        else:
            reason = f"{n_val} validation windows support a tail fit: error score, POT threshold"
        decisions.append(Decision("score_stat", changes.get("score_stat", cfg.score_stat), reason))
        decisions.append(Decision("threshold", changes.get("threshold", cfg.threshold), reason))
    else:
        decisions.append(Decision("score_stat", cfg.score_stat, "given explicitly"))

    if cfg.latent_dim == 0:
        changes["latent_dim"] = auto_latent_dim(len(channels))
        decisions.append(Decision("latent_dim", changes["latent_dim"], f"half of {len(channels)} channels, 2 to 8"))
    decisions.append(Decision("window_len", changes.get("window_len", cfg.window_len), window_reason))
    for d in decisions:
        log.info("preset auto: %s = %r (%s)", d.key, d.value, d.reason)
    return dataclasses.replace(cfg, **changes), decisions
