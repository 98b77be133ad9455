"""``edge-aae bench train``: training time and detection quality on the synthetic pump.

Trains the AAE with default settings, the AAE with a mixture prior and the plain
autoencoder (``adversarial_weight = 0``) on the same data in one run, then reports
train time, window AUROC, alert rates and whether the top channel is one of the
fault's channels in flagged windows; and, per fault kind (``unseen_mode``
included), the recall at each model's own threshold and the window AUROC of the
combined score and of the latent score alone.
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
from export.bench.quality import normal_windows

log = logging.getLogger(__name__)


@dataclass
class TrainBenchRow:
    """One method's results."""

    method: str
    train_s: float
    epochs: int
    auroc: float
    far: float
    far_clean: float
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


def per_kind(scores: WindowScores, y: np.ndarray, faults: list[dict[str, Any]]) -> dict[str, tuple[float, ...]]:
    """Per fault kind: (window recall at the threshold, AUROC of the score, AUROC of the latent score).

    AUROCs compare the kind's windows with the normal windows of the test series.
    """
    normal = y == 0
    out: dict[str, tuple[float, ...]] = {}
    for kind in dict.fromkeys(f["kind"] for f in faults):
        inside = np.zeros(len(scores.ends), dtype=bool)
        for f in faults:
            if f["kind"] == kind:
                inside |= (scores.ends >= f["start"]) & (scores.ends < f["end"])
        sel = inside | normal
        yk = inside[sel].astype(np.int8)
        out[kind] = (float(scores.is_anomaly[inside].mean()), auroc(yk, scores.score[sel]),
                     auroc(yk, scores.latent_score[sel]))
    return out


def run_train_bench(out: Path, seed: int = 0) -> tuple[list[TrainBenchRow], str]:
    """Generate data, train the three methods, score; return rows and a Markdown table."""
    data_dir = out / "data"
    synth.write_dataset(data_dir, synth.generate(seed, kinds=synth.ALL_FAULT_KINDS), seed)
    train = load_series(data_dir / "train.csv")
    test = load_series(data_dir / "test.csv", label_col="label")
    assert test.labels is not None
    faults = json.loads((data_dir / "faults.json").read_text())["faults"]
    rows = []
    kinds: dict[str, dict[str, tuple[float, ...]]] = {}
    methods = (("AAE (defaults)", "aae", TrainConfig(seed=seed)),
               ("AAE, mixture prior (--prior mixture)", "aae-mixture", TrainConfig(seed=seed, prior="mixture")),
               ("plain AE (--adversarial-weight 0)", "ae", TrainConfig(seed=seed, adversarial_weight=0.0)))
    for method, folder, cfg in methods:
        t0 = time.monotonic()
        det = AAEDetector(cfg).fit(train, progress=True)
        train_s = time.monotonic() - t0
        det.save(out / folder)
        res = det.score(test)
        y = test.labels[res.ends]
        kinds[method] = per_kind(res, y, faults)
        pooled, worst = fault_localization(res, faults)
        assert det.report_ is not None
        clean = normal_windows(test.labels, det.config_.window_len)[res.ends]
        rows.append(TrainBenchRow(method, train_s, len(det.report_["history"]), auroc(y, res.score),
                                  float(res.is_anomaly[y == 0].mean()), float(res.is_anomaly[clean].mean()),
                                  float(res.is_anomaly[y == 1].mean()),
                                  pooled, worst))
    table = markdown_table(
        ["method", "train time (s)", "epochs", "window AUROC", "flag rate on normal", "flag rate on normal windows",
         "recall", "top channel in fault (flagged)", "worst fault"],
        [[r.method, f"{r.train_s:.1f}", r.epochs, f"{r.auroc:.4f}", f"{r.far:.4f}", f"{r.far_clean:.4f}",
          f"{r.recall:.3f}",
          f"{r.top_channel_ok:.3f}", f"{r.worst_fault_top_ok:.3f}"] for r in rows])
    aae, _mixture, ae = rows
    note = (f"\n\nAAE minus plain AE: AUROC {aae.auroc - ae.auroc:+.4f}, train time "
            f"{aae.train_s / ae.train_s:.2f}x. Data: `synth.generate({seed}, kinds=ALL_FAULT_KINDS)` "
            f"({train.n_rows} train rows, {test.n_rows} test rows, {len(faults)} faults, `unseen_mode` "
            "included); window label = label of its last sample. Flag rate on normal: among windows "
            "whose last reading is normal; on normal windows: among windows holding no faulty reading at "
            f"all, the windows the threshold's {100 * TrainConfig().target_far:g} % target is about (a window "
            "just after a fault still holds some of it).")
    names = [m for m, _, _ in methods]
    kind_table = markdown_table(
        ["fault kind", *(f"{m}: recall / AUROC / latent AUROC" for m in names)],
        [[kind, *(" / ".join(f"{v:.2f}" if i == 0 else f"{v:.3f}" for i, v in enumerate(kinds[m][kind]))
                  for m in names)] for kind in kinds[names[0]]])
    kind_note = ("\n\nPer fault kind: window recall of each model's flags (score over its own threshold, or "
                 "the unseen-state rule: the latent score held over its own level); window AUROC of the "
                 "score and of the latent score alone (the kind's windows against the test series' normal "
                 "windows). `unseen_mode`: the pump settles at a load it never held in training, every channel "
                 "in its training range and consistent with the others; labelled while the load is there, "
                 "from the ramp in to the ramp out.")
    return rows, table + note + "\n\n" + kind_table + kind_note
