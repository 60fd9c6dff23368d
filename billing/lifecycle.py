"""Closing an electricity account: final readings, final charge, settlement, then no entry.

``close_account`` does it in one ledger transaction (all or nothing):

1. each meter's final reading at the closing time ``at`` is stored as a billing reading (given
   by the caller: the ``Billing`` facade fills in the live value from the tag database;
   ``MissingReading`` without one;
   ``Implausible`` when it is below the meter's last reading or more than its ``max_kw`` could
   use since);
2. the consumption up to ``at`` is charged by ``billing.charging.charge_consumption``, the path
   of the scheduled readings (one computation: the month-to-date bill minus what was charged);
   a charge held for review refuses the closing (``ChargeHeld``: review it first);
3. ``Ledger.close_account`` posts the ``closing`` entry: minus the balance, so the account ends at 0.00
   (negative amount: the credit paid back to the tenant; positive: the tenant's debt, taken off
   the account and collected outside it). The entry's ``data`` holds the final readings and the
   final charges' entries.

After it the ledger refuses every entry of the account (``AccountClosed``). Closing a closed
account changes nothing and returns the first closing (``repeated``). A closed account is never
reopened: the flat's next tenant is configured as a new account id. Threading: blocking
(SQLite); the ``Billing`` facade runs it on a worker thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.charging import charge_consumption
from billing.errors import ChargeHeld, Implausible, MissingReading
from billing.ledger import Entry, EntryKind, Ledger
from billing.plausibility import HeldCharges
from tags.model import iso

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount
    from billing.site import BillingSite

__all__ = ["FUTURE_SLACK_S", "Closing", "close_account", "preview_close"]

#: How far a closing time may lie ahead of the clock (clocks of clients differ a little).
FUTURE_SLACK_S = 300.0
#: A final reading may exceed the last one by this much at least (rounding of registers).
_MIN_ALLOWANCE_KWH = 1.0


@dataclass(frozen=True, slots=True)
class Closing:
    """What closing an account did (or, with ``repeated``, what its first closing did).

    ``entry``: the closing entry; ``charges``: the final consumption entries posted up to
    ``at``; ``readings``: the final reading of each meter (kWh); ``balance``: before the closing
    entry; ``settlement``: ``refund`` (``amount`` paid back), ``debt`` (``amount`` owed by the
    tenant) or ``none``.
    """

    account: str
    at: float
    entry: Entry
    charges: list[Entry]
    readings: dict[str, float]
    balance: Decimal
    settlement: str
    amount: Decimal
    repeated: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, entry: Entry, charges: list[Entry], repeated: bool) -> Closing:
        """Return the closing that ``entry`` (a ``closing`` entry) records."""
        d = entry.data
        return cls(
            entry.account,
            entry.ts,
            entry,
            charges,
            {k: float(v) for k, v in d.get("readings", {}).items()},
            Decimal(d.get("balance", "0.00")),
            str(d.get("settlement", "none")),
            abs(entry.amount),
            repeated,
            d,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (money as strings, times ISO-8601)."""
        return {
            "account": self.account,
            "closed_at": iso(self.at),
            "entry": self.entry.to_json(),
            "charges": [e.to_json() for e in self.charges],
            "readings": self.readings,
            "balance_at_close": str(self.balance),
            "settlement": self.settlement,
            "settlement_amount": str(self.amount),
            "balance": "0.00",
            "repeated": self.repeated,
        }


def _final_reading(
    ledger: Ledger, meter: str, max_kw: float, at: float, value: float | None
) -> float:
    """Check a final reading against the meter's last one; ``Implausible`` says why."""
    if value is None:
        raise MissingReading(
            f"meter {meter}: no final reading given and no good live value to read"
        )
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise Implausible(f"meter {meter}: the final reading {value!r} is not a meter reading")
    ts, vs = ledger.readings_around(meter, at, at)
    before = [(float(t), float(v)) for t, v in zip(ts, vs, strict=True) if t <= at]
    if not before:
        return x
    t0, v0 = before[-1]
    if t0 == at and abs(v0 - x) > 1e-9:
        raise Implausible(
            f"meter {meter}: a reading {v0:g} kWh is stored at {iso(at)}, not {x:g} kWh"
        )
    if x < v0 - 1e-9:
        raise Implausible(
            f"meter {meter}: the final reading {x:g} kWh is below its last reading "
            f"({v0:g} kWh at {iso(t0)}); a meter counts up"
        )
    allowance = max(_MIN_ALLOWANCE_KWH, max_kw * (at - t0) / 3600.0)
    if x - v0 > allowance:
        raise Implausible(
            f"meter {meter}: the final reading {x:g} kWh is {x - v0:g} kWh above its last "
            f"reading ({v0:g} kWh at {iso(t0)}); at most {allowance:.6g} kWh fit"
        )
    return x


def close_account(
    site: BillingSite,
    ledger: Ledger,
    account: ResolvedAccount,
    *,
    at: float | None = None,
    readings: Mapping[str, float] | None = None,
    user: str = "",
    note: str = "",
    now: float | None = None,
) -> Closing:
    """Close ``account`` at ``at`` (default now); see the module docstring.

    ``readings``: final reading (kWh) by meter energy tag (the caller reads live values). Raises ``AccountNotOpen``,
    ``MissingReading``, ``Implausible`` (also for an unknown meter tag, a closing time in the
    future or before the account's last entry), ``ChargeHeld``; nothing is written then.
    """
    done = ledger.closed_entry(account.id)
    if done is not None:
        return _repeat(ledger, done)
    HeldCharges(ledger)  # creates its table outside the transaction (executescript commits)
    with ledger.transaction():
        return _close(site, ledger, account, at, readings, user, note, now)


class _Preview(Exception):  # a control-flow signal, not an error
    """Carries a previewed closing out of the transaction it rolls back."""

    def __init__(self, closing: Closing) -> None:
        super().__init__("preview")
        self.closing = closing


def preview_close(
    site: BillingSite,
    ledger: Ledger,
    account: ResolvedAccount,
    *,
    at: float | None = None,
    readings: Mapping[str, float] | None = None,
    now: float | None = None,
) -> Closing:
    """Return what ``close_account`` would do now, computed by the same code, writing nothing.

    The closing runs inside one transaction that is rolled back (the entries it returns carry
    the sequence numbers they would get). Raises as ``close_account``; a closed account answers
    its closing (``repeated``).
    """
    done = ledger.closed_entry(account.id)
    if done is not None:
        return _repeat(ledger, done)
    HeldCharges(ledger)  # (its table is made outside the transaction, as in close_account)
    try:
        with ledger.transaction():
            raise _Preview(_close(site, ledger, account, at, readings, "", "", now))
    except _Preview as p:
        return p.closing


def _close(
    site: BillingSite,
    ledger: Ledger,
    account: ResolvedAccount,
    at: float | None,
    readings: Mapping[str, float] | None,
    user: str,
    note: str,
    now: float | None,
) -> Closing:
    """The closing's work, inside the caller's transaction (``close_account``)."""
    acct = account.id
    done = ledger.closed_entry(acct)
    if done is not None:  # closed by a racing request
        return _repeat(ledger, done)
    now = time.time() if now is None else now
    at = now if at is None else float(at)
    if not math.isfinite(at) or at > now + FUTURE_SLACK_S:
        raise Implausible(f"account {acct}: the closing time {at!r} lies in the future")
    given = dict(readings or {})
    meters = {m.energy: m for m in account.meters}
    unknown = sorted(set(given) - set(meters))
    if unknown:
        raise Implausible(f"account {acct} has no meter {', '.join(unknown)}")
    entries = ledger.entries(acct)
    if entries and at < entries[-1].ts:
        raise Implausible(
            f"account {acct}: the closing time {iso(at)} is before its last entry "
            f"({entries[-1].kind.value} {entries[-1].seq} at {iso(entries[-1].ts)})"
        )
    final: dict[str, float] = {}
    for tag, m in meters.items():
        final[tag] = _final_reading(ledger, tag, m.max_kw, at, given.get(tag))
    ledger.add_readings((tag, at, v) for tag, v in final.items())
    charges = charge_consumption(site, ledger, at, [acct])
    hold = HeldCharges(ledger).open_hold(acct)
    if hold is not None:
        raise ChargeHeld(
            f"account {acct}: consumption charge {hold.id} is held for review "
            f"({hold.reason}); release or discard it, then close"
        )
    posted = ledger.close_account(
        acct,
        ts=at,
        user=user,
        note=note,
        data={"readings": final, "charges": [e.seq for e in charges]},
    )
    return Closing.of(posted.entry, charges, False)


def _repeat(ledger: Ledger, closing: Entry) -> Closing:
    """The first closing of an account, as it was (its final charges looked up)."""
    seqs = set(closing.data.get("charges", []))
    charges = [
        e for e in ledger.entries(closing.account, kinds=[EntryKind.CONSUMPTION]) if e.seq in seqs
    ]
    return Closing.of(closing, charges, True)
