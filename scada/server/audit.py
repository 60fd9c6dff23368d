"""The audit log: an append-only record of logins, commands, acks, config and billing changes.

One file, ``<data-dir>/audit.sqlite`` (WAL). Every entry says who (user and role), when
(epoch seconds), from where (client address or ``internal``), what (``action`` and
``target``), the state before and after (JSON) and the ``result`` (``ok``, ``denied``,
``failed``). SQLite triggers refuse UPDATE and DELETE, so entries cannot be changed
through this file's connection or any other.

``record`` is cheap (one INSERT, committed at once) and called on the event-loop thread;
``query`` opens its own connection, so callers run it in a worker thread. Other packages
(billing) call ``record`` for their operations too.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tags.model import iso

__all__ = ["FILE_NAME", "AuditLog"]

log = logging.getLogger(__name__)

FILE_NAME = "audit.sqlite"
MAX_QUERY_ROWS = 10000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    user TEXT,
    role TEXT,
    source TEXT,
    action TEXT NOT NULL,
    target TEXT,
    result TEXT NOT NULL,
    before TEXT,
    after TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, ts);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str, ensure_ascii=False)


class AuditLog:
    """Append-only audit entries in SQLite (module docstring)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = self._connect()
        with self._conn:
            self._conn.executescript(_SCHEMA)
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> AuditLog:
        """Open ``<data_dir>/audit.sqlite`` (created if missing)."""
        return cls(Path(data_dir) / FILE_NAME)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(entry)`` after every record; return the unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def record(
        self,
        action: str,
        *,
        user: Any = None,
        source: str | None = None,
        target: str | None = None,
        result: str = "ok",
        before: Any = None,
        after: Any = None,
        detail: str | None = None,
    ) -> int:
        """Append one entry and return its sequence number.

        ``user`` is a :class:`~scada.server.auth.User`, a name or None (anonymous);
        ``source`` the client address (``internal`` for in-process callers); ``before`` and
        ``after`` anything JSON-serialisable.
        """
        name = getattr(user, "name", user)
        role = getattr(getattr(user, "role", None), "value", None)
        ts = self._clock()
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO audit(ts, user, role, source, action, target, result, before, after, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ts,
                    name,
                    role,
                    source or "internal",
                    action,
                    target,
                    result,
                    _json(before),
                    _json(after),
                    detail,
                ),
            )
            seq = int(cur.lastrowid or 0)
        if self._listeners:
            entry = {
                "seq": seq,
                "ts": ts,
                "user": name,
                "action": action,
                "target": target,
                "result": result,
            }
            for cb in tuple(self._listeners):
                try:
                    cb(entry)
                except Exception:
                    log.exception("audit listener %r failed", cb)
        return seq

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        action: str | None = None,
        target: str | None = None,
        result: str | None = None,
        after_seq: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Return matching entries, newest first (ISO times, JSON decoded).

        ``action`` and ``target`` are globs (``command.*``, ``b1.*``). Opens its own
        connection: safe from any thread.
        """
        filters = (
            ("ts >= ?", since),
            ("ts < ?", until),
            ("user = ?", user),
            ("action GLOB ?", action),
            ("target GLOB ?", target),
            ("result = ?", result),
            ("seq > ?", after_seq),
        )
        where = [clause for clause, value in filters if value is not None]
        args: list[Any] = [value for _, value in filters if value is not None]
        sql = "SELECT * FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(max(1, min(int(limit), MAX_QUERY_ROWS)))
        conn = self._connect()
        try:
            rows = conn.execute(sql, args).fetchall()
        finally:
            conn.close()
        out = []
        for r in rows:
            d = dict(r)
            d["time"] = iso(d["ts"])
            for k in ("before", "after"):
                d[k] = None if d[k] is None else json.loads(d[k])
            out.append(d)
        return out
