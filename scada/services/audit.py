"""The audit log: an append-only record of logins, commands, acks, config and billing changes.

One file, ``<data-dir>/audit.sqlite`` (WAL). Every entry says who (user and role), when
(epoch seconds), from where (client address or ``internal``), what (``action`` and
``target``), the state before and after (JSON) and the ``result`` (``ok``, ``denied``,
``failed``). SQLite triggers refuse UPDATE and DELETE, so entries cannot be changed
through this file's connection or any other.

``record`` is cheap (one INSERT, committed at once) and called on the event-loop thread;
``query`` opens its own connection, so callers run it in a worker thread. Other packages
(billing) call ``record`` for their operations too.

Tamper evidence: the triggers stop an honest mistake, not someone who edits the file with
the triggers dropped. Each entry therefore carries ``hash`` = SHA-256 of the previous
entry's hash and the entry's own fields (canonical JSON), written in the same immediate
transaction as the entry, so the entries form a chain. :meth:`AuditLog.verify` (``GET
/api/audit/verify``, ``scada audit verify``) recomputes it: a changed, inserted or deleted
entry breaks the chain from there on. Cutting entries off the end leaves a valid shorter
chain, which is why the head (``seq`` and ``hash``) is worth writing down elsewhere: the
daily backup log prints it, and comparing a kept head with the current chain shows a cut.
Entries written before the chain existed (schema without ``hash``) are counted as
``unchained`` and the chain starts after them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tags.model import iso

__all__ = [
    "EXPORT_COLUMNS",
    "FILE_NAME",
    "GENESIS",
    "AuditLog",
    "entry_hash",
    "export_cells",
    "verify_file",
    "write_csv",
]

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
    detail TEXT,
    hash TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, ts);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


GENESIS = "0" * 64  # the "previous hash" of the first chained entry

_FIELDS = (
    "seq",
    "ts",
    "user",
    "role",
    "source",
    "action",
    "target",
    "result",
    "before",
    "after",
    "detail",
)


#: Columns of an exported entry, in order: the CSV header (``scada audit export``,
#: ``GET /api/audit?format=csv``) and the keys of a JSON-lines export.
EXPORT_COLUMNS = (
    "seq",
    "time",
    "user",
    "role",
    "source",
    "action",
    "target",
    "result",
    "before",
    "after",
    "detail",
    "hash",
)


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str, ensure_ascii=False)


def export_cells(entry: dict[str, Any]) -> list[Any]:
    """Return the CSV cells of a queried entry (``EXPORT_COLUMNS`` order).

    ``before`` and ``after`` become JSON text, a missing value an empty cell.
    """
    cells: list[Any] = []
    for k in EXPORT_COLUMNS:
        v = entry.get(k)
        if k in ("before", "after"):
            v = _json(v)
        cells.append("" if v is None else v)
    return cells


def write_csv(entries: Iterable[dict[str, Any]], out: Any, *, header: bool = True) -> int:
    """Write queried entries to the text stream ``out`` as CSV; return the number of rows.

    One row per entry (:func:`export_cells`), after a header row unless ``header`` is False
    (a later page of the same export).
    """
    writer = csv.writer(out)
    if header:
        writer.writerow(EXPORT_COLUMNS)
    n = 0
    for entry in entries:
        writer.writerow(export_cells(entry))
        n += 1
    return n


def entry_hash(prev: str, row: tuple[Any, ...]) -> str:
    """Return the chain hash of an entry: SHA-256 of ``prev`` and the row (``_FIELDS`` order).

    ``before`` and ``after`` are the stored JSON texts, ``ts`` the stored float (its
    ``repr`` round-trips through SQLite's REAL exactly).
    """
    text = json.dumps([prev, *row], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(audit)")}
            if "hash" not in cols:  # a log from before the chain: it starts after those entries
                self._conn.execute("ALTER TABLE audit ADD COLUMN hash TEXT")
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

        ``user`` is a :class:`~scada.services.auth.User`, a name or None (anonymous);
        ``source`` the client address (``internal`` for in-process callers); ``before`` and
        ``after`` anything JSON-serialisable.
        """
        name = getattr(user, "name", user)
        role = getattr(getattr(user, "role", None), "value", None)
        ts = float(self._clock())
        with self._lock:
            conn = self._conn
            # BEGIN IMMEDIATE: the last entry cannot change under us (another process, such
            # as a CLI command, may append to the same file)
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq = 1 if last is None else int(last[0]) + 1
                prev = GENESIS if last is None or last[1] is None else str(last[1])
                row = (
                    seq,
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
                )
                conn.execute(
                    f"INSERT INTO audit({', '.join(_FIELDS)}, hash) VALUES ({', '.join('?' * 12)})",
                    (*row, entry_hash(prev, row)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
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

    def verify(self) -> dict[str, Any]:
        """Recompute the hash chain (module docstring); safe from any thread.

        See :func:`verify_file`.
        """
        return verify_file(self.path)

    def query(self, **filters: Any) -> list[dict[str, Any]]:
        """Return matching entries, newest first (ISO times, JSON decoded).

        ``filters`` as :meth:`query_file` (``since``, ``until``, ``user``, ``action`` and
        ``target`` globs such as ``command.*``, ``result``, ``after_seq``, ``limit``).
        Opens its own connection: safe from any thread.
        """
        return self.query_file(self.path, **filters)

    @staticmethod
    def query_file(
        path: str | Path,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        action: str | None = None,
        target: str | None = None,
        result: str | None = None,
        after_seq: int | None = None,
        limit: int = 1000,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """:meth:`query` on the audit file ``path``, opened read-only (the CLI's export)."""
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
        sql += f" ORDER BY seq {'ASC' if oldest_first else 'DESC'} LIMIT ?"
        args.append(max(1, min(int(limit), MAX_QUERY_ROWS)))
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=10.0)
        conn.row_factory = sqlite3.Row
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


def verify_file(path: str | Path, *, head: tuple[int, str] | None = None) -> dict[str, Any]:
    """Recompute the hash chain of the audit file ``path`` (opened read-only).

    Returns ``{"ok", "entries", "unchained", "head": {"seq", "hash"} | None, "broken_at":
    seq | None, "reason"}``: ``broken_at`` is the first entry whose hash does not follow
    from the entries before it. ``head`` is a ``(seq, hash)`` written down earlier (a
    backup manifest): the entry ``seq`` must still be there with that hash, or entries
    were cut off the end (or the file replaced).
    """
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=10.0)
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(audit)")}
        if "hash" not in cols:  # an old log nobody opened since the chain came
            n = conn.execute("SELECT count(*) FROM audit").fetchone()[0] if cols else 0
            return _result(True, n, n, None, None, None)
        rows = conn.execute(f"SELECT {', '.join(_FIELDS)}, hash FROM audit ORDER BY seq")
        prev: str | None = None  # None: no chained entry seen yet
        count = unchained = 0
        last = None
        seen_head = head is None
        for r in rows:
            count += 1
            row, stored = tuple(r)[:-1], r[-1]
            if stored is None:
                if prev is not None:
                    return _result(False, count, unchained, last, r[0], "an entry without a hash")
                unchained += 1
                continue
            if stored != entry_hash(GENESIS if prev is None else prev, row):
                reason = "the entry or one before it was changed, inserted or deleted"
                return _result(False, count, unchained, last, r[0], reason)
            if head is not None and r[0] == head[0]:
                if stored != head[1]:
                    reason = f"entry {head[0]} is not the one written down (the log was replaced)"
                    return _result(False, count, unchained, last, r[0], reason)
                seen_head = True
            prev, last = stored, {"seq": r[0], "hash": stored}
    finally:
        conn.close()
    if not seen_head:
        assert head is not None
        reason = f"entry {head[0]} written down earlier is gone: entries were cut off the end"
        return _result(False, count, unchained, last, head[0], reason)
    return _result(True, count, unchained, last, None, None)


def _result(
    ok: bool, count: int, unchained: int, head: Any, broken_at: int | None, reason: str | None
) -> dict[str, Any]:
    return {
        "ok": ok,
        "entries": count,
        "unchained": unchained,
        "head": head,
        "broken_at": broken_at,
        "reason": reason,
    }
