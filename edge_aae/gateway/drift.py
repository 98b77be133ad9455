"""Drift and health of one asset's model, on the device: is the model still right for this machine.

Per scored window the monitor keeps, over a rolling horizon of ``horizon_windows`` windows:

- the **alert rate**: the share of windows over the threshold, against the model's target
  false-alarm rate (a model that no longer fits flags far more than it was calibrated to). It is
  judged as the lower median over twelve consecutive stretches of the horizon, so a rate that
  stays high counts and a few transients (each a window length of windows over at once) do not;
- the **latent score**: the median distance of the window codes to the normal training codes, in
  the units of its own normal spread (0 is typical of training, a few units is far away). This is
  the AAE's own view: the codes leave the region the prior was matched to before reconstruction
  fails outright;
- per channel, the **share of windows whose mean lies outside the training range** (the 0.5th to
  99.5th percentiles of normal training windows' channel means, stored in the bundle).

States, with hysteresis so a state does not flap:

- ``ok`` -> ``drifting`` when, with at least ``min_windows`` seen, any figure passes its limit;
- ``drifting`` -> ``retrain`` when it stays drifting for ``retrain_after_windows`` windows;
- ``drifting``/``retrain`` -> ``ok`` when every figure is back under ``clear_fraction`` of its limit
  for ``clear_windows`` windows in a row.

The figures and the channels that moved go out on the retained ``ROOT/GW/anomaly/ASSET/drift``
topic on every change of state and every ``publish_interval_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_aae.gateway.config import MonitorConfig

STATES = ("ok", "drifting", "retrain")
JUDGE_EVERY = 20  # windows between evaluations of the horizon's figures (medians over it are not free)
# The alert rate is judged as the lower median over this many consecutive stretches of the horizon:
# a rate that stays high counts, bursts do not (a transient in normal running puts about a window
# length of windows over the threshold at once; two of them in a horizon of 1,800 already passed
# 20 x a 0.1 % target). Up to three bursts, each touching two stretches, leave it at zero.
ALERT_SEGMENTS = 12


def _median(values: np.ndarray) -> float:
    """The median of a non-empty 1-D array, as ``np.median`` gives it (a partition, not its general machinery)."""
    m = values.size // 2
    if values.size % 2:
        return float(np.partition(values, m)[m])
    low, high = np.partition(values, (m - 1, m))[m - 1:m + 1]
    return float((low + high) / 2)


@dataclass(frozen=True)
class Reference:
    """What the bundle says normal looks like (``manifest.json: monitor``); None fields: not judged."""

    target_far: float
    channel_low: np.ndarray | None = None
    channel_high: np.ndarray | None = None

    @classmethod
    def from_manifest(cls, monitor: Any, target_far: float, n_channels: int) -> Reference:
        """From the manifest's optional ``monitor`` object (bundles without one: no range check)."""
        low = high = None
        if isinstance(monitor, dict):
            lo, hi = monitor.get("channel_low"), monitor.get("channel_high")
            if isinstance(lo, list) and isinstance(hi, list) and len(lo) == len(hi) == n_channels:
                low, high = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        return cls(float(target_far) if target_far > 0 else 1e-3, low, high)


class DriftMonitor:
    """The rolling figures and the state of one asset (fed from the daemon's worker thread only)."""

    def __init__(self, cfg: MonitorConfig, ref: Reference, channels: list[str]) -> None:
        """Empty horizon, state ``ok``."""
        self.cfg, self.ref, self.channels = cfg, ref, list(channels)
        h = cfg.horizon_windows
        self._over = np.zeros(h, bool)
        self._latent = np.full(h, np.nan)
        self._outside = np.zeros((h, len(channels)), bool)
        self._over_n = 0  # windows over the threshold in the horizon
        self._outside_n = np.zeros(len(channels), np.int64)  # per channel, windows outside its range
        self._pos = 0
        self.seen = 0
        self.state = "ok"
        self.since = time.time()
        self._drifting_for = 0
        self._calm_for = 0
        self._unjudged = 0  # windows since the figures were last computed
        self._pending: list[tuple[bool, float, np.ndarray]] = []  # windows added one by one, not yet stored
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # small blocks, not yet stored
        self._blocked = 0  # windows in them
        self.last_figures: dict[str, Any] = {}
        self._segments_for: tuple[int, np.ndarray, np.ndarray] | None = None

    def add(self, over: bool, latent: float, window_mean: np.ndarray, ts: float) -> bool:
        """One scored window, cheaply (the daemon's hot path): stored and judged every ``JUDGE_EVERY``.

        Returns True when the state changed (publish now).
        """
        self._pending.append((over, latent, window_mean))
        return self._flush(ts) if len(self._pending) + self._blocked >= JUDGE_EVERY else False

    def add_block(self, over: np.ndarray, latent: np.ndarray, window_means: np.ndarray, ts: float) -> bool:
        """Several windows at once (``over (B,)``, ``latent (B,)``, ``window_means (B, C)``), after any single ones.

        Blocks smaller than ``JUDGE_EVERY`` wait, like single windows, until that many have come
        (a daemon fed one reading per message hands over a few windows per asset per cycle).

        Returns True when the state changed (publish now).
        """
        if self._pending:  # single windows still waiting come first, in order
            self._blocked += len(self._pending)
            self._blocks.append(self._take_pending())
        self._blocks.append((over, latent, window_means))
        self._blocked += len(over)
        return self._flush(ts) if self._blocked >= JUDGE_EVERY else False

    def _take_pending(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The single windows waiting, as one block (and none left waiting)."""
        pending, self._pending = self._pending, []
        return (np.array([p[0] for p in pending]), np.array([p[1] for p in pending]),
                np.stack([p[2] for p in pending]))

    def _flush(self, ts: float) -> bool:
        """Store and judge every window waiting (single ones after the blocks: they came later)."""
        blocks, self._blocks, self._blocked = self._blocks, [], 0
        if self._pending:
            blocks.append(self._take_pending())
        if len(blocks) == 1:
            return self.update(*blocks[0], ts)
        return self.update(np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks]),
                           np.concatenate([b[2] for b in blocks]), ts)

    def update(self, over: np.ndarray, latent: np.ndarray, window_means: np.ndarray, ts: float) -> bool:
        """Add a batch of windows: ``over (B,)`` bool, ``latent (B,)``, ``window_means (B, C)``.

        Returns True when the state changed (publish now).
        """
        b = over.shape[0]
        if b == 0:
            return False
        outside = np.zeros((b, len(self.channels)), bool)
        if self.ref.channel_low is not None and self.ref.channel_high is not None:
            outside = (window_means < self.ref.channel_low) | (window_means > self.ref.channel_high)
        h = self.cfg.horizon_windows
        if b > h:  # only the newest h windows stay in the horizon
            skip = b - h
            over, latent, outside = over[skip:], latent[skip:], outside[skip:]
            self._pos = (self._pos + skip) % h
        idx = (self._pos + np.arange(len(over))) % h
        # running counts: what leaves the horizon out, what enters in (the figures need no pass over it)
        self._over_n += int(over.sum()) - int(self._over[idx].sum())
        self._outside_n += outside.sum(axis=0) - self._outside[idx].sum(axis=0)
        self._over[idx], self._latent[idx], self._outside[idx] = over, latent, outside
        self._pos = (self._pos + len(over)) % h
        self.seen += b
        self._unjudged += b
        if self._unjudged < JUDGE_EVERY and self.seen >= JUDGE_EVERY:  # the figures move slowly: judge in steps
            return False
        figures = self.figures()
        changed = self._step(figures, self._unjudged, ts)
        self._unjudged = 0
        self.last_figures = figures
        return changed

    def figures(self) -> dict[str, Any]:
        """The horizon's figures and the channels outside their range."""
        n = min(self.seen, self.cfg.horizon_windows)
        if n == 0:
            return {"windows": 0}
        latent = self._latent[:n] if self.seen <= self.cfg.horizon_windows else self._latent
        finite = latent[np.isfinite(latent)]
        share = (self._outside_n / n).tolist()
        over = (self._over[:n] if self.seen <= self.cfg.horizon_windows
                else np.concatenate((self._over[self._pos:], self._over[:self._pos])))  # oldest first
        edges, lengths = self._segments(n)
        rates = sorted((np.add.reduceat(over, edges, dtype=np.int64) / lengths).tolist())
        sustained = rates[(len(rates) - 1) // 2]
        limit = self.cfg.outside_share * self.cfg.clear_fraction
        moved = {c: round(s, 4) for c, s in zip(self.channels, share, strict=True) if s > limit}
        return {"windows": int(n), "alert_rate": round(self._over_n / n, 6),
                "alert_rate_sustained": round(sustained, 6), "target_far": self.ref.target_far,
                "latent_median": round(_median(finite), 4) if finite.size else None,
                "outside_share": moved, "max_outside_share": round(max(share), 4) if share else 0.0}

    def _segments(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Start indices and lengths of the ``ALERT_SEGMENTS`` stretches of ``n`` windows (cached per ``n``)."""
        if self._segments_for is None or self._segments_for[0] != n:
            k = min(ALERT_SEGMENTS, n)
            edges = (np.arange(k) * n) // k
            self._segments_for = (n, edges, np.diff(np.append(edges, n)))
        return self._segments_for[1], self._segments_for[2]

    def _levels(self, f: dict[str, Any]) -> float:
        """The largest figure as a fraction of its limit (1 = at the limit)."""
        c = self.cfg
        parts = [f["alert_rate_sustained"] / (c.alert_rate_factor * f["target_far"]),
                 f["max_outside_share"] / c.outside_share]
        if f["latent_median"] is not None:
            parts.append(max(f["latent_median"], 0.0) / c.latent_limit)
        return float(max(parts))

    def _step(self, f: dict[str, Any], b: int, ts: float) -> bool:
        if self.seen < self.cfg.min_windows:
            return False
        level = self._levels(f)
        before = self.state
        if self.state == "ok":
            if level > 1.0:
                self.state, self._drifting_for, self._calm_for = "drifting", 0, 0
        else:
            self._drifting_for += b
            self._calm_for = self._calm_for + b if level < self.cfg.clear_fraction else 0
            if self._calm_for >= self.cfg.clear_windows:
                self.state = "ok"
            elif self.state == "drifting" and self._drifting_for >= self.cfg.retrain_after_windows:
                self.state = "retrain"
        if self.state != before:
            self.since = ts
            return True
        return False

    def payload(self, asset: str, gateway: str, model: dict[str, str]) -> dict[str, Any]:
        """The retained ``.../drift`` message."""
        f = self.last_figures or self.figures()
        return {"asset": asset, "gateway": gateway, "state": self.state, "since": self.since, "ts": time.time(),
                "figures": {k: v for k, v in f.items() if k != "outside_share"},
                "channels": sorted(f.get("outside_share", {}), key=lambda c: -f["outside_share"][c]),
                "outside_share": f.get("outside_share", {}), "model": model}
