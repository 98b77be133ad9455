"""``edge-aae bench quality``: a public protocol end to end, four methods side by side in one run.

Methods, on the same points and with the same label-free threshold rule (the detector's
own, fitted on the training part only): the AAE (torch), its exported INT8 model
(onnxruntime), the plain autoencoder (``adversarial_weight = 0``), and PCA with
T² + Q on standardized points. The last ``window_len - 1`` training rows are put in
front of each test part so that every test point has a window ending at it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.data import LABEL_COLUMN_NAMES, SensorData, assemble_series, find_label_column, load_series
from edge_aae.core.errors import DataError, EdgeAAEError
from edge_aae.core.evaluate import read_interpretation
from edge_aae.core.metrics import auprc, auroc, best_f1, far_mar, localization, nab_score, precision_recall_f1
from edge_aae.core.thresholds import fit_threshold
from edge_aae.train.config import TrainConfig

log = logging.getLogger(__name__)
SHIPPED = "AAE bundle as shipped (onnxruntime)"
METHODS = ("AAE (torch)", "AAE INT8 (onnxruntime)", SHIPPED, "plain AE (torch)", "PCA T²+Q")


@dataclasses.dataclass
class Unit:
    """One file or entity: training part, test part (labels), optional changepoints and channel truth."""

    name: str
    train: SensorData
    test: SensorData
    changepoints: np.ndarray | None = None
    truth: list[set[int]] | None = None


def _concat(a: SensorData, b: SensorData) -> SensorData:
    labels = None if b.labels is None else np.r_[np.zeros(len(a.timestamps), np.int8), b.labels]
    return assemble_series(b.path, list(b.channels), np.r_[a.timestamps, b.timestamps],
                           np.r_[a.values, b.values], labels, max_gap_factor=1e9)


def skab_units(path: Path, train_rows: int = 400) -> list[Unit]:
    """The 34 labelled SKAB files: first ``train_rows`` rows to train, the rest to test."""
    root = path / "data" if (path / "data").is_dir() else path
    files = sorted(p for d in ("valve1", "valve2", "other") for p in (root / d).glob("*.csv"))
    if not files:
        raise DataError(f"{path}: no SKAB files under {root}/valve1, valve2, other")
    units = []
    for f in files:
        data = load_series(f, label_col="anomaly", max_gap_factor=1e9)
        with f.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter=";"))
        if "changepoint" not in rows[0]:
            raise DataError(f"{f}: no changepoint column")
        cp = np.array([float(r["changepoint"]) for r in rows]) > 0.5
        n = len(data.timestamps)
        units.append(Unit(f"{f.parent.name}/{f.stem}", data.slice_rows(0, train_rows),
                          data.slice_rows(train_rows, n), data.timestamps[train_rows:][cp[train_rows:n]]))
    return units


def smd_units(path: Path, end_inclusive: bool = True, skipped: dict[str, str] | None = None) -> list[Unit]:
    """SMD-layout entities: ``train/``, ``test/``, ``test_label/`` and (optional) ``interpretation_label/``.

    With ``skipped``, an entity whose files cannot be read is recorded there (entity -> error) and
    left out; without, its error is raised.
    """
    for part in ("train", "test", "test_label"):
        if not (path / part).is_dir():
            raise DataError(f"{path}: missing folder {part}/ (SMD layout: train/, test/, test_label/)")
    train_files = sorted((path / "train").glob("*.txt"))
    if not train_files:
        raise DataError(f"{path}/train: no entity files (*.txt)")
    return _readable([(f.stem, partial(_smd_unit, path, f, end_inclusive)) for f in train_files], skipped)


def _smd_unit(path: Path, train_file: Path, end_inclusive: bool) -> Unit:
    """One entity of :func:`smd_units`."""
    name = train_file.stem
    test_file, label_file = path / "test" / f"{name}.txt", path / "test_label" / f"{name}.txt"
    for p in (test_file, label_file):
        if not p.is_file():
            raise DataError(f"{p}: missing for entity {name}")
    train = load_series(train_file)
    test = load_series(test_file)
    try:
        labels = np.loadtxt(label_file, dtype=np.float64, ndmin=1)
    except ValueError as exc:
        raise DataError(f"{label_file}: expected one 0 or 1 per line ({exc})") from None
    if labels.shape[0] != len(test.timestamps) or not np.isin(labels, (0, 1)).all():
        raise DataError(f"{label_file}: expected {len(test.timestamps)} lines of 0 or 1")
    offset = train.timestamps[-1] + 1.0
    test = dataclasses.replace(test, timestamps=test.timestamps + offset, labels=labels.astype(np.int8))
    interp = path / "interpretation_label" / f"{name}.txt"
    truth = (read_interpretation(interp, len(test.timestamps), len(test.channels), end_inclusive)
             if interp.is_file() else None)
    return Unit(name, train, test, None, truth)


def folder_units(path: Path, end_inclusive: bool = False, skipped: dict[str, str] | None = None) -> list[Unit]:
    """Any labelled set laid out as ``PATH/<unit>/train.csv`` and ``test.csv`` (with a ``label`` column).

    An optional ``PATH/<unit>/interpretation.txt`` (SMD style ``start-end:c1,c2``, rows of the test
    file, channels 1-based) gives the channels to blame. With ``skipped``, a unit whose files
    cannot be read is recorded there (unit -> error) and left out; without, its error is raised.
    """
    dirs = sorted(d for d in path.iterdir() if d.is_dir() and (d / "train.csv").is_file())
    if not dirs:
        raise DataError(f"{path}: no unit folders with train.csv (layout: PATH/<unit>/train.csv, test.csv)")
    return _readable([(d.name, partial(_folder_unit, d, end_inclusive)) for d in dirs], skipped)


def _readable(loaders: list[tuple[str, Callable[[], Unit]]], skipped: dict[str, str] | None) -> list[Unit]:
    """The units that load; one that does not is recorded in ``skipped`` (raised without it)."""
    units = []
    for name, load in loaders:
        try:
            units.append(load())
        except EdgeAAEError as exc:
            if skipped is None:
                raise
            log.error("unit %s left out: %s", name, exc)
            skipped[name] = str(exc)
    return units


def _folder_unit(d: Path, end_inclusive: bool) -> Unit:
    """One unit folder of :func:`folder_units`."""
    test_file = d / "test.csv"
    if not test_file.is_file():
        raise DataError(f"{test_file}: missing for unit {d.name}")
    train = load_series(d / "train.csv")
    label_col = find_label_column(test_file)
    if label_col is None:
        raise DataError(f"{test_file}: needs a 'label' column of 0/1 (or one named "
                        f"{', '.join(repr(n) for n in LABEL_COLUMN_NAMES[1:])})")
    if label_col != "label":
        log.info("%s: labels from column %r", test_file, label_col)
    test = load_series(test_file, label_col=label_col)
    assert test.labels is not None
    if list(test.channels) != list(train.channels):
        test = test.select_channels(list(train.channels))
    if test.timestamps[0] <= train.timestamps[-1]:  # keep time increasing across train -> test
        offset = train.timestamps[-1] + train.sample_period_s - test.timestamps[0]
        test = dataclasses.replace(test, timestamps=test.timestamps + offset)
    interp = d / "interpretation.txt"
    truth = (read_interpretation(interp, len(test.timestamps), len(test.channels), end_inclusive)
             if interp.is_file() else None)
    return Unit(d.name, train, test, None, truth)


class _UnitTag(logging.Filter):
    """Prefixes every log record of a bench unit with the unit's name."""

    def __init__(self) -> None:
        super().__init__()
        self.unit = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if self.unit and not getattr(record, "_unit_tagged", False):
            record.msg = f"[{self.unit}] {record.msg}"
            record._unit_tagged = True
        return True


def pca_scores(train: np.ndarray, test: np.ndarray, variance: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """T²/mean(T²) + Q/mean(Q) of points under a PCA fitted on ``train`` (both as ``(n, C)``)."""
    return _pca(train, test, variance)[:2]


def pca_contributions(train: np.ndarray, test: np.ndarray, variance: float = 0.9) -> np.ndarray:
    """``(n, C)`` per-channel squared residuals (the Q statistic's parts): PCA's channels to blame."""
    return _pca(train, test, variance)[2]


def _pca(train: np.ndarray, test: np.ndarray, variance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fitted on the complete training rows; a missing reading counts as the channel's mean."""
    fit = train[np.isfinite(train).all(axis=1)]
    if fit.shape[0] < 2:
        raise DataError("PCA baseline: fewer than two training rows without a missing value")
    mu, sd = fit.mean(0), fit.std(0) + 1e-9
    z = (fit - mu) / sd
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    var = s**2 / max(len(z) - 1, 1)
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), variance) + 1)
    p, lam = vt[:k].T, np.maximum(var[:k], 1e-12)

    def raw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zz = np.nan_to_num((x - mu) / sd, nan=0.0)
        t = zz @ p
        return (t**2 / lam).sum(1), (zz - t @ p.T) ** 2

    t2, q_parts = raw(fit)
    t2_test, q_test_parts = raw(test)
    q, q_test = q_parts.sum(1), q_test_parts.sum(1)
    scale_t2, scale_q = t2.mean() or 1.0, q.mean() or 1.0
    return t2 / scale_t2 + q / scale_q, t2_test / scale_t2 + q_test / scale_q, q_test_parts


def _score_unit(unit: Unit, cfg: TrainConfig, work: Path, tag: _UnitTag | None = None
                ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, float, np.ndarray]], dict[str, Any]]:
    """Per method: (scores at every test point, contributions (n, C) or empty, threshold); export facts.

    The INT8 row is the INT8 model whether or not it passed the parity gate; the shipped row is
    the bundle's ``model.onnx``: INT8 where it passed, FP32 where the gate refused it.
    """
    from edge_aae.core.manifest import DEFAULT_MODEL
    from edge_aae.gateway.scorer import BundleScorer
    from edge_aae.train.detector import AAEDetector
    from export.bundle import INT8_MODEL, build_bundle

    n_test = len(unit.test.timestamps)
    tail = unit.train.slice_rows(max(0, len(unit.train.timestamps) - cfg.window_len + 1), len(unit.train.timestamps))
    ext = _concat(tail, unit.test)
    first = len(ext.timestamps) - n_test
    out: dict[str, tuple[np.ndarray, np.ndarray, float, np.ndarray]] = {}
    info: dict[str, Any] = {}

    def at_points(res: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores, contributions and flags (score over the threshold or the unseen-state rule) per test point."""
        scores = np.full(n_test, np.nan)
        contrib = np.zeros((n_test, len(unit.test.channels)))
        flags = np.zeros(n_test, dtype=bool)
        keep = res.ends >= first
        scores[res.ends[keep] - first] = res.score[keep]
        contrib[res.ends[keep] - first] = res.channel_scores[keep]
        flags[res.ends[keep] - first] = res.is_anomaly[keep] == 1
        # points in a gap-split segment's first window_len - 1 rows: carry the last score forward
        for i in range(1, n_test):
            if np.isnan(scores[i]):
                scores[i], contrib[i], flags[i] = scores[i - 1], contrib[i - 1], flags[i - 1]
        return np.nan_to_num(scores, nan=float(np.nanmin(scores))), contrib, flags

    for method, adv in (("AAE (torch)", cfg.adversarial_weight), ("plain AE (torch)", 0.0)):
        if tag is not None:  # warnings name the unit and the method
            tag.unit = f"{unit.name}, {method.split(' (')[0]}"
        det = AAEDetector(dataclasses.replace(cfg, adversarial_weight=adv)).fit(unit.train)
        s, c, f = at_points(det.score(ext))
        out[method] = (s, c, det.threshold_, f)
        if method == "AAE (torch)":
            run = work / "run"
            det.save(run)
            report = build_bundle(run, work / "bundle", version="1.0.0", force=True, keep_int8=True)
            scorer = BundleScorer(work / "bundle", INT8_MODEL)
            s8, c8, f8 = at_points(scorer.score(ext))
            out["AAE INT8 (onnxruntime)"] = (s8, c8, scorer.scorer.threshold, f8)
            info = {"int8_gate_passed": bool(report.int8 is not None and report.int8.passed),
                    "int8_quantization": report.int8_quantization,
                    "shipped": report.default_kind, "reason": report.default_reason,
                    "int8_attempts": report.int8_attempts}
            if report.default_kind == "int8":
                out[SHIPPED] = out["AAE INT8 (onnxruntime)"]
            else:
                shipped = BundleScorer(work / "bundle", DEFAULT_MODEL)
                ss, cs, fs = at_points(shipped.score(ext))
                out[SHIPPED] = (ss, cs, shipped.scorer.threshold, fs)
    if tag is not None:
        tag.unit = f"{unit.name}, PCA T²+Q"
    cut = int(len(unit.train.values) * (1 - cfg.val_fraction))
    fit_scores, val_scores = pca_scores(unit.train.values[:cut], unit.train.values[cut:])
    _, test_scores = pca_scores(unit.train.values[:cut], unit.test.values)
    # the detector's rule; "t2" is the shift score's own limit, PCA's T² + Q has none: it keeps POT
    thr = fit_threshold(val_scores, fit_scores, "pot" if cfg.threshold == "t2" else cfg.threshold, cfg.target_far,
                        init_quantile=cfg.pot_init_quantile).value
    out["PCA T²+Q"] = (test_scores, pca_contributions(unit.train.values[:cut], unit.test.values), thr,
                       test_scores > thr)
    return out, info


def run_quality_bench(dataset: str, path: Path, out_dir: Path, cfg: TrainConfig | None = None,
                      limit: int | None = None, interpretation_inclusive: bool = False) -> tuple[dict[str, Any], str]:
    """Run the protocol; writes ``results.json`` and ``results.md`` into ``out_dir``.

    ``dataset``: ``skab``, ``smd`` or ``folder``; interpretation intervals are ``[start, end)`` unless
    ``interpretation_inclusive`` (ASD's convention).
    """
    cfg = cfg or TrainConfig()
    skipped: dict[str, str] = {}  # unit -> why it was left out (unreadable, too short to train or score)
    if dataset == "skab":
        units = skab_units(path)
    elif dataset == "smd":
        units = smd_units(path, end_inclusive=interpretation_inclusive, skipped=skipped)
    elif dataset == "folder":
        units = folder_units(path, end_inclusive=interpretation_inclusive, skipped=skipped)
    else:
        raise DataError(f"--dataset {dataset!r}: expected skab, smd or folder")
    units = units[:limit] if limit else units
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = _UnitTag()
    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
    try:
        return _run_units(dataset, path, out_dir, cfg, units, tag, skipped)
    finally:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(tag)


def _run_units(dataset: str, path: Path, out_dir: Path, cfg: TrainConfig, units: list[Unit],
               tag: _UnitTag, skipped: dict[str, str]) -> tuple[dict[str, Any], str]:
    per_file: dict[str, dict[str, Any]] = {m: {} for m in METHODS}
    counts = {m: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "fp_clean": 0, "n_clean": 0} for m in METHODS}
    cps: dict[str, list[float]] = {m: [] for m in METHODS}
    dets: dict[str, list[float]] = {m: [] for m in METHODS}
    t0 = time.monotonic()
    offset = 0.0
    for i, unit in enumerate(units):
        tag.unit = unit.name
        try:
            with tempfile.TemporaryDirectory() as work:
                scored, info = _score_unit(unit, cfg, Path(work), tag)
        except EdgeAAEError as exc:  # one unit the detector refuses must not cost the others
            log.error("unit %s left out: %s", unit.name, exc)
            skipped[unit.name] = str(exc)
            print(f"  {i + 1}/{len(units)} {unit.name}: left out ({exc})", flush=True)
            continue
        tag.unit = unit.name
        y = unit.test.labels
        assert y is not None
        ts = unit.test.timestamps
        _save_scores(out_dir / "scores" / f"{unit.name.replace('/', '_')}.npz", y, ts, scored)
        clean = normal_windows(y, cfg.window_len)
        for method, (s, contrib, thr, flags) in scored.items():
            pred = flags.astype(np.int8)  # over the threshold, or held by the unseen-state rule
            p, r, f1 = precision_recall_f1(y, pred)
            row: dict[str, Any] = {"f1": f1, "precision": p, "recall": r, "threshold": float(thr),
                                   "far_normal_windows_pct": 100 * float(pred[clean].mean()) if clean.any() else None}
            if y.any() and not y.all():
                row |= {"auroc": auroc(y, s), "auprc": auprc(y, s), "oracle_best_f1": best_f1(y, s)[0]}
            elif method == METHODS[0]:
                log.warning("%s: every test point is labelled %d: AUROC, AUPRC and best F1 are not defined "
                            "for it (left out of the means)", unit.name, int(y[0]))
            if unit.truth is not None and contrib.shape[1]:
                row |= localization(contrib, unit.truth)
            if method == SHIPPED:
                row |= info
            per_file[method][unit.name] = row
            acc = counts[method]
            acc["tp"] += int(((pred == 1) & (y == 1)).sum())
            acc["fp"] += int(((pred == 1) & (y == 0)).sum())
            acc["fn"] += int(((pred == 0) & (y == 1)).sum())
            acc["tn"] += int(((pred == 0) & (y == 0)).sum())
            acc["fp_clean"] += int(pred[clean].sum())
            acc["n_clean"] += int(clean.sum())
            if unit.changepoints is not None:
                rising = np.flatnonzero(np.diff(np.r_[0, pred]) == 1)
                cps[method] += (unit.changepoints - ts[0] + offset).tolist()
                dets[method] += (ts[rising] - ts[0] + offset).tolist()
        offset += float(ts[-1] - ts[0]) + 10_000.0  # files never share a NAB window
        tag.unit = ""
        log.info("%s %d/%d done (%.0f s)", unit.name, i + 1, len(units), time.monotonic() - t0)
        print(f"  {i + 1}/{len(units)} {unit.name}: " + ", ".join(
            f"{m.split(' (')[0]} F1 {per_file[m][unit.name]['f1']:.3f}" for m in METHODS), flush=True)
    if not per_file[METHODS[0]]:
        raise DataError(f"{path}: every unit was left out: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    summary: dict[str, dict[str, Any]] = {}
    for m in METHODS:
        acc = counts[m]
        tp, fp, fn, tn = acc["tp"], acc["fp"], acc["fn"], acc["tn"]
        far, mar = far_mar(np.r_[np.zeros(fp + tn), np.ones(fn + tp)],
                           np.r_[np.ones(fp), np.zeros(tn), np.zeros(fn), np.ones(tp)])
        row = {"pooled_f1": tp / (tp + (fn + fp) / 2) if tp + fn + fp else 0.0, "far_pct": 100 * far,
               "mar_pct": 100 * mar,
               "far_normal_windows_pct": 100 * acc["fp_clean"] / acc["n_clean"] if acc["n_clean"] else None}
        files = per_file[m].values()
        unit_far = [v["far_normal_windows_pct"] for v in files if v.get("far_normal_windows_pct") is not None]
        row["units_far_within_3x"] = sum(f <= 300 * cfg.target_far for f in unit_far)
        row["units_far_measured"] = len(unit_far)
        for key in ("auroc", "auprc", "oracle_best_f1", "f1", "hitrate@100", "hitrate@150", "ndcg@150"):
            vals = [v[key] for v in files if key in v and np.isfinite(v[key])]
            if vals:
                row[f"mean_{key}"] = float(np.mean(vals))
        if dataset == "skab":
            row |= {f"nab_{k}": v for k, v in nab_score(cps[m], dets[m], 60.0).items()}
        summary[m] = row
    n = len(per_file[METHODS[0]])  # units scored (those left out are in "skipped_units")
    results = {"dataset": dataset, "path": str(path), "units": n, "config": dataclasses.asdict(cfg),
               "seconds": time.monotonic() - t0, "pooled": summary, "per_file": per_file}
    shipped_rows = per_file[SHIPPED].values()
    passed = sum(bool(v.get("int8_gate_passed")) for v in shipped_rows)
    weights_only = sum(bool(v.get("int8_gate_passed")) and v.get("int8_quantization") == "weights"
                       for v in shipped_rows)
    results["int8_gate_passed_units"] = passed
    results["skipped_units"] = skipped
    results["int8_weights_only_units"] = weights_only
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    table = _table(dataset, summary, n, cfg.target_far) + (
        f"\n\nINT8 passed the parity gate on {passed} of {n} "
        f"{ {'skab': 'files', 'folder': 'units'}.get(dataset, 'entities')} ({passed - weights_only} static, "
        f"{weights_only} "
        "weights-only after static failed); elsewhere the bundle ships FP32 as `model.onnx`. The INT8 row "
        "scores the export's INT8 model regardless: the first form that passed, or the last one tried.")
    if skipped:
        table += (f"\n\n**Left out** ({len(skipped)} of {n + len(skipped)} units, not in the means): "
                  + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ".")
    if cfg.threshold == "t2":
        table += ("\n\nThreshold `t2` is the shift score's own T² limit; PCA's T² + Q has no such limit and "
                  "keeps the empirical rule.")
    (out_dir / "results.md").write_text(table + "\n", encoding="utf-8")
    return results, table


def _save_scores(path: Path, labels: np.ndarray, timestamps: np.ndarray,
                 scored: dict[str, tuple[np.ndarray, np.ndarray, float, np.ndarray]]) -> None:
    """Each method's test scores, threshold and flags beside the labels, for plots and threshold studies.

    ``methods`` names the methods; ``score_K``, ``threshold_K`` and ``flag_K`` are the K-th one's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(scored)
    arrays: dict[str, np.ndarray] = {"methods": np.array(names), "labels": labels, "timestamps": timestamps}
    arrays |= {f"score_{k}": np.asarray(scored[m][0], np.float32) for k, m in enumerate(names)}
    arrays |= {f"threshold_{k}": np.asarray(scored[m][2], np.float64) for k, m in enumerate(names)}
    arrays |= {f"flag_{k}": np.asarray(scored[m][3], np.int8) for k, m in enumerate(names)}
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # (numpy types allow_pickle among the names)


def normal_windows(labels: np.ndarray, window_len: int) -> np.ndarray:
    """``(n,)`` bool: the point and the ``window_len - 1`` points before it are all labelled normal."""
    y = np.asarray(labels) != 0
    dirty = np.convolve(y.astype(np.int64), np.ones(window_len, dtype=np.int64), mode="full")[:y.size] > 0
    return ~dirty


def _table(dataset: str, summary: dict[str, dict[str, Any]], n: int, target_far: float) -> str:
    from export.bench.common import markdown_table

    def f(v: Any, pct: bool = False) -> str:
        return "-" if v is None else (f"{v:.1f}" if pct else f"{v:.3f}")

    if dataset == "skab":
        head = ["method", "F1 (pooled)", "FAR %", "MAR %", "NAB standard", "NAB low FP", "NAB low FN"]
        rows = [[m, f(s["pooled_f1"]), f(s["far_pct"], True), f(s["mar_pct"], True), f(s.get("nab_standard"), True),
                 f(s.get("nab_low_fp"), True), f(s.get("nab_low_fn"), True)] for m, s in summary.items()]
        note = (f"SKAB leaderboard protocol: {n} files, train on the first 400 rows of each, test on the rest, "
                "counts pooled, no point adjustment, label-free thresholds.\n\nMean per file:\n\n"
                + markdown_table(["method", "AUROC", "AUPRC", "oracle best F1 (uses labels, comparison only)"],
                                 [[m, f(s.get("mean_auroc")), f(s.get("mean_auprc")),
                                   f(s.get("mean_oracle_best_f1"))] for m, s in summary.items() if m != SHIPPED])
                + "\n\nRealized FAR on normal windows (test points whose whole window is labelled normal, the "
                f"windows the threshold's {100 * target_far:g} % target is about), pooled; in brackets the files "
                "within 3x the target: " + ", ".join(
                    f"{m.split(' (')[0] if m != SHIPPED else 'shipped'} {f(s.get('far_normal_windows_pct'), True)} % "
                    f"({s['units_far_within_3x']} of {s['units_far_measured']})" for m, s in summary.items()) + ".")
    else:
        head = ["method", "mean AUROC", "mean AUPRC", "F1 at own threshold (mean)", "oracle best F1 (mean)",
                "realized FAR % on normal points", "realized FAR % on normal windows", "HitRate@100%",
                "HitRate@150%", "NDCG@150%"]
        rows = [[m, f(s.get("mean_auroc")), f(s.get("mean_auprc")), f(s.get("mean_f1")),
                 f(s.get("mean_oracle_best_f1")), f(s.get("far_pct"), True),
                 f(s.get("far_normal_windows_pct"), True), f(s.get("mean_hitrate@100")),
                 f(s.get("mean_hitrate@150")), f(s.get("mean_ndcg@150"))] for m, s in summary.items()]
        layout = ("SMD layout, {n} entities, trained on train/, scored on test/" if dataset == "smd"
                  else "folder layout, {n} units, trained on UNIT/train.csv, scored on UNIT/test.csv").format(n=n)
        note = (f"{layout}, no point adjustment; oracle F1 uses the labels (for comparison only). Realized FAR: "
                "points over the label-free threshold among the test points labelled normal, pooled; on normal "
                "windows, only among the points whose whole window (the point and the window_len - 1 before "
                f"it) is labelled normal: the windows the threshold's {100 * target_far:g} % target is about. A "
                "point just after an anomaly is labelled normal but its window still holds anomalous readings."
                "\n\nUnits whose realized FAR on normal windows is within 3x the target: "
                + ", ".join(f"{m.split(' (')[0] if m != SHIPPED else 'shipped'} {s['units_far_within_3x']} of "
                            f"{s['units_far_measured']}" for m, s in summary.items()) + ".")
    return markdown_table(head, [list(r) for r in rows]) + "\n\n" + note


# the headline figures a seed spread reports: (column, key in the pooled summary, a percentage)
SPREAD_FIGURES = (("pooled F1", "pooled_f1", False), ("FAR %", "far_pct", True), ("mean AUPRC", "mean_auprc", False),
                  ("F1 at own threshold (mean)", "mean_f1", False),
                  ("oracle best F1 (mean)", "mean_oracle_best_f1", False),
                  ("HitRate@150%", "mean_hitrate@150", False))


def seed_spread_table(pooled_by_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """The headline figures of each method at each seed, then their mean ± sample sd over the seeds.

    ``pooled_by_seed``: seed -> the ``pooled`` part of :func:`run_quality_bench`'s results. A figure
    no method has (HitRate without interpretation labels) is left out; one a run lacks is ``-``.
    """
    from export.bench.common import markdown_table

    if not pooled_by_seed:
        raise ValueError("a seed spread needs at least one seed")
    runs = list(pooled_by_seed.values())
    figures = [f for f in SPREAD_FIGURES if any(f[1] in s for run in runs for s in run.values())]

    def fmt(v: float | None, pct: bool) -> str:
        return "-" if v is None else (f"{v:.1f}" if pct else f"{v:.3f}")

    rows: list[list[object]] = []
    for method in METHODS:
        if not any(method in run for run in runs):
            continue
        for seed, run in pooled_by_seed.items():
            s = run.get(method, {})
            rows.append([method, str(seed), *(fmt(s.get(key), pct) for _, key, pct in figures)])
        cells = []
        for _, key, pct in figures:
            vals = [float(run[method][key]) for run in runs if run.get(method, {}).get(key) is not None]
            if not vals:
                cells.append("-")
                continue
            sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            cells.append(f"**{fmt(float(np.mean(vals)), pct)} ± {fmt(sd, pct)}**")
        rows.append([method, "mean ± sd", *cells])
    return markdown_table(["method", "seed", *(name for name, _, _ in figures)], rows)
