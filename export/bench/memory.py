"""Where the gateway daemon's memory goes: RSS after each import and after loading a bundle.

Run in a fresh interpreter (``python -m export.bench.memory BUNDLE [--update BENCHMARKS.md]``):
each row is the resident set size after one more piece of what ``edge-aae serve`` loads, so the
differences are that piece's cost. onnxruntime's arena settings are compared on the same model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from export.bench.common import process_memory, update_section

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
from edge_aae.gateway.mqtt_client import mqtt  # paho as the daemon imports it (urllib.request deferred)
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


# Writes one file of single-reading messages per asset and phase (the synthetic pump's normal run,
# as `edge-aae bench daemon` sends them); runs in a child that exits before the daemon starts.
_GEN = r"""
import sys
from pathlib import Path
from edge_aae.gateway.bundle import open_bundle
from export.bench.daemon import _messages
b = open_bundle(Path(sys.argv[1]))
out, n_assets = Path(sys.argv[2]), int(sys.argv[3])
for phase, n, t0 in (("flat", int(sys.argv[4]), 1.7e9), ("paced", int(sys.argv[5]), 1.7e9 + 1e6)):
    by = {}
    for asset, payload, _ in _messages(b.channels, n_assets, n, t0):
        by.setdefault(asset, []).append(payload)
    for asset, lines in by.items():
        (out / f"{phase}-{asset}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
"""


def live(bundle: Path, n_assets: int = 8, flat_readings: int = 20000, rate_per_s: float = 800.0,
         paced_s: float = 20.0) -> dict[str, float]:
    """Steady-state memory of ``edge-aae serve`` (default settings, 8 assets), the only Python process.

    On a gateway nothing else maps numpy's or onnxruntime's libraries; in ``bench daemon`` the
    bench's own Python processes do, and the kernel keeps the pages two processes map resident
    for both, whatever ``runtime.trim_memory`` advises. So this runs with a parent that imports
    neither (the messages are written by a child that exits first), C publishers and the broker:
    a flat-out burst of ``flat_readings`` single readings, then ``paced_s`` seconds at
    ``rate_per_s`` readings/s (scores published), then the daemon's memory. Returns MB.
    """
    from edge_aae.core.protocol import Topics
    from edge_aae.devtools.mosquitto import Mosquitto

    paced_n = int(rate_per_s * paced_s)
    with tempfile.TemporaryDirectory(prefix="edge-aae-memory-") as tmp_s:
        tmp = Path(tmp_s)
        subprocess.run([sys.executable, "-c", _GEN, str(bundle), str(tmp), str(n_assets), str(flat_readings),
                        str(paced_n)], check=True, cwd=Path(__file__).parents[2])
        if "numpy" in sys.modules:  # it would share (and pin) numpy's pages with the daemon
            raise RuntimeError("export.bench.memory: numpy was imported by the measuring process")
        broker = Mosquitto(tmp / "broker")
        broker.start()
        topics = Topics("edge-aae", "gwmem")
        cfg = tmp / "gw.toml"
        cfg.write_text(f'gateway_id = "gwmem"\n[models]\ndefault = "{bundle.resolve()}"\n'
                       f'[outbox]\ndir = "{tmp / "outbox"}"\n', encoding="utf-8")
        daemon = subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "serve", "--config", str(cfg), "--broker",
                                   broker.url], stdout=subprocess.DEVNULL,
                                  stderr=(tmp / "daemon.log").open("wb"))  # noqa: SIM115
        try:
            started = time.monotonic()
            subprocess.run(["mosquitto_sub", "-p", str(broker.port), "-t", topics.status, "-C", "1", "-W", "60"],
                           stdout=subprocess.DEVNULL, check=True)

            def publishers(phase: str, stdin: Any) -> list[subprocess.Popen[bytes]]:
                return [subprocess.Popen(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-l", "-t",
                                          topics.sensors(f"a{a}"), "-i", f"mem-{phase}-{a}"],
                                         stdin=stdin(a)) for a in range(n_assets)]

            files = [(tmp / f"flat-a{a}.jsonl").open("rb") for a in range(n_assets)]
            for p in publishers("flat", lambda a: files[a]):
                p.wait(300)
            for f in files:
                f.close()
            time.sleep(max(2.0, started + 15.0 - time.monotonic()))  # runtime.trim_memory ran 10 s in
            lines = [(tmp / f"paced-a{a}.jsonl").read_bytes().splitlines(keepends=True) for a in range(n_assets)]
            pubs = publishers("paced", lambda a: subprocess.PIPE)
            t0 = time.monotonic()
            for i in range(min(len(x) for x in lines)):
                for a, p in enumerate(pubs):
                    assert p.stdin is not None
                    p.stdin.write(lines[a][i])
                    p.stdin.flush()
                time.sleep(max(0.0, t0 + (i + 1) * n_assets / rate_per_s - time.monotonic()))
            for p in pubs:
                assert p.stdin is not None
                p.stdin.close()
                p.wait(60)
            time.sleep(1.0)
            if daemon.poll() is not None:
                raise RuntimeError(f"daemon exited: {(tmp / 'daemon.log').read_text()[-500:]}")
            return process_memory(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(30)
            broker.stop()


def main() -> int:
    """CLI: print the table; ``--update`` writes it into BENCHMARKS.md's ``memory`` section."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("bundle", type=Path)
    p.add_argument("--update", type=Path, metavar="MD")
    args = p.parse_args()
    table = run(args.bundle)
    alone = live(args.bundle)
    table += "\n\n" + LIVE.format(**alone)
    print(table)
    if args.update:
        update_section(args.update, "memory", "## Gateway daemon memory\n\n" + table + "\n\n" + note(table),
                       f"python -m export.bench.memory {args.bundle}")
    return 0


def note(table: str) -> str:
    """The text under the table, with the libraries' share read from it (RSS after onnxruntime's import)."""
    rows = {cells[1].strip(): [float(c) for c in cells[2:6]]  # name -> RSS, step, anonymous, file-backed
            for cells in (line.split("|") for line in table.splitlines()[2:]) if len(cells) > 5}
    libraries = rows["onnxruntime (import)"][0]
    *_, gateway, session, used, trimmed = rows.values()
    return NOTE.format(session_file=session[3] - gateway[3], libraries=libraries,
                       versus="over" if libraries > 60 else "close to", total=used[0], anon=used[2], file=used[3],
                       steady=trimmed[0], steady_file=trimmed[3], given=used[0] - trimmed[0])


LIVE = """**The live daemon alone** (`edge-aae serve`, default settings, 8 assets, scores published;
20,000 readings flat out, then 20 s at 800 readings/s from C publishers; no other process maps numpy or
onnxruntime, as on a gateway): steady-state RSS **{VmRSS:.1f} MB** ({RssAnon:.1f} MB anonymous, {RssFile:.1f} MB of
library files; proportional set size {Pss:.1f} MB)."""

NOTE = """Each row adds one piece of what `edge-aae serve` loads. The interpreter, numpy, paho and
onnxruntime's own libraries are about {libraries:.0f} MB before any model: {versus} the 60 MB a gateway daemon
was meant to stay under, and none of it optional for scoring (`OPENBLAS_NUM_THREADS=1` changes
numpy's share by nothing measurable). paho is imported as the daemon imports it
(`edge_aae.gateway.mqtt_client`): the `urllib.request` it imports for proxy settings, with
`http.client` and the `email` package (2 MB), waits for a first use that a gateway without PySocks
never makes. The session is opened as the daemon opens it, without
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
threads, MQTT and eight assets, is in the paragraph above (alone, as on a gateway) and in the daemon
section (beside the bench's own Python processes, which keep numpy's and the interpreter's pages
resident for it too)."""


if __name__ == "__main__":
    raise SystemExit(main())
