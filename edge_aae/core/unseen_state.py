"""An operating state never seen in training: the latent score held over its own level.

The latent score (a window's code against the codes of normal training windows) is high for a
few windows whenever the machine passes through a region of its operating space that training
saw little of, such as a quick ramp between two modes. A machine that *settles* in an operating
state that training never held keeps it high. So a window is flagged as an unseen state when
every one of the last ``span`` windows of its stream (two window lengths) had a latent score
over ``level``: a sustained excess, not one window over a threshold. Reconstruction alone misses
such a state when every channel is in its normal range and consistent with the others (the
synthetic ``unseen_mode`` fault).

``share`` (the fraction of the span that must be over) is 1: with 0.8 the rule also caught slow
normal transients on the synthetic pump (a hot motor cooling at low load, 400 s), 1.3 % false
alarms on normal windows at one seed of three; with every window of the span required, none at
any of the three, and the AAE's codes still find ``unseen_mode`` where the plain autoencoder's
do not (``BENCHMARKS.md``).

Offline (:meth:`UnseenStateRule.flags`) and on the gateway (:class:`UnseenStateTracker`, one per
asset stream) the rule is the same; both count windows, so they agree at the stride the
model was exported with.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

SPAN_WINDOW_LENGTHS = 2  # the excess must last this many window lengths: longer than a ramp between modes
SHARE = 1.0  # of the windows in the span over the level (see the module's docstring)
MAX_SPAN = 100_000  # windows: a manifest asking for more is refused (a gateway keeps one flag per window of it)


@dataclass(frozen=True)
class UnseenStateRule:
    """The rule's constants: ``level`` in latent-score units, ``span`` in windows, ``share`` in (0, 1]."""

    level: float
    span: int
    share: float = SHARE

    @classmethod
    def for_window(cls, level: float, window_len: int, stride: int) -> UnseenStateRule:
        """The rule for windows of ``window_len`` rows taken every ``stride`` rows."""
        return cls(float(level), max(2, -(-SPAN_WINDOW_LENGTHS * window_len // max(1, stride))))

    @property
    def needed(self) -> int:
        """Windows over the level among the last ``span`` that flag the newest one."""
        return max(1, int(np.ceil(self.share * self.span - 1e-9)))

    def flags(self, latent: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
        """``(n,)`` bool for the windows of one stream in order.

        ``breaks``: indices where the stream starts over (a gap); counting restarts there, as a
        gateway's does when its stream resets.
        """
        over = np.asarray(latent, dtype=np.float64) > self.level
        out = np.zeros(over.size, dtype=bool)
        edges = [0, *(int(b) for b in (breaks if breaks is not None else []) if 0 < b < over.size), over.size]
        for a, b in zip(edges, edges[1:], strict=False):
            csum = np.concatenate([[0], np.cumsum(over[a:b], dtype=np.int64)])  # O(n) whatever the span
            i = np.arange(1, b - a + 1)
            out[a:b] = csum[i] - csum[np.maximum(0, i - self.span)] >= self.needed
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``level``, ``span``, ``share``."""
        return {"level": self.level, "span": self.span, "share": self.share}

    @classmethod
    def from_json(cls, d: Any, where: str) -> UnseenStateRule | None:
        """Parse the JSON form (``None`` stays ``None``: a model without the rule).

        Raises:
            ValueError: a field is missing or out of range; the message names ``where``.

        """
        if d is None:
            return None
        try:
            rule = cls(float(d["level"]), int(d["span"]), float(d.get("share", SHARE)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected an object with a numeric level and span ({exc})") from None
        if not np.isfinite(rule.level) or not 1 <= rule.span <= MAX_SPAN or not 0 < rule.share <= 1:
            raise ValueError(f"{where}: level must be finite, 1 <= span <= {MAX_SPAN} and 0 < share <= 1 "
                             f"(got {str(d)[:200]})")
        return rule


def stream_breaks(ends: np.ndarray, stride: int) -> np.ndarray:
    """Indices of the windows that start a stream over (their last row more than ``stride`` after the one before)."""
    return np.flatnonzero(np.diff(np.asarray(ends)) > stride) + 1


class UnseenStateTracker:
    """The rule over one live stream of windows (a gateway asset)."""

    def __init__(self, rule: UnseenStateRule) -> None:
        """Start with no window seen."""
        self.rule = rule
        self._recent: deque[bool] = deque(maxlen=rule.span)
        self._n_over = 0

    def reset(self) -> None:
        """The stream started over: forget the windows before."""
        self._recent.clear()
        self._n_over = 0

    def update_many(self, latent: np.ndarray) -> np.ndarray:
        """Feed the next windows' latent scores, in order; ``(n,)`` bool flags, as :meth:`UnseenStateRule.flags`."""
        over = (np.asarray(latent, dtype=np.float64) > self.rule.level).tolist()
        out = np.zeros(len(over), dtype=bool)
        recent, needed = self._recent, self.rule.needed
        if not self._n_over and not any(over):  # the common case: nothing over, nothing pending
            recent.extend(over[-self.rule.span:])
            return out
        for i, o in enumerate(over):
            if len(recent) == recent.maxlen and recent[0]:
                self._n_over -= 1
            recent.append(o)
            self._n_over += o
            out[i] = self._n_over >= needed
        return out
