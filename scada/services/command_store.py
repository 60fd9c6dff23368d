"""Durable command records: ``<data-dir>/commands.sqlite`` (WAL).

The command service keeps its working set in memory; this store makes what a client may
ask after a restart survive it:

* ``GET /api/commands/{id}`` of a command from before the restart;
* idempotency keys: a client that retries a select (or a batch) with the same key after
  the server restarted gets the command it already has, never a second write;
* the time of each tag's last operate, for ``min_interval_s`` (:meth:`last_operated`);
* the end of a command the restart interrupted: a selection cannot outlive the process
  that holds the reservation (``expired``), and a write whose read-back never came back
  ends ``failed`` with "outcome unknown" (the operator checks the read value). Both are
  audited by :class:`~scada.services.commands.CommandService` on start.

Every state change of a command is one UPSERT, committed at once (commands are rare: a
few per second at most, billing's batch trips included). Rows older than ``KEEP_S`` are
purged on open. Unlike the audit log this table is mutable: the audit log stays the
record of who did what; this is the commands' current state.

Threading: the event-loop thread only (like :class:`~scada.services.audit.AuditLog.record`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from scada.services.command_model import Batch, Command, CommandState

__all__ = ["FILE_NAME", "KEEP_S", "CommandStore"]

FILE_NAME = "commands.sqlite"
KEEP_S = 90 * 86400.0  # commands older than this are purged on open

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command(
    id TEXT PRIMARY KEY,
    tag TEXT NOT NULL,
    value TEXT,
    user TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ts REAL NOT NULL,
    expires_ts REAL NOT NULL,
    source TEXT NOT NULL,
    device TEXT,
    batch TEXT,
    key TEXT,
    operated_ts REAL,
    finished_ts REAL,
    read_back TEXT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS command_created ON command(created_ts);
CREATE INDEX IF NOT EXISTS command_key ON command(user, key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS command_state ON command(state) WHERE state IN ('selected', 'operated');
CREATE TABLE IF NOT EXISTS batch(
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    key TEXT,
    created_ts REAL NOT NULL,
    expires_ts REAL NOT NULL,
    targets TEXT NOT NULL,
    commands TEXT NOT NULL,
    errors TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_created ON batch(created_ts);
CREATE INDEX IF NOT EXISTS batch_key ON batch(user, key) WHERE key IS NOT NULL;
"""

_COLUMNS = (
    "id, tag, value, user, reason, state, created_ts, expires_ts, source, device, batch, key, "
    "operated_ts, finished_ts, read_back, message"
)


def _dump(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class CommandStore:
    """Command and batch rows in SQLite (module docstring)."""

    def __init__(self, path: str | Path, *, now: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        horizon = (time.time() if now is None else now) - KEEP_S
        with self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute("DELETE FROM command WHERE created_ts < ?", (horizon,))
            self._conn.execute("DELETE FROM batch WHERE created_ts < ?", (horizon,))

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> CommandStore:
        return cls(Path(data_dir) / FILE_NAME)

    # ------------------------------------------------------------------ commands
    def save(self, cmd: Command) -> None:
        """Insert or update ``cmd`` (committed at once)."""
        row = (
            cmd.id,
            cmd.tag,
            _dump(cmd.value),
            cmd.user,
            cmd.reason,
            cmd.state.value,
            cmd.created_ts,
            cmd.expires_ts,
            cmd.source,
            cmd.device,
            cmd.batch,
            cmd.key,
            cmd.operated_ts,
            cmd.finished_ts,
            _dump(cmd.read_back),
            cmd.message,
        )
        with self._conn:
            self._conn.execute(
                f"INSERT OR REPLACE INTO command({_COLUMNS}) VALUES ({', '.join('?' * 16)})", row
            )

    def get(self, command_id: str) -> Command | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM command WHERE id = ?", (command_id,)
        ).fetchone()
        return None if row is None else _command(row)

    def by_key(self, user: str, key: str, since: float) -> Command | None:
        """Return the newest command of ``user`` with idempotency ``key`` created after ``since``."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM command WHERE user = ? AND key = ? AND created_ts >= ? "
            "ORDER BY created_ts DESC LIMIT 1",
            (user, key, since),
        ).fetchone()
        return None if row is None else _command(row)

    def recent(self, limit: int) -> list[Command]:
        """Return the ``limit`` newest commands, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM command ORDER BY created_ts DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_command(r) for r in reversed(rows)]

    def last_operated(self) -> dict[str, float]:
        """Return ``{tag: operated_ts}`` of the newest operate of every tag (command limits).

        Covers what the store keeps (``KEEP_S``): a ``min_interval_s`` longer than that
        would not survive a restart.
        """
        rows = self._conn.execute(
            "SELECT tag, MAX(operated_ts) FROM command WHERE operated_ts IS NOT NULL GROUP BY tag"
        ).fetchall()
        return {tag: float(ts) for tag, ts in rows}

    def unfinished(self) -> list[Command]:
        """Return the commands left ``selected`` or ``operated`` (by a stop or a crash)."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM command WHERE state IN ('selected', 'operated') "
            "ORDER BY created_ts"
        ).fetchall()
        return [_command(r) for r in rows]

    # ------------------------------------------------------------------ batches
    def save_batch(self, batch: Batch, key: str | None = None) -> None:
        row = (
            batch.id,
            batch.user,
            key,
            batch.created_ts,
            batch.expires_ts,
            json.dumps(batch.targets, default=str),
            json.dumps([None if c is None else c.id for c in batch.commands]),
            json.dumps(batch.errors),
        )
        with self._conn:
            self._conn.execute(
                "INSERT INTO batch(id, user, key, created_ts, expires_ts, targets, commands, "
                "errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "commands = excluded.commands, errors = excluded.errors",
                row,
            )

    def get_batch(self, batch_id: str) -> Batch | None:
        row = self._conn.execute(
            "SELECT id, user, created_ts, expires_ts, targets, commands, errors FROM batch "
            "WHERE id = ?",
            (batch_id,),
        ).fetchone()
        return None if row is None else self._batch(row)

    def batch_by_key(self, user: str, key: str, since: float) -> Batch | None:
        row = self._conn.execute(
            "SELECT id, user, created_ts, expires_ts, targets, commands, errors FROM batch "
            "WHERE user = ? AND key = ? AND created_ts >= ? ORDER BY created_ts DESC LIMIT 1",
            (user, key, since),
        ).fetchone()
        return None if row is None else self._batch(row)

    def _batch(self, row: tuple[Any, ...]) -> Batch:
        bid, user, created, expires, targets, ids, errors = row
        commands = [None if i is None else self.get(i) for i in json.loads(ids)]
        return Batch(
            bid,
            user,
            created,
            expires,
            [(t, v) for t, v in json.loads(targets)],
            commands,
            json.loads(errors),
        )

    def close(self) -> None:
        self._conn.close()


def _command(row: tuple[Any, ...]) -> Command:
    (cid, tag, value, user, reason, state, created, expires, source, device, batch, key) = row[:12]
    operated, finished, read_back, message = row[12:]
    return Command(
        id=cid,
        tag=tag,
        value=_load(value),
        user=user,
        reason=reason,
        state=CommandState(state),
        created_ts=created,
        expires_ts=expires,
        source=source,
        device=device,
        batch=batch,
        key=key,
        operated_ts=operated,
        finished_ts=finished,
        read_back=_load(read_back),
        message=message,
    )
