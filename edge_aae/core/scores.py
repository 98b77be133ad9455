"""Window scores as a table: the result of scoring a series (numpy only).

Shared by run-directory scoring (torch) and bundle scoring (onnxruntime), so
both write the same ``scores.csv`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class WindowScores:
    """Scores of the windows of one series; a window's row is the row of its last sample.

    Attributes:
        ends: ``(n,)`` row index of each window's last sample.
        timestamps: ``(n,)`` unix seconds of that sample.
        score: ``(n,)`` combined score, higher is more anomalous.
        channel_scores: ``(n, C)`` per-channel contributions, larger is more to blame (see
            ``ScoreGraph``: the error score's ``e_c² / m_c^0.75``, the shift score's ``d_c² / Σ_cc``).
        latent_score: ``(n,)`` normalized latent distance (to the nearest normal training code).
        threshold: the label-free threshold the flags use.
        channels: channel names in column order.
        unseen_state: ``(n,)`` bool, windows flagged by the unseen-state rule
            (:mod:`edge_aae.core.unseen_state`), or None where the model has no such rule.

    """

    ends: np.ndarray
    timestamps: np.ndarray
    score: np.ndarray
    channel_scores: np.ndarray
    latent_score: np.ndarray
    threshold: float
    channels: list[str]
    unseen_state: np.ndarray | None = None

    @property
    def is_anomaly(self) -> np.ndarray:
        """``(n,)`` int8: 1 where the score exceeds the threshold or the unseen-state rule holds."""
        over = self.score > self.threshold
        return (over if self.unseen_state is None else over | self.unseen_state).astype(np.int8)

    @property
    def top_channel(self) -> list[str]:
        """Name of the largest contribution per window."""
        idx = np.argmax(self.channel_scores, axis=1) if len(self.channels) else []
        return [self.channels[i] for i in idx]


def write_scores_csv(path: Path, scores: WindowScores) -> None:
    """Write one row per window.

    Columns: ``timestamp``, ``score``, ``threshold``, ``is_anomaly``, ``top_channel``, then
    ``contrib_<channel>`` for each channel, then ``latent_score`` and ``unseen_state`` (1 where the
    unseen-state rule flags the window; a window can be anomalous by it with its score under the
    threshold).
    """
    header = ["timestamp", "score", "threshold", "is_anomaly", "top_channel",
              *(f"contrib_{c}" for c in scores.channels), "latent_score", "unseen_state"]
    flags = scores.is_anomaly
    held = np.zeros(len(flags), np.int8) if scores.unseen_state is None else scores.unseen_state.astype(np.int8)
    tops = scores.top_channel
    lines = [",".join(header)]
    thr = f"{scores.threshold:.6g}"
    for i in range(scores.score.shape[0]):
        contrib = ",".join(f"{v:.6g}" for v in scores.channel_scores[i])
        lines.append(f"{scores.timestamps[i]:.3f},{scores.score[i]:.6g},{thr},{flags[i]},{tops[i]},{contrib},"
                     f"{scores.latent_score[i]:.6g},{held[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
