"""The ``household_statement`` report: one household's months, consumption to balance.

For household ``household`` (``--household`` / ``?household=``), one row per calendar month
of the site's time zone inside the period (the first and last clipped to it):

- **electricity**: the increase of the household's meters (the meters of the accounts whose
  ``household`` it is, and its own ``*energy_kwh`` tags), each the figure ``meter_energy``
  shows for that month (``historian.counter_days.consumption_table``: the counter rule) rounded
  by the tag's decimals, then added;
- **heat**: its share of the building's heat (``Billing.allocate_heat`` of the month: the
  on-off time area method), and that share in %;
- **charges**, **payments**, **other** and **balance**: from the ledger of its accounts (its
  electricity accounts and its heat account ``<household>.heat``): charges are consumption,
  shared losses and heat charges, advances and settlements (positive: what it owes);
  payments the opening credits, top-ups and refunds; other the rest (reversals, closings);
  the balance the sum of every entry up to the month's end (``Ledger.balance`` at that time).
  Money is ``Decimal`` in ``statements.CURRENCY``.

Raises ``ValueError`` for an unknown household, without one, and when the household has no
consumption, no heat share and no ledger entry in the period (a clear message, no empty file).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from billing.heat_accounts import heat_account_id
from billing.ledger import Entry, EntryKind
from billing.report_energy import energy_decimals
from billing.statements import CURRENCY
from historian.buckets import Buckets, Every, Unit
from historian.counter_days import consumption_table
from i18n import _
from tags.model import TagDef

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Sheet
    from billing.service import Billing

__all__ = ["CHARGES", "PAYMENTS", "household_statement"]

#: Entry kinds counted as charges (their amounts are debits) and as payments.
CHARGES = frozenset(
    {
        EntryKind.CONSUMPTION,
        EntryKind.SHARED_LOSS,
        EntryKind.HEAT_ADVANCE,
        EntryKind.HEAT_CHARGE,
        EntryKind.HEAT_SETTLEMENT,
    }
)
PAYMENTS = frozenset({EntryKind.OPENING, EntryKind.TOPUP, EntryKind.REFUND})
_ZERO = Decimal("0.00")


def _meters(b: Billing, household: str) -> list[str]:
    """Return the energy tags of ``household``: its accounts' meters, its ``*energy_kwh`` tags."""
    out: dict[str, None] = {}
    for a in b.site.accounts:
        if a.household == household:
            out.update(dict.fromkeys(m.energy for m in a.meters))
    for hh in b.site.households():
        if hh.id == household:
            out.update(dict.fromkeys(t for t in hh.tags if t.endswith("energy_kwh")))
    return list(out)


def _accounts(b: Billing, household: str) -> list[str]:
    out = [a.id for a in b.site.accounts if a.household == household]
    heat = heat_account_id(household)
    if heat in b.heat.accounts:
        out.append(heat)
    return out


def _sum(entries: Iterable[Entry]) -> Decimal:
    return sum((e.amount for e in entries), _ZERO)


def household_statement(b: Billing, p: Period, household: str | None = None) -> list[Sheet]:
    """Return the ``statement`` sheet of ``household`` over period ``p`` (module docstring).

    Blocking (reads the historian and the ledger): run it in a worker thread from the event loop.
    """
    from billing.reports import Column, Sheet

    if not household:
        raise ValueError(_("household: required for the household statement"))
    ids = {hh.id for hh in b.site.households()}
    if household not in ids:
        raise ValueError(_("unknown household {household}", household=household))
    building = b.site.household_building(household)
    zone = ZoneInfo(b.tz)
    months = Buckets.calendar(p.start, p.end, Every(1, Unit.MONTH), zone)
    tags = _meters(b, household)
    defs = {d.name: d for d in b.site.tag_defs()}
    tag_defs = [defs.get(t) or TagDef(t, unit="kWh") for t in tags]
    elec: list[float | None] = [None] * len(months)
    if tag_defs:
        table = consumption_table(b._hist(), tag_defs, months)
        for k in range(len(months)):
            parts = [
                round(float(table.value[i, k]), energy_decimals(d))
                for i, d in enumerate(tag_defs)
                if not math.isnan(table.value[i, k])
            ]
            if parts:
                dec = max(energy_decimals(d) for d in tag_defs)
                elec[k] = round(sum(parts), dec)
    heated = any(x.id == building and x.heat is not None for x in b.site.buildings)
    entries = [e for a in _accounts(b, household) for e in b.ledger.entries(a)]
    entries.sort(key=lambda e: (e.ts, e.seq))
    sheet = Sheet(
        "statement",
        [
            Column("month"),
            Column("electricity", "kWh", True),
            Column("heat", "kWh", True),
            Column("heat share", "%"),
            Column("charges", CURRENCY, True),
            Column("payments", CURRENCY, True),
            Column("other", CURRENCY, True),
            Column("balance", CURRENCY),
        ],
        chart=(0, [1, 2]),
    )
    found = any(x is not None for x in elec)
    for k, (a, e) in enumerate(zip(months.starts, months.ends, strict=True)):
        heat_kwh, share = _heat(b, building, household, a, e) if heated else (None, None)
        found |= heat_kwh is not None and heat_kwh > 0
        inside = [x for x in entries if a <= x.ts < e]
        found |= bool(inside)
        charges = -_sum(x for x in inside if x.kind in CHARGES)
        payments = _sum(x for x in inside if x.kind in PAYMENTS)
        other = _sum(x for x in inside if x.kind not in CHARGES | PAYMENTS)
        sheet.rows.append(
            [
                datetime.fromtimestamp(a, zone).strftime("%Y-%m"),
                elec[k],
                heat_kwh,
                share,
                charges,
                payments,
                other,
                _sum(x for x in entries if x.ts < e),
            ]
        )
    if not found:
        raise ValueError(
            _(
                "household {household}: no consumption, heat share or ledger entry in {period}",
                household=household,
                period=p.label,
            )
        )
    return [sheet]


def _heat(
    b: Billing, building: str, household: str, a: float, e: float
) -> tuple[float | None, float | None]:
    """Return the household's allocated heat (kWh) and share (%) of ``[a, e)``; None if none."""
    try:
        alloc = b.allocate_heat(a, e, [building])
    except ValueError:  # the month has not begun
        return None, None
    for bh in alloc.buildings:
        for hh in bh.households:
            if hh.id == household:
                return round(hh.heat_kwh, 3), round(100.0 * hh.share, 2)
    return None, None
