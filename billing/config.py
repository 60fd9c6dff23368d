"""Pydantic models of the ``tariffs`` and ``accounts`` sections and of a building's ``electricity``,
``heat`` and ``households``.

Money (prices, thresholds, amounts) is ``decimal.Decimal``: write it as a string (``"0.4883"``);
a YAML float is taken by its shortest representation. Every model forbids unknown keys and is
frozen. Cross references (unknown tariff, unknown meter tag, duplicate account) are checked by
``scada.config.checks`` where the YAML line is known.

This module imports nothing from ``scada.config`` (which imports it), only pydantic and
``configbase``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from configbase.model import ConfigModel as _Model
from configbase.model import Id

__all__ = [
    "AccountConfig",
    "Band",
    "ElectricityConfig",
    "HeatArrearsConfig",
    "HeatConfig",
    "HeatTariff",
    "HouseholdConfig",
    "MeterConfig",
    "Money",
    "Season",
    "TariffConfig",
    "Tier",
    "VacantConfig",
    "parse_hours",
    "to_money",
]

DAY_MIN = 24 * 60


def to_money(value: Any) -> Any:
    """Return ``value`` as Decimal (strings and ints exactly, floats by their shortest repr)."""
    if isinstance(value, bool):
        raise ValueError('expected an amount such as "0.30"')
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
        if not d.is_finite():
            raise ValueError(f"not a finite amount: {value!r}")
        return d
    return value


Money = Annotated[Decimal, BeforeValidator(to_money)]
Price = Annotated[Decimal, BeforeValidator(to_money), Field(ge=0)]

_SPAN_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def parse_hours(text: str) -> list[tuple[int, int]]:
    """Return ``"HH:MM-HH:MM"`` as minute ranges ``[(start, end)]`` of one day (end exclusive).

    ``24:00`` is the end of the day; a range whose end is before its start runs past midnight
    and is returned as two ranges. Raises ``ValueError`` naming the text.
    """
    m = _SPAN_RE.match(text.strip())
    if m is None:
        raise ValueError(f"time range {text!r}: expected HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    for h, mm in ((h1, m1), (h2, m2)):
        if mm > 59 or h > 24 or (h == 24 and mm != 0):
            raise ValueError(f"time range {text!r}: {h:02d}:{mm:02d} is not a time of day")
    a, b = h1 * 60 + m1, h2 * 60 + m2
    if a == DAY_MIN:
        raise ValueError(f"time range {text!r}: cannot start at 24:00")
    if a == b:
        raise ValueError(f"time range {text!r} is empty")
    if b > a:
        return [(a, b)]
    return [(a, DAY_MIN), (0, b)] if b > 0 else [(a, DAY_MIN)]


class Band(_Model):
    """A time-of-use band: a name (sharp / peak / flat / valley ...), a price, local hours."""

    name: Annotated[str, StringConstraints(min_length=1)]
    price: Price
    hours: list[str] = Field(min_length=1, description='local times, e.g. ["23:00-07:00"]')

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_hours(text)
        return v

    def minutes(self) -> list[tuple[int, int]]:
        """Return the band's minute ranges of the day."""
        return [r for text in self.hours for r in parse_hours(text)]


def _check_bands(bands: list[Band]) -> None:
    """Raise ``ValueError`` unless the bands cover each minute of the day exactly once."""
    if not bands:
        return
    names = [b.name for b in bands]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate band name {sorted(dup)[0]!r}")
    spans = sorted((a, b, band.name) for band in bands for a, b in band.minutes())
    pos = 0
    for a, b, name in spans:
        if a < pos:
            raise ValueError(f"band {name!r} overlaps another band at {a // 60:02d}:{a % 60:02d}")
        if a > pos:
            raise ValueError(
                f"no band covers {pos // 60:02d}:{pos % 60:02d}-{a // 60:02d}:{a % 60:02d}"
            )
        pos = b
    if pos < DAY_MIN:
        raise ValueError(f"no band covers {pos // 60:02d}:{pos % 60:02d}-24:00")


class Season(_Model):
    """Seasonal bands: used in the listed months (1..12) instead of the tariff's own bands."""

    name: str
    months: list[Annotated[int, Field(ge=1, le=12)]] = Field(min_length=1)
    bands: list[Band] = Field(min_length=1)

    @model_validator(mode="after")
    def _cover(self) -> Season:
        _check_bands(self.bands)
        return self


class Tier(_Model):
    """A monthly tier: energy of the calendar month up to ``up_to_kwh`` (the last tier: no limit).

    In a tariff without bands or flat price, ``price`` is the energy price of the tier; in a
    time-of-use (or flat) tariff, ``surcharge`` is added per kWh of the tier on top of it.
    """

    up_to_kwh: float | None = Field(None, gt=0)
    price: Price | None = None
    surcharge: Price | None = None


class TariffConfig(_Model):
    """An electricity tariff: flat ``price``, time-of-use ``bands`` (with ``seasons``) and/or ``tiers``.

    Forms: ``price`` alone (flat); ``bands`` (TOU; ``seasons`` override them in their months);
    ``tiers`` with ``price`` each (stepped on the calendar month's cumulative energy); ``bands``
    or ``price`` plus ``tiers`` with ``surcharge`` each (a surcharge per tier on top).
    ``loss_price`` prices the shared-loss energy (default: the account's average price).
    """

    id: Id
    name: str = ""
    description: str = ""
    price: Price | None = None
    bands: list[Band] = Field(default_factory=list)
    seasons: list[Season] = Field(default_factory=list)
    tiers: list[Tier] = Field(default_factory=list)
    loss_price: Price | None = None

    @model_validator(mode="after")
    def _form(self) -> TariffConfig:
        if self.price is not None and (self.bands or self.seasons):
            raise ValueError("give either a flat `price` or `bands`, not both")
        if self.seasons and not self.bands:
            raise ValueError("`seasons` vary the `bands`: give default `bands` too")
        if self.price is None and not self.bands and not self.tiers:
            raise ValueError("a tariff needs `price`, `bands` or `tiers`")
        _check_bands(self.bands)
        months = [m for s in self.seasons for m in s.months]
        dup = {m for m in months if months.count(m) > 1}
        if dup:
            raise ValueError(f"month {sorted(dup)[0]} is in more than one season")
        base = self.price is not None or bool(self.bands)
        last = None
        for i, t in enumerate(self.tiers):
            is_last = i == len(self.tiers) - 1
            if t.up_to_kwh is None and not is_last:
                raise ValueError(f"tiers[{i}]: only the last tier may leave out `up_to_kwh`")
            if t.up_to_kwh is not None and is_last:
                raise ValueError(f"tiers[{i}]: the last tier has no `up_to_kwh` (it has no limit)")
            if t.up_to_kwh is not None:
                if last is not None and t.up_to_kwh <= last:
                    raise ValueError(f"tiers[{i}]: up_to_kwh must grow from tier to tier")
                last = t.up_to_kwh
            if base and t.price is not None:
                raise ValueError(
                    f"tiers[{i}]: with `bands` or a flat `price` a tier gives `surcharge`, not `price`"
                )
            if not base and t.price is None:
                raise ValueError(f"tiers[{i}]: missing `price`")
            if not base and t.surcharge is not None:
                raise ValueError(f"tiers[{i}]: `surcharge` needs `bands` or a flat `price`")
        return self

    def bands_for_month(self, month: int) -> list[Band]:
        """Return the bands in force in ``month`` (1..12): a season's, else the default ones."""
        for s in self.seasons:
            if month in s.months:
                return list(s.bands)
        return list(self.bands)


#: The most power a meter draws when neither it nor its account says (a flat or a small shop).
DEFAULT_MAX_KW = 100.0


class MeterConfig(_Model):
    """A meter of an account: its energy tag and, if not the defaults, relay and power tags.

    Defaults: ``<device>.relay`` and ``<device>.power_kw`` where ``<device>`` is the energy
    tag without its last part (used only if those tags exist).
    """

    energy: str = Field(description="cumulative energy tag (kWh)")
    tariff: str | None = Field(None, description="this meter's tariff (default: the account's)")
    relay: str | None = None
    power: str | None = None
    overload_kw: float | None = Field(None, gt=0)
    max_kw: float | None = Field(
        None,
        gt=0,
        description="the most power this meter can draw (plausibility of readings and charges;"
        " default: the account's max_kw, else 100 kW)",
    )

    @property
    def device(self) -> str:
        """The energy tag without its last part (the meter's device id)."""
        return self.energy.rsplit(".", 1)[0]


def _meter(value: Any) -> Any:
    return {"energy": value} if isinstance(value, str) else value


class AccountConfig(_Model):
    """A prepaid account: tenant, tariff, meters and the warning thresholds.

    ``alarm1`` > ``alarm2`` are balances that raise alarm 1 and alarm 2; a balance at or below
    zero is arrears, which trips the meters' relays unless ``keep_power``. ``area_m2`` is used
    by shared-loss allocation (default: the household's area). ``building`` defaults to the
    building of the meters' devices.
    """

    id: Id
    tenant: str = ""
    tariff: str
    meters: list[Annotated[MeterConfig, BeforeValidator(_meter)]] = Field(min_length=1)
    area_m2: float | None = Field(None, gt=0)
    household: str | None = None
    building: str | None = None
    alarm1: Money = Decimal("0")
    alarm2: Money = Decimal("0")
    keep_power: bool = False
    overload_kw: float | None = Field(
        None, gt=0, description="default overload limit of each meter"
    )
    opening_balance: Money = Decimal("0")
    phone: str | None = None
    email: str | None = None
    max_kw: float | None = Field(
        None, gt=0, description="default most power of each meter (plausibility)"
    )
    hold_multiple: float = Field(
        5.0,
        gt=1,
        description="a month's consumption above this multiple of the account's highest daily"
        " rate of an earlier month is held for review, not charged",
    )
    moved_in: datetime | None = Field(
        None, description="start of this tenancy (a tenant change; none: from the start)"
    )
    moved_out: datetime | None = Field(
        None, description="end of this tenancy (exclusive; a tenant change; none: open)"
    )

    @model_validator(mode="after")
    def _tenancy(self) -> AccountConfig:
        a, b = self.moved_in, self.moved_out
        if a is not None and b is not None and (a.tzinfo is None) == (b.tzinfo is None) and b <= a:
            raise ValueError(f"moved_out ({b.isoformat()}) is not after moved_in ({a.isoformat()})")
        return self

    @model_validator(mode="after")
    def _levels(self) -> AccountConfig:
        if self.alarm2 > self.alarm1:
            raise ValueError(f"alarm2 ({self.alarm2}) must not be above alarm1 ({self.alarm1})")
        if self.alarm2 < 0:
            raise ValueError("alarm2 must not be negative (zero and below is arrears)")
        tags = [m.energy for m in self.meters]
        dup = {t for t in tags if tags.count(t) > 1}
        if dup:
            raise ValueError(f"meter {sorted(dup)[0]!r} is listed twice")
        return self

    def overload_of(self, meter: MeterConfig) -> float | None:
        """Return the overload limit of ``meter`` (its own, else the account's)."""
        return meter.overload_kw if meter.overload_kw is not None else self.overload_kw

    def max_kw_of(self, meter: MeterConfig) -> float:
        """Return the most power ``meter`` can draw: its own, the account's, else 100 kW."""
        for v in (meter.max_kw, self.max_kw):
            if v is not None:
                return v
        return DEFAULT_MAX_KW


class ElectricityConfig(_Model):
    """A building's electricity: its master meter and how shared losses are allocated.

    Shared energy = master meter minus the sum of the building's account meters, allocated
    ``by: area`` (account ``area_m2``) or ``by: consumption``.
    """

    master_tag: str
    allocate_by: Literal["area", "consumption"] = "area"
    loss_price: Price | None = Field(None, description="default: the tariff's / account's price")


#: GJ per kWh and per Gcal: heat energy prices are converted with these exact factors.
GJ_PER_KWH = Decimal("0.0036")
GJ_PER_GCAL = Decimal("4.1868")

Ratio = Annotated[Decimal, BeforeValidator(to_money), Field(ge=0)]

_MONTH_DAY_RE = re.compile(r"^(\d{2})-(\d{2})$")
_ENERGY_PRICES = ("energy_price_per_gj", "energy_price_per_kwh", "energy_price_per_gcal")


def _month_day(value: str) -> str:
    """Return ``value`` if it is a day of the year as ``"MM-DD"`` (``"02-29"`` allowed)."""
    m = _MONTH_DAY_RE.match(value)
    if m is None:
        raise ValueError(f'{value!r}: expected a day of the year as MM-DD, e.g. "11-15"')
    try:
        date(2000, int(m.group(1)), int(m.group(2)))  # a leap year: 02-29 is a day
    except ValueError:
        raise ValueError(f"{value!r} is not a day of the year") from None
    return value


class HeatTariff(_Model):
    """A two-part heat price: an area fee for the season, split into basic and metered parts.

    ``area fee = area_m2 x area_price_per_m2`` (the season's full fee, due in advance);
    ``basic = area fee x basic_ratio``; ``metered = heat x energy price`` (exactly one of
    ``energy_price_per_gj`` / ``_per_kwh`` / ``_per_gcal``); ``total = basic + metered`` held
    between ``area fee x min_ratio`` and ``area fee x max_ratio``; a suspended household pays
    ``area fee x suspended_ratio`` (default: ``basic_ratio``). Each amount is rounded half-up to
    the cent (``billing.heat_fees``). ``season_start`` / ``season_end`` (``"MM-DD"``) bound the
    heating season (the season runs past New Year when the end is before the start).
    """

    area_price_per_m2: Price = Field(description="the season's full area fee per m2")
    basic_ratio: Ratio = Field(le=1, description="basic fee = area fee x basic_ratio (0..1)")
    energy_price_per_gj: Price | None = None
    energy_price_per_kwh: Price | None = None
    energy_price_per_gcal: Price | None = None
    min_ratio: Ratio | None = Field(None, description="floor of the total: area fee x min_ratio")
    max_ratio: Ratio | None = Field(None, description="cap of the total: area fee x max_ratio")
    suspended_ratio: Ratio | None = Field(
        None,
        le=1,
        description="a suspended household pays area fee x suspended_ratio (default: basic_ratio)",
    )
    season_start: str = Field("11-15", description="first day of the heating season, MM-DD")
    season_end: str = Field("03-15", description="last day of the heating season, MM-DD")

    # Checks between fields are field validators of the later field (``info.data`` holds the
    # earlier ones), so ``scada check`` points at the field to change, not at the whole tariff.

    @field_validator("energy_price_per_kwh", "energy_price_per_gcal")
    @classmethod
    def _one_price(cls, v: Decimal | None, info: ValidationInfo) -> Decimal | None:
        earlier = _ENERGY_PRICES[: _ENERGY_PRICES.index(str(info.field_name))]
        given = [n for n in earlier if info.data.get(n) is not None]
        if v is not None and given:
            raise ValueError(f"give exactly one energy price: {given[0]} is given already")
        return v

    @field_validator("max_ratio")
    @classmethod
    def _cap(cls, v: Decimal | None, info: ValidationInfo) -> Decimal | None:
        lo, basic = info.data.get("min_ratio"), info.data.get("basic_ratio")
        if v is not None and lo is not None and lo > v:
            raise ValueError(f"max_ratio ({v}) must not be below min_ratio ({lo})")
        if v is not None and basic is not None and basic > v:
            raise ValueError(f"max_ratio ({v}) must not be below basic_ratio ({basic})")
        return v

    @field_validator("season_start", "season_end")
    @classmethod
    def _season_day(cls, v: str, info: ValidationInfo) -> str:
        _month_day(v)
        if info.field_name == "season_end" and v == info.data.get("season_start"):
            raise ValueError(f"season_end is season_start ({v}): the season has no length")
        return v

    @model_validator(mode="after")
    def _a_price(self) -> HeatTariff:
        if all(
            p is None
            for p in (
                self.energy_price_per_gj,
                self.energy_price_per_kwh,
                self.energy_price_per_gcal,
            )
        ):
            raise ValueError(
                "missing the energy price: give one of energy_price_per_gj,"
                " energy_price_per_kwh, energy_price_per_gcal"
            )
        return self

    @property
    def energy_price(self) -> tuple[str, Decimal]:
        """Return ``(unit, price)`` of the energy price: unit ``GJ``, ``kWh`` or ``Gcal``."""
        if self.energy_price_per_gj is not None:
            return "GJ", self.energy_price_per_gj
        if self.energy_price_per_kwh is not None:
            return "kWh", self.energy_price_per_kwh
        assert self.energy_price_per_gcal is not None  # the validator wants exactly one
        return "Gcal", self.energy_price_per_gcal

    def energy_cost(self, heat_kwh: Decimal) -> Decimal:
        """Return ``heat_kwh`` x the energy price, unrounded (1 kWh = 0.0036 GJ = 1/1163 Gcal)."""
        unit, price = self.energy_price
        if unit == "kWh":
            return heat_kwh * price
        if unit == "GJ":
            return heat_kwh * GJ_PER_KWH * price
        # multiply first, divide last: 1 Gcal = 4.1868 GJ = 1163 kWh exactly
        return heat_kwh * GJ_PER_KWH * price / GJ_PER_GCAL

    @property
    def suspended_fee_ratio(self) -> Decimal:
        """The ratio of the area fee a suspended household pays."""
        return self.basic_ratio if self.suspended_ratio is None else self.suspended_ratio


class HeatArrearsConfig(_Model):
    """Arrears enforcement of a building's heat accounts (``billing.heat_arrears``).

    A heat account whose oldest unpaid charge is older than ``grace_days`` has its household's
    valve locked (commanded closed through the command service) when ``lock`` is true; a
    payment that clears the overdue charges opens it again. ``cold_weather_tag`` (an outdoor
    temperature, degC) below ``cold_weather_below_c`` exempts every household of the building
    (nothing is locked, valves locked for arrears are opened); a tag without a good value counts
    as cold (the safe side).
    """

    grace_days: int = Field(15, ge=0, description="days an unpaid heat charge may stay unpaid")
    lock: bool = Field(True, description="lock the valve of an account overdue (false: alarm only)")
    cold_weather_tag: str | None = Field(None, description="outdoor temperature tag (degC)")
    cold_weather_below_c: float | None = Field(
        None, description="no lock while the outdoor temperature is below this"
    )

    @model_validator(mode="after")
    def _cold(self) -> HeatArrearsConfig:
        if (self.cold_weather_tag is None) != (self.cold_weather_below_c is None):
            raise ValueError("give cold_weather_tag and cold_weather_below_c together")
        return self


class HeatConfig(_Model):
    """A building's heat metering: the tags of its heat meter and the allocation parameters.

    ``basic_share`` (0..1) of the heat is shared by area alone, the rest by area x valve-open
    time x position factor. ``price_per_kwh`` is money: write it as a string (``"0.30"``).
    """

    energy_tag: str
    basic_share: float = Field(0.0, ge=0, le=1)
    price_per_kwh: Decimal | None = Field(None, ge=0)
    tariff: HeatTariff | None = Field(
        None, description="two-part heat price (default: the site's `heat_tariff`)"
    )
    power_tag: str | None = None
    supply_tag: str | None = None
    return_tag: str | None = None
    flow_tag: str | None = None
    room_min_c: float = Field(
        18.0, description="room temperature a flat must reach (degC; the room_compliance report)"
    )
    room_hours: str | None = Field(
        None,
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
        description='heating hours the minimum applies to, local time ("06:00-22:00"; default all day)',
    )
    arrears: HeatArrearsConfig | None = Field(
        None, description="arrears enforcement of the heat accounts (valve lock)"
    )

    @field_validator("price_per_kwh", mode="before")
    @classmethod
    def _money(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('expected a price such as "0.30"')
        if isinstance(value, float):
            return Decimal(repr(value))  # the shortest repr is what was written
        if isinstance(value, str):
            try:
                return Decimal(value.strip())
            except InvalidOperation:
                raise ValueError(f"not a decimal number: {value!r}") from None
        return value


class VacantConfig(_Model):
    """A flat without a tenant from ``from`` (until ``until``, both days included, site time).

    No tenant account: its heat basic part is charged to ``owner`` (the owner's or property
    account) at ``area fee x heat_basic_ratio`` for the vacant days (``billing.tenancy``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: date = Field(alias="from", description="first vacant day (site time)")
    until: date | None = Field(None, description="last vacant day (none: still vacant)")
    heat_basic_ratio: Ratio = Field(
        le=1, description="the owner pays area fee x this ratio for the vacant days"
    )
    owner: str = Field(
        "owner", min_length=1, description="who is billed (owner / property account)"
    )

    @model_validator(mode="after")
    def _days(self) -> VacantConfig:
        if self.until is not None and self.until < self.from_:
            raise ValueError(f"until ({self.until}) is before from ({self.from_})")
        return self

    def covers(self, day: date) -> bool:
        """Return True if the flat is vacant on ``day``."""
        return self.from_ <= day and (self.until is None or day <= self.until)


class HouseholdConfig(_Model):
    """A dwelling (or shop): its area, position factor and the tags that belong to it."""

    id: Id
    name: str = ""
    description: str = ""
    tenant: str = Field(
        "", description="the occupant (the roster's tenant) when no account of the household says"
    )
    phone: str | None = Field(None, description="the occupant's phone (the roster's)")
    email: str | None = Field(None, description="the occupant's e-mail (the roster's)")
    area_m2: float = Field(gt=0)
    position_factor: float = Field(1.0, gt=0)
    valve_tag: str | None = Field(
        None, description="on/off valve state (required in a building with heat)"
    )
    room_tag: str | None = None
    setpoint_tag: str | None = None
    floor: int | None = None
    tags: list[str] = Field(default_factory=list, description="other tags of this household")
    keep_heat: bool = Field(
        False,
        description="never lock the valve for arrears (vulnerable household; audited override)",
    )
    suspended: bool = Field(
        False, description="heating suspended (fee: area fee x the tariff's suspended_ratio)"
    )
    suspended_from: date | None = Field(None, description="first day suspended (site time)")
    suspended_until: date | None = Field(None, description="last day suspended (site time)")
    vacant: VacantConfig | None = Field(
        None, description="no tenant from a day: the owner pays a reduced heat basic fee"
    )

    @field_validator("suspended_from", "suspended_until")
    @classmethod
    def _suspension(cls, v: date | None, info: ValidationInfo) -> date | None:
        if v is None:
            return v
        if not info.data.get("suspended"):
            raise ValueError(f"{info.field_name} needs `suspended: true`")
        start = info.data.get("suspended_from")
        if info.field_name == "suspended_until" and start is not None and v < start:
            raise ValueError(f"suspended_until ({v}) is before suspended_from ({start})")
        return v
