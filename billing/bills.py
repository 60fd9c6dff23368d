"""Electricity bills per account: energy by band and tier per tariff, the shared-loss line, total.

``bill_accounts(site, source, start, end)`` prices each account's meters (grouped by tariff:
tiers step on the group's calendar-month energy) from a ``ReadingSource`` (the historian for
``scada bill``, billing readings for prepaid charging). The shared-loss line prices the
account's part of its building's shared energy at the building's ``loss_price``, else the
tariff's ``loss_price``, else the account's own average price of the period (to 1e-4), else
the tariff's headline price. A total is the sum of the rounded lines (``tariff``). An account
with a tenancy (``moved_in`` / ``moved_out``: a tenant change, ``billing.tenancy``) is billed
for the energy used within it only, so two tenancies on one meter never count it twice.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from billing.accounts import ResolvedAccount, resolve_accounts
from billing.losses import SharedLoss, allocate_loss
from billing.periods import month_start
from billing.readings import Curve, ReadingSource
from billing.tariff import (
    BillLine,
    Schedule,
    Usage,
    band_schedule,
    base_price,
    make_line,
    price_usage,
    usage,
)

if TYPE_CHECKING:
    from billing.config import TariffConfig
    from billing.site import BillingSite

__all__ = ["SHARED_LOSS_LINE", "AccountBill", "BillRun", "bill_accounts", "tenancy_span"]

SHARED_LOSS_LINE = "shared loss"


@dataclass(slots=True)
class AccountBill:
    """One account's bill for a period."""

    id: str
    tenant: str
    energy_kwh: float
    lines: list[BillLine]
    shared_kwh: float = 0.0
    meters: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        """The sum of the rounded lines."""
        return sum((ln.amount for ln in self.lines), Decimal("0.00"))

    @property
    def energy_amount(self) -> Decimal:
        """The total without the shared-loss line (what prepaid consumption charges)."""
        return sum((ln.amount for ln in self.lines if ln.name != SHARED_LOSS_LINE), Decimal("0.00"))

    def to_json(self) -> dict[str, Any]:
        """Return the account item of ``scada bill --json`` (money as strings)."""
        return {
            "id": self.id,
            "energy_kwh": round(self.energy_kwh, 6),
            "lines": [ln.to_json() for ln in self.lines],
            "shared_kwh": round(self.shared_kwh, 6),
            "total": str(self.total),
        }


@dataclass(slots=True)
class BillRun:
    """Bills of every account for ``[start, end)`` and each building's shared loss."""

    start: float
    end: float
    accounts: list[AccountBill]
    losses: dict[str, SharedLoss] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return ``{"accounts": [...]}`` (the format of issue 8 item 7)."""
        return {"accounts": [a.to_json() for a in self.accounts]}

    def account(self, account_id: str) -> AccountBill:
        """Return the bill of ``account_id`` (KeyError if it is not in the run)."""
        for a in self.accounts:
            if a.id == account_id:
                return a
        raise KeyError(account_id)


class _Pricer:
    """Caches band schedules per tariff and fetches curves for one run."""

    def __init__(self, site: BillingSite, source: ReadingSource, start: float, end: float) -> None:
        self.site = site
        self.tz = site.site.timezone
        self.source = source
        self.start = start
        self.end = end
        self.curve_start = month_start(start, self.tz)
        self._schedules: dict[str, Schedule] = {}

    def schedule(self, tariff: TariffConfig) -> Schedule:
        s = self._schedules.get(tariff.id)
        if s is None:
            s = self._schedules[tariff.id] = band_schedule(tariff, self.start, self.end, self.tz)
        return s

    def curve(self, tag: str) -> Curve:
        return self.source.curve(tag, self.curve_start, self.end)


def tenancy_span(acct: ResolvedAccount, tz: str) -> tuple[float, float]:
    """Return the account's tenancy ``[moved_in, moved_out)`` in epoch seconds (open: +-inf).

    A configured time without an offset is site time (``tz``).
    """
    zone = zoneinfo.ZoneInfo(tz)
    out = []
    for t, default in ((acct.config.moved_in, -math.inf), (acct.config.moved_out, math.inf)):
        if t is None:
            out.append(default)
        else:
            out.append((t if t.tzinfo is not None else t.replace(tzinfo=zone)).timestamp())
    return out[0], out[1]


def _within(curve: Curve, a: float, b: float) -> Curve:
    """``curve`` flat before ``a`` and after ``b``: only the energy used in ``[a, b]`` counts."""
    if len(curve.ts) == 0 or (a <= curve.ts[0] and b >= curve.ts[-1]):
        return curve
    lo = max(a, float(curve.ts[0]))
    hi = min(b, float(curve.ts[-1]))
    if hi <= lo:
        return Curve(curve.ts[:1], curve.cum[:1])
    inside = (curve.ts > lo) & (curve.ts < hi)
    ts = np.concatenate(([lo], curve.ts[inside], [hi]))
    return Curve(ts, curve.at(ts))


def _bill_one(p: _Pricer, acct: ResolvedAccount) -> AccountBill:
    groups: dict[str, list[Usage]] = {}
    tariffs = {}
    meters: dict[str, dict[str, float]] = {}
    a, b = tenancy_span(acct, p.tz)  # a tenant change: the account's energy within its tenancy
    for m in acct.meters:
        sched = p.schedule(m.tariff)
        u = usage(_within(p.curve(m.energy), a, b), sched, p.start, p.tz, m.energy)
        groups.setdefault(m.tariff.id, []).append(u)
        tariffs[m.tariff.id] = m.tariff
        detail = {name: float(k) for name, k in zip(sched.names, u.band_kwh.tolist(), strict=True)}
        detail["total"] = u.total_kwh
        meters[m.energy] = detail
    lines: list[BillLine] = []
    energy = 0.0
    many = len(groups) > 1
    for tid, us in groups.items():
        total = us[0]
        for u in us[1:]:
            total = total + u
        energy += total.total_kwh
        lines += price_usage(tariffs[tid], total, f"{tid}: " if many else "")
    return AccountBill(acct.id, acct.config.tenant, energy, lines, 0.0, meters)


def _loss_price(site: BillingSite, acct: ResolvedAccount, bill: AccountBill) -> Decimal:
    b = site.building(acct.building) if acct.building is not None else None
    if b is not None and b.electricity is not None and b.electricity.loss_price is not None:
        return b.electricity.loss_price
    if acct.tariff.loss_price is not None:
        return acct.tariff.loss_price
    if bill.energy_kwh > 0:
        avg = bill.energy_amount / Decimal(repr(round(bill.energy_kwh, 6)))
        return avg.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return base_price(acct.tariff)


def bill_accounts(
    site: BillingSite,
    source: ReadingSource,
    start: float,
    end: float,
    *,
    accounts: Iterable[str] | None = None,
    shared: bool = True,
) -> BillRun:
    """Return the bills of ``[start, end)``; ``accounts`` limits the run (KeyError if unknown).

    With ``shared`` each building with ``electricity`` gets its shared loss computed from all
    its accounts (also those not asked for) and the asked accounts get their line.
    """
    if end <= start:
        raise ValueError(f"empty billing period: {start} .. {end}")
    resolved = resolve_accounts(site)
    by_id = {a.id: a for a in resolved}
    wanted = list(by_id) if accounts is None else list(accounts)
    for account_id in wanted:
        if account_id not in by_id:
            raise KeyError(f"unknown account {account_id!r}")
    p = _Pricer(site, source, start, end)
    bills: dict[str, AccountBill] = {}
    run = BillRun(start, end, [])
    needed = set(wanted)
    if shared:
        for acct in resolved:
            if acct.id in needed and acct.building is not None:
                b = site.building(acct.building)
                if b.electricity is not None:
                    needed |= {x.id for x in resolved if x.building == b.id}
    for a in resolved:
        if a.id in needed:
            bills[a.id] = _bill_one(p, a)
    if shared:
        for b in site.buildings:
            e = b.electricity
            members = [a for a in resolved if a.building == b.id]
            if e is None or not members or not any(a.id in wanted for a in members):
                continue
            master = p.curve(e.master_tag).energy(start, end)
            loss = allocate_loss(
                b.id,
                master,
                {a.id: bills[a.id].energy_kwh for a in members},
                {a.id: a.area_m2 for a in members},
                e.allocate_by,
            )
            run.losses[b.id] = loss
            for a in members:
                if a.id not in wanted:
                    continue
                bill = bills[a.id]
                kwh = loss.parts.get(a.id, 0.0)
                bill.shared_kwh = kwh
                bill.lines.append(make_line(SHARED_LOSS_LINE, kwh, _loss_price(site, a, bill)))
    run.accounts = [bills[a] for a in wanted]
    return run
