"""A generated server-metrics data set in the ``--dataset folder`` layout, for ``bench quality``.

``python -m export.bench.servers OUT`` writes ``OUT/srv0 .. srvN-1``, each with ``train.csv``
(4,000 normal rows) and ``test.csv`` (4,000 rows, a ``label`` column), 5-minute samples, 38
channels of the kinds server monitoring has and a sensor set often does not:

- ``cpu_*`` (10): bounded 0-100, following a daily load cycle;
- ``mem_*`` (6): slow random walks;
- ``req_*`` (6): integer request counts (Poisson, load-driven);
- ``bytes_total_*`` (4): cumulative counters, rising through the whole series;
- ``conns_*`` (4): near-constant (3), one step up for about one reading in 500: rare and normal;
- ``const_a``, ``const_b``: constant;
- ``lat_*`` (6): heavy-tailed latencies (log-normal, load-driven).

Four labelled faults in each test part: two CPU metrics pinned near 100 (30 rows), a memory leak
(a 200-row ramp), one latency four times higher (60 rows), two request counts at zero (80 rows).
Labels are never used for training; the set exists to check what defaults do with such channels.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

from export.bench.common import write_folder_csv

DAY_ROWS = 288  # one day of 5-minute samples
FAULTS = ((500, 30, "cpu"), (1400, 200, "mem"), (2300, 60, "lat"), (3200, 80, "req"))  # (test row, rows, kind)


def server_unit(seed: int, n_train: int = 4000, n_test: int = 4000) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(channel names, values (n_train + n_test, 38), labels (n_train + n_test,))`` of one server."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    t = np.arange(n)
    load = 0.5 + 0.3 * np.sin(2 * np.pi * t / DAY_ROWS) + 0.05 * rng.standard_normal(n)
    cols: dict[str, np.ndarray] = {}
    for i in range(10):
        cols[f"cpu_{i}"] = np.clip(100 * (load * rng.uniform(0.5, 1.2) + 0.05 * rng.standard_normal(n)), 0, 100)
    for i in range(6):
        walk = np.cumsum(0.002 * rng.standard_normal(n))
        cols[f"mem_{i}"] = 40 + 10 * (walk - walk.min())
    for i in range(6):
        cols[f"req_{i}"] = rng.poisson(50 * load.clip(0.05)).astype(float)
    for i in range(4):
        cols[f"bytes_total_{i}"] = np.cumsum(rng.poisson(1000 * load.clip(0.05))).astype(float)
    for i in range(4):
        cols[f"conns_{i}"] = 3.0 + (rng.random(n) < 0.002)
    cols["const_a"], cols["const_b"] = np.zeros(n), np.full(n, 7.0)
    for i in range(6):
        cols[f"lat_{i}"] = 10 * np.exp(0.3 * rng.standard_normal(n)) * (1 + load)
    labels = np.zeros(n, dtype=np.int64)
    for row, length, kind in FAULTS:
        rows = slice(n_train + row, n_train + row + length)
        if kind == "cpu":
            cols["cpu_3"][rows], cols["cpu_4"][rows] = 100.0, 98.0
        elif kind == "mem":
            cols["mem_2"][rows] += np.linspace(0, 30, length)
        elif kind == "lat":
            cols["lat_1"][rows] *= 4
        else:
            cols["req_2"][rows] = cols["req_3"][rows] = 0.0
        labels[rows] = 1
    names = list(cols)
    return names, np.column_stack([cols[c] for c in names]), labels


def write_servers(out: Path, units: int = 3, seed: int = 0, n_train: int = 4000) -> list[Path]:
    """Write ``units`` servers (seeds ``seed``, ``seed + 1``, ...) under ``out``; returns their folders."""
    start = datetime.datetime(2026, 1, 1)
    folders = []
    for k in range(units):
        names, values, labels = server_unit(seed + k, n_train)
        stamps = [(start + datetime.timedelta(minutes=5 * i)).isoformat(sep=" ") for i in range(len(values))]
        d = out / f"srv{k}"
        d.mkdir(parents=True, exist_ok=True)
        write_folder_csv(d / "train.csv", names, stamps[:n_train], values[:n_train])
        write_folder_csv(d / "test.csv", names, stamps[n_train:], values[n_train:], labels[n_train:])
        folders.append(d)
    return folders


def main(argv: list[str] | None = None) -> int:
    """``python -m export.bench.servers OUT [--units N] [--seed S]``."""
    p = argparse.ArgumentParser(prog="python -m export.bench.servers", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write srv0, srv1, ... into")
    p.add_argument("--units", type=int, default=3, help="servers to write (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first server (default 0)")
    args = p.parse_args(argv)
    folders = write_servers(args.out, args.units, args.seed)
    print(f"wrote {len(folders)} servers under {args.out}; benchmark them with "
          f"edge-aae bench quality --dataset folder --path {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
