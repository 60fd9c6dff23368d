"""The alarm journal: every transition, every occurrence, operator overrides and deliveries in SQLite.

One file, ``<data-dir>/alarms.sqlite`` (WAL). Tables:

* ``events``: every transition (append-only), the history the operator queries;
* ``occurrences``: one row per occurrence with its current state; rows without
  ``closed_ts`` are the open ones the engine restores after a restart;
* ``overrides``: shelving and out-of-service per alarm key (survive restarts);
* ``deliveries``: every notification attempt with its status (sent, retry, failed).

Threading: one journal per thread (sqlite3 connections are not shared); the engine and
the router use theirs on the loop thread. ``record`` only buffers into the open
transaction; the engine calls ``commit`` once per batch of changes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alarms.kpi import KpiReport, compute_kpis
from alarms.model import ANNUNCIATED, AlarmEvent, AlarmState, EventKind

__all__ = ["FILE_NAME", "AlarmJournal"]

log = logging.getLogger(__name__)

FILE_NAME = "alarms.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    occurrence INTEGER,
    rule_id TEXT NOT NULL,
    source TEXT NOT NULL,
    priority INTEGER NOT NULL,
    area TEXT NOT NULL,
    state TEXT NOT NULL,
    previous TEXT NOT NULL,
    message TEXT NOT NULL,
    value TEXT,
    user TEXT,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_key ON events(key, ts);
CREATE TABLE IF NOT EXISTS occurrences(
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    level TEXT,
    priority INTEGER NOT NULL,
    area TEXT NOT NULL,
    message TEXT NOT NULL,
    value TEXT,
    state TEXT NOT NULL,
    raised_ts REAL NOT NULL,
    acked_ts REAL,
    acked_by TEXT,
    ack_comment TEXT,
    cleared_ts REAL,
    closed_ts REAL,
    close_reason TEXT
);
CREATE INDEX IF NOT EXISTS occurrences_raised ON occurrences(raised_ts);
CREATE INDEX IF NOT EXISTS occurrences_open ON occurrences(closed_ts);
CREATE TABLE IF NOT EXISTS overrides(
    key TEXT PRIMARY KEY,
    shelved_until REAL,
    shelved_by TEXT,
    shelve_reason TEXT,
    out_of_service INTEGER NOT NULL DEFAULT 0,
    out_of_service_by TEXT,
    out_of_service_reason TEXT,
    updated_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries(
    id INTEGER PRIMARY KEY,
    created_ts REAL NOT NULL,
    ts REAL NOT NULL,
    recipient TEXT NOT NULL,
    notifier TEXT NOT NULL,
    address TEXT NOT NULL,
    occurrences TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    error TEXT,
    next_ts REAL
);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries(status, next_ts);
"""

_OVERRIDE_KINDS = frozenset(
    {EventKind.SHELVED, EventKind.UNSHELVED, EventKind.OUT_OF_SERVICE, EventKind.IN_SERVICE}
)


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str)


def _in(column: str, values: Iterable[Any] | None, where: list[str], args: list[Any]) -> None:
    if values is None:
        return
    vals = list(values)
    if not vals:
        where.append("0")
        return
    where.append(f"{column} IN ({','.join('?' * len(vals))})")
    args.extend(vals)


def _glob_any(
    column: str, globs: str | Iterable[str] | None, where: list[str], args: list[Any]
) -> None:
    if globs is None:
        return
    pats = [globs] if isinstance(globs, str) else list(globs)
    where.append("(" + " OR ".join(f"{column} GLOB ?" for _ in pats) + ")" if pats else "0")
    args.extend(pats)


class AlarmJournal:
    """SQLite persistence of the alarm system (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._closed = False

    @classmethod
    def open(cls, path: str | Path) -> AlarmJournal:
        """Open (creating it and its directory if needed) the journal file at ``path``."""
        p = Path(path)
        if str(p) != ":memory:":
            p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(p), isolation_level="DEFERRED")
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        conn.commit()
        return cls(conn, str(p))

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> AlarmJournal:
        """Open ``<data_dir>/alarms.sqlite``."""
        return cls.open(Path(data_dir) / FILE_NAME)

    def close(self) -> None:
        """Commit and close (a second call does nothing)."""
        if self._closed:
            return
        self._conn.commit()
        self._conn.close()
        self._closed = True

    def __enter__(self) -> AlarmJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def record(self, event: AlarmEvent) -> None:
        """Buffer ``event`` (and its effect on occurrences/overrides) into the open transaction."""
        a = event.alarm
        c = self._conn
        c.execute(
            "INSERT INTO events(ts, kind, key, occurrence, rule_id, source, priority, area, state, previous,"
            " message, value, user, comment) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                event.ts,
                event.kind.value,
                a.key,
                event.occurrence,
                a.rule_id,
                a.source,
                a.priority,
                a.area,
                a.state.value,
                event.previous.value,
                a.message,
                _json(a.value),
                event.user,
                event.comment,
            ),
        )
        occ = event.occurrence
        if event.kind is EventKind.RAISED and occ is not None:
            c.execute(
                "INSERT OR REPLACE INTO occurrences(id, key, rule_id, kind, source, level, priority, area, message,"
                " value, state, raised_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    occ,
                    a.key,
                    a.rule_id,
                    a.kind,
                    a.source,
                    a.level,
                    a.priority,
                    a.area,
                    a.message,
                    _json(a.value),
                    a.state.value,
                    event.ts,
                ),
            )
        elif occ is not None and event.kind is not EventKind.ESCALATED:
            closes = event.kind is EventKind.CLOSED or a.state not in ANNUNCIATED
            sets = ["state = ?"]
            args: list[Any] = [
                AlarmState.NORMAL.value if event.kind is EventKind.CLOSED else a.state.value
            ]
            if event.kind is EventKind.ACKED:
                sets += ["acked_ts = ?", "acked_by = ?", "ack_comment = ?"]
                args += [event.ts, event.user, event.comment]
            elif event.kind is EventKind.CLEARED:
                sets.append("cleared_ts = ?")
                args.append(event.ts)
            if closes:
                sets += ["closed_ts = ?", "close_reason = ?"]
                args += [event.ts, event.kind.value]
            c.execute(f"UPDATE occurrences SET {', '.join(sets)} WHERE id = ?", (*args, occ))
        if event.kind in _OVERRIDE_KINDS:
            c.execute(
                "INSERT OR REPLACE INTO overrides(key, shelved_until, shelved_by, shelve_reason, out_of_service,"
                " out_of_service_by, out_of_service_reason, updated_ts) VALUES (?,?,?,?,?,?,?,?)",
                (
                    a.key,
                    a.shelved_until,
                    a.shelved_by,
                    a.shelve_reason,
                    int(a.state is AlarmState.OUT_OF_SERVICE or a.out_of_service_by is not None),
                    a.out_of_service_by,
                    a.out_of_service_reason,
                    event.ts,
                ),
            )

    def commit(self) -> None:
        """Commit everything recorded since the last commit."""
        self._conn.commit()

    # ------------------------------------------------------------------ restore
    def next_occurrence_id(self) -> int:
        """Return the id the next occurrence should get (ids never repeat)."""
        row = self._conn.execute("SELECT MAX(id) FROM occurrences").fetchone()
        return int(row[0] or 0) + 1

    def open_occurrences(self) -> list[dict[str, Any]]:
        """Return the occurrences not closed yet (what the engine restores), oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM occurrences WHERE closed_ts IS NULL ORDER BY id"
        ).fetchall()
        return [self._occ(r) for r in rows]

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Return ``key -> {shelved_until, shelved_by, ..., out_of_service}`` of keys with an override."""
        rows = self._conn.execute(
            "SELECT * FROM overrides WHERE shelved_until IS NOT NULL OR out_of_service != 0"
        ).fetchall()
        return {r["key"]: dict(r) for r in rows}

    def close_occurrences(self, ids: Iterable[int], ts: float, reason: str) -> int:
        """Close occurrences by id without an event (their alarm point no longer exists)."""
        ids = list(ids)
        self._conn.executemany(
            "UPDATE occurrences SET closed_ts = ?, close_reason = ? WHERE id = ? AND closed_ts IS NULL",
            [(ts, reason, i) for i in ids],
        )
        return len(ids)

    @staticmethod
    def _occ(r: sqlite3.Row) -> dict[str, Any]:
        d = dict(r)
        d["value"] = json.loads(d["value"]) if d["value"] is not None else None
        return d

    # ------------------------------------------------------------------ queries
    def history(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        priorities: Iterable[int] | None = None,
        areas: str | Iterable[str] | None = None,
        states: Iterable[AlarmState | str] | None = None,
        kinds: Iterable[EventKind | str] | None = None,
        text: str | None = None,
        key: str | Iterable[str] | None = None,
        limit: int = 1000,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Return journal events matching every given filter.

        ``since``/``until`` epoch seconds (``[since, until)``); ``areas`` and ``key`` are
        globs; ``states`` filter the state after the event; ``text`` is a
        case-insensitive substring of message, key, source, user or comment.
        """
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        _in("priority", priorities, where, args)
        _glob_any("area", areas, where, args)
        _glob_any("key", key, where, args)
        _in(
            "state",
            None if states is None else [AlarmState.parse(s).value for s in states],
            where,
            args,
        )
        _in("kind", None if kinds is None else [EventKind(k).value for k in kinds], where, args)
        if text:
            like = f"%{text.lower()}%"
            where.append(
                "(lower(message) LIKE ? OR lower(key) LIKE ? OR lower(source) LIKE ?"
                " OR lower(coalesce(user,'')) LIKE ? OR lower(coalesce(comment,'')) LIKE ?)"
            )
            args += [like] * 5
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ? OFFSET ?"
        rows = self._conn.execute(sql, (*args, int(limit), int(offset))).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["value"] = json.loads(d["value"]) if d["value"] is not None else None
            out.append(d)
        return out

    def occurrences(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        key: str | Iterable[str] | None = None,
        open_only: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Return occurrences raised in ``[since, until)`` (newest first)."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("raised_ts >= ?")
            args.append(since)
        if until is not None:
            where.append("raised_ts < ?")
            args.append(until)
        _glob_any("key", key, where, args)
        if open_only:
            where.append("closed_ts IS NULL")
        sql = "SELECT * FROM occurrences" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [self._occ(r) for r in rows]

    def kpis(self, since: float, until: float, *, now: float | None = None) -> KpiReport:
        """Return the ISA-18.2 KPIs of ``[since, until)`` (stale alarms judged at ``now``, default ``until``)."""
        acts = self._conn.execute(
            "SELECT raised_ts, key FROM occurrences WHERE raised_ts >= ? AND raised_ts < ?",
            (since, until),
        ).fetchall()
        open_ = self._conn.execute(
            "SELECT id, key, raised_ts FROM occurrences WHERE cleared_ts IS NULL AND closed_ts IS NULL"
            " AND state IN (?, ?)",
            (AlarmState.UNACKED.value, AlarmState.ACKED.value),
        ).fetchall()
        return compute_kpis(
            [(r[0], r[1]) for r in acts], [(r[0], r[1], r[2]) for r in open_], since, until, now=now
        )

    # ------------------------------------------------------------------ deliveries
    def add_delivery(
        self,
        *,
        ts: float,
        recipient: str,
        notifier: str,
        address: str,
        occurrences: Iterable[int],
        subject: str,
        body: str,
    ) -> int:
        """Record a notification about to be sent; return its id (status ``pending``)."""
        cur = self._conn.execute(
            "INSERT INTO deliveries(created_ts, ts, recipient, notifier, address, occurrences, subject, body,"
            " attempts, status) VALUES (?,?,?,?,?,?,?,?,0,'pending')",
            (
                ts,
                ts,
                recipient,
                notifier,
                address,
                json.dumps(sorted(set(occurrences))),
                subject,
                body,
            ),
        )
        self._conn.commit()
        return int(cur.lastrowid or 0)

    def update_delivery(
        self,
        delivery_id: int,
        *,
        ts: float,
        status: str,
        attempts: int,
        error: str | None = None,
        next_ts: float | None = None,
    ) -> None:
        """Record the outcome of an attempt: ``sent``, ``retry`` (with ``next_ts``) or ``failed``.

        ``error`` None keeps the previous error text (a delivery sent on a retry shows why
        the first attempt failed).
        """
        self._conn.execute(
            "UPDATE deliveries SET ts = ?, status = ?, attempts = ?, error = coalesce(?, error), next_ts = ?"
            " WHERE id = ?",
            (ts, status, attempts, error, next_ts, delivery_id),
        )
        self._conn.commit()

    def deliveries(self, *, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Return deliveries (newest first), optionally with one status."""
        sql = "SELECT * FROM deliveries"
        args: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            args.append(status)
        rows = self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, int(limit))).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["occurrences"] = json.loads(d["occurrences"])
            out.append(d)
        return out
