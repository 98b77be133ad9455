"""Detection metrics on scores where higher is more anomalous (numpy only)."""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int8).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return y, s


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when one class is absent."""
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall_f1(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float, float]:
    """Point-wise precision, recall and F1 of 0/1 predictions."""
    y, p = _check(labels, predictions)
    tp = int(((p == 1) & (y == 1)).sum())
    fp = int(((p == 1) & (y == 0)).sum())
    fn = int(((p == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, ties grouped).

    NaN without positives. A random score's expected value is the positive rate.
    """
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    tp = np.cumsum(ys)[last_of_tie]
    k = (np.arange(1, y.size + 1))[last_of_tie]
    precision = tp / k
    recall_step = np.diff(np.r_[0, tp]) / n_pos
    return float((precision * recall_step).sum())


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of consecutive 1s."""
    y = np.asarray(labels).astype(np.int8).ravel()
    edges = np.diff(np.r_[0, y, 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def best_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The *oracle*: the best point-wise F1 over all thresholds, and that threshold (uses the labels)."""
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan"), float("nan")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    tp = np.cumsum(ys)[last_of_tie]
    k = np.arange(1, y.size + 1)[last_of_tie]
    f1 = 2 * tp / (k + n_pos)
    i = int(np.argmax(f1))
    return float(f1[i]), float(ss[last_of_tie][i])


def point_adjust(labels: np.ndarray, predictions: np.ndarray, k_percent: float = 0.0) -> np.ndarray:
    """PA%K (Kim et al., 2022): a labelled segment whose share of flagged points exceeds K % counts as wholly flagged.

    ``k_percent = 0`` is classic point adjustment (one flagged point flags the segment).
    """
    y, p = _check(labels, predictions)
    out = p.astype(np.int8).copy()
    for a, b in segments(y):
        share = p[a:b].mean()
        if share > k_percent / 100.0 or (k_percent == 0 and share > 0):
            out[a:b] = 1
    return out


def pa_k_curve(labels: np.ndarray, predictions: np.ndarray, ks: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                                               np.ndarray, float]:
    """F1 of PA%K for K in ``ks`` (default 0..100) and the area under F1(K) over K/100 in [0, 1]."""
    ks = np.arange(0, 101, dtype=np.float64) if ks is None else np.asarray(ks, dtype=np.float64)
    f1s = np.array([precision_recall_f1(labels, point_adjust(labels, predictions, float(k)))[2] for k in ks])
    area = float(np.sum((f1s[1:] + f1s[:-1]) / 2 * np.diff(ks / 100.0))) if ks.size > 1 else float(f1s[0])
    return ks, f1s, area


def event_metrics(labels: np.ndarray, predictions: np.ndarray, timestamps: np.ndarray) -> dict[str, float]:
    """Events detected, mean/median time to detect (s), and false alarms per day.

    An event is a labelled segment; it is detected when a flagged point falls inside it. A false
    alarm is a run of flagged points that starts outside every event.
    """
    y, p = _check(labels, predictions)
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    events = segments(y)
    delays = []
    for a, b in events:
        hit = np.flatnonzero(p[a:b])
        if hit.size:
            delays.append(ts[a + hit[0]] - ts[a])
    false_alarms = sum(1 for a, _ in segments(p) if y[a] == 0)
    days = max((ts[-1] - ts[0]) / 86400.0, 1e-9) if ts.size > 1 else float("nan")
    return {"events": len(events), "events_detected": len(delays),
            "time_to_detect_s_mean": float(np.mean(delays)) if delays else float("nan"),
            "time_to_detect_s_median": float(np.median(delays)) if delays else float("nan"),
            "false_alarms": false_alarms, "false_alarms_per_day": false_alarms / days}


def localization(contributions: np.ndarray, truth: list[set[int]], percents: tuple[int, ...] = (100, 150)
                 ) -> dict[str, float]:
    """HitRate@P% and NDCG@P% over labelled timestamps.

    Args:
        contributions: ``(n, C)`` per-channel contributions at the labelled timestamps.
        truth: for each row, the set of channel indices to blame (rows with an empty set are skipped).
        percents: P values; top k = round(P/100 * |GT|).

    """
    c = np.asarray(contributions, dtype=np.float64)
    out: dict[str, float] = {}
    for pct in percents:
        hits, ndcgs = [], []
        for row, gt in zip(c, truth, strict=True):
            if not gt:
                continue
            k = min(max(1, int(round(pct / 100.0 * len(gt)))), row.size)  # never more than every channel
            top = np.argsort(-row, kind="stable")[:k]
            hits.append(len(set(top.tolist()) & gt) / len(gt))
            gains = np.array([1.0 if j in gt else 0.0 for j in top])
            dcg = float((gains / np.log2(np.arange(2, k + 2))).sum())
            ideal = float((1.0 / np.log2(np.arange(2, min(k, len(gt)) + 2))).sum())
            ndcgs.append(dcg / ideal)
        out[f"hitrate@{pct}"] = float(np.mean(hits)) if hits else float("nan")
        out[f"ndcg@{pct}"] = float(np.mean(ndcgs)) if ndcgs else float("nan")
    return out


def far_mar(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float]:
    """False alarm rate FP/(FP+TN) and missing alarm rate FN/(FN+TP), as in SKAB."""
    y, p = _check(labels, predictions)
    fp = int(((p == 1) & (y == 0)).sum())
    tn = int(((p == 0) & (y == 0)).sum())
    fn = int(((p == 0) & (y == 1)).sum())
    tp = int(((p == 1) & (y == 1)).sum())
    return (fp / (fp + tn) if fp + tn else 0.0), (fn / (fn + tp) if fn + tp else 0.0)


NAB_PROFILES = {"standard": (1.0, -0.11, -1.0), "low_fp": (1.0, -0.22, -1.0), "low_fn": (1.0, -0.11, -2.0)}


def nab_score(changepoints: list[float], detections: list[float], window_s: float = 60.0) -> dict[str, float]:
    """NAB changepoint score (0 = no detections, 100 = every changepoint found at once) per profile.

    Each true changepoint opens the window ``[cp, cp + window_s]``. The first detection in a window
    scores ``A_tp * sigma(y)``, ``y = (t - end) / window_s`` in ``[-1, 0]``, ``sigma(y) = 2/(1+e^{5y}) - 1``;
    later ones in the same window are ignored; a detection outside every window costs ``A_fp``; a
    window without one costs ``A_fn``. Scores are normalized between the null detector and a perfect one.
    """
    windows = [(cp, cp + window_s) for cp in sorted(changepoints)]
    first_in: dict[int, float] = {}
    n_fp = 0
    for t in sorted(detections):
        inside = [i for i, (a, b) in enumerate(windows) if a <= t <= b]
        if inside:
            first_in.setdefault(inside[0], t)
        else:
            n_fp += 1
    out = {}
    for name, (a_tp, a_fp, a_fn) in NAB_PROFILES.items():
        raw = n_fp * a_fp
        for i, (_, end) in enumerate(windows):
            if i in first_in:
                y = (first_in[i] - end) / window_s
                raw += a_tp * (2.0 / (1.0 + np.exp(5.0 * y)) - 1.0)
            else:
                raw += a_fn
        null = a_fn * len(windows)
        perfect = a_tp * (2.0 / (1.0 + np.exp(-5.0)) - 1.0) * len(windows)
        out[name] = float(100.0 * (raw - null) / (perfect - null)) if windows else float("nan")
    return out
