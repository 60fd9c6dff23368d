"""Each tenant's share of a billed period split by a tenant change at ``T``.

Over ``[start, end)`` with the change at ``T`` (``start < T < end``), the old tenant's account
pays for ``[start, T)`` and the new tenant's for ``[T, end)``:

* **electricity by reading**: each account's bill over its part (``billing.bills``: the
  meters' readings, tiers stepped on the calendar month, no shared loss), so the kWh are the
  reading at ``T`` minus the one at ``start`` and the reading at ``end`` minus the one at ``T``;
* **heat basic part by days**: the household's ``basic`` of the window (``billing.heat_fees``)
  times the local days of the window before ``T`` over the window's days (the day of ``T``
  goes to the old tenant unless ``T`` is local midnight), rounded half-up to the cent; the new
  tenant pays the rest;
* **heat metered part by valve time** (the on-off time area method): the household's allocated
  heat and ``metered`` money times the valve-open seconds before ``T`` over those of the window
  (by days when the valve was never open); the new tenant has the rest;
* what the floor, the cap or a suspension added to the fee (``other``) goes by days.

So the two shares add up to the household's fee and the meters' energy exactly. Pure functions
apart from ``split_tenancy``, which reads the historian (blocking).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.bills import bill_accounts
from billing.heat import allocate_heat
from billing.heat_fees import HeatFee, heat_fees, window_days
from billing.periods import cents
from tags.model import iso

if TYPE_CHECKING:
    from billing.readings import ReadingSource
    from billing.site import BillingSite
    from historian.base import Historian

__all__ = ["TenancyShare", "TenancySplit", "split_heat", "split_tenancy"]

ZERO = Decimal("0.00")
_KWH = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class TenancyShare:
    """One tenant's part of the period: electricity by reading, heat by days and valve time."""

    account: str
    start: float
    end: float
    electricity_kwh: float = 0.0
    electricity: Decimal = ZERO
    heat_days: int = 0
    valve_hours: float = 0.0
    heat_kwh: Decimal = Decimal("0")
    heat_basic: Decimal = ZERO
    heat_metered: Decimal = ZERO
    heat_other: Decimal = ZERO

    @property
    def heat_total(self) -> Decimal:
        """The tenant's heat fee: basic + metered + other."""
        return self.heat_basic + self.heat_metered + self.heat_other

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (money as strings)."""
        return {
            "account": self.account,
            "start": iso(self.start),
            "end": iso(self.end),
            "electricity_kwh": round(self.electricity_kwh, 6),
            "electricity": str(self.electricity),
            "heat_days": self.heat_days,
            "valve_hours": round(self.valve_hours, 6),
            "heat_kwh": float(self.heat_kwh),
            "heat_basic": str(self.heat_basic),
            "heat_metered": str(self.heat_metered),
            "heat_other": str(self.heat_other),
            "heat_total": str(self.heat_total),
        }


@dataclass(frozen=True, slots=True)
class TenancySplit:
    """The period split by a tenant change: ``before`` (old tenant) and ``after`` (new)."""

    household: str | None
    at: float
    before: TenancyShare
    after: TenancyShare
    fee: HeatFee | None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form; ``heat_fee`` is the household's whole fee of the period."""
        return {
            "household": self.household,
            "at": iso(self.at),
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "heat_fee": None if self.fee is None else self.fee.to_json(),
        }


def _ratio(part: Decimal, num: float, den: float) -> Decimal:
    """``part x num / den`` rounded half-up to the cent (exact decimal of the floats)."""
    if den <= 0:
        return ZERO
    return cents(part * Decimal(repr(float(num))) / Decimal(repr(float(den))))


def split_heat(
    fee: HeatFee, days_before: int, open_before_s: float, open_after_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a household's heat fee by days (basic, other) and valve-open time (metered, heat).

    ``days_before``: local days of the window up to the change; the window has
    ``fee.window_days``. Returns the fields of each ``TenancyShare`` (before, after); each pair
    adds up to the fee's figure exactly.
    """
    n = fee.window_days
    d1 = max(0, min(days_before, n))
    other = fee.total - fee.basic - fee.metered
    basic1 = _ratio(fee.basic, d1, n)
    other1 = _ratio(other, d1, n)
    open_s = open_before_s + open_after_s
    if open_s > 0:
        metered1 = _ratio(fee.metered, open_before_s, open_s)
        heat1 = (fee.heat_kwh * Decimal(repr(open_before_s)) / Decimal(repr(open_s))).quantize(_KWH)
    else:
        metered1 = _ratio(fee.metered, d1, n)
        heat1 = (fee.heat_kwh * d1 / n).quantize(_KWH) if n else Decimal("0")
    before = {
        "heat_days": d1,
        "valve_hours": open_before_s / 3600.0,
        "heat_kwh": heat1,
        "heat_basic": basic1,
        "heat_metered": metered1,
        "heat_other": other1,
    }
    after = {
        "heat_days": n - d1,
        "valve_hours": open_after_s / 3600.0,
        "heat_kwh": fee.heat_kwh - heat1,
        "heat_basic": fee.basic - basic1,
        "heat_metered": fee.metered - metered1,
        "heat_other": other - other1,
    }
    return before, after


def _electricity(
    site: BillingSite, source: ReadingSource, account: str, start: float, end: float
) -> dict[str, Any]:
    bill = bill_accounts(site, source, start, end, accounts=[account], shared=False).accounts[0]
    return {"electricity_kwh": bill.energy_kwh, "electricity": bill.energy_amount}


def split_tenancy(
    site: BillingSite,
    source: ReadingSource,
    historian: Historian | None,
    old: str,
    new: str,
    *,
    start: float,
    at: float,
    end: float,
    household: str | None = None,
) -> TenancySplit:
    """Return each tenant's share of ``[start, end)`` split at ``at`` (the module docstring).

    ``old`` / ``new``: the accounts before and after (both configured: the change's
    ``moved_out`` / ``moved_in``). ``household``: the flat whose heat fee is split (None: no
    heat; also when ``historian`` is None or its building has no heat tariff). ``ValueError``
    unless ``start < at < end``.
    """
    if not start < at < end:
        raise ValueError(f"the change {iso(at)} is not inside {iso(start)} .. {iso(end)}")
    one = _electricity(site, source, old, start, at)
    two = _electricity(site, source, new, at, end)
    fee = None
    if household is not None and historian is not None:
        building = site.household_building(household)
        if building is not None:
            allocation = allocate_heat(site, historian, start, end, buildings=[building])
            fee = next(
                (f for f in heat_fees(site, allocation, start, end) if f.household == household),
                None,
            )
    if fee is not None:
        valve = next(h.valve_tag for h in site.households() if h.id == household)
        assert valve is not None  # (allocated households have a valve)
        first, last = window_days(start, at, site.site.timezone)
        h1, h2 = split_heat(
            fee,
            (last - first).days + 1,
            historian.on_time(valve, start, at) if historian else 0.0,
            historian.on_time(valve, at, end) if historian else 0.0,
        )
        one.update(h1)
        two.update(h2)
    return TenancySplit(
        household,
        at,
        TenancyShare(old, start, at, **one),
        TenancyShare(new, at, end, **two),
        fee,
    )
