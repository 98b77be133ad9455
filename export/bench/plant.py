"""A generated process plant in the ``--dataset folder`` layout, for ``bench quality``.

``python -m export.bench.plant OUT`` writes one folder per test run under ``OUT``, each with the
same ``train.csv`` (500 normal rows of one run of the plant) and its own ``test.csv`` (960 rows of
another run, a ``label`` column, the fault from row 160 on). 3-minute samples, 52 channels of the
kinds a chemical process historian holds:

- ``meas_*`` (22): flows, pressures, levels and temperatures driven by a few slow, serially
  correlated disturbances (feed composition, cooling water, ambient); six are temperatures that
  follow the process through a first-order lag;
- ``mv_*`` (11): controller outputs (valve positions) that cancel part of a disturbance's effect
  on the measurement each controls, so a valve and its measurement move together;
- ``an_*`` (19): composition analyzers, sampled every 2 (six) or 5 (thirteen) rows and held
  between samples, one sample period late: stepwise channels with long flat stretches.

Test runs (``OUT/<name>``): ``normal`` (no fault: every row labelled 0, for the false-alarm rate),
``feed_step`` (a disturbance steps by 2.5 of its spreads), ``variation`` (a disturbance's noise
three times larger), ``drift`` (a disturbance ramps over the run), ``sticky_valve`` (a valve
freezes and its measurement takes the disturbance it no longer cancels), ``sensor_bias`` (a
temperature reads 3 of its spreads high), ``analyzer_decoupled`` (an analyzer's readings no
longer follow the process). Labels are never used for training; the set exists to check what
defaults do with a short, wide, serially correlated training stretch and held analyzer readings.
The disturbances are correlated over about 12-65 rows; with ``--slow``, over 65-400 rows, so
that a 500-row training stretch sees only a few of their swings.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

from export.bench.common import write_folder_csv

N_TRAIN, N_TEST, FAULT_ROW = 500, 960, 160
PHI = (0.85, 0.97)  # the disturbances' AR(1) coefficients: correlated over about 12-65 rows
SLOW_PHI = (0.97, 0.995)  # ``--slow``: over about 65-400 rows, most of the 500-row training stretch
N_DIST, N_MEAS, N_MV, N_AN = 8, 22, 11, 19
FAULTS = ("normal", "feed_step", "variation", "drift", "sticky_valve", "sensor_bias", "analyzer_decoupled")


class Plant:
    """The plant's fixed structure (gains, levels, analyzer periods), drawn once from ``seed``."""

    def __init__(self, seed: int, phi: tuple[float, float] = PHI) -> None:
        rng = np.random.default_rng(seed)
        self.phi = rng.uniform(phi[0], phi[1], N_DIST)
        self.meas_gain = rng.normal(size=(N_MEAS, N_DIST)) * (rng.random((N_MEAS, N_DIST)) < 0.35)
        self.meas_noise = rng.uniform(0.2, 0.6, N_MEAS)
        self.meas_lag = np.where(np.arange(N_MEAS) >= N_MEAS - 6, rng.uniform(0.05, 0.15, N_MEAS), 1.0)
        self.controlled = rng.choice(N_MEAS - 6, N_MV, replace=False)  # each valve holds one measurement
        self.cancel = rng.uniform(0.6, 0.9, N_MV)  # the share of its measurement's swing a valve cancels
        self.an_gain = rng.normal(size=(N_AN, N_DIST)) * (rng.random((N_AN, N_DIST)) < 0.4)
        self.an_noise = rng.uniform(0.05, 0.2, N_AN)
        self.an_period = np.where(np.arange(N_AN) < 6, 2, 5)
        self.level = rng.uniform(5, 3000, N_MEAS + N_MV + N_AN)
        self.rel = rng.uniform(0.003, 0.02, N_MEAS + N_MV + N_AN)
        self.names = ([f"meas_{i:02d}" for i in range(N_MEAS)] + [f"mv_{i:02d}" for i in range(N_MV)]
                      + [f"an_{i:02d}" for i in range(N_AN)])

    def run(self, seed: int, rows: int, fault: str = "normal", fault_row: int = FAULT_ROW) -> np.ndarray:
        """``(rows, 52)`` readings of one run; ``fault`` starts at ``fault_row`` (a name in :data:`FAULTS`)."""
        rng = np.random.default_rng(seed)
        d = np.zeros((rows, N_DIST))
        state = rng.normal(size=N_DIST)
        on = np.arange(rows) >= fault_row if fault != "normal" else np.zeros(rows, bool)
        for t in range(rows):
            noise = rng.normal(size=N_DIST)
            if fault == "variation" and on[t]:
                noise[2] *= 3.0
            state = self.phi * state + np.sqrt(1 - self.phi ** 2) * noise
            d[t] = state
        if fault == "feed_step":
            d[on, 0] += 2.5
        elif fault == "drift":
            d[on, 5] += np.linspace(0, 4.0, int(on.sum()))
        swing = d @ self.meas_gain.T  # each measurement's disturbance swing, before control
        mv = -swing[:, self.controlled] * self.cancel  # valves move to cancel part of it
        if fault == "sticky_valve":
            mv[on, 3] = mv[FAULT_ROW, 3]
        meas = swing.copy()
        meas[:, self.controlled] += mv
        meas += self.meas_noise * rng.normal(size=(rows, N_MEAS))
        for c in np.flatnonzero(self.meas_lag < 1):  # temperatures: a first-order lag
            a, out = self.meas_lag[c], meas[:, c].copy()
            for t in range(1, rows):
                out[t] = out[t - 1] + a * (meas[t, c] - out[t - 1])
            meas[:, c] = out * 3.0
        if fault == "sensor_bias":
            biased = N_MEAS - 2
            meas[on, biased] += 3.0 * meas[:FAULT_ROW, biased].std()
        mv = mv + 0.05 * rng.normal(size=mv.shape)
        true = d @ self.an_gain.T + self.an_noise * rng.normal(size=(rows, N_AN))
        if fault == "analyzer_decoupled":
            true[on, 7] = true[:FAULT_ROW, 7].mean() + true[:FAULT_ROW, 7].std() * rng.normal(size=int(on.sum()))
        an = np.empty_like(true)
        for j in range(N_AN):  # sampled every period rows, held, reported one period late
            p = int(self.an_period[j])
            sample_rows = (np.arange(rows) // p) * p - p
            an[:, j] = true[np.clip(sample_rows, 0, rows - 1), j]
        z = np.column_stack([meas, mv, an])
        return self.level + self.level * self.rel * z


def write_plant(out: Path, seed: int = 0, slow: bool = False) -> list[Path]:
    """Write the training run and one test run per fault under ``out``; returns the folders.

    ``slow``: disturbances correlated over most of the training stretch (:data:`SLOW_PHI`), so
    that the test runs' normal rows reach levels the training rows never did.
    """
    plant = Plant(seed, SLOW_PHI if slow else PHI)
    train = plant.run(seed + 1000, N_TRAIN)
    start = datetime.datetime(2026, 1, 1)
    folders = []
    for k, fault in enumerate(FAULTS):
        test = plant.run(seed + 2000 + k, N_TEST, fault)
        labels = np.zeros(N_TEST, np.int64) if fault == "normal" else (np.arange(N_TEST) >= FAULT_ROW).astype(int)
        d = out / fault
        d.mkdir(parents=True, exist_ok=True)
        for name, values, lab in (("train.csv", train, None), ("test.csv", test, labels)):
            t0 = start if lab is None else start + datetime.timedelta(days=30)
            stamps = [(t0 + datetime.timedelta(minutes=3 * i)).isoformat(sep=" ") for i in range(len(values))]
            write_folder_csv(d / name, plant.names, stamps, values, lab)
        folders.append(d)
    return folders


def main(argv: list[str] | None = None) -> int:
    """``python -m export.bench.plant OUT [--seed S] [--slow]``."""
    p = argparse.ArgumentParser(prog="python -m export.bench.plant", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write one test run per fault into")
    p.add_argument("--seed", type=int, default=0, help="seed of the plant's structure and runs (default 0)")
    p.add_argument("--slow", action="store_true",
                   help="disturbances correlated over most of the training stretch (65-400 rows)")
    args = p.parse_args(argv)
    folders = write_plant(args.out, args.seed, args.slow)
    print(f"wrote {len(folders)} test runs under {args.out}; benchmark them with "
          f"edge-aae bench quality --dataset folder --path {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
