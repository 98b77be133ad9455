"""``edge-aae history``: what the alert history database holds, as a table and an HTML report."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_aae.client.history_db import HistoryDb
from edge_aae.core.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    """``90m``, ``12h``, ``7d``, ``2w`` -> seconds.

    Raises:
        UsageError: any other form.

    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise UsageError(f"--since {text!r}: expected a number and a unit, e.g. 90m, 12h, 7d or 2w")
    return float(m[1]) * _UNITS[m[2]]


@dataclass(frozen=True)
class AssetSummary:
    """Alerts of one asset in the period."""

    gateway: str
    asset: str
    raised: int
    cleared: int
    last_raised: float | None
    median_duration_s: float | None
    top_channel: str


def summarize(db: HistoryDb, since_ts: float, asset: str = "") -> tuple[list[AssetSummary], list[tuple[Any, ...]]]:
    """Per asset: counts, last raise, median alert duration, most blamed channel; and the raw alert rows."""
    select = ("SELECT gateway, asset, alert_id, event, ts, since, score, threshold, top_channel, model_version "
              "FROM alerts WHERE ts >= ?")
    if asset:
        rows = db.query(select + " AND asset = ? ORDER BY ts", (since_ts, asset))
    else:
        rows = db.query(select + " ORDER BY ts", (since_ts,))
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        groups.setdefault((r[0], r[1]), []).append(r)
    out = []
    for (gw, a), rs in sorted(groups.items()):
        raised = [r for r in rs if r[3] == "raised"]
        cleared = [r for r in rs if r[3] == "cleared"]
        durations = sorted(r[4] - r[5] for r in cleared if r[5] is not None)
        channels: dict[str, int] = {}
        for r in raised:
            channels[r[8]] = channels.get(r[8], 0) + 1
        out.append(AssetSummary(gw, a, len(raised), len(cleared), max((r[4] for r in raised), default=None),
                                durations[len(durations) // 2] if durations else None,
                                max(channels, key=lambda k: channels[k]) if channels else "-"))
    return out, rows


@dataclass(frozen=True)
class FeedbackSummary:
    """What operators did with the period's alerts."""

    acked: int
    median_ack_s: float | None  # from an alert's raise to its (applied) acknowledgement
    labels: dict[tuple[str, str], int]  # (model version, label) -> alerts


def summarize_feedback(db: HistoryDb, since_ts: float, asset: str = "") -> FeedbackSummary:
    """Acknowledgements (time to acknowledge) and labels per model version, applied commands only."""
    rows = db.query(
        "SELECT f.command, f.alert_id, f.label, f.ts, a.ts, a.model_version FROM feedback f "
        "JOIN alerts a ON a.alert_id = f.alert_id AND a.gateway = f.gateway AND a.event = 'raised' "
        "LEFT JOIN feedback_outcomes o ON o.gateway = f.gateway AND o.id = f.id "
        "WHERE a.ts >= ? AND (o.outcome IS NULL OR o.outcome = 'applied') AND (? = '' OR a.asset = ?)",
        (since_ts, asset, asset))
    waits = sorted(max(0.0, float(r[3]) - float(r[4])) for r in rows if r[0] == "ack" and r[3] is not None)
    labels: dict[tuple[str, str], int] = {}
    latest: dict[str, tuple[str, str]] = {}
    for r in sorted((r for r in rows if r[0] == "label"), key=lambda r: r[3] or 0):
        latest[r[1]] = (r[5] or "?", r[2] or "?")  # the last label of an alert counts
    for key in latest.values():
        labels[key] = labels.get(key, 0) + 1
    return FeedbackSummary(len(waits), waits[len(waits) // 2] if waits else None, labels)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC" if ts is not None else "-"


def write_report(out_dir: Path, summaries: list[AssetSummary], rows: list[tuple[Any, ...]], title: str,
                 feedback: FeedbackSummary | None = None) -> Path:
    """``out_dir/history.html`` (and ``alerts.png`` when matplotlib is installed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = ""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plot = "<p>(plots need matplotlib: <code>pip install 'edge-aae[train]'</code>)</p>"
    else:
        fig, ax = plt.subplots(figsize=(10, 1 + 0.5 * max(1, len(summaries))))
        names = [f"{s.gateway}/{s.asset}" for s in summaries]
        for i, s in enumerate(summaries):
            ts = [r[4] for r in rows if (r[0], r[1]) == (s.gateway, s.asset) and r[3] == "raised"]
            ax.scatter(ts, [i] * len(ts), marker="|", s=200)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("time (UTC epoch seconds)")
        ax.set_title("alerts raised per asset")
        fig.tight_layout()
        fig.savefig(out_dir / "alerts.png", dpi=100)
        plt.close(fig)
        plot = '<img src="alerts.png" alt="alerts raised per asset over time">'
    table = "".join(
        f"<tr><td>{html.escape(s.gateway)}</td><td>{html.escape(s.asset)}</td><td>{s.raised}</td><td>{s.cleared}</td>"
        f"<td>{_when(s.last_raised)}</td><td>{'-' if s.median_duration_s is None else f'{s.median_duration_s:.0f} s'}"
        f"</td><td>{html.escape(s.top_channel)}</td></tr>" for s in summaries)
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
            "<table border=1 cellpadding=4><tr><th>gateway</th><th>asset</th><th>raised</th><th>cleared</th>"
            f"<th>last raised</th><th>median duration</th><th>channel blamed most</th></tr>{table}</table>{plot}"
            + (_feedback_html(feedback) if feedback is not None else ""))
    path = out_dir / "history.html"
    path.write_text(page, encoding="utf-8")
    return path


def _feedback_html(f: FeedbackSummary) -> str:
    ack = "-" if f.median_ack_s is None else f"{f.median_ack_s:.0f} s"
    rows = "".join(f"<tr><td>{html.escape(v)}</td><td>{html.escape(label)}</td><td>{n}</td></tr>"
                   for (v, label), n in sorted(f.labels.items()))
    return (f"<h2>Operator feedback</h2><p>{f.acked} alert(s) acknowledged; median time to acknowledge {ack}.</p>"
            "<table border=1 cellpadding=4><tr><th>model version</th><th>label</th><th>alerts</th></tr>"
            f"{rows or '<tr><td colspan=3>no labels</td></tr>'}</table>")
