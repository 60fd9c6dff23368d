"""Prepaid consumption charging from billing readings, month to date, idempotent.

After each reading at ``t`` every open account's month-to-date bill is recomputed from the
billing readings (``[max(month start, opening), t)``, tiers stepped on the month's energy, no
shared loss) and the difference to what was already charged for that month is posted as one
``consumption`` entry keyed by account, month and ``t``. So the charges of a month always add
up to its rounded bill (no cent lost to rounding 30-minute slices), a late reading or a meter
replacement corrects itself at the next reading, and re-running a reading changes nothing.
The month before is recomputed too while a reading inside it may still arrive.

Before a charge is posted, ``billing.plausibility.consumption_check`` asks whether the meters
could have used that energy; if not, the charge is held for review instead (and every later
one of the account until an operator releases or discards the hold).
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from billing.accounts import resolve_accounts
from billing.bills import bill_accounts
from billing.ledger import Entry, EntryKind, Ledger
from billing.periods import month_start, next_month
from billing.plausibility import HeldCharges, consumption_check
from billing.readings import LedgerReadings

if TYPE_CHECKING:
    from billing.site import BillingSite

__all__ = ["charge_consumption", "month_label"]

log = logging.getLogger(__name__)


def month_label(ts: float, tz: str) -> str:
    """Return ``YYYY-MM`` of the local month holding ``ts``."""
    return datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).strftime("%Y-%m")


def _opened_at(ledger: Ledger, account: str) -> float | None:
    for e in ledger.entries(account, kinds=[EntryKind.OPENING]):
        return e.ts
    return None


def _history(
    entries: list[Entry], label: str, opened: float, tz: str
) -> dict[str, tuple[float, float]]:
    """Return ``{period: (kWh charged, days covered)}`` of the months before ``label``."""
    spans: dict[str, list[float]] = {}
    for e in entries:
        if e.period is None or e.period >= label:
            continue
        kwh, first, last = spans.setdefault(e.period, [0.0, e.ts, e.ts])
        spans[e.period] = [kwh + (e.energy_kwh or 0.0), min(first, e.ts), max(last, e.ts)]
    out: dict[str, tuple[float, float]] = {}
    for period, (kwh, first, last) in spans.items():
        start = max(opened, month_start(first - 1e-3, tz))
        out[period] = (kwh, (last - start) / 86400.0)
    return out


def charge_consumption(
    site: BillingSite, ledger: Ledger, t: float, accounts: Iterable[str] | None = None
) -> list[Entry]:
    """Post the consumption charges due up to reading time ``t``; return the new entries."""
    tz = site.site.timezone
    wanted = None if accounts is None else set(accounts)
    source = LedgerReadings(ledger)
    windows: dict[tuple[float, float, str], list[str]] = {}
    resolved = {a.id: a for a in resolve_accounts(site)}
    opened_at: dict[str, float] = {}
    holds = HeldCharges(ledger)
    for acct in resolved.values():
        if wanted is not None and acct.id not in wanted:
            continue
        opened = _opened_at(ledger, acct.id)
        if opened is None or opened >= t or ledger.is_closed(acct.id):
            continue  # a closed account's final charge was posted by its closing
        opened_at[acct.id] = opened
        # this month and the one before (a late reading may still change it)
        m = month_start(t - 1e-3, tz)
        first = max(month_start(m - 1, tz), month_start(opened, tz))
        while first <= m:
            a = max(first, opened)
            b = min(next_month(first, tz), t)
            if b > a:
                windows.setdefault((a, b, month_label(first, tz)), []).append(acct.id)
            first = next_month(first, tz)
    posted: list[Entry] = []
    for (a, b, label), ids in sorted(windows.items()):
        run = bill_accounts(site, source, a, b, accounts=ids, shared=False)
        for bill in run.accounts:
            due = bill.energy_amount
            already = ledger.charged(bill.id, EntryKind.CONSUMPTION, label)
            diff = due - already
            if diff == 0:
                continue
            entries = ledger.entries(bill.id, kinds=[EntryKind.CONSUMPTION])
            this = [e for e in entries if e.period == label]
            prev_kwh = sum((e.energy_kwh or 0.0) for e in this)
            open_hold = holds.open_hold(bill.id)
            why = None
            if open_hold is not None:
                why = open_hold.reason
            elif diff > 0:
                why = consumption_check(
                    resolved[bill.id],
                    bill.energy_kwh,
                    prev_kwh,
                    max((e.ts for e in this), default=a),
                    b,
                    month_start(a, tz),
                    _history(entries, label, opened_at[bill.id], tz),
                    holds.accepted_kwh(bill.id, label),
                )
            if why is not None:
                held = holds.hold(
                    bill.id, label, t, bill.energy_kwh, bill.energy_kwh - prev_kwh, str(diff), why
                )
                if open_hold is None:
                    log.warning(
                        "account %s: consumption charge %s for %s held for review (%d): %s",
                        bill.id,
                        diff,
                        label,
                        held.id,
                        why,
                    )
                continue
            entry = ledger.charge(
                bill.id,
                EntryKind.CONSUMPTION,
                diff,
                key=f"consumption:{bill.id}:{label}:{t!r}",
                period=label,
                energy_kwh=round(bill.energy_kwh - prev_kwh, 6),
                ts=t,
                data={
                    "month_to_date_kwh": round(bill.energy_kwh, 6),
                    "month_to_date": str(due),
                    "lines": [ln.to_json() for ln in bill.lines],
                },
            )
            if entry is not None:
                posted.append(entry)
    if posted:
        log.info("charged %d consumption entries up to %s", len(posted), t)
    return posted
