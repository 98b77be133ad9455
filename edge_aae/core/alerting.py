"""Alert hysteresis per asset: raise after k of the last n windows over threshold, clear after m under.

A raised alert clears only after ``m`` windows in a row under the threshold and at
least ``min_duration_s`` after it started; a new alert for the same asset is not
raised within ``cooldown_s`` of the last clearing. Each alert episode has an id;
the ``raised`` and ``cleared`` messages carry it (``alert_id``) plus a message id
of their own (``id``) so subscribers can drop duplicates after a redelivery.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class AlertEvent:
    """One ``raised`` or ``cleared`` event (the alert topic's payload, minus model and gateway)."""

    event: str
    alert_id: str
    ts: float
    since: float
    score: float
    peak_score: float
    threshold: float
    top_channels: list[dict[str, Any]] = field(default_factory=list)
    cause: str = "score"  # or "unseen_state": raised by the unseen-state rule with the score under the threshold

    @property
    def id(self) -> str:
        """Unique per message: the episode id and the event."""
        return f"{self.alert_id}-{self.event}"


def top_channels(channel_scores: np.ndarray, channels: list[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` channels with the largest contributions and their share of the total (0..1)."""
    cs = np.clip(np.asarray(channel_scores, dtype=np.float64), 0.0, None)
    total = float(cs.sum()) or 1.0
    order = np.argsort(-cs, kind="stable")[:k]
    return [{"channel": channels[i], "share": round(float(cs[i]) / total, 4)} for i in order]


class AlertTracker:
    """The alert state of one asset."""

    def __init__(self, k: int, n: int, m: int, min_duration_s: float, cooldown_s: float) -> None:
        """Start in the normal state."""
        self.k, self.m = k, m
        self.min_duration_s = min_duration_s
        self.cooldown_s = cooldown_s
        self._recent: deque[tuple[bool, float]] = deque(maxlen=n)
        self.active: AlertEvent | None = None
        self._under = 0
        self._n_over = 0  # over-threshold windows among _recent
        self._last_cleared = -np.inf

    def update(self, ts: float, score: float, threshold: float, channel_scores: np.ndarray,
               channels: list[str], n_top: int = 3, held: bool = False) -> AlertEvent | None:
        """Feed one scored window (``ts``: its last reading); returns an event when the state changes.

        ``held``: the window is flagged by the unseen-state rule (:mod:`edge_aae.core.unseen_state`);
        it counts as over the threshold whatever its score.
        """
        over = bool(score > threshold) or held
        if len(self._recent) == self._recent.maxlen and self._recent[0][0]:
            self._n_over -= 1  # the oldest falls out of the last n
        self._recent.append((over, ts))
        self._n_over += over
        if self.active is None:
            if self._n_over >= self.k and ts - self._last_cleared >= self.cooldown_s:
                since = next(t for o, t in self._recent if o)
                self.active = AlertEvent("raised", uuid.uuid4().hex[:16], ts, since, float(score), float(score),
                                         float(threshold), top_channels(channel_scores, channels, n_top),
                                         "score" if score > threshold or not held else "unseen_state")
                self._under = 0
                return self.active
            return None
        a = self.active
        if over:
            self._under = 0
            if score > a.peak_score:
                a.peak_score = float(score)
                a.top_channels = top_channels(channel_scores, channels, n_top)
            return None
        self._under += 1
        if self._under >= self.m and ts - a.since >= self.min_duration_s:
            self.active = None
            self._last_cleared = ts
            self._recent.clear()
            self._n_over = 0
            return AlertEvent("cleared", a.alert_id, ts, a.since, float(score), a.peak_score, float(threshold),
                              a.top_channels, a.cause)
        return None

    def update_many(self, ts: np.ndarray, score: np.ndarray, threshold: float, channel_scores: np.ndarray,
                    channels: list[str], n_top: int = 3, held: np.ndarray | None = None) -> list[AlertEvent]:
        """Feed a block of scored windows of this asset, in order; the events in order.

        Exactly what :meth:`update` one window at a time gives. A quiet block (no alert active
        and no window over the threshold) only moves the last-n window along, in one step.
        """
        if self.active is None and not bool((score > threshold).any()) and (held is None or not held.any()):
            recent = self._recent
            maxlen = recent.maxlen or 0
            times = ts.tolist()
            if len(times) >= maxlen:
                recent.clear()
                self._n_over = 0
                times = times[len(times) - maxlen:]
            else:
                for _ in range(max(0, len(recent) + len(times) - maxlen)):
                    self._n_over -= recent.popleft()[0]
            recent.extend((False, t) for t in times)
            return []
        events = []
        for j in range(len(ts)):
            event = self.update(float(ts[j]), float(score[j]), threshold, channel_scores[j], channels, n_top,
                                held is not None and bool(held[j]))
            if event is not None:
                events.append(event)
        return events
