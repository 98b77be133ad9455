"""``edge-aae bench load``: reading a large CSV, numpy's C parser against the careful csv-module path.

Both paths read the same generated file, each in a fresh child process so that peak memory is
its own. The careful path is the fallback for files numpy's parser gives up on (ragged rows), and
close to how every file was read before the fast path existed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from export.bench.common import markdown_table

CHILD = """
import json, resource, sys, time
import edge_aae.core.data as data
if sys.argv[2] == "careful":
    data._fast_parse = lambda *a, **k: None
t0 = time.perf_counter()
d = data.load_series(sys.argv[1])
print(json.dumps({"s": time.perf_counter() - t0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "shape": list(d.values.shape)}))
"""


def write_csv(path: Path, rows: int, channels: int, seed: int = 0) -> None:
    """A CSV of ``rows`` x ``channels`` normal floats with a unix-seconds timestamp column."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write("timestamp," + ",".join(f"c{i}" for i in range(channels)) + "\n")
        np.savetxt(f, np.c_[1.7e9 + np.arange(rows), rng.normal(size=(rows, channels))], delimiter=",", fmt="%.6g")


def run_load_bench(rows: int = 200_000, channels: int = 38) -> str:
    """Time and peak memory of both paths on one generated file; a Markdown table."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_csv(path, rows, channels)
        size_mb = path.stat().st_size / 1e6
        twin = write_parquet_twin(path, rows, channels)
        res = {}
        for mode, target in (("fast", path), ("careful", path), ("parquet", twin)):
            if target is None:
                continue
            out = subprocess.run([sys.executable, "-c", CHILD, str(target), mode], capture_output=True, text=True,
                                 check=True, timeout=1800)
            res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        twin_mb = twin.stat().st_size / 1e6 if twin is not None else 0.0
    f, c = res["fast"], res["careful"]
    rows_md: list[list[object]] = [["numpy C parser (`load_series` default)", f"{f['s']:.2f}", f"{f['rss_mb']:.0f}"],
               ["csv module, Python floats (the fallback)", f"{c['s']:.2f}", f"{c['rss_mb']:.0f}"]]
    if "parquet" in res:
        q = res["parquet"]
        rows_md.append([f"Parquet twin ({twin_mb:.0f} MB, pyarrow)", f"{q['s']:.2f}", f"{q['rss_mb']:.0f}"])
    table = markdown_table(["path", "time (s)", "peak RSS (MB)"], rows_md)
    array_mb = rows * channels * 8 / 1e6
    return (table + f"\n\n{rows} rows x {channels} channels ({size_mb:.0f} MB of CSV; the float64 array is "
            f"{array_mb:.0f} MB). The C parser: {c['s'] / f['s']:.1f}x faster, "
            f"{c['rss_mb'] / f['rss_mb']:.1f}x less peak memory than the fallback, same run."
            + (f" Parquet: {f['s'] / res['parquet']['s']:.1f}x faster than the C parser on the CSV."
               if "parquet" in res else " (Parquet row skipped: pyarrow is not installed.)"))


def write_parquet_twin(csv_path: Path, rows: int, channels: int, seed: int = 0) -> Path | None:
    """The same numbers as :func:`write_csv` as Parquet beside it (None without pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, channels))
    cols = {"timestamp": pa.array(1.7e9 + np.arange(rows))} | {f"c{i}": pa.array(values[:, i]) for i in range(channels)}
    path = csv_path.with_suffix(".parquet")
    pq.write_table(pa.table(cols), path)
    return path
