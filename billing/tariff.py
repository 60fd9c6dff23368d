"""Electricity pricing: energy per time-of-use band and monthly tier, and the priced bill lines.

The period is cut into pieces at local band changes (site time zone, seasons by month) and at
calendar months; a piece's energy is the meter curve's difference at its ends (``readings``), so
an interval between two readings is split across bands in proportion to time. Tiers step on
the calendar month's cumulative energy: energy used in the month before the period starts
counts toward the tiers. Money: each line is ``kWh x price`` (kWh as Decimal rounded to 1e-6)
rounded half-up to the cent; a bill's total is the sum of its rounded lines.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np

from billing.config import DAY_MIN, Band, TariffConfig
from billing.periods import cents, energy_decimal, month_start, months_between
from billing.readings import Curve

__all__ = [
    "BillLine",
    "Schedule",
    "Usage",
    "band_schedule",
    "make_line",
    "price_usage",
    "tier_split",
    "usage",
]


@dataclass(frozen=True, slots=True)
class BillLine:
    """One priced line of a bill: a band, a tier, a surcharge or the shared loss."""

    name: str
    kwh: float
    price: Decimal
    amount: Decimal

    def to_json(self) -> dict[str, object]:
        """Return ``{"name", "kwh", "price", "amount"}`` with money as strings."""
        return {
            "name": self.name,
            "kwh": round(self.kwh, 6),
            "price": str(self.price),
            "amount": str(self.amount),
        }


def make_line(name: str, kwh: float, price: Decimal) -> BillLine:
    """Return a line priced ``kWh x price`` rounded half-up to the cent."""
    return BillLine(name, float(kwh), price, cents(energy_decimal(kwh) * price))


@dataclass(frozen=True, slots=True)
class Schedule:
    """A period cut into pieces ``[edges[i], edges[i+1])`` with the band and month of each."""

    edges: np.ndarray
    band: np.ndarray  # index into names/prices per piece
    month: np.ndarray  # index into months per piece
    names: list[str]
    prices: list[Decimal]
    months: list[tuple[float, float]]


def _local(d: date, minute: int, z: zoneinfo.ZoneInfo) -> float:
    if minute >= DAY_MIN:
        d = d + timedelta(days=1)
        minute = 0
    return datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=z).timestamp()


def band_schedule(tariff: TariffConfig, start: float, end: float, tz: str) -> Schedule:
    """Return the band pieces of ``[start, end)`` (one piece per month for a tariff without bands)."""
    z = zoneinfo.ZoneInfo(tz)
    months = months_between(start, end, z)
    names: list[str] = []
    prices: list[Decimal] = []
    key_of: dict[tuple[str | None, str], int] = {}

    def key(season: str | None, band: Band) -> int:
        k = (season, band.name)
        if k not in key_of:
            key_of[k] = len(names)
            names.append(band.name if season is None else f"{band.name} ({season})")
            prices.append(band.price)
        return key_of[k]

    for band in tariff.bands:
        key(None, band)
    for s in tariff.seasons:
        for band in s.bands:
            key(s.name, band)
    if not tariff.bands:
        edges = [a for a, _ in months] + [end]
        return Schedule(
            np.array(edges, dtype=np.float64),
            np.zeros(len(months), dtype=np.int64),
            np.arange(len(months), dtype=np.int64),
            ["energy"],
            [tariff.price if tariff.price is not None else Decimal(0)],
            months,
        )
    pieces: list[tuple[float, int, int]] = []  # (piece start, band key, month index)
    for mi, (a, b) in enumerate(months):
        d = datetime.fromtimestamp(a, z).date()
        last = datetime.fromtimestamp(b, z).date()
        season = next((s for s in tariff.seasons if d.month in s.months), None)
        bands = season.bands if season is not None else tariff.bands
        while d <= last:
            for band in bands:
                k = key(season.name if season else None, band)
                for lo, _hi in band.minutes():
                    t0 = _local(d, lo, z)
                    if a <= t0 < b:
                        pieces.append((t0, k, mi))
            d += timedelta(days=1)
        # the band in force at the month start (a piece may begin before it)
        pieces.append((a, _band_at(bands, a, z, season, key), mi))
    pieces.sort()
    out_t: list[float] = []
    out_k: list[int] = []
    out_m: list[int] = []
    for t0, k, mi in pieces:
        if out_t and out_t[-1] == t0:
            out_k[-1], out_m[-1] = k, mi  # same instant: the later entry is the real band
            continue
        out_t.append(t0)
        out_k.append(k)
        out_m.append(mi)
    return Schedule(
        np.array([*out_t, end], dtype=np.float64),
        np.array(out_k, dtype=np.int64),
        np.array(out_m, dtype=np.int64),
        names,
        prices,
        months,
    )


def _band_at(
    bands: list[Band],
    t: float,
    z: zoneinfo.ZoneInfo,
    season: object,
    key: Callable[[str | None, Band], int],
) -> int:
    local = datetime.fromtimestamp(t, z)
    minute = local.hour * 60 + local.minute
    for band in bands:
        for lo, hi in band.minutes():
            if lo <= minute < hi:
                return key(getattr(season, "name", None), band)
    raise AssertionError("bands cover the day")  # checked by the config model


@dataclass(slots=True)
class Usage:
    """Energy of one meter (or a sum of meters) over a period, by band and by calendar month.

    ``month_kwh[i]`` is the energy of month ``i`` of the schedule inside the period and
    ``before_kwh`` the energy of the first month before the period started (tier stepping).
    """

    schedule: Schedule
    band_kwh: np.ndarray
    month_kwh: np.ndarray
    before_kwh: float = 0.0
    meters: dict[str, float] = field(default_factory=dict)

    @property
    def total_kwh(self) -> float:
        """Energy of the period (kWh)."""
        return float(self.month_kwh.sum())

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.schedule,
            self.band_kwh + other.band_kwh,
            self.month_kwh + other.month_kwh,
            self.before_kwh + other.before_kwh,
            {**self.meters, **other.meters},
        )


def usage(curve: Curve, schedule: Schedule, start: float, tz: str, meter: str = "") -> Usage:
    """Return the usage of ``curve`` over the schedule's period (``start`` is its first edge)."""
    e = schedule.edges
    pieces = np.diff(curve.at(e)) if len(e) > 1 else np.zeros(0)
    nb = len(schedule.names)
    nm = len(schedule.months)
    band_kwh = np.bincount(schedule.band, weights=pieces, minlength=nb)[:nb]
    month_kwh = np.bincount(schedule.month, weights=pieces, minlength=nm)[:nm]
    ms = month_start(start, tz)
    before = curve.energy(ms, start) if ms < start else 0.0
    u = Usage(schedule, band_kwh, month_kwh, before)
    if meter:
        u.meters[meter] = float(month_kwh.sum())
    return u


def tier_split(limits: list[float | None], before_kwh: float, kwh: float) -> list[float]:
    """Return the energy of ``[before, before + kwh)`` falling in each tier (limits ascending)."""
    out: list[float] = []
    lo = 0.0
    a, b = before_kwh, before_kwh + kwh
    for limit in limits:
        hi = float("inf") if limit is None else float(limit)
        out.append(max(0.0, min(b, hi) - max(a, lo)))
        lo = hi
    return out


def price_usage(tariff: TariffConfig, u: Usage, prefix: str = "") -> list[BillLine]:
    """Return the bill lines of ``u`` at ``tariff`` (names prefixed with ``prefix``)."""
    lines: list[BillLine] = []
    total = u.total_kwh
    if tariff.price is not None:
        lines.append(make_line(f"{prefix}energy", total, tariff.price))
    elif tariff.bands:
        s = u.schedule
        for i, (name, price) in enumerate(zip(s.names, s.prices, strict=True)):
            kwh = float(u.band_kwh[i])
            if i >= len(tariff.bands) and kwh == 0.0:
                continue  # a season not in this period
            lines.append(make_line(f"{prefix}{name}", kwh, price))
    if tariff.tiers:
        limits = [t.up_to_kwh for t in tariff.tiers]
        per_tier = np.zeros(len(limits))
        for i, kwh in enumerate(u.month_kwh.tolist()):
            before = u.before_kwh if i == 0 else 0.0
            per_tier += np.array(tier_split(limits, before, kwh))
        surcharge = tariff.price is not None or bool(tariff.bands)
        for i, (tier, kwh) in enumerate(zip(tariff.tiers, per_tier.tolist(), strict=True)):
            if surcharge:
                if tier.surcharge is None or (kwh == 0.0 and tier.surcharge == 0):
                    continue
                if kwh == 0.0:
                    continue
                lines.append(make_line(f"{prefix}tier {i + 1} surcharge", kwh, tier.surcharge))
            else:
                if kwh == 0.0 and i > 0:
                    continue
                assert tier.price is not None
                lines.append(make_line(f"{prefix}tier {i + 1}", kwh, tier.price))
    return lines


def base_price(tariff: TariffConfig) -> Decimal:
    """Return a tariff's headline price: flat price, first tier's, or the mean band price."""
    if tariff.price is not None:
        return tariff.price
    if tariff.bands:
        return sum((b.price for b in tariff.bands), Decimal(0)) / len(tariff.bands)
    price = tariff.tiers[0].price
    return price if price is not None else Decimal(0)
