"""``edge-aae eval``: honest metrics of a run or bundle on a labelled series, with plots.

Point scores are the scores of the windows ending at each point; the first
``window_len - 1`` points of each segment have no window and are left out (the
output says how many). The threshold is the model's own, fitted on normal data;
best-over-thresholds F1 is reported too, labelled *oracle*, and point-adjusted
figures are labelled as such.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.alerting import AlertTracker
from edge_aae.core.data import SensorData
from edge_aae.core.errors import DataError
from edge_aae.core.metrics import (
    auprc,
    auroc,
    best_f1,
    event_metrics,
    localization,
    pa_k_curve,
    point_adjust,
    precision_recall_f1,
)
from edge_aae.core.scores import WindowScores

log = logging.getLogger(__name__)
_LINE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*:\s*([\d\s,]+)\s*$")


def read_interpretation(path: Path, n_rows: int, n_channels: int, end_inclusive: bool = False) -> list[set[int]]:
    """SMD-style ``start-end:c1,c2,...`` lines (channels 1-based) -> per-row sets of 0-based channels.

    SMD intervals are ``[start, end)``; ASD's are ``[start, end]`` (``end_inclusive``).

    Raises:
        DataError: a line that does not parse, or names rows or channels beyond the data (file and line).

    """
    truth: list[set[int]] = [set() for _ in range(n_rows)]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise DataError(f"{path}:{i}: expected 'start-end:c1,c2,...', got {line.strip()[:60]!r}")
        start, end = int(m[1]), int(m[2]) + (1 if end_inclusive else 0)
        chans = [int(c) for c in m[3].replace(" ", "").split(",") if c]
        if start >= end or end > n_rows:
            raise DataError(f"{path}:{i}: rows {m[1]}-{m[2]} are outside the data's {n_rows} rows")
        bad = [c for c in chans if not 1 <= c <= n_channels]
        if bad:
            raise DataError(f"{path}:{i}: channel(s) {bad} beyond the data's {n_channels} channels (1-based)")
        for r in range(start, end):
            truth[r].update(c - 1 for c in chans)
    return truth


def alerts_from_scores(result: WindowScores, k: int = 3, n: int = 5, m: int = 10) -> list[float]:
    """Timestamps of alerts the daemon would raise (its k-of-n / m hysteresis, no cooldown)."""
    tracker = AlertTracker(k, n, m, 0.0, 0.0)
    raised = []
    held = result.unseen_state if result.unseen_state is not None else np.zeros(len(result.score), dtype=bool)
    for ts, s, cs, h in zip(result.timestamps, result.score, result.channel_scores, held, strict=True):
        ev = tracker.update(float(ts), float(s), result.threshold, cs, result.channels, held=bool(h))
        if ev is not None and ev.event == "raised":
            raised.append(float(ts))
    return raised


def evaluate(data: SensorData, result: WindowScores, truth: list[set[int]] | None = None) -> dict[str, Any]:
    """Every metric of the issue's list on the points that have a window."""
    if data.labels is None:
        raise DataError(f"{data.path}: no label column (pass --label-col)")
    y = data.labels[result.ends].astype(np.int8)
    s = result.score
    pred = result.is_anomaly  # over the threshold, or held by the unseen-state rule
    precision, recall, f1 = precision_recall_f1(y, pred)
    oracle, oracle_thr = best_f1(y, s)
    _, pa_f1s, pa_area = pa_k_curve(y, pred)
    out: dict[str, Any] = {
        "points": int(y.size), "points_without_window": int(len(data.labels) - y.size),
        "positives": int(y.sum()), "threshold": result.threshold,
        "auroc": auroc(y, s), "auprc": auprc(y, s),
        "f1": f1, "precision": precision, "recall": recall,
        "oracle_best_f1": oracle, "oracle_threshold": oracle_thr,
        "point_adjusted_f1": precision_recall_f1(y, point_adjust(y, pred))[2],
        "pa_k_f1": {str(k): float(pa_f1s[k]) for k in (0, 20, 50, 80, 100)}, "pa_k_auc": pa_area,
        "events": event_metrics(y, pred, result.timestamps),
    }
    if truth is not None:
        rows = result.ends
        out["localization"] = localization(result.channel_scores, [truth[r] for r in rows])
    return out


def plot_eval(out_dir: Path, data: SensorData, result: WindowScores, alerts: list[float]) -> list[Path]:
    """``scores.png`` (score, threshold, labelled segments, alerts) and ``contributions.png`` (heat map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_aae.core.metrics import segments

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = float(data.timestamps[0])
    fig, ax = plt.subplots(figsize=(13, 4))
    ax.plot(result.timestamps - t0, result.score, lw=0.6, label="score")
    ax.axhline(result.threshold, color="tab:red", ls="--", lw=1, label=f"threshold {result.threshold:.3g}")
    assert data.labels is not None
    for i, (a, b) in enumerate(segments(data.labels)):
        ax.axvspan(data.timestamps[a] - t0, data.timestamps[b - 1] - t0, color="orange", alpha=0.25,
                   label="labelled anomaly" if i == 0 else None)
    for i, t in enumerate(alerts):
        ax.axvline(t - t0, color="black", lw=0.7, alpha=0.7, label="alert raised" if i == 0 else None)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("seconds from the first row")
    ax.set_ylabel("score (symlog)")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    p1 = out_dir / "scores.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)

    peak = int(np.argmax(result.score))
    lo, hi = max(0, peak - 100), min(len(result.score), peak + 100)
    fig, ax = plt.subplots(figsize=(12, 0.35 * len(result.channels) + 1.8))
    cs = result.channel_scores[lo:hi].T
    im = ax.imshow(np.log10(np.maximum(cs, 1e-3)), aspect="auto", cmap="magma",
                   extent=(float(result.timestamps[lo] - t0), float(result.timestamps[hi - 1] - t0),
                           len(result.channels) - 0.5, -0.5))
    ax.set_yticks(range(len(result.channels)), result.channels)
    ax.set_xlabel("seconds from the first row")
    ax.set_title("per-channel contributions around the strongest anomaly (log10)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    p2 = out_dir / "contributions.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    return [p1, p2]


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """JSON with NaN written as null."""
    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, float) and not np.isfinite(x):
            return None
        return x

    path.write_text(json.dumps(clean(metrics), indent=2) + "\n", encoding="utf-8")
