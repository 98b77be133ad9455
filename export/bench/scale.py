"""``edge-aae bench scale``: training at workstation scale, and what torch's threads cost.

1. ``edge-aae synth --train-rows 2000000 --channels 38`` then ``edge-aae train`` with defaults in a
   child process: wall time, rows/s, peak RSS of the child, the windows' AUROC on its test set.
2. Epoch time of the default synthetic model with ``--threads 1`` and with torch's default (every
   core), on an idle machine and with a second process burning one core, in the same run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from export.bench.common import markdown_table


def _cli(*args: object, timeout_s: float = 7200) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``edge-aae ARGS`` in a child; returns (result, wall seconds, the child's peak RSS in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "edge_aae.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout_s)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if p.returncode != 0:
        raise RuntimeError(f"edge-aae {' '.join(map(str, args))[:200]} failed:\n{p.stderr[-2000:]}")
    # ru_maxrss of children is the largest of any child so far: only a new maximum is this child's
    return p, wall, (after / 1024 if after > before else float("nan"))


def _auroc(run: Path, test: Path) -> float:
    from edge_aae.core.data import load_series
    from edge_aae.core.metrics import auroc
    from edge_aae.train.detector import AAEDetector

    data = load_series(test, label_col="label")
    scores = AAEDetector.load(run).score(data)
    assert data.labels is not None
    return auroc(data.labels[scores.ends], scores.score)


def scale_rows(work: Path, rows: int, channels: int) -> dict[str, Any]:
    """Synth, then train with defaults, in children; the figures of the training child."""
    data = work / "data"
    _, synth_s, _ = _cli("synth", "--out", data, "--train-rows", rows, "--test-rows", 20_000,
                         "--channels", channels)
    size_mb = (data / "train.csv").stat().st_size / 2**20
    _, wall, rss = _cli("train", "--data", data / "train.csv", "--out", work / "run", "--quiet")
    rep = json.loads((work / "run" / "report.json").read_text())
    return {"rows": rows, "channels": channels, "csv_mb": size_mb, "synth_s": synth_s, "wall_s": wall,
            "train_s": rep["train_seconds"], "epochs": len(rep["history"]), "rss_mb": rss,
            "auroc": _auroc(work / "run", data / "test.csv"),
            "array_mb": rows * channels * 8 / 2**20}


def _burn(stop: Any) -> None:
    """Keep one core busy until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def epoch_seconds(work: Path, threads: int, tag: str) -> float:
    """Median epoch time of the default synthetic model over 3 epochs with ``--threads``."""
    _cli("train", "--data", work / "synth" / "train.csv", "--out", work / f"threads-{tag}", "--epochs", 3,
         "--threads", threads, "--quiet")
    hist = json.loads((work / f"threads-{tag}" / "report.json").read_text())["history"]
    return float(np.median([h["seconds"] for h in hist]))


def threads_table(work: Path) -> list[list[object]]:
    """``--threads 1`` vs torch's default, idle and with one core burnt by another process."""
    _cli("synth", "--out", work / "synth")
    rows: list[list[object]] = []
    for load in ("idle", "one core busy"):
        stop = mp.Event()
        burner = mp.Process(target=_burn, args=(stop,)) if load != "idle" else None
        if burner is not None:
            burner.start()
        try:
            one = epoch_seconds(work, 1, f"1-{len(rows)}")
            default = epoch_seconds(work, 0, f"0-{len(rows)}")
        finally:
            stop.set()
            if burner is not None:
                burner.join(10)
        rows.append([load, f"{one:.2f}", f"{default:.2f}", f"{default / one:.2f}x"])
    return rows


def run_scale_bench(rows: int = 2_000_000, channels: int = 38, work: Path | None = None) -> str:
    """Both parts; returns the Markdown section body."""
    import os

    from edge_aae.train.config import TrainConfig

    with tempfile.TemporaryDirectory(prefix="edge-aae-scale-") as t:
        w = work or Path(t)
        s = scale_rows(w / "scale", rows, channels)
        th = threads_table(w)
    big = markdown_table(
        ["rows x channels", "CSV (MB)", "load + train (s)", "rows/s", "epochs", "peak RSS (MB)", "window AUROC"],
        [[f"{s['rows']:,} x {s['channels']}", f"{s['csv_mb']:.0f}", f"{s['wall_s']:.0f}",
          f"{s['rows'] / s['wall_s']:,.0f}", str(s["epochs"]), f"{s['rss_mb']:.0f}", f"{s['auroc']:.4f}"]])
    threads = markdown_table(["machine", "epoch (s), --threads 1", "epoch (s), torch's default", "default / 1"], th)
    return (f"{big}\n\n`edge-aae synth --train-rows {rows} --channels {channels}` (20,000 test rows), then "
            f"`edge-aae train` with defaults in a child process (peak RSS is that child's; the float64 array "
            f"alone is {s['array_mb']:.0f} MB). Windows are cut per batch from the series, "
            f"{TrainConfig().windows_per_epoch:,} drawn afresh each epoch; validation takes every k-th of its "
            "windows beyond 20,000.\n\n"
            f"{threads}\n\nDefault synthetic model (8 channels), median of 3 epochs; torch's default is "
            f"{os.cpu_count()} threads on this machine; the busy core is a second Python process spinning.")
