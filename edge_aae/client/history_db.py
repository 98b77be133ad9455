"""The alert history database: SQLite (embedded default) or PostgreSQL, one schema, migrated on open.

URLs: ``sqlite:///alerts.db`` (a relative path), ``sqlite:////var/lib/edge-aae/alerts.db``
(absolute), ``postgresql://user@host:5432/dbname`` (``postgres://`` too; query parameters such
as ``?options=-csearch_path%3Dplant`` are passed to the driver). PostgreSQL needs ``psycopg``
(``pip install 'edge-aae[db]'``).

Writes are idempotent: an alert message is keyed on its ``id``, a status on gateway and time, a
score on gateway, asset and time; a second copy of the same message is not a second row.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edge_aae.core.errors import UsageError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: drift, feedback and feedback_outcomes tables

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS edge_aae_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, event TEXT NOT NULL, gateway TEXT NOT NULL,
        asset TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, since DOUBLE PRECISION, score DOUBLE PRECISION,
        peak_score DOUBLE PRECISION, threshold DOUBLE PRECISION, top_channel TEXT, model_name TEXT,
        model_version TEXT, payload TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alerts_asset_ts ON alerts (asset, ts)",
    """CREATE TABLE IF NOT EXISTS statuses (
        gateway TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, state TEXT, healthy INTEGER, payload TEXT NOT NULL,
        PRIMARY KEY (gateway, ts))""",
    """CREATE TABLE IF NOT EXISTS scores (
        gateway TEXT NOT NULL, asset TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, score DOUBLE PRECISION,
        threshold DOUBLE PRECISION, latent_score DOUBLE PRECISION, model_version TEXT,
        PRIMARY KEY (gateway, asset, ts))""",
    """CREATE TABLE IF NOT EXISTS drift (
        gateway TEXT NOT NULL, asset TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, state TEXT NOT NULL,
        since DOUBLE PRECISION, model_version TEXT, payload TEXT NOT NULL, PRIMARY KEY (gateway, asset, ts))""",
    """CREATE TABLE IF NOT EXISTS feedback (
        gateway TEXT NOT NULL, id TEXT NOT NULL, command TEXT NOT NULL, alert_id TEXT, asset TEXT, label TEXT,
        note TEXT, by_user TEXT, ts DOUBLE PRECISION, payload TEXT NOT NULL, PRIMARY KEY (gateway, id))""",
    """CREATE TABLE IF NOT EXISTS feedback_outcomes (
        gateway TEXT NOT NULL, id TEXT NOT NULL, command TEXT, outcome TEXT NOT NULL, detail TEXT,
        ts DOUBLE PRECISION, PRIMARY KEY (gateway, id))""",
)

ALERT_COLUMNS = ("id", "alert_id", "event", "gateway", "asset", "ts", "since", "score", "peak_score", "threshold",
                 "top_channel", "model_name", "model_version", "payload", "received_at")
_INSERT_ALERT = ("INSERT INTO alerts (id, alert_id, event, gateway, asset, ts, since, score, peak_score, threshold, "
                 "top_channel, model_name, model_version, payload, received_at) VALUES "
                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")


@dataclass(frozen=True)
class DbUrl:
    """A parsed ``--db`` URL."""

    kind: str  # sqlite or postgresql
    target: str  # the SQLite file, or the libpq connection string


def parse_db_url(url: str) -> DbUrl:
    """``sqlite:///FILE`` or ``postgresql://...``.

    Raises:
        UsageError: any other form, naming the accepted ones.

    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise UsageError(f"--db {url!r}: a SQLite URL is sqlite:///FILE (relative) or sqlite:////abs/FILE")
        return DbUrl("sqlite", path)
    if parsed.scheme in ("postgresql", "postgres"):
        return DbUrl("postgresql", url)
    raise UsageError(f"--db {url!r}: expected sqlite:///FILE or postgresql://USER@HOST:PORT/DB")


class HistoryDb:
    """A connection with the schema in place. Use :func:`open_db`."""

    def __init__(self, conn: Any, kind: str) -> None:
        """Wrap an open DB-API connection of ``kind`` (``sqlite`` or ``postgresql``)."""
        self.conn = conn
        self.kind = kind
        self._mark = "?" if kind == "sqlite" else "%s"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._mark)

    def migrate(self) -> None:
        """Create what is missing; refuse a database written by a newer schema."""
        cur = self.conn.cursor()
        for stmt in _SCHEMA:
            cur.execute(stmt)
        cur.execute("SELECT version FROM edge_aae_schema")
        row = cur.fetchone()
        if row is None:
            cur.execute(self._sql("INSERT INTO edge_aae_schema (version) VALUES (?)"), (SCHEMA_VERSION,))
        elif int(row[0]) > SCHEMA_VERSION:
            self.conn.rollback()
            raise UsageError(f"the history database has schema version {row[0]}; this edge-aae knows "
                             f"{SCHEMA_VERSION}: upgrade edge-aae")
        elif int(row[0]) < SCHEMA_VERSION:  # older: the new tables were created above, nothing else changed
            log.info("history database migrated from schema %s to %s", row[0], SCHEMA_VERSION)
            cur.execute(self._sql("UPDATE edge_aae_schema SET version = ?"), (SCHEMA_VERSION,))
        self.conn.commit()

    def write(self, rows: list[tuple[str, dict[str, Any], float]]) -> None:
        """Insert a batch of ``(kind, payload, received_at)`` in one transaction.

        ``kind``: ``alert``, ``status``, ``score``, ``drift``, ``feedback`` (a command) or
        ``feedback_state`` (the gateway's outcomes of recent commands).

        Copies already present are skipped (``ON CONFLICT DO NOTHING``).
        """
        cur = self.conn.cursor()
        for kind, p, received in rows:
            try:
                self._insert(cur, kind, p, received)
            except (KeyError, TypeError, ValueError, IndexError) as exc:  # the row, not the database
                log.warning("%s message skipped: field %s missing or of the wrong type", kind, exc)
        self.conn.commit()

    def _insert(self, cur: Any, kind: str, p: dict[str, Any], received: float) -> None:
        """One row; raises KeyError/TypeError/ValueError for a payload that lacks what the row needs."""
        if kind == "alert":
            top = p.get("top_channels") or [{}]
            model = _dict(p.get("model"))
            values = (p["id"], p["alert_id"], p["event"], p["gateway"], p["asset"], float(p["ts"]),
                      _num(p.get("since")), _num(p.get("score")), _num(p.get("peak_score")),
                      _num(p.get("threshold")), str(top[0].get("channel", "")) if isinstance(top[0], dict) else "",
                      str(model.get("name", "")), str(model.get("version", "")), json.dumps(p), received)
            cur.execute(self._sql(_INSERT_ALERT), values)
        elif kind == "status":
            healthy = p.get("healthy")
            cur.execute(self._sql("INSERT INTO statuses (gateway, ts, state, healthy, payload) VALUES "
                                  "(?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                        (p["gateway"], float(p["ts"]), str(p.get("state", "")),
                         None if healthy is None else int(bool(healthy)), json.dumps(p)))
        elif kind == "drift":
            model = _dict(p.get("model"))
            cur.execute(self._sql("INSERT INTO drift (gateway, asset, ts, state, since, model_version, payload) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                        (p["gateway"], p["asset"], float(p["ts"]), str(p["state"]), _num(p.get("since")),
                         str(model.get("version", "")), json.dumps(p)))
        elif kind == "feedback":
            cur.execute(self._sql("INSERT INTO feedback (gateway, id, command, alert_id, asset, label, note, by_user, "
                                  "ts, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                        (p["gateway"], str(p["id"]), str(p["command"]), p.get("alert_id"), p.get("asset"),
                         p.get("label"), p.get("note"), p.get("by"), _num(p.get("ts")) or received, json.dumps(p)))
        elif kind == "feedback_state":
            for r in p.get("recent", []):
                if isinstance(r, dict) and r.get("id"):
                    cur.execute(self._sql("INSERT INTO feedback_outcomes (gateway, id, command, outcome, detail, ts) "
                                          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                                (p["gateway"], str(r["id"]), str(r.get("command", "")), str(r.get("outcome", "")),
                                 str(r.get("detail", ""))[:300], _num(r.get("ts"))))
        elif kind == "score":
            model = _dict(p.get("model"))
            cur.execute(self._sql("INSERT INTO scores (gateway, asset, ts, score, threshold, latent_score, "
                                  "model_version) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                        (p["gateway"], p["asset"], float(p["ts"]), _num(p.get("score")),
                         _num(p.get("threshold")), _num(p.get("latent_score")), str(model.get("version", ""))))

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a ``SELECT`` written with ``?`` placeholders."""
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), params)
        return list(cur.fetchall())

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def open_db(url: str, connect_timeout_s: float = 10.0) -> HistoryDb:
    """Connect and migrate.

    Raises:
        UsageError: a malformed URL, or PostgreSQL without psycopg installed.
        OSError / the driver's OperationalError: the database cannot be reached (callers retry).

    """
    target = parse_db_url(url)
    if target.kind == "sqlite":
        Path(target.target).parent.mkdir(parents=True, exist_ok=True)
        db = HistoryDb(sqlite3.connect(target.target, timeout=connect_timeout_s, check_same_thread=False), "sqlite")
    else:
        try:
            import psycopg
        except ImportError:
            raise UsageError("--db postgresql://...: needs psycopg (pip install 'edge-aae[db]')") from None
        db = HistoryDb(psycopg.connect(target.target, connect_timeout=max(1, int(connect_timeout_s))),
                       "postgresql")
    db.migrate()
    return db
