"""Training windows cut on the fly from a scaled series: memory grows with rows, not windows.

A window ending at row ``e`` covers rows ``e - window_len + 1 .. e``; overlapping windows share
their rows, so materializing every window of a long series would take ``window_len`` times the
series' memory. Instead the series stays on the training device once and each batch is gathered
by index.
"""

from __future__ import annotations

import numpy as np
import torch


class WindowSource:
    """Windows of one scaled series, gathered per batch.

    Args:
        series: ``(n_rows, C)`` scaled values (float32 after conversion).
        ends: ``(n_windows,)`` row index of each window's last row, each ``>= window_len - 1``.
        window_len: rows per window.
        level_mask: ``(C,)`` 1 for channels scored by shape: their window mean is subtracted.
        device: where the series and the batches live.

    """

    def __init__(self, series: np.ndarray, ends: np.ndarray, window_len: int,
                 level_mask: np.ndarray | None = None, device: torch.device | str = "cpu") -> None:
        """Copy the series to ``device`` once."""
        if ends.size and (ends.min() < window_len - 1 or ends.max() >= series.shape[0]):
            raise ValueError("window ends outside the series")
        self.window_len = window_len
        self.n_channels = int(series.shape[1])
        self.device = torch.device(device)
        self.series = torch.as_tensor(np.ascontiguousarray(series, dtype=np.float32), device=self.device)
        self.ends = torch.as_tensor(np.asarray(ends, dtype=np.int64), device=self.device)
        self.offsets = torch.arange(-window_len + 1, 1, device=self.device)
        mask = np.zeros(series.shape[1], np.float32) if level_mask is None else level_mask
        self.mask = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=self.device)
        self._relative = bool(self.mask.any())
        self._stacked = False  # from_windows: the "series" is already (n, L, C)

    def __len__(self) -> int:
        """Number of windows."""
        return int(self.ends.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_windows, window_len, C)``, as if the windows were stacked."""
        return len(self), self.window_len, self.n_channels

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Windows number ``index``: ``(B,) -> (B, window_len, C)`` float32 on the source's device."""
        if self._stacked:
            return self.series[index]
        rows = self.ends[index].unsqueeze(1) + self.offsets  # (B, L)
        x = self.series[rows]
        if self._relative:
            x = x - self.mask * x.mean(dim=1, keepdim=True)
        return x

    @classmethod
    def from_windows(cls, windows: np.ndarray, device: torch.device | str = "cpu") -> WindowSource:
        """A source over already stacked ``(n, L, C)`` windows (small data, tests)."""
        n, length, c = windows.shape
        src = cls(np.zeros((length, c), np.float32), np.zeros(0, np.int64), length, None, device)
        src.n_channels = c
        src.series = torch.as_tensor(np.ascontiguousarray(windows, dtype=np.float32), device=src.device)
        src.ends = torch.arange(n, device=src.device)
        src._stacked = True
        return src
