"""A tenant change at a time ``T``: the old tenant's account closes, the new one opens, at ``T``.

``change_tenant`` does the ledger's part in one transaction (all or nothing):

1. the old account is closed at ``T`` by ``billing.lifecycle.close_account`` (final reading of
   each meter at ``T``, final consumption charge up to ``T``, settlement refund or debt);
2. the new tenant's account is opened at ``T`` (opening balance ``amount``, default 0.00): the
   final readings at ``T`` are its opening readings (readings belong to the meter), so its
   consumption charges start at ``T``;
3. one row in ``tenancy_changes`` keyed by the caller's idempotency key records the change.

The same key again posts nothing and answers the first change (``repeated``); the same key with
another account, new account or time is ``IdempotencyConflict``. A change at a time before the
last billed period end of the account (its latest consumption, heat charge or settlement
entry, the household's heat account included) is refused (``TenancyRefused``), as is a new
account id the ledger already knows. The configuration's part (the old account's
``moved_out``, the new account with ``moved_in``) is the caller's: ``scada.services.tenancy``.

A meter's reading at ``T`` comes from the caller, else from the historian
(``reading_at``: linear between the samples around ``T``). Threading: blocking (SQLite).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.errors import IdempotencyConflict, LedgerError, MissingReading
from billing.heat_accounts import heat_account_id
from billing.ledger import Entry, EntryKind, Ledger
from billing.lifecycle import Closing, close_account
from billing.plausibility import HeldCharges
from i18n import _
from tags.model import iso

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount
    from billing.site import BillingSite
    from historian.base import Historian

__all__ = [
    "BILLED_KINDS",
    "TenancyRefused",
    "TenantChange",
    "change_tenant",
    "changes",
    "find_change",
    "last_billed_end",
    "reading_at",
]

#: Entries that end a billed period of an account (a change before the latest one is refused).
BILLED_KINDS = (
    EntryKind.CONSUMPTION,
    EntryKind.HEAT_CHARGE,
    EntryKind.HEAT_SETTLEMENT,
)
#: How far apart the samples around ``T`` may be for a reading from the historian (s).
MAX_GAP_S = 6 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenancy_changes (
    key TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    new_account TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    closing_seq INTEGER NOT NULL,
    opening_seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    data TEXT NOT NULL
);
"""


class TenancyRefused(LedgerError):
    """A tenant change that cannot be made (the reason says why)."""


@dataclass(frozen=True, slots=True)
class TenantChange:
    """What a tenant change did (with ``repeated``: what the first change with the key did)."""

    key: str
    account: str
    new_account: str
    at: float
    closing: Closing
    opening: Entry
    tenant: dict[str, Any]
    repeated: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (money as strings, times ISO-8601)."""
        return {
            "key": self.key,
            "account": self.account,
            "new_account": self.new_account,
            "at": iso(self.at),
            "closing": self.closing.to_json(),
            "opening": self.opening.to_json(),
            "opening_readings": self.closing.readings,
            "tenant": self.tenant,
            "repeated": self.repeated,
        }


def last_billed_end(ledger: Ledger, account: ResolvedAccount) -> Entry | None:
    """Return the latest entry that ended a billed period of ``account`` (or None)."""
    ids = [account.id]
    if account.config.household is not None:
        ids.append(heat_account_id(account.config.household))
    latest: Entry | None = None
    for acct in ids:
        for e in ledger.entries(acct, kinds=BILLED_KINDS):
            if latest is None or e.ts > latest.ts:
                latest = e
    return latest


def reading_at(historian: Historian, tag: str, at: float) -> float | None:
    """Return meter ``tag``'s reading at ``at`` from the historian (linear between samples).

    The good samples at or before ``at`` and after it, at most ``MAX_GAP_S`` apart; only the one
    before when nothing follows within it. None when there is none.
    """
    before = historian.value_at(tag, at, include_bad=False)
    if before is None or before.numeric is None or at - before.ts > MAX_GAP_S:
        return None
    x0 = float(before.numeric)
    if before.ts == at:
        return x0
    for s in historian.query_raw(tag, at, at + MAX_GAP_S, include_bad=False):
        x1 = s.numeric
        if x1 is None or not math.isfinite(x1) or s.ts <= at:
            continue
        return x0 + (float(x1) - x0) * (at - before.ts) / (s.ts - before.ts)
    return x0


def _stored(ledger: Ledger, key: str) -> TenantChange | None:
    rows = ledger.query(
        "SELECT key, account, new_account, at, closing_seq, opening_seq, data"
        " FROM tenancy_changes WHERE key = ?",
        (key,),
    )
    if not rows:
        return None
    k, acct, new, at, closing_seq, opening_seq, data = rows[0]
    closing = ledger.entry(int(closing_seq))
    opening = ledger.entry(int(opening_seq))
    assert closing is not None and opening is not None
    seqs = set(closing.data.get("charges", []))
    charges = [e for e in ledger.entries(acct, kinds=[EntryKind.CONSUMPTION]) if e.seq in seqs]
    return TenantChange(
        k,
        acct,
        new,
        float(at),
        Closing.of(closing, charges, True),
        opening,
        json.loads(data),
        True,
    )


def find_change(ledger: Ledger, key: str) -> TenantChange | None:
    """Return the tenant change made with idempotency ``key`` (``repeated``), or None."""
    ledger.ensure_schema("tenancy", _SCHEMA)
    return _stored(ledger, key)


def changes(ledger: Ledger, account: str | None = None) -> list[TenantChange]:
    """Return the recorded tenant changes (of ``account``, old or new side), oldest first."""
    ledger.ensure_schema("tenancy", _SCHEMA)
    sql = "SELECT key FROM tenancy_changes"
    args: tuple[Any, ...] = ()
    if account is not None:
        sql += " WHERE account = ? OR new_account = ?"
        args = (account, account)
    out = [_stored(ledger, r[0]) for r in ledger.query(sql + " ORDER BY at", args)]
    return [c for c in out if c is not None]


def _same(done: TenantChange, account: str, new_account: str, at: float) -> TenantChange:
    if (done.account, done.new_account) != (account, new_account) or abs(done.at - at) > 1e-3:
        raise IdempotencyConflict(
            _(
                "idempotency key {key} was used for the tenant change of {account} to "
                "{new} at {at}",
                key=done.key,
                account=done.account,
                new=done.new_account,
                at=iso(done.at),
            )
        )
    return done


def change_tenant(
    site: BillingSite,
    ledger: Ledger,
    account: ResolvedAccount,
    new_account: str,
    *,
    at: float,
    key: str,
    readings: Mapping[str, float] | None = None,
    amount: Decimal = Decimal("0.00"),
    tenant: Mapping[str, Any] | None = None,
    user: str = "",
    note: str = "",
    now: float | None = None,
) -> TenantChange:
    """Close ``account`` and open ``new_account`` at ``at`` (the module docstring).

    ``readings``: each meter's reading at ``at`` (kWh; ``MissingReading`` for a missing one).
    Raises ``TenancyRefused``, ``IdempotencyConflict`` and what ``close_account`` raises
    (``Implausible``, ``ChargeHeld``, ``AccountNotOpen``); nothing is written then.
    """
    # tables made before the transaction (executescript commits)
    ledger.ensure_schema("tenancy", _SCHEMA)
    HeldCharges(ledger)
    done = _stored(ledger, key)
    if done is not None:
        return _same(done, account.id, new_account, at)
    now = time.time() if now is None else now
    given = dict(readings or {})
    for m in account.meters:
        if m.energy not in given:
            raise MissingReading(
                _(
                    "meter {meter}: no reading at {at} given and none in the history",
                    meter=m.energy,
                    at=iso(at),
                )
            )
    with ledger.transaction() as con:
        done = _stored(ledger, key)
        if done is not None:  # a racing request with the same key
            return _same(done, account.id, new_account, at)
        if ledger.is_closed(account.id):
            raise TenancyRefused(
                _("account {account} is closed: its tenant has moved out", account=account.id)
            )
        if new_account == account.id or ledger.entries(new_account):
            raise TenancyRefused(
                _(
                    "account {account} exists already: give the new tenant a new account id",
                    account=new_account,
                )
            )
        billed = last_billed_end(ledger, account)
        if billed is not None and at < billed.ts:
            raise TenancyRefused(
                _(
                    "account {account}: the tenant change at {at} is before the last billed "
                    "period end ({kind} {seq} of {entry_account} at {end})",
                    account=account.id,
                    at=iso(at),
                    kind=billed.kind.value,
                    seq=billed.seq,
                    entry_account=billed.account,
                    end=iso(billed.ts),
                )
            )
        closing = close_account(
            site, ledger, account, at=at, readings=given, user=user, note=note, now=now
        )
        opening = ledger.open_account(
            new_account,
            amount,
            user=user,
            note=note or _("tenant change from {account}", account=account.id),
            ts=at,
        )
        info = {k: v for k, v in (tenant or {}).items() if v not in (None, "")}
        con.execute(
            "INSERT INTO tenancy_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                account.id,
                new_account,
                at,
                closing.entry.seq,
                opening.seq,
                user,
                json.dumps(info, sort_keys=True),
            ),
        )
    return TenantChange(key, account.id, new_account, at, closing, opening, info)
