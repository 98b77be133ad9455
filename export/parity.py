"""The parity gate: torch vs FP32 ONNX, and INT8 vs FP32, on real and faulty windows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from edge_aae.core.manifest import GRAPH_INPUT, GRAPH_OUTPUTS
from edge_aae.gateway.scorer import make_session
from edge_aae.train import selfcheck as faults
from edge_aae.train.model import ScoreGraph

FP32_MAX_REL_DIFF = 1e-4
INT8_MIN_DECISION_AGREEMENT = 0.995
INT8_MIN_SPEARMAN = 0.99
INT8_MIN_TOP_CHANNEL_AGREEMENT = 0.95


def inject_faults(windows: np.ndarray, scale: np.ndarray, seed: int = 0) -> np.ndarray:
    """Copies of raw windows with one synthetic fault each in their recent half.

    Kinds cycle through spike (the last 1-3 readings), level shift, stuck channel (held at an
    offset) and drift on a random channel, with amplitudes of 3-8 scaler units; the kinds
    themselves are the self-check's (:mod:`edge_aae.train.selfcheck`). ``(n, L, C) -> (n, L, C)``.
    """
    rng = np.random.default_rng(seed)
    out = np.array(windows, dtype=np.float64, copy=True)
    n, _, c = out.shape
    for i in range(n):
        j = int(rng.integers(c))
        amp = np.array([rng.uniform(3, 8) * scale[j] * rng.choice([-1.0, 1.0])])
        at, ch = np.array([i]), np.array([j])
        kind = i % 4
        if kind == 0:
            faults.spike(out, at, ch, amp, width=int(rng.integers(1, 4)))
        elif kind == 1:
            faults.level_shift(out, at, ch, amp)
        elif kind == 2:
            faults.stuck(out, at, ch, offset=amp)
        else:
            faults.drift(out, at, ch, amp)
    return out.astype(np.float32)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order; fine for continuous scores)."""
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def run_onnx(model_path: Any, windows: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score windows with an ONNX file at a fixed batch size."""
    session = make_session(model_path)
    parts = [session.run(list(GRAPH_OUTPUTS), {GRAPH_INPUT: windows[i:i + batch]})
             for i in range(0, len(windows), batch)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


@dataclass
class Fp32Parity:
    """Torch vs FP32 ONNX."""

    max_abs_diff_batch1: float
    max_abs_diff_batch64: float
    score_spread: float
    max_rel_diff: float
    limit: float
    passed: bool


@dataclass
class Int8Parity:
    """INT8 vs FP32 (each with its own threshold).

    ``spearman`` is over all gate windows (normal and injected faults); ``spearman_normal``
    over the normal ones alone. The first is high whenever faults score far above normal
    windows in both models; the second shows whether INT8 still ranks normal windows,
    which is where the threshold and the subtle anomalies are.
    """

    decision_agreement: float
    spearman: float
    top_channel_agreement: float
    flagged_windows: int
    windows: int
    passed: bool
    limits: dict[str, float]
    spearman_normal: float = 1.0

    def failures(self) -> list[dict[str, float | str]]:
        """Each criterion missed: its value, its limit and the shortfall (empty when the gate passed)."""
        values = {"decision_agreement": self.decision_agreement, "spearman": self.spearman,
                  "spearman_normal": self.spearman_normal, "top_channel_agreement": self.top_channel_agreement}
        return [{"criterion": k, "value": round(v, 4), "limit": self.limits[k],
                 "short_by": round(self.limits[k] - v, 4)} for k, v in values.items() if v < self.limits[k]]


def check_fp32(scorer: ScoreGraph, fp32_path: Any, windows: np.ndarray) -> Fp32Parity:
    """Max |score difference| at batch 1 and 64, relative to the score's standard deviation."""
    with torch.no_grad():
        ref = scorer(torch.from_numpy(windows))[0].numpy()
    n1 = min(len(windows), 128)
    d1 = float(np.abs(run_onnx(fp32_path, windows[:n1], 1)[0] - ref[:n1]).max())
    d64 = float(np.abs(run_onnx(fp32_path, windows, 64)[0] - ref).max())
    spread = float(np.std(ref)) or 1.0
    rel = max(d1, d64) / spread
    return Fp32Parity(d1, d64, spread, rel, FP32_MAX_REL_DIFF, bool(rel <= FP32_MAX_REL_DIFF))


def check_int8(fp32: tuple[np.ndarray, np.ndarray, np.ndarray], int8: tuple[np.ndarray, np.ndarray, np.ndarray],
               threshold_fp32: float, threshold_int8: float, n_normal: int | None = None) -> Int8Parity:
    """Alert-decision agreement, rank correlation and top-channel agreement on flagged windows.

    Args:
        fp32: ``(score, channel_scores, latent_score)`` of the FP32 model on the gate windows.
        int8: the same from the INT8 model.
        threshold_fp32: FP32's threshold.
        threshold_int8: INT8's own threshold.
        n_normal: the gate windows' first ``n_normal`` are normal (validation) windows; rank
            correlation must hold on them alone as well. None: all windows are normal.

    """
    flag32 = fp32[0] > threshold_fp32
    flag8 = int8[0] > threshold_int8
    agree = float((flag32 == flag8).mean())
    rho = spearman(fp32[0], int8[0])
    n = len(fp32[0]) if n_normal is None else n_normal
    rho_normal = spearman(fp32[0][:n], int8[0][:n]) if n > 2 else rho
    top32 = fp32[1].argmax(1)
    top8 = int8[1].argmax(1)
    top_agree = float((top32[flag32] == top8[flag32]).mean()) if flag32.any() else 1.0
    limits = {"decision_agreement": INT8_MIN_DECISION_AGREEMENT, "spearman": INT8_MIN_SPEARMAN,
              "spearman_normal": INT8_MIN_SPEARMAN, "top_channel_agreement": INT8_MIN_TOP_CHANNEL_AGREEMENT}
    passed = (agree >= INT8_MIN_DECISION_AGREEMENT and rho >= INT8_MIN_SPEARMAN and rho_normal >= INT8_MIN_SPEARMAN
              and top_agree >= INT8_MIN_TOP_CHANNEL_AGREEMENT)
    return Int8Parity(agree, rho, top_agree, int(flag32.sum()), len(flag32), passed, limits, rho_normal)


def as_dict(x: Fp32Parity | Int8Parity | None) -> dict[str, Any] | None:
    """JSON-ready form."""
    return None if x is None else asdict(x)
