"""Operator feedback on ``ROOT/GW/feedback``: acknowledge, mute, label alerts, collect labelled windows.

Commands (JSON, QoS 1; ``edge-aae ack|mute|label|collect`` send them)::

    {"command": "ack", "id": "...", "alert_id": "3f1c9a0e7b2d4c11", "by": "ops"}
    {"command": "mute", "id": "...", "asset": "pump7", "for_s": 7200}        # for_s 0: unmute
    {"command": "label", "id": "...", "alert_id": "...", "label": "false_alarm" | "confirmed", "note": "..."}
    {"command": "collect", "id": "..."}

The gateway applies each one in its worker and confirms it on the retained
``ROOT/GW/feedback/state`` (``recent``: the last commands with ``applied`` or ``refused`` and why;
``mutes``; counts). A muted asset's alerts are still raised and published, marked ``"muted": true``.
A labelled alert's readings (from ``window_len`` readings before it began to its end, or to the
label's arrival while it is still raised) are kept on disk, at most ``feedback.max_labelled`` files;
``collect`` publishes them on ``ROOT/GW/feedback/collected/ID`` (one message per alert, then a
``done`` message) for ``edge-aae collect`` to write as CSV.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

COMMANDS = ("ack", "mute", "label", "collect")
LABELS = ("false_alarm", "confirmed")
MAX_ALERTS = 2000  # alert episodes remembered for acks and labels
MAX_RECENT = 20  # commands echoed on the retained state
MAX_NOTE = 500


class FeedbackError(ValueError):
    """A command that cannot be applied; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, detail: str, cid: str = "", command: str = "") -> None:
        """``reason``: a short code such as ``malformed``, ``unknown_alert`` or ``collect_in_progress``.

        ``cid`` and ``command``: the message's own id and command, when it had them (for the state).
        """
        super().__init__(detail)
        self.reason, self.cid, self.command = reason, cid, command


@dataclass
class Command:
    """One parsed feedback command."""

    command: str
    id: str
    alert_id: str = ""
    asset: str = ""
    for_s: float = 0.0
    label: str = ""
    note: str = ""
    by: str = ""


def parse_command(payload: bytes) -> Command:
    """Check one feedback payload.

    Raises:
        FeedbackError: not JSON, not an object, an unknown command or a missing or wrong field.

    """
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedbackError("malformed", f"not JSON: {str(exc)[:100]}") from None
    if not isinstance(msg, dict):
        raise FeedbackError("malformed", "a feedback message must be a JSON object")
    try:
        return _parse(msg)
    except FeedbackError as exc:
        cid, cmd = msg.get("id"), msg.get("command")
        exc.cid = cid[:64] if isinstance(cid, str) else ""
        exc.command = cmd[:20] if isinstance(cmd, str) else ""
        raise


def _parse(msg: dict[str, Any]) -> Command:
    cmd, cid = msg.get("command"), msg.get("id", "")
    if cmd not in COMMANDS:
        raise FeedbackError("unknown_command", f"command {str(cmd)[:40]!r} is not one of {', '.join(COMMANDS)}")
    if not isinstance(cid, str) or not cid or len(cid) > 64:
        raise FeedbackError("malformed", "id: a string of 1 to 64 characters is required")
    out = Command(cmd, cid, by=str(msg.get("by", ""))[:64])
    if cmd in ("ack", "label"):
        aid = msg.get("alert_id")
        if not isinstance(aid, str) or not aid or len(aid) > 64:
            raise FeedbackError("malformed", f"{cmd}: alert_id (a string) is required")
        out.alert_id = aid
    if cmd == "label":
        if msg.get("label") not in LABELS:
            raise FeedbackError("bad_label", f"label must be one of {', '.join(LABELS)}, got "
                                f"{str(msg.get('label'))[:40]!r}")
        out.label = msg["label"]
        note = msg.get("note", "")
        if not isinstance(note, str):
            raise FeedbackError("malformed", "note: must be a string")
        out.note = note[:MAX_NOTE]
    if cmd == "mute":
        asset, for_s = msg.get("asset"), msg.get("for_s")
        if not isinstance(asset, str) or not asset:
            raise FeedbackError("malformed", "mute: asset (a string) is required")
        if not isinstance(for_s, int | float) or isinstance(for_s, bool) or not 0 <= for_s <= 366 * 86400:
            raise FeedbackError("malformed", "mute: for_s must be seconds between 0 (unmute) and a year")
        out.asset, out.for_s = asset, float(for_s)
    return out


class _Ring:
    """The last ``n`` readings of one asset: ``ts (n,)`` and ``values (n, C)`` float32, written in place."""

    def __init__(self, n: int, n_channels: int) -> None:
        self.ts = np.full(n, np.nan)
        self.values = np.zeros((n, n_channels), np.float32)
        self.pos = 0
        self.count = 0

    def extend(self, ts: np.ndarray, values: np.ndarray) -> None:
        n = self.ts.shape[0]
        ts, values = ts[-n:], values[-n:]
        k = ts.shape[0]
        if self.pos + k <= n:  # the common case: one slice, no index array
            self.ts[self.pos:self.pos + k], self.values[self.pos:self.pos + k] = ts, values
        else:
            idx = (self.pos + np.arange(k)) % n
            self.ts[idx], self.values[idx] = ts, values
        self.pos = (self.pos + k) % n
        self.count = min(n, self.count + k)

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Oldest first."""
        n = self.ts.shape[0]
        idx = (self.pos - self.count + np.arange(self.count)) % n
        return self.ts[idx], self.values[idx]


@dataclass
class _Episode:
    asset: str
    since: float
    end: float | None = None
    acked_by: str | None = None
    label: str = ""


class Feedback:
    """The gateway's side: alert episodes, mutes, acks, labels, recent readings, labelled windows on disk.

    Used from the daemon's worker thread only.
    """

    def __init__(self, folder: Path, keep_readings: int, max_labelled: int) -> None:
        """``folder``: where labelled windows are kept (created on first use)."""
        self.folder = folder
        self.keep_readings = keep_readings
        self.max_labelled = max_labelled
        self.episodes: OrderedDict[str, _Episode] = OrderedDict()
        self.mutes: dict[str, float] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=MAX_RECENT)
        self.counts = {"acked": 0, "labelled": 0, "refused": 0}
        self._readings: dict[str, _Ring] = {}
        self._channels: dict[str, list[str]] = {}

    # -- fed by the daemon ----------------------------------------------------------------

    def note_readings(self, asset: str, ts: np.ndarray, values: np.ndarray, channels: list[str]) -> None:
        """Keep the asset's last ``keep_readings`` readings (for the windows of a later label)."""
        buf = self._readings.get(asset)
        if buf is None or buf.values.shape[1] != values.shape[1]:
            buf = self._readings[asset] = _Ring(self.keep_readings, values.shape[1])
        self._channels[asset] = channels
        buf.extend(ts, values)

    def note_alert(self, asset: str, event: str, alert_id: str, since: float, ts: float) -> None:
        """Record a raised or cleared alert episode."""
        ep = self.episodes.get(alert_id)
        if ep is None:
            ep = self.episodes[alert_id] = _Episode(asset, since)
            while len(self.episodes) > MAX_ALERTS:
                self.episodes.popitem(last=False)
        if event == "cleared":
            ep.end = ts

    def is_muted(self, asset: str, now: float | None = None) -> bool:
        """Whether the asset's alerts are muted now."""
        until = self.mutes.get(asset)
        return until is not None and (now or time.time()) < until

    # -- commands -------------------------------------------------------------------------

    def refuse(self, cid: str, command: str, reason: str, detail: str) -> dict[str, Any]:
        """Record a refused command for the retained state."""
        self.counts["refused"] += 1
        out = {"id": cid, "command": command, "outcome": "refused", "reason": reason, "detail": detail[:200],
               "ts": time.time()}
        self.recent.append(out)
        return out

    def apply(self, cmd: Command, known_assets: set[str], window_len: int) -> dict[str, Any]:
        """Apply one command; returns its outcome (also kept for the retained state).

        Raises:
            FeedbackError: an unknown alert id or asset.

        """
        now = time.time()
        detail = ""
        if cmd.command in ("ack", "label"):
            ep = self.episodes.get(cmd.alert_id)
            if ep is None:
                raise FeedbackError("unknown_alert", f"alert {cmd.alert_id[:64]!r} is not one this gateway raised "
                                    f"(it remembers the last {MAX_ALERTS})")
            if cmd.command == "ack":
                ep.acked_by = cmd.by or "?"
                self.counts["acked"] += 1
                detail = f"{ep.asset}: acknowledged"
            else:
                ep.label = cmd.label
                n = self._keep_windows(cmd, ep, window_len)
                self.counts["labelled"] += 1
                detail = f"{ep.asset}: labelled {cmd.label}; {n} readings kept"
        elif cmd.command == "mute":
            if cmd.asset not in known_assets:
                raise FeedbackError("unknown_asset", f"asset {cmd.asset[:64]!r} has no model on this gateway")
            if cmd.for_s > 0:
                self.mutes[cmd.asset] = now + cmd.for_s
                detail = f"{cmd.asset}: muted until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now + cmd.for_s))}"
            else:
                self.mutes.pop(cmd.asset, None)
                detail = f"{cmd.asset}: unmuted"
        else:
            detail = f"{len(self.labelled_files())} labelled alert(s) to publish, one at a time"
        out = {"id": cmd.id, "command": cmd.command, "outcome": "applied", "detail": detail, "ts": now}
        self.recent.append(out)
        return out

    def _keep_windows(self, cmd: Command, ep: _Episode, window_len: int) -> int:
        """Write the alert's readings to ``folder/ALERT_ID.json`` (oldest files go beyond the bound)."""
        buf = self._readings.get(ep.asset)
        ts, values = buf.ordered() if buf is not None else (np.zeros(0), np.zeros((0, 0), np.float32))
        end = ep.end if ep.end is not None else float("inf")
        start_i = max(int(np.searchsorted(ts, ep.since)) - (window_len - 1), 0)
        keep = np.arange(start_i, len(ts))[ts[start_i:] <= end]
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"alert_id": cmd.alert_id, "asset": ep.asset, "label": cmd.label, "note": cmd.note,
                  "since": ep.since, "end": ep.end, "by": cmd.by, "labelled_at": time.time(),
                  "channels": self._channels.get(ep.asset, []),
                  "ts": ts[keep].tolist(), "values": values[keep].astype(float).tolist()}
        path = self.folder / f"{cmd.alert_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
        files = self.labelled_files()
        for old in files[: max(0, len(files) - self.max_labelled)]:
            old.unlink(missing_ok=True)
        return int(keep.size)

    def labelled_files(self) -> list[Path]:
        """Kept labelled alerts, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)

    def state_payload(self, gateway: str) -> dict[str, Any]:
        """The retained ``ROOT/GW/feedback/state``."""
        now = time.time()
        return {"gateway": gateway, "ts": now,
                "mutes": {a: u for a, u in sorted(self.mutes.items()) if u > now},
                "acked": self.counts["acked"], "labelled": self.counts["labelled"],
                "refused": self.counts["refused"], "labelled_kept": len(self.labelled_files()),
                "recent": list(self.recent)}
