"""Prepaid consumption charging from billing readings, month to date, idempotent.

After each reading at ``t`` every open account's month-to-date bill is recomputed from the
billing readings (``[max(month start, opening), t)``, tiers stepped on the month's energy, no
shared loss) and the difference to what was already charged for that month is posted as one
``consumption`` entry keyed by account, month and ``t``. So the charges of a month always add
up to its rounded bill (no cent lost to rounding 30-minute slices), a late reading or a meter
replacement corrects itself at the next reading, and re-running a reading changes nothing.
The month before is recomputed too while a reading inside it may still arrive.
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


def charge_consumption(
    site: BillingSite, ledger: Ledger, t: float, accounts: Iterable[str] | None = None
) -> list[Entry]:
    """Post the consumption charges due up to reading time ``t``; return the new entries."""
    tz = site.site.timezone
    wanted = None if accounts is None else set(accounts)
    source = LedgerReadings(ledger)
    windows: dict[tuple[float, float, str], list[str]] = {}
    for acct in resolve_accounts(site):
        if wanted is not None and acct.id not in wanted:
            continue
        opened = _opened_at(ledger, acct.id)
        if opened is None or opened >= t:
            continue
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
            prev_kwh = sum(
                (e.energy_kwh or 0.0)
                for e in ledger.entries(bill.id, kinds=[EntryKind.CONSUMPTION])
                if e.period == label
            )
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
