"""Prometheus text exposition of the daemon's counters on ``/metrics`` (``[metrics] port``; off by default).

Standard library only: a small threaded HTTP server answers ``GET /metrics`` with the text format
(version 0.0.4) built from :class:`~edge_aae.gateway.stats.Stats` at the moment of the request.
Every other path is 404. The server runs in its own daemon thread; a slow scraper cannot hold up
scoring, and a failure to build the page is a 500, never an exception in the daemon.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from edge_aae.gateway.drift import STATES as DRIFT_STATES

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "edge_aae_"
MAX_CONNECTIONS = 8  # /metrics connections served at once; more are closed at once
REQUEST_TIMEOUT_S = 5.0  # a connection that has not sent its request by then is closed

# name in the snapshot -> (metric, type, help)
_COUNTERS = {
    "readings_in": ("readings_received_total", "readings accepted from MQTT"),
    "readings_processed": ("readings_processed_total", "readings taken into a stream"),
    "windows_scored": ("windows_scored_total", "windows scored by the model"),
    "alerts_raised": ("alerts_raised_total", "alerts raised"),
    "alerts_cleared": ("alerts_cleared_total", "alerts cleared"),
    "messages_rejected": ("messages_rejected_total", "messages refused (see drops)"),
    "internal_errors": ("internal_errors_total", "exceptions contained in MQTT callbacks"),
    "errors_suppressed": ("error_reports_suppressed_total", "error reports over the rate limit"),
    "stream_resets": ("stream_resets_total", "streams restarted (time went backwards)"),
    "gap_resets": ("gap_resets_total", "streams restarted after a gap"),
    "network_loop_restarts": ("network_loop_restarts_total", "MQTT network threads restarted"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def render(snapshot: dict[str, Any], latency: tuple[list[float], list[int], float, int],
           models: dict[str, dict[str, str]], healthy: bool, drift: dict[str, str] | None = None) -> str:
    """The Prometheus text page.

    Args:
        snapshot: :meth:`Stats.snapshot` (counters, drops by reason, depths, RSS).
        latency: ``(bucket upper bounds in ms, cumulative counts, sum in ms, count)`` of the
            inference latency per window.
        models: ``{"default" | asset: {"name", "version", ...}}`` as on the status topic.
        healthy: the daemon's own health verdict.
        drift: each asset's drift state (``ok``, ``drifting``, ``retrain``).

    """
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {PREFIX}{name} {help_text}")
        out.append(f"# TYPE {PREFIX}{name} {kind}")
        out.extend(f"{PREFIX}{name}{labels} {value:g}" for labels, value in samples)

    for key, (name, help_text) in _COUNTERS.items():
        metric(name, "counter", help_text, [("", float(snapshot.get(key, 0)))])
    drops = snapshot.get("drops", {})
    metric("dropped_total", "counter", "readings or messages dropped, by reason",
           [(_labels(reason=r), float(n)) for r, n in sorted(drops.items())] or [(_labels(reason="none"), 0.0)])
    bounds, cumulative, total_ms, count = latency
    name = "inference_latency_seconds"
    out.append(f"# HELP {PREFIX}{name} inference time per window")
    out.append(f"# TYPE {PREFIX}{name} histogram")
    for le, n in zip(bounds, cumulative, strict=True):
        out.append(f'{PREFIX}{name}_bucket{{le="{le / 1e3:g}"}} {n}')
    out.append(f'{PREFIX}{name}_bucket{{le="+Inf"}} {count}')
    out.append(f"{PREFIX}{name}_sum {total_ms / 1e3:g}")
    out.append(f"{PREFIX}{name}_count {count}")
    metric("queue_depth", "gauge", "readings waiting to be scored", [("", float(snapshot.get("queue_depth", 0)))])
    metric("outbox_depth", "gauge", "alerts waiting for the broker's acknowledgement",
           [("", float(snapshot.get("outbox_depth", 0)))])
    metric("resident_memory_bytes", "gauge", "resident set size of the daemon",
           [("", float(snapshot.get("rss_mb", 0.0)) * 1e6)])
    metric("healthy", "gauge", "1 while connected, subscribed and the readings path answers",
           [("", 1.0 if healthy else 0.0)])
    metric("model_info", "gauge", "model in service per asset (1)",
           [(_labels(slot=slot, name=info.get("name", ""), version=info.get("version", "")), 1.0)
            for slot, info in sorted(models.items())])
    if drift:
        metric("drift_state", "gauge", "drift state per asset: 1 on the state it is in",
               [(_labels(asset=a, state=st), 1.0 if drift[a] == st else 0.0)
                for a in sorted(drift) for st in DRIFT_STATES])
    return "\n".join(out) + "\n"


class MetricsServer:
    """``GET /metrics`` on ``bind:port`` in a background thread."""

    def __init__(self, bind: str, port: int, page: Callable[[], str]) -> None:
        """Bind at once (a port in use raises ``OSError`` here, at start, not later).

        ``port = 0`` picks a free port (see :attr:`port`); ``page`` builds the text per request.
        """
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # only with metrics.port set

        self._page = page

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S  # a client that sends its request slowly or not at all is dropped

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                try:
                    body = page().encode("utf-8")
                except Exception:  # never into the daemon; the scraper sees a 500
                    log.exception("metrics page failed")
                    self.send_error(500, "metrics page failed (see the gateway log)")
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                log.debug("metrics: " + format, *args)

        class BoundedServer(ThreadingHTTPServer):
            """At most MAX_CONNECTIONS at once: idle connections cannot use up the daemon's threads and files."""

            daemon_threads = True
            # socketserver's backlog of 5 made a burst of connections wait for SYN retransmits (1 s,
            # then 3 s, ...) while the ones over the limit are closed at once anyway
            request_queue_size = 64

            def __init__(self, *args: Any) -> None:
                super().__init__(*args)
                self.open = threading.BoundedSemaphore(MAX_CONNECTIONS)

            def process_request(self, request: Any, client_address: Any) -> None:
                if not self.open.acquire(blocking=False):
                    self.shutdown_request(request)  # closed at once; a scraper retries at its next interval
                    return
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    self.open.release()
                    raise

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    self.open.release()

        self._server = BoundedServer((bind, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        """Serve until :meth:`close`."""
        self._thread.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", self._server.server_address[0], self.port)

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
