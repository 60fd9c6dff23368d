"""Is a meter reading or a consumption charge plausible for its meter? Holds for review.

Two guards keep a wrong number from becoming money:

* :func:`check_replacement`: a meter swap's readings must be finite, not negative, below any
  register's range; the old meter's final reading not below its last known value (the last
  billing reading before the swap, or the previous swap's new reading) and not above what it
  could have counted since at the meter's ``max_kw``; the swap not in the future and not
  before the meter's previous swap. Refused with :class:`billing.errors.Implausible`, which
  names the reason.
* :func:`consumption_check`: before a consumption charge is posted, the energy not yet
  charged must be possible at the meters' ``max_kw`` since the last charge, and the month's
  energy must not exceed ``hold_multiple`` times the account's highest daily rate of an
  earlier month (once there is one) times the month's days so far. A charge that fails is
  not posted: :class:`HeldCharges` keeps it for review (``acct.<id>.held`` is 1 and the alarm
  ``billing.held`` rises) and the account is charged nothing more until an operator
  *releases* it (the consumption is real: charge it) or *discards* it (the readings were
  wrong: after correcting them, e.g. with a meter replacement, the next reading re-checks).

The held charges live in the ledger's file (table ``held``), written in its transactions.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from billing.errors import Implausible, LedgerError, UnknownEntry
from tags.model import iso

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount
    from billing.ledger import Ledger

__all__ = [
    "MAX_REGISTER_KWH",
    "HeldCharges",
    "Hold",
    "HoldState",
    "check_replacement",
    "consumption_check",
]

#: No energy register of a flat's or a shop's meter counts this far (kWh).
MAX_REGISTER_KWH = 1e9
#: A swap may be dated this far ahead of the server's clock (clock skew of the client).
FUTURE_SLACK_S = 300.0
#: The smallest advance always allowed between two readings (reading off a display, rounding).
MIN_ALLOWANCE_KWH = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held (id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL,
    period TEXT NOT NULL, ts REAL NOT NULL, updated REAL NOT NULL, month_kwh REAL NOT NULL,
    step_kwh REAL NOT NULL, amount TEXT NOT NULL, reason TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'held', reviewed_by TEXT NOT NULL DEFAULT '',
    reviewed_ts REAL, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS held_account ON held(account, state);
"""


def _finite(name: str, value: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise Implausible(f"{name} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise Implausible(f"{name} {value!r} is not a finite number")
    if x < 0:
        raise Implausible(f"{name} {x:g} kWh is negative")
    if x >= MAX_REGISTER_KWH:
        raise Implausible(f"{name} {x:g} kWh is beyond any meter register ({MAX_REGISTER_KWH:g})")
    return x


def _when(ts: float) -> str:
    return iso(ts) or "?"


def check_replacement(
    ledger: Ledger,
    meter: str,
    max_kw: float,
    ts: float,
    old_final: float,
    new_initial: float,
    *,
    now: float | None = None,
) -> None:
    """Refuse an implausible meter swap (see the module docstring); ``Implausible`` says why."""
    now = time.time() if now is None else now
    old = _finite("the old meter's final reading", old_final)
    _finite("the new meter's first reading", new_initial)
    if not math.isfinite(ts) or ts > now + FUTURE_SLACK_S:
        raise Implausible(f"meter {meter}: the swap time {ts!r} lies in the future")
    reps = ledger.replacements(meter)
    if reps and ts <= reps[-1].ts:
        raise Implausible(
            f"meter {meter}: the swap at {_when(ts)} is not after its previous swap "
            f"at {_when(reps[-1].ts)}"
        )
    last: tuple[float, float, str] | None = None
    t_read, v_read = ledger.readings_around(meter, ts, ts)
    before = [(float(t), float(v)) for t, v in zip(t_read, v_read, strict=True) if t <= ts]
    if before:
        last = (*before[-1], "its last reading")
    if reps and (last is None or reps[-1].ts >= last[0]):
        last = (reps[-1].ts, reps[-1].new_initial, "its first reading after the previous swap")
    if last is None:
        return
    at, value, what = last
    if old < value - 1e-9:
        raise Implausible(
            f"meter {meter}: the final reading {old:g} kWh is below {what} "
            f"({value:g} kWh at {_when(at)}); a meter counts up"
        )
    hours = max(0.0, ts - at) / 3600.0
    allowance = max(MIN_ALLOWANCE_KWH, max_kw * hours)
    if old - value > allowance:
        raise Implausible(
            f"meter {meter}: the final reading {old:g} kWh is {old - value:g} kWh above {what} "
            f"({value:g} kWh at {_when(at)}); at most {allowance:.6g} kWh fit in "
            f"{hours:.3g} h at {max_kw:g} kW"
        )


def consumption_check(
    account: ResolvedAccount,
    month_kwh: float,
    charged_kwh: float,
    since: float,
    t: float,
    month_start: float,
    history: dict[str, tuple[float, float]],
    accepted: float = 0.0,
) -> str | None:
    """Return why charging the account's month-to-date energy would be implausible, or None.

    ``charged_kwh``: energy already charged this month; ``since``: time of the last charge
    (or the window start); ``history``: ``{period: (kWh, days)}`` of earlier months;
    ``accepted``: the month-to-date energy an operator released for the period
    (``HeldCharges.accepted_kwh``), which raises the floor.
    """
    base = max(charged_kwh, accepted)
    step = month_kwh - base
    max_kw = sum(m.max_kw for m in account.meters)
    hours = max(0.0, t - since) / 3600.0
    allowance = max(MIN_ALLOWANCE_KWH, max_kw * hours)
    if step > allowance:
        return (
            f"{step:.6g} kWh since {_when(since)}: more than the meters' {max_kw:g} kW can draw "
            f"in {hours:.3g} h ({allowance:.6g} kWh)"
        )
    rates = [kwh / days for kwh, days in history.values() if days >= 1.0 and kwh > 0]
    if not rates:
        return None
    days = max(1.0, (t - month_start) / 86400.0)
    limit = account.config.hold_multiple * max(rates) * days
    if month_kwh > max(limit, accepted):
        return (
            f"{month_kwh:.6g} kWh this month: more than {account.config.hold_multiple:g} times "
            f"the highest daily rate of an earlier month ({max(rates):.6g} kWh/day) over "
            f"{days:.3g} days ({limit:.6g} kWh)"
        )
    return None


class HoldState(enum.StrEnum):
    """A held charge's state: waiting for review, released (charged) or discarded."""

    HELD = "held"
    RELEASED = "released"
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class Hold:
    """A consumption charge held for review (figures of the latest reading that was held)."""

    id: int
    account: str
    period: str
    ts: float
    updated: float
    month_kwh: float
    step_kwh: float
    amount: str
    reason: str
    state: HoldState
    reviewed_by: str = ""
    reviewed_ts: float | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (times ISO-8601, money as a string)."""
        return {
            "id": self.id,
            "account": self.account,
            "period": self.period,
            "ts": iso(self.ts),
            "updated": iso(self.updated),
            "month_kwh": self.month_kwh,
            "step_kwh": self.step_kwh,
            "amount": self.amount,
            "reason": self.reason,
            "state": self.state.value,
            "reviewed_by": self.reviewed_by,
            "reviewed_ts": None if self.reviewed_ts is None else iso(self.reviewed_ts),
            "note": self.note,
        }


_HOLD_COLS = (
    "id, account, period, ts, updated, month_kwh, step_kwh, amount, reason, state, "
    "reviewed_by, reviewed_ts, note"
)


def _hold(row: Any) -> Hold:
    hid, account, period, ts, updated, month_kwh, step_kwh, amount, reason = row[:9]
    state, reviewed_by, reviewed_ts, note = row[9:]
    return Hold(
        hid,
        account,
        period,
        ts,
        updated,
        month_kwh,
        step_kwh,
        amount,
        reason,
        HoldState(state),
        reviewed_by,
        reviewed_ts,
        note,
    )


class HeldCharges:
    """The held consumption charges in the ledger's file (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        ledger.ensure_schema("held", _SCHEMA)

    def open_hold(self, account: str) -> Hold | None:
        """Return the account's hold waiting for review, or None."""
        rows = self.ledger.query(
            f"SELECT {_HOLD_COLS} FROM held WHERE account = ? AND state = 'held' LIMIT 1",
            (account,),
        )
        return _hold(rows[0]) if rows else None

    def holds(self, account: str | None = None, state: HoldState | None = None) -> list[Hold]:
        """Return holds (newest first), filtered by account and state."""
        where, args = [], []
        if account is not None:
            where.append("account = ?")
            args.append(account)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        sql = f"SELECT {_HOLD_COLS} FROM held"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_hold(r) for r in self.ledger.query(sql + " ORDER BY id DESC", tuple(args))]

    def hold(
        self,
        account: str,
        period: str,
        t: float,
        month_kwh: float,
        step_kwh: float,
        amount: str,
        reason: str,
    ) -> Hold:
        """Hold a charge: a new hold, or the account's open one updated to the latest figures."""
        with self.ledger.transaction() as con:
            row = con.execute(
                "SELECT id FROM held WHERE account = ? AND state = 'held' LIMIT 1", (account,)
            ).fetchone()
            if row is None:
                cur = con.execute(
                    "INSERT INTO held (account, period, ts, updated, month_kwh, step_kwh, amount,"
                    " reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (account, period, t, t, month_kwh, step_kwh, amount, reason),
                )
                hid = int(cur.lastrowid or 0)
            else:
                hid = int(row[0])
                con.execute(
                    "UPDATE held SET updated = ?, month_kwh = ?, step_kwh = ?, amount = ?,"
                    " reason = ?, period = ? WHERE id = ?",
                    (t, month_kwh, step_kwh, amount, reason, period, hid),
                )
            got = con.execute(f"SELECT {_HOLD_COLS} FROM held WHERE id = ?", (hid,)).fetchone()
        return _hold(got)

    def review(self, account: str, hold_id: int, state: HoldState, user: str, note: str) -> Hold:
        """Release or discard the account's open hold ``hold_id``; ``UnknownEntry`` if none."""
        if state is HoldState.HELD:
            raise ValueError("a review releases or discards")
        with self.ledger.transaction() as con:
            row = con.execute(
                f"SELECT {_HOLD_COLS} FROM held WHERE id = ? AND account = ?", (hold_id, account)
            ).fetchone()
            if row is None:
                raise UnknownEntry(f"account {account} has no held charge {hold_id}")
            if row[9] != HoldState.HELD.value:
                raise LedgerError(f"account {account}: held charge {hold_id} was already {row[9]}")
            con.execute(
                "UPDATE held SET state = ?, reviewed_by = ?, reviewed_ts = ?, note = ? WHERE id = ?",
                (state.value, user, time.time(), note, hold_id),
            )
            got = con.execute(f"SELECT {_HOLD_COLS} FROM held WHERE id = ?", (hold_id,)).fetchone()
        return _hold(got)

    def accepted_kwh(self, account: str, period: str) -> float:
        """Return the largest month-to-date energy released for ``period`` (0 if none)."""
        rows = self.ledger.query(
            "SELECT max(month_kwh) FROM held WHERE account = ? AND period = ? AND state = ?",
            (account, period, HoldState.RELEASED.value),
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else 0.0
