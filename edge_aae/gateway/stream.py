"""Per-asset ring buffer: readings in time order -> windows due for scoring.

Rules, per asset:
    * a reading with a timestamp already in the buffer (within 1 ms) is a duplicate: dropped;
    * a reading older than the newest but within ``reorder_tolerance_s`` is placed in time
      order (windows already scored are not scored again); older ones are dropped as ``late``;
    * a step forward larger than ``gap_factor`` sample periods empties the buffer
      (a window never spans a gap), counted as a ``gap_reset``;
    * once the buffer holds ``window_len`` readings, every ``stride`` new readings make a window;
    * no stream stays blind: when more than ``window_len`` readings in a row were dropped as
      ``late`` (say, after one reading far in the future), the stream starts over from the next
      one (``stream_reset``, reported).
"""

from __future__ import annotations

import numpy as np

DUPLICATE_TOLERANCE_S = 1e-3


class AssetStream:
    """Readings of one asset; preallocated, O(window_len × channels) per reading."""

    def __init__(self, window_len: int, n_channels: int, stride: int, sample_period_s: float,
                 gap_factor: float, reorder_tolerance_s: float) -> None:
        """Allocate the buffer; nothing is filled yet."""
        self.window_len = window_len
        self.stride = stride
        self.max_gap_s = gap_factor * sample_period_s
        self.reorder_tolerance_s = reorder_tolerance_s
        self._ts = np.zeros(window_len, dtype=np.float64)
        self._x = np.zeros((window_len, n_channels), dtype=np.float32)
        self._n = 0
        self._since_window = 0
        self._late_run = 0
        self.newest_ts = -np.inf

    def reset(self) -> None:
        """Forget the buffered readings (after a gap, or a model swap)."""
        self._n = 0
        self._since_window = 0

    def restart(self) -> None:
        """Forget everything, the newest timestamp included: the next reading starts a new stream."""
        self.reset()
        self._late_run = 0
        self.newest_ts = -np.inf

    def _late(self, outcome: str, ts: float, values: np.ndarray) -> tuple[str | None, np.ndarray | None]:
        self._late_run += 1
        if self._late_run <= self.window_len:
            return outcome, None
        self.restart()
        self.push(ts, values)
        return "stream_reset", None

    def push(self, ts: float, values: np.ndarray) -> tuple[str | None, np.ndarray | None]:
        """Add one reading ``values (C,)`` at ``ts`` seconds.

        Returns:
            ``(outcome, window)``: outcome is None when accepted, ``"duplicate"`` or ``"late"``
            (dropped), or ``"gap_reset"`` / ``"stream_reset"`` (accepted as the first of a new
            window);
            window is a ``(window_len, C)`` copy when one is due, else None.

        """
        outcome = None
        n = self._n
        if n and ts <= self.newest_ts:
            if np.any(np.abs(self._ts[:n] - ts) < DUPLICATE_TOLERANCE_S):
                return "duplicate", None
            if self.newest_ts - ts > self.reorder_tolerance_s or ts < self._ts[0]:
                return self._late("late", ts, values)
            pos = int(np.searchsorted(self._ts[:n], ts))
            self._insert(pos, ts, values)
        else:
            if n and ts - self.newest_ts > self.max_gap_s:
                self.reset()
                outcome = "gap_reset"
            elif not n and ts <= self.newest_ts:
                # buffer was just reset; still never go back in time
                if self.newest_ts - ts < DUPLICATE_TOLERANCE_S:
                    return "duplicate", None
                return self._late("late", ts, values)
            self._insert(self._n, ts, values)
            self.newest_ts = ts
        self._late_run = 0
        self._since_window += 1
        if self._n == self.window_len and self._since_window >= self.stride:
            self._since_window = 0
            return outcome, self._x.copy()
        return outcome, None

    def push_many(self, ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Add a batch of readings at once when it is the plain case; None (nothing done) otherwise.

        The plain case: timestamps strictly increasing, all newer than the newest reading, and no
        step over the gap limit (from the buffer's newest reading either). Then the result is
        exactly what :meth:`push` one by one gives, computed with a few array operations.

        Returns:
            ``(windows (m, window_len, C) float32, end_ts (m,))``: the windows due, in order.

        """
        k = ts.shape[0]
        if k == 0:
            return None
        n = self._n
        first_step = ts[0] - self.newest_ts
        if not first_step > 0 or (n and first_step > self.max_gap_s) or (not n and self.newest_ts > -np.inf):
            return None
        if k > 1:
            steps = np.diff(ts)
            if not (steps > 0).all() or steps.max() > self.max_gap_s:
                return None
        length = self.window_len
        all_ts = np.concatenate([self._ts[:n], ts])
        all_x = np.concatenate([self._x[:n], np.asarray(values, dtype=np.float32)])
        # after the i-th new reading the buffer holds n + i + 1 readings and the counter s0 + i + 1;
        # a window is due when the buffer is full and the counter reached the stride (then it restarts)
        s0 = self._since_window
        i = np.arange(k)
        ready = (n + i + 1 >= length) & (s0 + i + 1 >= self.stride)
        due: list[int] = []
        if ready.any():
            first = int(np.argmax(ready))
            due = list(range(first, k, self.stride))
        total = n + k
        if due:
            view = np.lib.stride_tricks.sliding_window_view(all_x, length, axis=0)  # (total - L + 1, C, L)
            ends = np.asarray(due) + n  # index of each window's last reading in all_x
            windows = np.ascontiguousarray(view[ends - length + 1].transpose(0, 2, 1))
            end_ts = all_ts[ends]
            self._since_window = k - 1 - due[-1]
        else:
            windows = np.zeros((0, length, all_x.shape[1]), np.float32)
            end_ts = np.zeros(0)
            self._since_window = s0 + k
        keep = min(length, total)
        self._ts[:keep] = all_ts[total - keep:]
        self._x[:keep] = all_x[total - keep:]
        self._n = keep
        self.newest_ts = float(ts[-1])
        self._late_run = 0
        return windows, end_ts

    def _insert(self, pos: int, ts: float, values: np.ndarray) -> None:
        """Insert at ``pos`` keeping time order; when full, the oldest reading falls out."""
        n = self._n
        if n < self.window_len:
            self._ts[pos + 1:n + 1] = self._ts[pos:n]
            self._x[pos + 1:n + 1] = self._x[pos:n]
            self._ts[pos] = ts
            self._x[pos] = values
            self._n = n + 1
        elif pos == 0:
            return  # older than everything in a full buffer: nothing to place
        else:
            self._ts[:pos - 1] = self._ts[1:pos]
            self._x[:pos - 1] = self._x[1:pos]
            self._ts[pos - 1] = ts
            self._x[pos - 1] = values

    @property
    def filled(self) -> int:
        """Readings currently buffered."""
        return self._n
