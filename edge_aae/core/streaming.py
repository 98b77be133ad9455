"""How a raw series becomes windows: one rule, used offline and on the gateway (numpy only).

A series is a time-ordered list of readings, each a timestamp and one value per
channel. The rule, applied identically by ``score BUNDLE``/``eval BUNDLE`` and by
the daemon's per-asset stream:

* a reading with a missing or non-finite value is **dropped** (the daemon refuses
  it as ``non_finite``); windows are made of the readings that remain, in order;
* a time step from one kept reading to the next larger than ``gap_factor`` sample
  periods starts a new segment: no window spans it (the daemon's ``gap_reset``);
* within a segment, the first window ends at its ``window_len``-th reading and
  then one every ``stride`` readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_GAP_FACTOR = 5.0


@dataclass(frozen=True)
class StreamRule:
    """The windowing rule a bundle was made for.

    Attributes:
        gap_factor: a step over this many sample periods starts a new segment (> 1).
        missing: what happens to a reading with a missing value; ``"drop"`` is the only policy.

    """

    gap_factor: float = DEFAULT_GAP_FACTOR
    missing: str = "drop"

    def max_step_s(self, sample_period_s: float) -> float:
        """The largest time step (seconds) that keeps a segment going."""
        return self.gap_factor * sample_period_s

    def kept_and_segments(self, timestamps: np.ndarray, values: np.ndarray,
                          sample_period_s: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Rows the rule keeps, and its segments as half-open ranges of those kept rows.

        Args:
            timestamps: ``(n,)`` seconds, increasing.
            values: ``(n, C)`` raw readings; NaN marks a missing value.
            sample_period_s: the model's sample period.

        Returns:
            ``(kept, segments)``: ``kept`` int64 row indices into the input; ``segments`` ranges
            ``[a, b)`` over ``kept``.

        """
        kept = np.flatnonzero(np.isfinite(values).all(axis=1)).astype(np.int64)
        if kept.size == 0:
            return kept, []
        steps = np.diff(timestamps[kept])
        breaks = (np.flatnonzero(steps > self.max_step_s(sample_period_s)) + 1).tolist()
        bounds = [0, *breaks, int(kept.size)]
        return kept, [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

    def to_json(self) -> dict[str, object]:
        """JSON form, as stored in a bundle's manifest."""
        return {"gap_factor": self.gap_factor, "missing": self.missing}
