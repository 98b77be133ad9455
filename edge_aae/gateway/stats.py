"""Running counters of the daemon: readings, windows, drops by reason, latency, queue, memory."""

from __future__ import annotations

import bisect
import os
import resource
import threading
from collections import Counter, deque
from typing import Any

import numpy as np


def rss_mb() -> float:
    """Resident set size of this process in MB (current, from /proc; peak where /proc is absent)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


# Counters listed in the snapshot only once they are non-zero: each means something went wrong.
EXTRA_COUNTS = ("internal_errors", "errors_suppressed", "stream_resets", "gap_resets", "network_loop_restarts",
                "connections_refused", "subscriptions_refused")


# Upper bounds (ms) of the inference latency histogram (Prometheus ``/metrics``).
LATENCY_BUCKETS_MS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)


class Stats:
    """Thread-safe counters; :meth:`snapshot` gives the status topic's ``stats`` object."""

    def __init__(self, latency_window: int = 2048) -> None:
        """All counters at zero."""
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=latency_window)
        self._buckets = [0] * len(LATENCY_BUCKETS_MS)
        self._latency_sum_ms = 0.0
        self._latency_count = 0

    def add(self, name: str, n: int = 1) -> None:
        """Count ``n`` of ``name`` (readings_in, windows_scored, alerts_raised, ...)."""
        with self._lock:
            self.counts[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` rejected readings or messages under ``reason``."""
        with self._lock:
            self.drops[reason] += n

    def latency(self, ms_per_window: float) -> None:
        """Record one inference's latency per window, in milliseconds."""
        with self._lock:
            self._latency_ms.append(ms_per_window)
            i = bisect.bisect_left(LATENCY_BUCKETS_MS, ms_per_window)
            if i < len(self._buckets):
                self._buckets[i] += 1
            self._latency_sum_ms += ms_per_window
            self._latency_count += 1

    def latency_histogram(self) -> tuple[list[float], list[int], float, int]:
        """``(upper bounds ms, cumulative counts, sum ms, count)`` of every latency recorded."""
        with self._lock:
            counts, total, n = list(self._buckets), self._latency_sum_ms, self._latency_count
        cumulative = [sum(counts[:i + 1]) for i in range(len(counts))]
        return list(LATENCY_BUCKETS_MS), cumulative, total, n

    def snapshot(self, queue_depth: int, outbox_depth: int) -> dict[str, Any]:
        """The counters as plain JSON-ready values."""
        with self._lock:
            lat = np.asarray(self._latency_ms, dtype=np.float64)
            counts = dict(self.counts)
            drops = dict(self.drops)
        return {
            "readings_in": counts.get("readings_in", 0),
            "readings_processed": counts.get("readings_processed", 0),
            "windows_scored": counts.get("windows_scored", 0),
            "alerts_raised": counts.get("alerts_raised", 0),
            "alerts_cleared": counts.get("alerts_cleared", 0),
            "messages_rejected": counts.get("messages_rejected", 0),
            **{k: counts[k] for k in EXTRA_COUNTS if counts.get(k)},
            "drops": drops,
            "inference_ms_p50": round(float(np.percentile(lat, 50)), 4) if lat.size else None,
            "inference_ms_p99": round(float(np.percentile(lat, 99)), 4) if lat.size else None,
            "queue_depth": queue_depth,
            "outbox_depth": outbox_depth,
            "rss_mb": round(rss_mb(), 1),
        }
