"""``edge-aae ack | mute | label | collect``: operator feedback to a gateway, confirmed by the gateway.

Each command goes to ``ROOT/GW/feedback`` (QoS 1) with its own id; the gateway applies it and
names it in the ``recent`` list of its retained ``ROOT/GW/feedback/state``, ``applied`` or
``refused`` with the reason. ``collect`` also receives the labelled alerts' readings on
``ROOT/GW/feedback/collected/ID`` and writes one CSV per alert.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edge_aae.client.rollout import BrokerLogin, Watcher
from edge_aae.core.errors import EdgeAAEError
from edge_aae.core.protocol import Topics


class FeedbackRefused(EdgeAAEError):
    """The gateway refused the command (unknown alert or asset, bad label); the message says why."""


def send_command(login: BrokerLogin, gateway: str, command: dict[str, Any], wait_s: float = 30.0,
                 collected: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Send one command and wait for the gateway's outcome (from its retained feedback state).

    ``collected``: for ``collect``, the labelled alerts the gateway publishes are appended here.

    Raises:
        FeedbackRefused: the gateway refused it.
        EdgeAAEError: the broker is unreachable, or no outcome within ``wait_s`` (gateway offline?).

    """
    topics = Topics(login.root, gateway)
    cid = uuid.uuid4().hex[:16]
    msg = {"id": cid, "ts": time.time()} | command
    done = threading.Event()
    outcome: dict[str, Any] = {}
    collect_done = threading.Event()
    busy = threading.Event()  # the gateway dropped feedback while this command waited: maybe this one
    if command.get("command") != "collect":
        collect_done.set()
    lock = threading.Lock()

    def on_message(data: dict[str, Any], topic: str) -> None:
        if topic == topics.feedback_state:
            for r in data.get("recent", []):
                if isinstance(r, dict) and r.get("id") == cid:
                    with lock:
                        outcome.update(r)
                    done.set()
        elif topic == topics.errors:
            if data.get("reason") == "feedback_queue_full":
                busy.set()
        elif collected is not None:
            if data.get("done"):
                collect_done.set()
            else:
                with lock:
                    collected.append(data)

    watch = [topics.feedback_state, topics.feedback_collected(cid), topics.errors]
    with Watcher(login, watch, on_message) as w:
        w.publish(topics.feedback, json.dumps(msg))
        if not done.wait(wait_s):
            if busy.is_set():
                raise EdgeAAEError(f"no answer from gateway {gateway} within {wait_s:g} s: it was dropping feedback "
                                   f"meanwhile (feedback_queue_full on {topics.errors}: too many commands waiting); "
                                   "send the command again later")
            raise EdgeAAEError(f"no answer from gateway {gateway} within {wait_s:g} s on {topics.feedback_state} "
                               "(offline, feedback disabled, or an older edge-aae)")
        if outcome.get("outcome") == "refused":
            raise FeedbackRefused(f"gateway {gateway} refused {command.get('command')}: "
                                  f"{outcome.get('detail') or outcome.get('reason')}")
        if not collect_done.wait(wait_s):
            raise EdgeAAEError(f"gateway {gateway} did not finish sending the labelled alerts within {wait_s:g} s")
    return outcome


def write_collected(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """One CSV per labelled alert: ``OUT/ASSET_ALERTID_LABEL.csv`` (timestamp, channels) plus ``labels.json``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    index = []
    for r in records:
        channels = [str(c) for c in r.get("channels", [])]
        name = f"{r.get('asset', 'asset')}_{r.get('alert_id', 'alert')}_{r.get('label', '')}.csv"
        name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        lines = [",".join(["timestamp", *channels])]
        for ts, row in zip(r.get("ts", []), r.get("values", []), strict=False):
            lines.append(",".join([f"{float(ts):.3f}", *(f"{float(v):.6g}" for v in row)]))
        (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(out / name)
        index.append({k: r.get(k) for k in ("alert_id", "asset", "label", "note", "since", "end", "by",
                                            "labelled_at")} | {"file": name, "readings": len(r.get("ts", []))})
    (out / "labels.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return written
