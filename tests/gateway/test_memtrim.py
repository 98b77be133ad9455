"""``runtime.trim_memory``: start-up pages handed back, scores unchanged."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_aae.core.errors import ConfigError
from edge_aae.gateway.config import load_gateway_config
from edge_aae.gateway.memtrim import file_mappings

MAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 fd:01 1234  /usr/bin/python3.11
7f10a0000000-7f10a0400000 rw-p 00000000 00:00 0
7f10b0000000-7f10b1a00000 r-xp 00100000 fd:01 5678  /venv/lib/onnxruntime/capi/onnxruntime_pybind11_state.so
7f10b2000000-7f10b2001000 r--p 00000000 fd:01 9999  /tmp/gone.so (deleted)
7f10c0000000-7f10c0002000 r--p 00000000 00:00 0     [vvar]
7f10c0002000-7f10c0004000 r-xp 00000000 00:00 0     [vdso]
7ffd10000000-7ffd10021000 rw-p 00000000 00:00 0     [stack]
55d0c1000000-55d0c1200000 rw-p 00000000 00:00 0     [heap]
7f20a0000000-7f20a0100000 rw-s 00000000 00:05 77    /dev/nvidia0
7f20b0000000-7f20b0100000 rw-s 00000000 00:01 78    /memfd:ort-arena (deleted)
7f20c0000000-7f20c0100000 rw-s 00000000 00:01 79    /memfd:shm
"""


def test_only_mappings_of_files_are_advised():
    spans = file_mappings(MAPS)
    assert spans == [(0x55D0C0000000, 0x55D0C0021000), (0x7F10B0000000, 0x7F10B1A00000)]


# A fresh interpreter as the daemon starts: a session built and used, 24 MB of a file read through a
# mapping only this process has (as a library's start-up code is), then trimmed. Library pages
# that other processes map too (this test run's own onnxruntime) are the kernel's to keep.
_PROBE = r"""
import json, mmap, sys
from pathlib import Path
import numpy as np
from edge_aae.gateway.scorer import OnnxModel
from edge_aae.gateway.memtrim import trim_memory
def rss_file():
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k == 'RssFile':
            return int(v.split()[0]) / 1024
m = OnnxModel.open(Path(sys.argv[1]), threads=1)
x = (np.random.default_rng(0).normal(size=(32, m.window_len, len(m.channels))) * 3 + 10).astype(np.float32)
before = [a.tolist() for a in m.score_windows(x)]
f = open(sys.argv[2], 'rb')
mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
checksum = sum(mapped[i] for i in range(0, len(mapped), 4096))  # touch every page once
s0 = rss_file()
r = trim_memory()
s1 = rss_file()
for _ in range(20):
    after = [a.tolist() for a in m.score_windows(x)]
again = sum(mapped[i] for i in range(0, len(mapped), 4096))
print(json.dumps({"before": s0, "trimmed": s1, "failed": r.failed, "mappings": r.mappings,
                  "same": after == before, "checksum_same": checksum == again}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT and /proc are Linux's")
def test_trim_hands_back_file_pages_and_scores_stay_the_same(bundle, tmp_path):
    blob = tmp_path / "startup-code.bin"
    blob.write_bytes(np.random.default_rng(1).integers(0, 255, 24 << 20, dtype=np.uint8).tobytes())
    out = subprocess.run([sys.executable, "-c", _PROBE, str(bundle), str(blob)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["same"], "scores changed after the trim"
    assert r["checksum_same"], "a paged-out file read back different bytes"
    assert r["mappings"] > 20
    if r["failed"] == r["mappings"]:
        pytest.fail(f"this kernel refused MADV_PAGEOUT on every mapping (Linux < 5.4?): {r}")
    assert r["trimmed"] < r["before"] - 20, r  # the 24 MB only this process mapped went back


def test_trim_memory_must_be_a_boolean(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('gateway_id = "gw1"\n[models]\ndefault = "b"\n[runtime]\ntrim_memory = "yes"\n')
    with pytest.raises(ConfigError, match="runtime.trim_memory"):
        load_gateway_config(cfg)


# Heap memory freed in the middle of glibc's heap (a burst's buffers, with later allocations still
# live above them) stays resident until malloc_trim hands it back.
_HEAP_PROBE = r"""
import json
from edge_aae.gateway.memtrim import trim_heap
def rss_anon():
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k == 'RssAnon':
            return int(v.split()[0]) / 1024
burst = [bytearray(2000) for _ in range(30000)]  # 60 MB in malloc's heap (under its mmap threshold)
keep = bytearray(2000)  # allocated last: the heap cannot shrink from its top
del burst
a0 = rss_anon()
ran = trim_heap()
print(json.dumps({"before": a0, "after": rss_anon(), "ran": ran}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_heap_hands_back_what_a_burst_freed():
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["ran"]:
        pytest.fail(f"no glibc malloc_trim in this process: {r}")
    assert r["after"] < r["before"] - 40, r


# Threads that allocate get arenas of their own (each keeping its freed memory) unless limited.
_ARENA_PROBE = r"""
import ctypes, sys, threading
from edge_aae.gateway.memtrim import limit_arenas
limited = limit_arenas() if sys.argv[1] == "limit" else False
keep = []
together = threading.Barrier(6)  # all alive at once: an exited thread's arena goes to the next one
def work():
    keep.append([bytearray(2000) for _ in range(200)])
    together.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("limited" if limited else "not limited", file=sys.stderr, flush=True)
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("how", ["limit", "default", "environment"])
def test_limit_arenas_keeps_threads_to_two_arenas(how):
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if how == "environment":
        env["MALLOC_ARENA_MAX"] = "4"  # the operator's setting wins
    out = subprocess.run([sys.executable, "-c", _ARENA_PROBE, "default" if how == "default" else "limit"],
                         capture_output=True, text=True, check=True, env=env)
    arenas = out.stderr.count("Arena ")
    if how == "limit":
        assert "not limited" not in out.stderr
        assert arenas == 2, out.stderr
    elif how == "default":
        assert arenas > 2, out.stderr  # one per allocating thread: what the limit is for
    else:
        assert "not limited" in out.stderr
        assert arenas == 4, out.stderr
