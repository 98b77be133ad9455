"""Give start-up memory back to the kernel once the daemon is running (Linux; a no-op elsewhere).

Most of a freshly started daemon's resident memory is pages of library files (the interpreter,
numpy's OpenBLAS, onnxruntime's shared library) that were touched once while importing modules
and building the onnxruntime session and are never run again. They are clean and the kernel
would drop them under memory pressure anyway; :func:`trim_memory` drops them now, so the resident
set shows what the daemon needs while it scores:

- ``madvise(MADV_PAGEOUT)`` (Linux 5.4 and later) on every mapping of a file: pages only this
  process maps are reclaimed; the ones the worker still runs come back at their next use (a few
  MB read back from the disk once). Pages other processes map too (libc, a shared
  libpython) are left alone by the kernel.
- glibc's ``malloc_trim(0)``: heap pages freed after start-up (the model file's parse, one-off
  buffers) are returned instead of kept for later allocations.

A burst of readings (a backlog after a broker outage, batch messages) leaves freed memory in
glibc's heap, which keeps it for later allocations: about 5 MB after a flat-out run of 8 assets.
:func:`trim_heap` (``malloc_trim`` alone, no page-out) hands it back; the daemon calls it at an
idle moment at most every :data:`HEAP_TRIM_EVERY_S` seconds, and only after it has processed
readings since the last call.

Nothing here changes what the daemon computes; on kernels without ``MADV_PAGEOUT`` or without
glibc the corresponding step is skipped (a refused ``madvise`` is said in the info log).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from dataclasses import dataclass

from edge_aae.gateway.stats import rss_mb

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # linux/mman.h, Linux 5.4+
NOT_FILES = ("/dev/", "/memfd:", "/SYSV", "/proc/", "/sys/")  # mappings that are not pages of a file on disk
TRIM_AFTER_S = 10.0  # the daemon trims this long after start-up or a model swap, when the one-off work is done
M_ARENA_MAX = -8  # glibc's malloc.h
MALLOC_ARENAS = 2  # see limit_arenas
HEAP_TRIM_EVERY_S = 10.0  # at most this often, at an idle moment, the daemon hands freed heap memory back


@dataclass(frozen=True)
class TrimResult:
    """What one :func:`trim_memory` call did.

    Attributes:
        rss_before_mb: resident set size before, MB.
        rss_after_mb: right after (pages still in use come back as they are next used).
        mappings: file mappings advised.
        failed: mappings the kernel refused (``EINVAL`` on kernels before 5.4: then every one).

    """

    rss_before_mb: float
    rss_after_mb: float
    mappings: int
    failed: int


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library's symbols, from this process's own namespace (no ``ldconfig`` subprocess); looked up once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if not hasattr(libc, "madvise"):
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    if hasattr(libc, "malloc_trim"):  # glibc's; musl has none
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    if hasattr(libc, "mallopt"):
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    return libc


def file_mappings(maps_text: str) -> list[tuple[int, int]]:
    """``(start, end)`` addresses of the mappings of files in a ``/proc/PID/maps`` text.

    Anonymous memory, the stack, the heap, pseudo-files (``[vdso]``, ``[vvar]``), devices (a GPU
    driver's mappings under ``/dev``) and shared memory (``/memfd:``, ``/SYSV``) are left out:
    without swap their pages cannot be paged out, and the vDSO and devices must not be touched.
    """
    spans = []
    for line in maps_text.splitlines():
        parts = line.split(maxsplit=5)
        if (len(parts) < 6 or not parts[5].startswith("/") or parts[5].endswith(" (deleted)")
                or parts[5].startswith(NOT_FILES)):
            continue
        lo, _, hi = parts[0].partition("-")
        spans.append((int(lo, 16), int(hi, 16)))
    return spans


def limit_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Have glibc keep at most ``arenas`` malloc arenas (``mallopt(M_ARENA_MAX)``); call before threads start.

    glibc gives each thread that allocates its own arena (up to 8 per core), and each keeps its
    freed memory for later: the daemon's scoring and network threads held about 2 MB that way.
    Two arenas (the main thread's, one shared by the others) keep that to one. An operator's
    ``MALLOC_ARENA_MAX`` in the environment wins. Returns False where nothing was set (no glibc,
    not Linux, or the environment decides).
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):  # glibc's; musl has none
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def trim_heap() -> bool:
    """Hand freed heap memory of every thread's arena back to the kernel (glibc's ``malloc_trim(0)``).

    Returns False where there is no glibc (musl, not Linux). Takes about a millisecond; pages
    the next allocations need are faulted in again as they are used.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):  # glibc's; musl has none
        return False
    libc.malloc_trim(0)
    return True


def trim_memory() -> TrimResult | None:
    """Page out this process's file pages and trim the heap; None where it does not apply (not Linux).

    Safe to call at any time from any thread: it changes which pages are resident, not their
    contents. Takes about 10 ms (240 mappings, measured on an x86 host), once.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = _libc()
    if libc is None:
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            spans = file_mappings(f.read())
        before = rss_mb()
    except OSError as exc:
        log.debug("memory trim skipped: %s", exc)
        return None
    failed = 0
    for lo, hi in spans:
        if libc.madvise(lo, hi - lo, MADV_PAGEOUT) != 0:
            failed += 1
    trim_heap()
    result = TrimResult(before, rss_mb(), len(spans), failed)
    if spans and failed == len(spans):
        log.info("memory trim: the kernel refused MADV_PAGEOUT (Linux 5.4 or later has it); library pages stay "
                 "resident until the kernel needs them")
    return result
