"""Report subscriptions: a report e-mailed on a schedule, stored in ``<data-dir>/subscriptions.sqlite``.

A subscription names a report (``kind``, ``scope``, ``options``: ``billing.report_scope``), a
period ``preset`` (``billing.report_scope.PRESETS``), a ``format`` (``xlsx``, ``csv``,
``pdf``), a schedule (``every`` ``daily`` / ``weekly`` / ``monthly`` at ``at`` ``HH:MM`` site
time; ``weekday`` 0 = Monday for weekly, ``day`` 1..28 for monthly) and the e-mail
``recipients``. The store keeps when it runs next (``next_ts``) and its last run (time, ok,
result text). :func:`validate` checks the fields and raises ``ValueError`` naming the field
(``recipients: ...``). ``scada.services.report_delivery`` runs the due ones. Thread-safe
(one connection behind a lock; SQLite WAL).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from billing.report_scope import PRESETS, scopes_of
from i18n import _

__all__ = [
    "EVERY",
    "FORMATS",
    "Subscription",
    "SubscriptionStore",
    "next_run",
    "validate",
]

#: Schedules.
EVERY = ("daily", "weekly", "monthly")
#: File formats and their MIME types.
FORMATS = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
    "pdf": "application/pdf",
}
_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscription (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL, kind TEXT NOT NULL, scope TEXT NOT NULL, options TEXT NOT NULL,
    preset TEXT NOT NULL, format TEXT NOT NULL, every TEXT NOT NULL, at TEXT NOT NULL,
    weekday INTEGER NOT NULL, day INTEGER NOT NULL, recipients TEXT NOT NULL,
    next_ts REAL NOT NULL, last_ts REAL, last_ok INTEGER, last_result TEXT NOT NULL DEFAULT ''
);
"""
_COLS = (
    "id, owner, kind, scope, options, preset, format, every, at, weekday, day, recipients, "
    "next_ts, last_ts, last_ok, last_result"
)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One stored subscription (module docstring)."""

    id: int
    owner: str
    kind: str
    scope: str
    options: dict[str, Any]
    preset: str
    format: str
    every: str
    at: str
    weekday: int
    day: int
    recipients: tuple[str, ...]
    next_ts: float
    last_ts: float | None = None
    last_ok: bool | None = None
    last_result: str = ""

    def fields(self) -> dict[str, Any]:
        """Return the editable fields (what :func:`validate` takes)."""
        return {
            "kind": self.kind,
            "scope": self.scope,
            "options": dict(self.options),
            "preset": self.preset,
            "format": self.format,
            "every": self.every,
            "at": self.at,
            "weekday": self.weekday,
            "day": self.day,
            "recipients": list(self.recipients),
        }


def validate(fields: dict[str, Any], buildings: set[str], households: set[str]) -> dict[str, Any]:
    """Return ``fields`` checked and normalised; ``ValueError`` naming the first bad field."""
    from billing.reports import EVERY_KINDS, KINDS, OPTIONS

    kind = str(fields.get("kind") or "")
    if kind not in KINDS:
        raise ValueError(_("kind: unknown report {kind}", kind=repr(kind)))
    scope = str(fields.get("scope") or "estate")
    what, _sep, target = scope.partition(":")
    if what not in scopes_of(kind):
        raise ValueError(
            _(
                "scope: report {kind} takes {allowed}",
                kind=kind,
                allowed=" / ".join(scopes_of(kind)),
            )
        )
    if what == "building" and target not in buildings:
        raise ValueError(_("scope: unknown building {id}", id=repr(target)))
    if what == "household" and target not in households:
        raise ValueError(_("scope: unknown household {id}", id=repr(target)))
    options = {k: v for k, v in dict(fields.get("options") or {}).items() if v not in (None, "")}
    takes = {n for n, kinds in OPTIONS.items() if kind in kinds and n != "household"}
    if kind in EVERY_KINDS:
        takes.add("every")
    for name in options:
        if name not in takes:
            raise ValueError(_("options: report {kind} takes no {name}", kind=kind, name=name))
    if "every" in options and options["every"] not in ("1h", "1d", "1mo"):
        raise ValueError(_("options: every expected 1h, 1d or 1mo"))
    if "base_c" in options:
        try:
            options["base_c"] = float(options["base_c"])
        except (TypeError, ValueError):
            raise ValueError(_("base_c: expected a temperature in degC")) from None
        if not -50.0 <= options["base_c"] <= 50.0:
            raise ValueError(_("base_c: expected -50 .. 50 degC"))
    preset = str(fields.get("preset") or "")
    if preset not in PRESETS:
        raise ValueError(_("preset: expected one of {presets}", presets=", ".join(PRESETS)))
    fmt = str(fields.get("format") or "xlsx")
    if fmt not in FORMATS:
        raise ValueError(_("format: expected one of {formats}", formats=", ".join(FORMATS)))
    every = str(fields.get("every") or "")
    if every not in EVERY:
        raise ValueError(_("every: expected one of {every}", every=", ".join(EVERY)))
    at = str(fields.get("at") or "")
    if not _AT.match(at):
        raise ValueError(_("at: expected a site time HH:MM, got {at}", at=repr(at)))
    try:
        weekday = int(fields.get("weekday") or 0)
        day = int(fields.get("day") or 1)
    except (TypeError, ValueError):
        raise ValueError(_("day: expected a number")) from None
    if not 0 <= weekday <= 6:
        raise ValueError(_("weekday: expected 0 (Monday) .. 6 (Sunday)"))
    if not 1 <= day <= 28:
        raise ValueError(_("day: expected a day of the month 1 .. 28"))
    raw = fields.get("recipients") or []
    if isinstance(raw, str):
        raw = re.split(r"[,;\s]+", raw)
    recipients = [str(r).strip() for r in raw if str(r).strip()]
    if not recipients:
        raise ValueError(_("recipients: give at least one e-mail address"))
    for r in recipients:
        if not _MAIL.match(r):
            raise ValueError(_("recipients: not an e-mail address: {address}", address=repr(r)))
    return {
        "kind": kind,
        "scope": scope if what != "estate" else "estate",
        "options": options,
        "preset": preset,
        "format": fmt,
        "every": every,
        "at": at,
        "weekday": weekday,
        "day": day,
        "recipients": recipients,
    }


def next_run(fields: dict[str, Any], after_ts: float, tz: str) -> float:
    """Return the first scheduled time strictly after ``after_ts`` (epoch seconds, site time)."""
    zone = zoneinfo.ZoneInfo(tz)
    hh, mm = (int(x) for x in str(fields["at"]).split(":"))
    d = datetime.fromtimestamp(after_ts, zone).date()
    for _i in range(400):
        ok = (
            fields["every"] == "daily"
            or (fields["every"] == "weekly" and d.weekday() == int(fields["weekday"]))
            or (fields["every"] == "monthly" and d.day == int(fields["day"]))
        )
        if ok:
            ts = datetime(d.year, d.month, d.day, hh, mm, tzinfo=zone).timestamp()
            if ts > after_ts:
                return ts
        d += timedelta(days=1)
    raise ValueError("every: no run within a year")  # unreachable with validated fields


class SubscriptionStore:
    """The subscriptions of a data directory (module docstring)."""

    def __init__(self, path: str | Path, tz: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tz = tz
        self._lock = threading.RLock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, tz: str) -> SubscriptionStore:
        """Open (or create) ``<data_dir>/subscriptions.sqlite``."""
        return cls(Path(data_dir) / "subscriptions.sqlite", tz)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._con.close()

    def _row(self, r: tuple[Any, ...]) -> Subscription:
        return Subscription(
            id=int(r[0]),
            owner=r[1],
            kind=r[2],
            scope=r[3],
            options=json.loads(r[4]),
            preset=r[5],
            format=r[6],
            every=r[7],
            at=r[8],
            weekday=int(r[9]),
            day=int(r[10]),
            recipients=tuple(json.loads(r[11])),
            next_ts=float(r[12]),
            last_ts=None if r[13] is None else float(r[13]),
            last_ok=None if r[14] is None else bool(r[14]),
            last_result=r[15] or "",
        )

    def add(self, owner: str, fields: dict[str, Any], now: float | None = None) -> Subscription:
        """Store a validated subscription of ``owner``; it first runs at its next time."""
        f = fields
        nxt = next_run(f, time.time() if now is None else now, self.tz)
        with self._lock:
            cur = self._con.execute(
                "INSERT INTO subscription (owner, kind, scope, options, preset, format, every, at,"
                " weekday, day, recipients, next_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    owner,
                    f["kind"],
                    f["scope"],
                    json.dumps(f["options"]),
                    f["preset"],
                    f["format"],
                    f["every"],
                    f["at"],
                    f["weekday"],
                    f["day"],
                    json.dumps(list(f["recipients"])),
                    nxt,
                ),
            )
            return self.get(int(cur.lastrowid or 0))

    def update(self, sub_id: int, fields: dict[str, Any], now: float | None = None) -> Subscription:
        """Replace the fields of ``sub_id`` (validated); its next run follows the new schedule."""
        f = fields
        nxt = next_run(f, time.time() if now is None else now, self.tz)
        with self._lock:
            self.get(sub_id)
            self._con.execute(
                "UPDATE subscription SET kind=?, scope=?, options=?, preset=?, format=?, every=?,"
                " at=?, weekday=?, day=?, recipients=?, next_ts=? WHERE id=?",
                (
                    f["kind"],
                    f["scope"],
                    json.dumps(f["options"]),
                    f["preset"],
                    f["format"],
                    f["every"],
                    f["at"],
                    f["weekday"],
                    f["day"],
                    json.dumps(list(f["recipients"])),
                    nxt,
                    sub_id,
                ),
            )
            return self.get(sub_id)

    def delete(self, sub_id: int) -> bool:
        """Delete ``sub_id``; False if there was none."""
        with self._lock:
            cur = self._con.execute("DELETE FROM subscription WHERE id=?", (sub_id,))
            return cur.rowcount > 0

    def get(self, sub_id: int) -> Subscription:
        """Return subscription ``sub_id``; ``KeyError`` if there is none."""
        with self._lock:
            r = self._con.execute(
                f"SELECT {_COLS} FROM subscription WHERE id=?", (sub_id,)
            ).fetchone()
        if r is None:
            raise KeyError(f"no subscription {sub_id}")
        return self._row(r)

    def all(self, owner: str | None = None) -> list[Subscription]:
        """Return every subscription (of ``owner``), oldest first."""
        sql = f"SELECT {_COLS} FROM subscription"
        args: tuple[Any, ...] = ()
        if owner is not None:
            sql, args = sql + " WHERE owner=?", (owner,)
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY id", args).fetchall()
        return [self._row(r) for r in rows]

    def due(self, now: float) -> list[Subscription]:
        """Return the subscriptions whose next run is at or before ``now``."""
        with self._lock:
            rows = self._con.execute(
                f"SELECT {_COLS} FROM subscription WHERE next_ts <= ? ORDER BY next_ts", (now,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def record(self, sub_id: int, ts: float, ok: bool, result: str, next_ts: float) -> None:
        """Record a run of ``sub_id`` (its time, outcome, text) and when it runs next."""
        with self._lock:
            self._con.execute(
                "UPDATE subscription SET last_ts=?, last_ok=?, last_result=?, next_ts=? WHERE id=?",
                (ts, int(ok), result, next_ts, sub_id),
            )
