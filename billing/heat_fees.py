"""Heat fees: the two-part heat price of each household, from the heat allocation.

A building's ``heat.tariff`` (else the site's ``heat_tariff``, see ``tariff_of``) prices the
households of ``billing.heat``'s allocation for a billed window (normally the heating season):

- ``area fee = area_m2 x area_price_per_m2``, rounded half-up to the cent; it is the
  ``advance`` due before the season (whatever was paid: ``paid`` is what the ledger holds);
- ``basic = area fee x basic_ratio``; ``metered = heat x energy price`` (per kWh, per GJ with
  1 kWh = 0.0036 GJ, or per Gcal with 1 Gcal = 4.1868 GJ); ``floor = area fee x min_ratio`` and
  ``cap = area fee x max_ratio`` when given; each rounded half-up to the cent;
- ``total = basic + metered`` held between floor and cap; ``settlement = advance - total``
  (positive: money back to the household, negative: still to pay).

Suspension (``suspended: true`` on the household, optionally from / until a date) changes the
fee, never the allocation: the household keeps its place in the allocation and its heat is
reported, not billed. With ``s`` = the share of the window's days inside the suspension (a
local calendar day counts when the window covers any part of it; ``suspended_from`` and
``suspended_until`` are both days of the suspension), the active part is priced as above with
basic, metered, floor and cap each times ``1 - s``, and the suspended part is
``suspended_fee = area fee x suspended_ratio x s``; ``total = held(basic + metered) +
suspended_fee``. A household suspended over the whole window pays ``area fee x suspended_ratio``
alone (no floor, no cap). Each product is rounded once, after multiplying by the exact day
fraction.

A **vacant** flat (``vacant: {from, until, heat_basic_ratio, owner}`` on the household) is priced
like a suspension over its vacant days with ``heat_basic_ratio`` in place of the suspended
ratio (the reduced basic fee many heating companies charge for an empty flat); the fee names
the ``owner`` who pays it and the suspension is then not counted again. The allocation keeps
the flat's area.

Money is Decimal throughout. Everything but ``paid_into`` (which reads the ledger: what each
household paid into its heat account) is pure arithmetic on the allocation, without I/O.
"""

from __future__ import annotations

import importlib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from billing.periods import cents, energy_decimal, local_midnight

if TYPE_CHECKING:
    from billing.config import HeatTariff, HouseholdConfig
    from billing.heat import HeatAllocation
    from billing.ledger import Ledger
    from billing.site import BillingSite

__all__ = [
    "FeeParts",
    "HeatFee",
    "HeatFees",
    "heat_account_of",
    "heat_fees",
    "household_fee",
    "paid_into",
    "payments_since",
    "suspension_days",
    "tariff_of",
    "vacancy_days",
    "window_days",
]

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class FeeParts:
    """The money of one household's heat fee (``household_fee``); all rounded to the cent.

    ``floor`` and ``cap`` are None when the tariff has no ``min_ratio`` / ``max_ratio`` or the
    household was suspended over the whole window.
    """

    area_fee: Decimal
    advance: Decimal
    basic: Decimal
    metered: Decimal
    floor: Decimal | None
    cap: Decimal | None
    suspended_fee: Decimal
    total: Decimal
    settlement: Decimal


@dataclass(frozen=True)
class HeatFee:
    """One household's heat fee over a billed window (see the module docstring).

    ``heat_kwh`` is the household's allocated heat (1e-6 kWh); ``suspended`` is True when some
    day of the window falls in its suspension (``suspended_days`` of them); ``paid`` is the net
    cash of its heat account in the ledger (None: not known). ``suspended_fee`` is the part of
    ``total`` charged for the suspended days.
    """

    household: str
    building: str
    area_m2: float
    heat_kwh: Decimal
    area_fee: Decimal
    advance: Decimal
    basic: Decimal
    metered: Decimal
    floor: Decimal | None
    cap: Decimal | None
    total: Decimal
    settlement: Decimal
    suspended: bool
    suspended_days: int
    paid: Decimal | None
    suspended_fee: Decimal = ZERO
    window_days: int = 0
    #: days of the window the flat was vacant (``suspended_fee`` is then the owner's reduced
    #: basic fee for them, billed to ``owner``; see ``billing.tenancy``)
    vacant_days: int = 0
    owner: str | None = None

    @property
    def limit(self) -> str | None:
        """Return ``"floor"`` or ``"cap"`` when the total was held there, else None."""
        held = self.total - self.suspended_fee
        if held == self.basic + self.metered:
            return None
        return "floor" if self.floor is not None and held == self.floor else "cap"

    def to_json(self) -> dict[str, Any]:
        """Return the household item of ``scada bill heat --json`` (money as strings)."""

        def money(d: Decimal | None) -> str | None:
            return None if d is None else str(d)

        return {
            "household": self.household,
            "building": self.building,
            "area_m2": self.area_m2,
            "heat_kwh": float(self.heat_kwh),
            "area_fee": str(self.area_fee),
            "advance": str(self.advance),
            "basic": str(self.basic),
            "metered": str(self.metered),
            "floor": money(self.floor),
            "cap": money(self.cap),
            "suspended_fee": str(self.suspended_fee),
            "total": str(self.total),
            "limit": self.limit,
            "settlement": str(self.settlement),
            "suspended": self.suspended,
            "suspended_days": self.suspended_days,
            "window_days": self.window_days,
            "paid": money(self.paid),
            "vacant_days": self.vacant_days,
            "owner": self.owner,
        }


def tariff_of(site: BillingSite, building_id: str) -> HeatTariff | None:
    """Return the heat tariff of a building: its ``heat.tariff``, else the site's ``heat_tariff``.

    None when neither is given, or the building has no ``heat`` section (nothing to price).
    KeyError for an unknown building.
    """
    heat = site.building(building_id).heat
    if heat is None:
        return None
    return heat.tariff if heat.tariff is not None else site.heat_tariff


def _days_share(share: float | Fraction | Decimal) -> tuple[int, int]:
    """Return ``share`` as ``(numerator, denominator)``: exact for a Fraction or Decimal, the
    nearest small ratio for a float (a ratio of days: 1/3, not 0.333...)."""
    if not share:
        return 0, 1
    if isinstance(share, Fraction):
        f = share
    elif isinstance(share, Decimal):
        f = Fraction(share)
    else:
        f = Fraction(share).limit_denominator(1_000_000)
    if not 0 <= f <= 1:
        raise ValueError(f"suspended share {share} is not between 0 and 1")
    return f.numerator, f.denominator


def _part(amount: Decimal, num: int, den: int) -> Decimal:
    """Return ``amount x num / den`` rounded half-up to the cent (multiply first, divide last)."""
    if num == den:
        return cents(amount)
    return cents(amount * num / den)


def household_fee(
    tariff: HeatTariff,
    area_m2: float,
    heat_kwh: Decimal,
    *,
    suspended_share: float | Fraction | Decimal = 0.0,
) -> FeeParts:
    """Return the fee of one household (the rules of the module docstring; pure).

    ``area_m2`` is taken by its shortest repr (``86.5`` is 86.5 exactly); ``heat_kwh`` is the
    household's allocated heat; ``suspended_share`` (0..1) the share of the window it was
    suspended (ValueError outside). A Fraction (or Decimal) share is used exactly.
    """
    num, den = _days_share(suspended_share)
    return _fee(tariff, _area_parts(tariff, area_m2, num, den), heat_kwh, num, den)


@dataclass(frozen=True, slots=True)
class _AreaParts:
    """The amounts that depend on the area alone (shared by households of the same size)."""

    area_fee: Decimal
    basic: Decimal
    floor: Decimal | None
    cap: Decimal | None
    suspended_fee: Decimal


def _area_parts(tariff: HeatTariff, area_m2: float, num: int, den: int) -> _AreaParts:
    """Return area fee, basic, floor, cap and suspended fee for a suspended share num / den."""
    area_fee = cents(Decimal(repr(float(area_m2))) * tariff.area_price_per_m2)
    active = den - num
    basic = ZERO
    floor: Decimal | None = None
    cap: Decimal | None = None
    if active:
        basic = _part(area_fee * tariff.basic_ratio, active, den)
        if tariff.min_ratio is not None:
            floor = _part(area_fee * tariff.min_ratio, active, den)
        if tariff.max_ratio is not None:
            cap = _part(area_fee * tariff.max_ratio, active, den)
    suspended = _part(area_fee * tariff.suspended_fee_ratio, num, den) if num else ZERO
    return _AreaParts(area_fee, basic, floor, cap, suspended)


def _fee(tariff: HeatTariff, area: _AreaParts, heat_kwh: Decimal, num: int, den: int) -> FeeParts:
    """``household_fee`` with the suspended share as ``num / den`` (days / window days)."""
    active = den - num
    metered = _part(tariff.energy_cost(heat_kwh), active, den) if active else ZERO
    held = area.basic + metered
    if area.floor is not None and held < area.floor:
        held = area.floor
    if area.cap is not None and held > area.cap:
        held = area.cap
    total = held + area.suspended_fee
    return FeeParts(
        area_fee=area.area_fee,
        advance=area.area_fee,
        basic=area.basic,
        metered=metered,
        floor=area.floor,
        cap=area.cap,
        suspended_fee=area.suspended_fee,
        total=total,
        settlement=area.area_fee - total,
    )


def _zone(tz: str | zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    return tz if isinstance(tz, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(tz)


def window_days(start: float, end: float, tz: str | zoneinfo.ZoneInfo) -> tuple[date, date]:
    """Return the first and last local day of ``[start, end)`` (a day counts when touched).

    An ``end`` at local midnight belongs to the next day: ``--from 2025-11-15 --to 2026-03-16``
    is 2025-11-15 .. 2026-03-15. ValueError when ``end <= start``.
    """
    if end <= start:
        raise ValueError(f"empty billing window: {start} .. {end}")
    z = _zone(tz)
    first = datetime.fromtimestamp(start, z).date()
    last_dt = datetime.fromtimestamp(end, z)
    last = last_dt.date()
    if last_dt.replace(tzinfo=None) == datetime(last.year, last.month, last.day):
        last -= timedelta(days=1)
    return first, max(first, last)


def suspension_days(household: HouseholdConfig, first: date, last: date) -> int:
    """Return how many days of ``first .. last`` (inclusive) the household was suspended.

    ``suspended`` without dates is the whole window; ``suspended_from`` / ``suspended_until``
    (inclusive, site time) bound it.
    """
    if not household.suspended:
        return 0
    a = max(first, household.suspended_from or first)
    b = min(last, household.suspended_until or last)
    return max(0, (b - a).days + 1)


def vacancy_days(household: HouseholdConfig, first: date, last: date) -> int:
    """Return how many days of ``first .. last`` (inclusive) the flat was vacant (``vacant``)."""
    v = household.vacant
    if v is None:
        return 0
    a = max(first, v.from_)
    b = min(last, v.until or last)
    return max(0, (b - a).days + 1)


def heat_fees(
    site: BillingSite,
    allocation: HeatAllocation,
    start: float,
    end: float,
    *,
    paid: Mapping[str, Decimal] | None = None,
) -> list[HeatFee]:
    """Return the fee of each allocated household of a building with a heat tariff.

    ``[start, end)`` (epoch seconds) is the billed window, normally the allocation's own;
    suspension shares are counted in its local days (``site.site.timezone``). ``paid`` maps
    household id to the net paid into its heat account (missing: ``paid`` None). Buildings
    without a tariff are left out. Order: the allocation's (buildings, then households).
    """
    first, last = window_days(start, end, site.site.timezone)
    n_days = (last - first).days + 1
    paid = paid or {}
    out: list[HeatFee] = []
    for b in allocation.buildings:
        tariff = tariff_of(site, b.id)
        if tariff is None:
            continue
        configs = {h.id: h for h in site.building(b.id).households}
        areas: dict[tuple[float, int, bool], _AreaParts] = {}  # households of one size share these
        for h in b.households:
            cfg = configs[h.id]
            vacant = vacancy_days(cfg, first, last)
            days = vacant or suspension_days(cfg, first, last)
            heat = energy_decimal(h.heat_kwh)
            priced = tariff
            if vacant and cfg.vacant is not None:  # vacant days: the owner's reduced basic fee
                priced = tariff.model_copy(update={"suspended_ratio": cfg.vacant.heat_basic_ratio})
            area = areas.get((h.area_m2, days, bool(vacant)))
            if area is None:
                area = _area_parts(priced, h.area_m2, days, n_days)
                areas[(h.area_m2, days, bool(vacant))] = area
            parts = _fee(priced, area, heat, days, n_days)
            out.append(
                HeatFee(
                    household=h.id,
                    building=b.id,
                    area_m2=h.area_m2,
                    heat_kwh=heat,
                    area_fee=parts.area_fee,
                    advance=parts.advance,
                    basic=parts.basic,
                    metered=parts.metered,
                    floor=parts.floor,
                    cap=parts.cap,
                    total=parts.total,
                    settlement=parts.settlement,
                    suspended=days > 0 and not vacant,
                    suspended_days=0 if vacant else days,
                    paid=paid.get(h.id),
                    suspended_fee=parts.suspended_fee,
                    window_days=n_days,
                    vacant_days=vacant,
                    owner=cfg.vacant.owner if vacant and cfg.vacant is not None else None,
                )
            )
    return out


@dataclass(frozen=True)
class HeatFees:
    """The heat fees of a billed window: ``scada bill heat --json`` and the REST answer."""

    start: float
    end: float
    fees: list[HeatFee]

    def to_json(self) -> dict[str, Any]:
        """Return ``{"start", "end", "households": [...]}`` (money as strings)."""
        from tags.model import iso

        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "households": [f.to_json() for f in self.fees],
        }


def _day_of(year: int, month_day: str) -> date:
    """Return ``"MM-DD"`` in ``year`` (``02-29`` is the 28th in a common year)."""
    month, day = (int(x) for x in month_day.split("-"))
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, month, day - 1)


def payments_since(tariff: HeatTariff, start: float, tz: str | zoneinfo.ZoneInfo) -> float:
    """Return when the payments for the season billed from ``start`` begin (epoch seconds).

    Local midnight after the last ``season_end`` strictly before the window's first day: a
    window from 2025-11-15 with ``season_end`` 03-15 counts payments from 2025-03-16, so the
    advance paid in summer counts and last season's settlement does not.
    """
    first = datetime.fromtimestamp(start, _zone(tz)).date()
    end = _day_of(first.year, tariff.season_end)
    if end >= first:
        end = _day_of(first.year - 1, tariff.season_end)
    return local_midnight(end + timedelta(days=1), tz)


def heat_account_of() -> Callable[[str], str]:
    """Return the function naming a household's heat account (``billing.heat_accounts``).

    Falls back to ``"<household>.heat"`` while that module is not installed.
    """
    try:
        module = importlib.import_module("billing.heat_accounts")
    except ModuleNotFoundError:
        return lambda household: f"{household}.heat"
    fn: Callable[[str], str] = module.heat_account_id
    return fn


#: Cash entries: what a household paid (top-ups less refunds, and their reversals).
_CASH = ("topup", "refund")


def paid_into(ledger: Ledger, since: Mapping[str, float], until: float) -> dict[str, Decimal]:
    """Return the net cash paid into each household's heat account in ``[since[h], until)``.

    ``since`` maps household id to the start of its payments (``payments_since``). Households
    whose heat account is not open are left out (``paid`` unknown). Reads the ledger once.
    """
    from billing.ledger import EntryKind

    account_of = heat_account_of()
    accounts = {account_of(h): h for h in since}
    opened = {r[0] for r in ledger.query("SELECT account FROM entries WHERE kind = 'opening'")}
    out = {h: ZERO for a, h in accounts.items() if a in opened}
    if not out:
        return out
    lo = min(since.values())
    entries = [
        e
        for e in ledger.entries(
            since=lo, until=until, kinds=[EntryKind.TOPUP, EntryKind.REFUND, EntryKind.REVERSAL]
        )
        if e.account in accounts and accounts[e.account] in out
    ]
    kinds = {e.seq: e.kind.value for e in entries}
    for e in entries:
        h = accounts[e.account]
        if e.ts < since[h]:
            continue
        kind = e.kind.value
        if kind == "reversal" and e.reverses is not None:
            target = kinds.get(e.reverses)
            if target is None:
                original = ledger.entry(e.reverses)
                target = None if original is None else original.kind.value
            kind = target or ""
        if kind in _CASH:
            out[h] += e.amount
    return out
