"""``edge-aae alerts``: watch a fleet's alerts and gateway status live, or as JSON lines."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from edge_aae.client.deploy import read_password
from edge_aae.client.subscriber import Alert, AlertSubscriber, BrokerRefused, Drift, Event, GatewayStatus
from edge_aae.core.errors import UsageError


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def event_json(event: Event) -> dict[str, Any]:
    """One JSON object for ``--json`` output."""
    if isinstance(event, Alert):
        d = asdict(event)
        d["top_channels"] = [{"channel": c, "share": s} for c, s in event.top_channels]
        d["score_over_threshold"] = round(event.ratio, 3)
        return {"type": "alert"} | d
    if isinstance(event, Drift):
        return {"type": "drift"} | asdict(event)
    return {"type": "status"} | asdict(event)


class LiveTable:
    """The latest alert per (gateway, asset) and each gateway's status, redrawn on every event."""

    def __init__(self, out: TextIO, redraw: bool) -> None:
        """``redraw``: clear and redraw the screen (a terminal); else print one line per event."""
        self.out = out
        self.redraw = redraw
        self.alerts: dict[tuple[str, str], Alert] = {}
        self.gateways: dict[str, GatewayStatus] = {}
        self.drift: dict[tuple[str, str], Drift] = {}

    def update(self, event: Event) -> None:
        """Take one event and show it."""
        if isinstance(event, Alert):
            self.alerts[(event.gateway, event.asset)] = event
            line = (f"{_when(event.ts)}  {event.event.upper():8s} {event.gateway}/{event.asset}  "
                    f"since {_when(event.since)}  score/threshold {event.ratio:.2f}  "
                    f"{self._channels(event)}  model {event.model_name} {event.model_version}")
        elif isinstance(event, Drift):
            self.drift[(event.gateway, event.asset)] = event
            line = (f"{_when(event.ts)}  DRIFT    {event.gateway}/{event.asset}  {event.state}  since "
                    f"{_when(event.since)}  {self._drift_why(event)}  model {event.model_name} {event.model_version}")
        else:
            self.gateways[event.gateway] = event
            line = f"{_when(event.ts)}  gateway {event.gateway} {event.state.upper()}"
        if self.redraw:
            self.out.write("\x1b[H\x1b[2J" + self.render() + "\n")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    @staticmethod
    def _drift_why(d: Drift) -> str:
        f = d.figures
        parts = []
        if "alert_rate" in f:
            parts.append(f"alert rate {f['alert_rate']:.2%} (target {f.get('target_far', 0):.2%})")
        if f.get("latent_median") is not None:
            parts.append(f"latent {f['latent_median']:.1f}")
        if d.channels:
            parts.append("out of range: " + ", ".join(d.channels))
        return "; ".join(parts)

    @staticmethod
    def _channels(a: Alert) -> str:
        channels = ", ".join(f"{c} {s:.0%}" for c, s in a.top_channels)
        if a.cause == "unseen_state":  # no channel need be out of range: say so before the shares
            return "unseen operating state" + (f" ({channels})" if channels else "")
        return channels

    def render(self) -> str:
        """The table as text."""
        rows = [("state", "gateway/asset", "since", "score/thr", "channels to blame", "model")]
        for (gw, asset), a in sorted(self.alerts.items(), key=lambda kv: -kv[1].ts):
            rows.append((a.event, f"{gw}/{asset}", _when(a.since), f"{a.ratio:.2f}", self._channels(a),
                         f"{a.model_name} {a.model_version}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        gws = ", ".join(f"{g} {s.state}" for g, s in sorted(self.gateways.items())) or "none seen yet"
        active = sum(a.event == "raised" for a in self.alerts.values())
        moved = [d for d in self.drift.values() if d.state != "ok"]
        drift = ("\n\ndrift: " + "; ".join(f"{d.gateway}/{d.asset} {d.state} ({self._drift_why(d)})"
                                            for d in sorted(moved, key=lambda d: (d.gateway, d.asset)))
                 if moved else "")
        return f"edge-aae alerts: {active} active  |  gateways: {gws}\n\n" + "\n".join(lines) + drift


def run_alerts(broker: str, *, root: str, gateway: str, asset: str, tls_ca: str, username: str,
               password_file: Path | None, as_json: bool, out: TextIO = sys.stdout,
               max_events: int | None = None) -> int:
    """Subscribe and print until Ctrl-C (or ``max_events``); returns the exit status.

    The password comes from ``password_file`` or the ``EDGE_AAE_MQTT_PASSWORD`` environment variable.
    """
    password = read_password(password_file, username)
    if password and not username:
        raise UsageError("a password needs --username")
    sub = AlertSubscriber(broker, root=root, gateway=gateway, asset=asset, tls_ca=tls_ca, username=username,
                          password=password)
    table = None if as_json else LiveTable(out, redraw=out.isatty())
    shown = 0
    waiting_since = time.monotonic()
    warned = False
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    sub.start()
    try:
        while (max_events is None or shown < max_events) and not stop.is_set():
            event = sub.get(timeout_s=0.5)
            if event is None:
                if not sub.connected.is_set() and not warned and time.monotonic() - waiting_since > 3:
                    print(f"waiting for the broker at {sub.host}:{sub.port} (retrying; Ctrl-C to stop)",
                          file=sys.stderr)
                    warned = True
                continue
            shown += 1
            if table is None:
                out.write(json.dumps(event_json(event)) + "\n")
                out.flush()
            else:
                table.update(event)
    except BrokerRefused as exc:
        print(f"edge-aae alerts: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        restore()
        sub.close()
    return 0


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make Ctrl-C and SIGTERM set ``stop`` instead of raising; returns what puts the old handlers back.

    A KeyboardInterrupt raised inside ``queue.Queue.get`` can land between a condition's wait and its
    re-acquire and fail with "release unlocked lock"; a flag the loop polls cannot. Off the main
    thread (where handlers cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda *_: stop.set())

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return restore
