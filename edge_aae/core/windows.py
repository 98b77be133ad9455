"""Sliding windows over segments, and the robust scaler (numpy only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edge_aae.core.streaming import StreamRule

if TYPE_CHECKING:
    from edge_aae.core.data import SensorData


def window_ends(segments: list[tuple[int, int]], window_len: int, stride: int = 1) -> np.ndarray:
    """Row index of the last sample of every window that fits inside one segment.

    A window covers rows ``end - window_len + 1 .. end``; its score belongs to
    the timestamp of row ``end``. Returns int64 ``(n_windows,)``, increasing.
    """
    if window_len < 1 or stride < 1:
        raise ValueError(f"window_len and stride must be >= 1, got {window_len}, {stride}")
    parts = [np.arange(a + window_len - 1, b, stride, dtype=np.int64)
             for a, b in segments if b - a >= window_len]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def gather_windows(values: np.ndarray, ends: np.ndarray, window_len: int) -> np.ndarray:
    """Stack windows ending at ``ends``: ``(n_rows, C)`` -> ``(n_windows, window_len, C)`` float32."""
    if len(ends) == 0 or values.shape[0] < window_len:  # too few rows: no window (callers say so)
        return np.zeros((0, window_len, values.shape[1]), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(values, window_len, axis=0)
    # view: (n_rows - window_len + 1, C, window_len); gathered a chunk at a time so that no
    # float64 copy of all windows exists beside the float32 result
    starts = np.asarray(ends) - window_len + 1
    out = np.empty((len(starts), window_len, values.shape[1]), dtype=np.float32)
    for i in range(0, len(starts), 512):
        out[i:i + 512] = view[starts[i:i + 512]].transpose(0, 2, 1)
    return out


def series_windows(data: SensorData, window_len: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Windows of a series and their end rows: ``((n, window_len, C) float32, (n,) int64)``."""
    ends = window_ends(data.segments, window_len, stride)
    return gather_windows(data.values, ends, window_len), ends


def resolution(values: np.ndarray, max_rows: int = 20000) -> np.ndarray:
    """Per channel of ``(n, C)`` values: the smallest step between distinct values (0 if constant)."""
    x = values[:max_rows]
    out = np.zeros(x.shape[1])
    for c in range(x.shape[1]):
        u = np.unique(x[:, c])
        if u.size > 1:
            out[c] = float(np.diff(u).min())
    return out


class RobustScaler:
    """Per-channel ``(x - median) / (IQR / 1.349)``, fitted on training rows only.

    A channel with zero IQR falls back to its standard deviation, then to 1, so a
    constant training channel cannot divide by zero.
    """

    def __init__(self) -> None:
        """An unfitted scaler; call :meth:`fit`."""

    def fit(self, values: np.ndarray) -> RobustScaler:
        """Fit on ``(n_rows, C)`` values; NaN rows are ignored."""
        finite = values[np.isfinite(values).all(axis=1)]
        if finite.shape[0] == 0:
            raise ValueError("no finite rows to fit the scaler on")
        self.center_ = np.median(finite, axis=0)
        q75, q25 = np.percentile(finite, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        std = finite.std(axis=0)
        scale = np.where(scale > 1e-8 * (1 + np.abs(self.center_)), scale, std)
        # a quantized channel (whole L/min, 0.1 degC) is never scaled finer than half its step
        scale = np.maximum(scale, 0.5 * resolution(finite))
        self.constant_ = (finite.max(axis=0) - finite.min(axis=0)) <= 1e-12 * (1 + np.abs(self.center_))
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale ``(..., C)`` values; returns float32."""
        out: np.ndarray = ((values - self.center_) / self.scale_).astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"center": self.center_.tolist(), "scale": self.scale_.tolist(),
                "constant": np.asarray(getattr(self, "constant_", np.zeros(self.scale_.shape, bool))).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobustScaler:
        """Inverse of :meth:`to_dict`."""
        s = cls()
        s.center_ = np.asarray(d["center"], dtype=np.float64)
        s.scale_ = np.asarray(d["scale"], dtype=np.float64)
        s.constant_ = np.asarray(d.get("constant", np.zeros(s.scale_.shape, bool)), dtype=bool)
        return s


def level_mask(relative_channels: str, channels: list[str]) -> np.ndarray:
    """``(C,)`` float32: 1 for the channels named in ``relative_channels`` (comma-separated).

    Raises:
        ConfigError: a name that is not one of ``channels``.

    """
    from edge_aae.core.errors import ConfigError

    names = [c.strip() for c in relative_channels.split(",") if c.strip()]
    unknown = [n for n in names if n not in channels]
    if unknown:
        raise ConfigError(f"relative_channels: {', '.join(unknown)} not among the channels "
                          f"({', '.join(channels)})")
    return np.array([1.0 if c in names else 0.0 for c in channels], dtype=np.float32)


def remove_level(windows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Subtract each window's own mean from the masked channels. ``(n, L, C) -> (n, L, C)``."""
    if not mask.any():
        return windows
    out: np.ndarray = (windows - mask * windows.mean(axis=1, keepdims=True)).astype(windows.dtype)
    return out


def stream_windows(data: SensorData, window_len: int, stride: int, rule: StreamRule,
                   sample_period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows of a raw series cut by the streaming rule, as the gateway cuts them live.

    Args:
        data: the series; rows with a missing value are dropped (not interpolated), and its own
            segments are ignored: the time steps between kept rows decide.
        window_len: samples per window.
        stride: kept readings between windows.
        rule: the model's streaming rule.
        sample_period_s: the model's sample period (not this file's).

    Returns:
        ``((n, window_len, C) float32 windows, (n,) int64 row index of each window's last reading)``.

    """
    kept, segments = rule.kept_and_segments(data.timestamps, data.values, sample_period_s)
    ends = window_ends(segments, window_len, stride)
    windows = gather_windows(data.values[kept], ends, window_len)
    return windows, kept[ends]


def longest_segment(data: SensorData, rule: StreamRule, sample_period_s: float) -> int:
    """Readings in the longest segment the streaming rule leaves (for error messages)."""
    _, segments = rule.kept_and_segments(data.timestamps, data.values, sample_period_s)
    return max((b - a for a, b in segments), default=0)
