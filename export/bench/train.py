"""``edge-aae bench train``: training time and detection quality on the synthetic pump.

Trains the AAE with default settings and the plain autoencoder
(``adversarial_weight = 0``) on the same data in one run, then reports train
time, window AUROC, alert rates and whether the top channel is one of the
fault's channels in flagged windows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.data import load_series
from edge_aae.core.metrics import auroc
from edge_aae.core.scores import WindowScores
from edge_aae.train import synth
from edge_aae.train.config import TrainConfig
from edge_aae.train.detector import AAEDetector
from export.bench.common import markdown_table

log = logging.getLogger(__name__)


@dataclass
class TrainBenchRow:
    """One method's results."""

    method: str
    train_s: float
    epochs: int
    auroc: float
    far: float
    recall: float
    top_channel_ok: float
    worst_fault_top_ok: float


def fault_localization(scores: WindowScores, faults: list[dict[str, Any]]) -> tuple[float, float]:
    """Share of flagged in-fault windows whose top channel is a fault channel: (pooled, worst fault)."""
    tops = np.array(scores.top_channel)
    hits = flagged = 0
    worst = 1.0
    for f in faults:
        inside = (scores.ends >= f["start"]) & (scores.ends < f["end"]) & (scores.is_anomaly == 1)
        if inside.any():
            ok = np.isin(tops[inside], f["channels"])
            hits += int(ok.sum())
            flagged += int(inside.sum())
            worst = min(worst, float(ok.mean()))
    return (hits / flagged if flagged else float("nan")), worst


def run_train_bench(out: Path, seed: int = 0) -> tuple[list[TrainBenchRow], str]:
    """Generate data, train both methods, score; return rows and a Markdown table."""
    data_dir = out / "data"
    synth.write_dataset(data_dir, synth.generate(seed), seed)
    train = load_series(data_dir / "train.csv")
    test = load_series(data_dir / "test.csv", label_col="label")
    assert test.labels is not None
    faults = json.loads((data_dir / "faults.json").read_text())["faults"]
    rows = []
    for method, cfg in (("AAE (defaults)", TrainConfig(seed=seed)),
                        ("plain AE (--adversarial-weight 0)", TrainConfig(seed=seed, adversarial_weight=0.0))):
        t0 = time.monotonic()
        det = AAEDetector(cfg).fit(train, progress=True)
        train_s = time.monotonic() - t0
        det.save(out / ("aae" if cfg.adversarial_weight else "ae"))
        res = det.score(test)
        y = test.labels[res.ends]
        pooled, worst = fault_localization(res, faults)
        assert det.report_ is not None
        rows.append(TrainBenchRow(method, train_s, len(det.report_["history"]), auroc(y, res.score),
                                  float(res.is_anomaly[y == 0].mean()), float(res.is_anomaly[y == 1].mean()),
                                  pooled, worst))
    table = markdown_table(
        ["method", "train time (s)", "epochs", "window AUROC", "flag rate on normal", "recall",
         "top channel in fault (flagged)", "worst fault"],
        [[r.method, f"{r.train_s:.1f}", r.epochs, f"{r.auroc:.4f}", f"{r.far:.4f}", f"{r.recall:.3f}",
          f"{r.top_channel_ok:.3f}", f"{r.worst_fault_top_ok:.3f}"] for r in rows])
    aae, ae = rows
    note = (f"\n\nAAE minus plain AE: AUROC {aae.auroc - ae.auroc:+.4f}, train time "
            f"{aae.train_s / ae.train_s:.2f}x. Data: `edge-aae synth --seed {seed}` "
            f"({train.n_rows} train rows, {test.n_rows} test rows, {len(faults)} faults); "
            "window label = label of its last sample.")
    return rows, table + note
