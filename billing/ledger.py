"""The prepaid ledger: an append-only SQLite journal of money per account, plus billing state.

File ``<data-dir>/billing.sqlite`` (WAL). Tables: ``entries`` (append-only: triggers refuse
UPDATE and DELETE), ``readings`` (billing meter readings), ``replacements`` (meter swaps),
``runs`` (scheduled jobs done, keyed by job and period), ``relay_state`` (meter relays billing
tripped and household valves billing locked, by tag), ``keep_power`` (the keep-power and
keep-heat overrides, by account id) and ``documents`` (stored allocations and bills as JSON).

A household's heat account (``billing.heat_accounts``, ``<household>.heat``) lives here beside
the electricity accounts: same entries, same rules, its own balance. Its scheduled entries are
``heat_advance`` (the season's area fee, due at season start), ``heat_charge`` (a month's
statement: the season-to-date fee above what was charged before) and ``heat_settlement`` (at
season end: what was charged minus the season's fee; positive is money back, negative a
shortfall).

Money is ``Decimal`` stored as text with two decimals; a credit (top-up, opening) is positive, a
charge or refund negative. A balance is the sum of the account's entries, never stored.
Scheduled entries carry a unique ``key``: posting the same key twice stores it once, so a
re-run of a period changes nothing; a client's idempotency key on a top-up or refund works the
same way (``post_cash``: the one idempotency check). Refusals raise the ``billing.errors``
classes (all ``LedgerError``). The ``post_*`` methods return a ``Posted``: the entry and the
balance before and after it, read in the entry's transaction. Thread-safe (one connection
behind a lock).

An account ends with its ``closing`` entry (``close_account``; ``billing.lifecycle`` posts the
final charge first): its amount is minus the balance, so the balance becomes 0.00 (negative:
money paid back to the tenant; positive: the tenant's debt, taken off the account to be
collected outside it). After it every write to the account raises ``AccountClosed`` (``_insert`` checks),
``is_open`` is False and it is never opened again: the flat's next tenant gets a new account id.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from billing.errors import (
    AccountAlreadyOpen,
    AccountClosed,
    AccountNotOpen,
    AlreadyReversed,
    IdempotencyConflict,
    InsufficientBalance,
    LedgerError,
    NotReversible,
    UnknownEntry,
)
from billing.money import parse_amount
from billing.periods import cents
from historian.base import Replacement
from tags.model import iso

__all__ = ["FILE_NAME", "Entry", "EntryKind", "Keyed", "Ledger", "LedgerError", "Posted"]

log = logging.getLogger(__name__)

FILE_NAME = "billing.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, amount TEXT NOT NULL,
    energy_kwh REAL, meter TEXT, period TEXT, key TEXT UNIQUE,
    reverses INTEGER UNIQUE REFERENCES entries(seq),
    user TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', data TEXT);
CREATE INDEX IF NOT EXISTS entries_account ON entries(account, seq);
CREATE INDEX IF NOT EXISTS entries_period ON entries(account, kind, period);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TABLE IF NOT EXISTS readings (meter TEXT NOT NULL, ts REAL NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (meter, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replacements (meter TEXT NOT NULL, ts REAL NOT NULL,
    old_final REAL NOT NULL, new_initial REAL NOT NULL, PRIMARY KEY (meter, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (job TEXT NOT NULL, period TEXT NOT NULL, ts REAL NOT NULL,
    result TEXT, PRIMARY KEY (job, period)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS relay_state (meter TEXT PRIMARY KEY, tripped INTEGER NOT NULL,
    ts REAL NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS keep_power (seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL,
    keep INTEGER NOT NULL, ts REAL NOT NULL, user TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, period TEXT NOT NULL, ts REAL NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (kind, period)) WITHOUT ROWID;
"""


class EntryKind(enum.StrEnum):
    """Kinds of ledger entries."""

    OPENING = "opening"
    TOPUP = "topup"
    REFUND = "refund"
    REVERSAL = "reversal"
    CONSUMPTION = "consumption"
    SHARED_LOSS = "shared_loss"
    REPLACEMENT = "replacement"
    HEAT_ADVANCE = "heat_advance"
    HEAT_CHARGE = "heat_charge"
    HEAT_SETTLEMENT = "heat_settlement"
    CLOSING = "closing"


#: Entries an operator may reverse; consumption follows the readings (fix those instead), heat
#: statements and settlements follow the allocation (the next statement recomputes them).
REVERSIBLE = frozenset(
    {
        EntryKind.OPENING,
        EntryKind.TOPUP,
        EntryKind.REFUND,
        EntryKind.SHARED_LOSS,
        EntryKind.HEAT_ADVANCE,
    }
)

#: Hints of ``NotReversible``: what to correct instead.
_NOT_REVERSIBLE_HINT = {
    EntryKind.CONSUMPTION: " (consumption follows the readings: correct them or record a meter"
    " replacement)",
    EntryKind.HEAT_CHARGE: " (heat statements follow the allocation: correct the heat data;"
    " the next statement or the settlement makes up the difference)",
    EntryKind.HEAT_SETTLEMENT: " (the settlement closes the season: top up or refund instead)",
    EntryKind.CLOSING: " (a closed account stays closed: open the flat's next account instead)",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry; ``amount`` is signed (credit positive)."""

    seq: int
    account: str
    ts: float
    kind: EntryKind
    amount: Decimal
    energy_kwh: float | None = None
    meter: str | None = None
    period: str | None = None
    key: str | None = None
    reverses: int | None = None
    user: str = ""
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (money as a string, time as ISO-8601)."""
        return {
            "seq": self.seq,
            "account": self.account,
            "ts": iso(self.ts),
            "kind": self.kind.value,
            "amount": str(self.amount),
            "energy_kwh": self.energy_kwh,
            "meter": self.meter,
            "period": self.period,
            "reverses": self.reverses,
            "user": self.user,
            "note": self.note,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Posted:
    """What a money write did: its entry and the account's balance just before and after.

    ``repeated``: the idempotency key was posted before; ``entry`` is that earlier entry and
    nothing was written (the balances are then both the current balance).
    """

    entry: Entry
    repeated: bool
    balance_before: Decimal
    balance_after: Decimal


_COLS = "seq, account, ts, kind, amount, energy_kwh, meter, period, key, reverses, user, note, data"


def idempotency_key(kind: EntryKind, account: str, key: str) -> str:
    """Return the ledger key of a client's idempotency ``key`` for ``kind`` on ``account``."""
    return f"{kind.value}:{account}:{key}"


@dataclass(frozen=True, slots=True)
class Keyed:
    """A scheduled entry for ``Ledger.post_keyed_many`` (the arguments of ``post_keyed``)."""

    account: str
    kind: EntryKind
    amount: Decimal
    key: str
    period: str | None = None
    data: dict[str, Any] | None = None
    ts: float | None = None
    note: str = ""


def _closed_text(closing: Entry) -> str:
    """The reason a write to a closed account is refused (names the account and when)."""
    return (
        f"account {closing.account} is closed since {iso(closing.ts)} (entry {closing.seq}): it "
        "takes no entry; the flat's next tenant gets a new account id"
    )


def _entry(row: Sequence[Any]) -> Entry:
    seq, account, ts, kind, amount, energy, meter, period, key, reverses, user, note, data = row
    return Entry(
        seq,
        account,
        ts,
        EntryKind(kind),
        Decimal(amount),
        energy,
        meter,
        period,
        key,
        reverses,
        user,
        note,
        json.loads(data) if data else {},
    )


class Ledger:
    """The billing database (see the module docstring). ``Ledger.open(path)`` to start."""

    def __init__(self, con: sqlite3.Connection, path: str) -> None:
        self._con = con
        self._lock = threading.RLock()
        self._schemas: set[str] = set()
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Ledger:
        """Open (creating) the ledger file at ``path``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=10000")
        con.executescript(_SCHEMA)
        return cls(con, str(p))

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> Ledger:
        """Open ``<data_dir>/billing.sqlite``."""
        return cls.open(Path(data_dir) / FILE_NAME)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._con.close()

    # ------------------------------------------------------------------ entries

    def _insert(
        self,
        account: str,
        kind: EntryKind,
        amount: Decimal,
        *,
        ts: float | None = None,
        energy_kwh: float | None = None,
        meter: str | None = None,
        period: str | None = None,
        key: str | None = None,
        reverses: int | None = None,
        user: str = "",
        note: str = "",
        data: dict[str, Any] | None = None,
    ) -> Entry | None:
        """Append one entry (in the caller's transaction); None if ``key`` is already posted.

        ``AccountClosed`` once the account has its closing entry: the one check every write
        passes (top-ups, refunds, reversals, scheduled charges, meter swaps, openings).
        """
        closed = self.closed_entry(account)
        if closed is not None:
            raise AccountClosed(_closed_text(closed))
        values = (
            account,
            time.time() if ts is None else float(ts),
            kind.value,
            str(cents(amount)),
            energy_kwh,
            meter,
            period,
            key,
            reverses,
            user,
            note,
            json.dumps(data, sort_keys=True) if data else None,
        )
        cur = self._con.execute(
            f"INSERT OR IGNORE INTO entries ({_COLS[5:]}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            values,
        )
        if cur.rowcount == 0:
            return None
        # the row as stored (text, REAL and JSON round-trip exactly), without reading it back
        return _entry((cur.lastrowid, *values))

    def _tx(self) -> _Tx:
        return _Tx(self)

    # ---- for the modules that keep their own tables in the ledger's file (billing.plausibility)

    def ensure_schema(self, name: str, script: str) -> None:
        """Create another module's tables (``script``, idempotent) once per ledger."""
        with self._lock:
            if name not in self._schemas:
                self._con.executescript(script)
                self._schemas.add(name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the ledger's lock (re-entrant); yields the connection."""
        with self._tx():
            yield self._con

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Return the rows of one read-only statement (under the lock)."""
        with self._lock:
            return self._con.execute(sql, tuple(args)).fetchall()

    def is_open(self, account: str) -> bool:
        """Return True once the account has its opening entry and until its closing entry."""
        with self._lock:
            rows = self._con.execute(
                "SELECT DISTINCT kind FROM entries WHERE account = ? AND kind IN"
                " ('opening', 'closing')",
                (account,),
            ).fetchall()
        return [r[0] for r in rows] == ["opening"]

    def closed_entry(self, account: str) -> Entry | None:
        """Return the account's closing entry, or None while it is not closed."""
        with self._lock:
            row = self._con.execute(
                f"SELECT {_COLS} FROM entries WHERE account = ? AND kind = 'closing' LIMIT 1",
                (account,),
            ).fetchone()
        return None if row is None else _entry(row)

    def is_closed(self, account: str) -> bool:
        """Return True once the account has its closing entry (it then takes no entry)."""
        return self.closed_entry(account) is not None

    def close_account(
        self,
        account: str,
        *,
        ts: float | None = None,
        user: str = "",
        note: str = "",
        data: dict[str, Any] | None = None,
    ) -> Posted:
        """Post the closing entry: minus the balance (settled to 0.00), then no entry ever again.

        Closing a closed account posts nothing and returns its closing entry (``repeated``).
        ``AccountNotOpen`` if it was never opened. ``data`` is stored with the entry (the
        caller's figures: final readings, charges) beside ``balance`` and ``settlement``
        (``refund``: paid back, ``debt``: owed by the tenant, ``none``).
        """
        with self._tx():
            done = self.closed_entry(account)
            if done is not None:
                bal = self.balance(account)
                return Posted(done, True, bal, bal)
            self._require_open(account)
            bal = self.balance(account)
            settlement = "refund" if bal > 0 else "debt" if bal < 0 else "none"
            e = self._insert(
                account,
                EntryKind.CLOSING,
                -bal,
                ts=ts,
                key=f"close:{account}",
                user=user,
                note=note or f"account closed: {settlement} {abs(bal)}",
                data={**(data or {}), "balance": str(bal), "settlement": settlement},
            )
        assert e is not None
        return Posted(e, False, bal, bal + e.amount)

    def open_account(
        self,
        account: str,
        amount: Decimal | str = Decimal("0"),
        *,
        user: str = "",
        note: str = "",
        ts: float | None = None,
    ) -> Entry:
        """Open ``account`` with an opening balance ``amount`` (>= 0); AccountAlreadyOpen if open."""
        a = parse_amount(amount, f"account {account}: opening amount", zero_ok=True)
        with self._tx():
            if self.is_open(account):
                raise AccountAlreadyOpen(f"account {account} is already open")
            # a closed account is refused by _insert (AccountClosed)
            e = self._insert(
                account, EntryKind.OPENING, a, ts=ts, user=user, note=note, key=f"open:{account}"
            )
        assert e is not None
        return e

    def post_opening(
        self,
        account: str,
        amount: Decimal | str,
        *,
        user: str = "",
        note: str = "",
        ts: float | None = None,
    ) -> Posted:
        """Open ``account`` with ``amount`` (>= 0), repeat-safe: opened before with the same
        amount posts nothing and returns that opening (``repeated``); with another amount
        ``IdempotencyConflict``; ``AccountClosed`` once closed."""
        a = parse_amount(amount, f"account {account}: opening amount", zero_ok=True)
        with self._tx():
            closed = self.closed_entry(account)
            if closed is not None:
                raise AccountClosed(_closed_text(closed))
            bal = self.balance(account)
            done = self.by_key(f"open:{account}")
            if done is not None:
                if done.amount != a:
                    raise IdempotencyConflict(
                        f"account {account} was opened with {done.amount} (entry {done.seq}), "
                        f"not {a}"
                    )
                return Posted(done, True, bal, bal)
            e = self._insert(
                account, EntryKind.OPENING, a, ts=ts, user=user, note=note, key=f"open:{account}"
            )
        assert e is not None
        return Posted(e, False, bal, bal + e.amount)

    def ensure_open(self, account: str, *, note: str = "", ts: float | None = None) -> bool:
        """Open ``account`` with 0.00 (user ``system``) unless it is open; True if opened now."""
        with self._tx():
            if self.is_open(account):
                return False
            self._insert(
                account,
                EntryKind.OPENING,
                Decimal(0),
                ts=ts,
                user="system",
                note=note,
                key=f"open:{account}",
            )
        return True

    def _require_open(self, account: str) -> None:
        closed = self.closed_entry(account)
        if closed is not None:
            raise AccountClosed(_closed_text(closed))
        if not self.is_open(account):
            raise AccountNotOpen(f"account {account} is not open (use `account open` first)")

    def topup(
        self,
        account: str,
        amount: Decimal | str,
        *,
        user: str = "",
        note: str = "",
        ts: float | None = None,
        key: str | None = None,
    ) -> Entry:
        """Credit ``amount`` (> 0, at most two decimals) to ``account``; see ``post_cash``."""
        return self.post_cash(
            EntryKind.TOPUP, account, amount, user=user, note=note, ts=ts, key=key
        ).entry

    def refund(
        self,
        account: str,
        amount: Decimal | str,
        *,
        user: str = "",
        note: str = "",
        ts: float | None = None,
        key: str | None = None,
    ) -> Entry:
        """Pay ``amount`` back to the tenant (at most the balance); see ``post_cash``."""
        return self.post_cash(
            EntryKind.REFUND, account, amount, user=user, note=note, ts=ts, key=key
        ).entry

    def post_cash(
        self,
        kind: EntryKind,
        account: str,
        amount: Decimal | str,
        *,
        user: str = "",
        note: str = "",
        ts: float | None = None,
        key: str | None = None,
    ) -> Posted:
        """Post a top-up (credit) or refund (paid back, at most the balance) of ``amount``.

        ``key`` (an idempotency key from the till or the API client, scoped to ``kind`` and
        ``account``) makes a retry safe: the same key again posts nothing and returns the
        entry already posted (``repeated``), however many requests race (the check and the
        write are one transaction); ``IdempotencyConflict`` if it came with another amount.
        Raises ``BadAmount``, ``AccountNotOpen``, ``InsufficientBalance``.
        """
        if kind not in (EntryKind.TOPUP, EntryKind.REFUND):
            raise ValueError(f"post_cash posts top-ups and refunds, not {kind.value}")
        what = "top-up" if kind is EntryKind.TOPUP else "refund"
        a = parse_amount(amount, f"account {account}: {what}")
        full = None if key is None else idempotency_key(kind, account, key)
        with self._tx():
            self._require_open(account)
            bal = self.balance(account)
            done = None if full is None else self.by_key(full)
            if done is not None:
                if abs(done.amount) != a:
                    raise IdempotencyConflict(
                        f"idempotency key {key!r} was used for {abs(done.amount)}, not {a} "
                        f"(entry {done.seq} of account {account})"
                    )
                return Posted(done, True, bal, bal)
            if kind is EntryKind.REFUND and a > bal:
                raise InsufficientBalance(
                    f"account {account}: refund {a} exceeds the balance {bal}"
                )
            signed = a if kind is EntryKind.TOPUP else -a
            e = self._insert(account, kind, signed, ts=ts, user=user, note=note, key=full)
            assert e is not None  # the key was checked in this transaction
        return Posted(e, False, bal, bal + e.amount)

    def posted_keys(self, keys: Sequence[str]) -> set[str]:
        """Return those of ``keys`` that are posted (one query per 500: a season's run)."""
        return self._among("SELECT key FROM entries WHERE key IN", keys)

    def open_accounts(self, accounts: Sequence[str]) -> set[str]:
        """Return those of ``accounts`` that are open (one query per 500)."""
        sql = "SELECT DISTINCT account FROM entries WHERE kind = 'opening' AND account IN"
        opened = self._among(sql, accounts)
        closed = self._among(
            "SELECT DISTINCT account FROM entries WHERE kind = 'closing' AND account IN",
            sorted(opened),
        )
        return opened - closed

    def _among(self, sql: str, values: Sequence[str]) -> set[str]:
        """Return the first column of ``sql (?, ...)`` over ``values``, 500 at a time."""
        out: set[str] = set()
        with self._lock:
            for lo in range(0, len(values), 500):
                part = list(values[lo : lo + 500])
                marks = ",".join("?" * len(part))
                out.update(r[0] for r in self._con.execute(f"{sql} ({marks})", part).fetchall())
        return out

    def by_key(self, key: str) -> Entry | None:
        """Return the entry posted with the full ``key`` (see ``idempotency_key``), or None."""
        with self._lock:
            row = self._con.execute(f"SELECT {_COLS} FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else _entry(row)

    def reverse(
        self, account: str, seq: int, *, user: str = "", note: str = "", ts: float | None = None
    ) -> Entry:
        """Cancel entry ``seq`` of ``account`` with an opposite entry; see ``post_reversal``."""
        return self.post_reversal(account, seq, user=user, note=note, ts=ts).entry

    def post_reversal(
        self, account: str, seq: int, *, user: str = "", note: str = "", ts: float | None = None
    ) -> Posted:
        """Cancel entry ``seq`` of ``account`` with an opposite entry (once per entry).

        Raises ``UnknownEntry``, ``NotReversible`` (consumption, reversals, swaps) and
        ``AlreadyReversed``.
        """
        with self._tx():
            row = self._con.execute(f"SELECT {_COLS} FROM entries WHERE seq = ?", (seq,)).fetchone()
            if row is None or row[1] != account:
                raise UnknownEntry(f"account {account} has no entry {seq}")
            orig = _entry(row)
            if orig.kind not in REVERSIBLE:
                hint = _NOT_REVERSIBLE_HINT.get(orig.kind, "")
                raise NotReversible(
                    f"account {account}: a {orig.kind.value} entry cannot be reversed{hint}"
                )
            done = self._con.execute(
                "SELECT seq FROM entries WHERE reverses = ?", (seq,)
            ).fetchone()
            if done is not None:
                raise AlreadyReversed(
                    f"account {account}: entry {seq} was already reversed by entry {done[0]}"
                )
            bal = self.balance(account)
            e = self._insert(
                account,
                EntryKind.REVERSAL,
                -orig.amount,
                ts=ts,
                reverses=seq,
                period=orig.period,
                user=user,
                note=note or f"reversal of {orig.kind.value} {seq}",
            )
        assert e is not None
        return Posted(e, False, bal, bal + e.amount)

    def charge(
        self,
        account: str,
        kind: EntryKind,
        amount: Decimal,
        *,
        key: str,
        period: str | None = None,
        energy_kwh: float | None = None,
        meter: str | None = None,
        data: dict[str, Any] | None = None,
        ts: float | None = None,
        note: str = "",
    ) -> Entry | None:
        """Post a charge of ``amount`` (>= 0 costs money; stored negative) once per ``key``.

        Returns None when ``key`` was posted before (a re-run).
        """
        with self._tx():
            return self._insert(
                account,
                kind,
                -amount,
                ts=ts,
                key=key,
                period=period,
                energy_kwh=energy_kwh,
                meter=meter,
                data=data,
                note=note,
                user="system",
            )

    def post_keyed(
        self,
        account: str,
        kind: EntryKind,
        amount: Decimal,
        *,
        key: str,
        period: str | None = None,
        data: dict[str, Any] | None = None,
        ts: float | None = None,
        note: str = "",
        is_open: bool = False,
    ) -> Entry | None:
        """Post a scheduled entry of signed ``amount`` (credit positive) once per ``key``.

        Opens the account first (0.00) when it is not open; the opening and the entry are one
        transaction. Returns None when ``key`` was posted before (a re-run). ``is_open``: the
        caller found the account open in this transaction (``open_accounts``), skip the check.
        """
        with self._tx():
            if not is_open:
                self.ensure_open(account, ts=ts, note="opened by its first scheduled entry")
            return self._insert(
                account,
                kind,
                amount,
                ts=ts,
                key=key,
                period=period,
                data=data,
                note=note,
                user="system",
            )

    def post_keyed_many(self, rows: Sequence[Keyed]) -> list[Entry]:
        """``post_keyed`` for many entries in one transaction; return those posted now.

        A season's run (10,000 households): the accounts' closing and opening state read once,
        the entries inserted with one statement, their sequence numbers read back by key. A
        key posted before (or twice in ``rows``) posts once. ``AccountClosed`` if any account
        of ``rows`` is closed (nothing is posted then).
        """
        if not rows:
            return []
        with self._tx():
            accounts = list(dict.fromkeys(r.account for r in rows))
            sql = "SELECT account FROM entries WHERE kind = 'closing' AND account IN"
            closed = sorted(self._among(sql, accounts))
            if closed:
                entry = self.closed_entry(closed[0])
                assert entry is not None
                raise AccountClosed(_closed_text(entry))
            opened = self.open_accounts(accounts)
            first_ts = {r.account: r.ts for r in reversed(rows)}
            for a in accounts:
                if a not in opened:
                    self.ensure_open(a, ts=first_ts[a], note="opened by its first scheduled entry")
            before = self.posted_keys([r.key for r in rows])
            fresh: dict[str, tuple[Any, ...]] = {}
            for r in rows:
                if r.key in before or r.key in fresh:
                    continue
                fresh[r.key] = (
                    r.account,
                    time.time() if r.ts is None else float(r.ts),
                    r.kind.value,
                    str(cents(r.amount)),
                    None,
                    None,
                    r.period,
                    r.key,
                    None,
                    "system",
                    r.note,
                    json.dumps(r.data, sort_keys=True) if r.data else None,
                )
            self._con.executemany(
                f"INSERT INTO entries ({_COLS[5:]}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                list(fresh.values()),
            )
            seq: dict[str, int] = {}
            keys = list(fresh)
            for lo in range(0, len(keys), 500):
                part = keys[lo : lo + 500]
                marks = ",".join("?" * len(part))
                rows_ = self._con.execute(
                    f"SELECT key, seq FROM entries WHERE key IN ({marks})", part
                ).fetchall()
                seq.update((k, int(n)) for k, n in rows_)
        # the rows as stored (text, REAL and JSON round-trip exactly), without reading them back
        return sorted((_entry((seq[k], *v)) for k, v in fresh.items()), key=lambda e: e.seq)

    def replace_meter(
        self,
        account: str,
        meter: str,
        ts: float,
        old_final: float,
        new_initial: float,
        *,
        user: str = "",
        note: str = "",
    ) -> Entry:
        """Record a meter swap; see ``post_replacement``."""
        return self.post_replacement(
            account, meter, ts, old_final, new_initial, user=user, note=note
        ).entry

    def post_replacement(
        self,
        account: str,
        meter: str,
        ts: float,
        old_final: float,
        new_initial: float,
        *,
        user: str = "",
        note: str = "",
    ) -> Posted:
        """Record a meter swap: old meter's final reading, new one's first; balance carried over."""
        with self._tx():
            self._require_open(account)
            self._con.execute(
                "INSERT INTO replacements VALUES (?, ?, ?, ?)",
                (meter, float(ts), float(old_final), float(new_initial)),
            )
            bal = self.balance(account)
            e = self._insert(
                account,
                EntryKind.REPLACEMENT,
                Decimal(0),
                ts=ts,
                meter=meter,
                user=user,
                note=note or f"meter {meter} replaced; balance {bal} carried over",
                data={"old_final": old_final, "new_initial": new_initial, "balance": str(bal)},
            )
        assert e is not None
        return Posted(e, False, bal, bal)

    def entries(
        self,
        account: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[EntryKind | str] | None = None,
    ) -> list[Entry]:
        """Return entries (oldest first), filtered by account, ``[since, until)`` and kinds."""
        where: list[str] = []
        args: list[Any] = []
        if account is not None:
            where.append("account = ?")
            args.append(account)
        if since is not None:
            where.append("ts >= ?")
            args.append(float(since))
        if until is not None:
            where.append("ts < ?")
            args.append(float(until))
        if kinds is not None:
            ks = [EntryKind(k).value for k in kinds]
            where.append(f"kind IN ({','.join('?' * len(ks))})")
            args.extend(ks)
        sql = f"SELECT {_COLS} FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY seq", args).fetchall()
        return [_entry(r) for r in rows]

    def entry(self, seq: int) -> Entry | None:
        """Return entry ``seq`` or None."""
        with self._lock:
            row = self._con.execute(f"SELECT {_COLS} FROM entries WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else _entry(row)

    def balance(self, account: str) -> Decimal:
        """Return the balance of ``account``: the sum of its entries."""
        with self._lock:
            rows = self._con.execute(
                "SELECT amount FROM entries WHERE account = ?", (account,)
            ).fetchall()
        return sum((Decimal(r[0]) for r in rows), Decimal("0.00"))

    def balances(self) -> dict[str, Decimal]:
        """Return the balance of every account that has entries."""
        out: dict[str, Decimal] = {}
        with self._lock:
            for account, amount in self._con.execute("SELECT account, amount FROM entries"):
                out[account] = out.get(account, Decimal("0.00")) + Decimal(amount)
        return out

    def charged(self, account: str, kind: EntryKind, period: str) -> Decimal:
        """Return the net amount charged (positive) to ``account`` for ``kind`` in ``period``."""
        with self._lock:
            rows = self._con.execute(
                "SELECT amount FROM entries WHERE account = ? AND kind = ? AND period = ?",
                (account, kind.value, period),
            ).fetchall()
        return -sum((Decimal(r[0]) for r in rows), Decimal("0.00"))

    # ------------------------------------------------------------------ readings

    def add_readings(self, rows: Iterable[tuple[str, float, float]]) -> int:
        """Store billing readings ``(meter, ts, value)``; an existing (meter, ts) is kept."""
        with self._tx():
            cur = self._con.executemany(
                "INSERT OR IGNORE INTO readings VALUES (?, ?, ?)",
                [(m, float(t), float(v)) for m, t, v in rows],
            )
        return cur.rowcount

    def readings_around(
        self, meter: str, start: float, end: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return readings: the last at or before ``start``, those inside, the first at or after ``end``."""
        with self._lock:
            con = self._con
            before = con.execute(
                "SELECT ts, value FROM readings WHERE meter = ? AND ts <= ? ORDER BY ts DESC LIMIT 1",
                (meter, start),
            ).fetchall()
            inside = con.execute(
                "SELECT ts, value FROM readings WHERE meter = ? AND ts > ? AND ts < ? ORDER BY ts",
                (meter, start, end),
            ).fetchall()
            after = con.execute(
                "SELECT ts, value FROM readings WHERE meter = ? AND ts >= ? ORDER BY ts LIMIT 1",
                (meter, end),
            ).fetchall()
        data = np.array(before + inside + after, dtype=np.float64).reshape(-1, 2)
        return data[:, 0], data[:, 1]

    def last_reading_ts(self, meter: str) -> float | None:
        """Return the time of the newest billing reading of ``meter``."""
        with self._lock:
            row = self._con.execute(
                "SELECT max(ts) FROM readings WHERE meter = ?", (meter,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def replacements(self, meter: str) -> list[Replacement]:
        """Return the recorded replacements of ``meter`` (oldest first)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT ts, old_final, new_initial FROM replacements WHERE meter = ? ORDER BY ts",
                (meter,),
            ).fetchall()
        return [Replacement(meter, *r) for r in rows]

    # ------------------------------------------------------------------ runs, relays, documents

    def run_done(self, job: str, period: str) -> bool:
        """Return True if ``job`` already ran for ``period``."""
        with self._lock:
            row = self._con.execute(
                "SELECT 1 FROM runs WHERE job = ? AND period = ?", (job, period)
            ).fetchone()
        return row is not None

    def mark_run(self, job: str, period: str, result: str = "", *, ts: float | None = None) -> bool:
        """Record that ``job`` ran for ``period``; False if it was recorded already."""
        with self._tx():
            cur = self._con.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?)",
                (job, period, time.time() if ts is None else float(ts), result),
            )
        return cur.rowcount == 1

    def run_ts(self, job: str, period: str) -> float | None:
        """Return when ``job`` ran for ``period`` (None if it did not)."""
        with self._lock:
            row = self._con.execute(
                "SELECT ts FROM runs WHERE job = ? AND period = ?", (job, period)
            ).fetchone()
        return None if row is None else float(row[0])

    def runs(self, job: str) -> list[str]:
        """Return the periods ``job`` ran for, sorted."""
        with self._lock:
            rows = self._con.execute(
                "SELECT period FROM runs WHERE job = ? ORDER BY period", (job,)
            ).fetchall()
        return [r[0] for r in rows]

    def relay_tripped(self, meter: str) -> bool:
        """Return True if billing tripped ``meter``'s relay and has not closed it since."""
        with self._lock:
            row = self._con.execute(
                "SELECT tripped FROM relay_state WHERE meter = ?", (meter,)
            ).fetchone()
        return bool(row and row[0])

    def set_relay_state(self, meter: str, tripped: bool, reason: str = "") -> None:
        """Remember whether billing has ``meter``'s relay tripped."""
        with self._tx():
            self._con.execute(
                "INSERT OR REPLACE INTO relay_state VALUES (?, ?, ?, ?)",
                (meter, int(tripped), time.time(), reason),
            )

    def keep_power(self, account: str, default: bool) -> bool:
        """Return the account's keep-power setting: the last one set here, else ``default`` (config).

        A heat account's keep-heat setting is the same setting, under the heat account's id
        (``keep_heat``).
        """
        with self._lock:
            row = self._con.execute(
                "SELECT keep FROM keep_power WHERE account = ? ORDER BY seq DESC LIMIT 1",
                (account,),
            ).fetchone()
        return default if row is None else bool(row[0])

    def set_keep_power(
        self, account: str, keep: bool, *, default: bool = False, user: str = "", note: str = ""
    ) -> bool:
        """Set keep-power for ``account`` (kept as a history: every change with who and why).

        Returns the setting before (``default``, the configured one, if never set here).
        """
        with self._tx():
            before = self.keep_power(account, default)
            self._con.execute(
                "INSERT INTO keep_power (account, keep, ts, user, note) VALUES (?, ?, ?, ?, ?)",
                (account, int(keep), time.time(), user, note),
            )
        return before

    def keep_heat(self, heat_account: str, default: bool) -> bool:
        """Return a heat account's keep-heat setting (``keep_power`` by the heat account id; set
        it with ``set_keep_power(heat_account, ...)``)."""
        return self.keep_power(heat_account, default)

    def save_document(self, kind: str, period: str, body: dict[str, Any]) -> bool:
        """Store a computed document (allocation, bill run) once per kind and period."""
        with self._tx():
            cur = self._con.execute(
                "INSERT OR IGNORE INTO documents VALUES (?, ?, ?, ?)",
                (kind, period, time.time(), json.dumps(body, sort_keys=True)),
            )
        return cur.rowcount == 1

    def document(self, kind: str, period: str) -> dict[str, Any] | None:
        """Return a stored document or None."""
        with self._lock:
            row = self._con.execute(
                "SELECT body FROM documents WHERE kind = ? AND period = ?", (kind, period)
            ).fetchone()
        return None if row is None else json.loads(row[0])


class _Tx:
    """``with ledger._tx():`` one IMMEDIATE transaction under the lock (re-entrant)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.outer = False

    def __enter__(self) -> None:
        self.ledger._lock.acquire()
        con = self.ledger._con
        self.outer = not con.in_transaction
        if self.outer:
            con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        con = self.ledger._con
        try:
            if self.outer:
                con.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.ledger._lock.release()
