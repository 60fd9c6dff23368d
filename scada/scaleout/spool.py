"""Collector-side spool: change entries kept on disk while Redis is unreachable.

A SQLite file (WAL, one table) of ``(row id, stream, payload)`` in insertion order.
``append`` commits before it returns, so a spooled entry survives a collector crash;
``head`` and ``remove_through`` let the publisher replay the oldest entries first and
delete them only after Redis accepted them. Blocking calls (a few ms); the publisher
runs them on the loop thread because each call is one small transaction. One process
per file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Spool"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


class Spool:
    """An ordered on-disk queue of ``(stream, payload)`` entries."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._count = 0

    def open(self) -> None:
        """Open (create) the file; entries left by an earlier run are kept for replay."""
        if self._con is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(_SCHEMA)
        self._con = con
        self._count = int(con.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        """Close the file (entries stay on disk)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise RuntimeError(f"spool {self.path} is not open")
        return self._con

    def __len__(self) -> int:
        return self._count

    def append(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Append ``(stream, payload)`` entries in order, in one transaction."""
        if not items:
            return
        con = self._db()
        with con:
            con.execute("BEGIN")
            con.executemany("INSERT INTO spool (stream, payload) VALUES (?, ?)", items)
        self._count += len(items)

    def head(self, limit: int) -> list[tuple[int, str, bytes]]:
        """Return up to ``limit`` oldest entries as ``(row id, stream, payload)``."""
        rows = (
            self._db()
            .execute("SELECT id, stream, payload FROM spool ORDER BY id LIMIT ?", (limit,))
            .fetchall()
        )
        return [(int(i), str(s), bytes(p)) for i, s, p in rows]

    def remove_through(self, row_id: int) -> None:
        """Delete every entry up to and including ``row_id`` (after Redis accepted them)."""
        con = self._db()
        cur = con.execute("DELETE FROM spool WHERE id <= ?", (row_id,))
        self._count = max(0, self._count - int(cur.rowcount))
