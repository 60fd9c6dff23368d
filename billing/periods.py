"""Billing periods in the site's time zone: parse times and ``--period`` texts, month boundaries.

Times inside billing are UTC epoch seconds (float). Period texts: ``2025`` (year), ``2025-Q4``
(quarter), ``2025-11`` (month), ``2025-11-21`` (day); each is ``[start, end)`` from local
midnight to local midnight.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "CENT",
    "Period",
    "cents",
    "energy_decimal",
    "local_midnight",
    "month_start",
    "months_between",
    "next_month",
    "parse_period",
    "parse_time",
]

CENT = Decimal("0.01")


def cents(amount: Decimal) -> Decimal:
    """Round money half-up to the cent (the only rounding billing applies to money)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def energy_decimal(kwh: float) -> Decimal:
    """Return an energy as Decimal, rounded to 1e-6 kWh so float noise never moves a cent."""
    return Decimal(repr(round(float(kwh), 6)))


@dataclass(frozen=True, slots=True)
class Period:
    """A named billing period ``[start, end)`` (epoch seconds) of kind day/month/quarter/year."""

    kind: str
    label: str
    start: float
    end: float


def _zone(tz: str | zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    return tz if isinstance(tz, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(tz)


def local_midnight(d: date, tz: str | zoneinfo.ZoneInfo) -> float:
    """Return the epoch seconds of local midnight starting day ``d``."""
    return datetime(d.year, d.month, d.day, tzinfo=_zone(tz)).timestamp()


def month_start(ts: float, tz: str | zoneinfo.ZoneInfo) -> float:
    """Return the start (local midnight of the 1st) of the calendar month holding ``ts``."""
    z = _zone(tz)
    d = datetime.fromtimestamp(ts, z)
    return datetime(d.year, d.month, 1, tzinfo=z).timestamp()


def next_month(ts: float, tz: str | zoneinfo.ZoneInfo) -> float:
    """Return the start of the calendar month after the one holding ``ts``."""
    z = _zone(tz)
    d = datetime.fromtimestamp(ts, z)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(y, m, 1, tzinfo=z).timestamp()


def months_between(
    start: float, end: float, tz: str | zoneinfo.ZoneInfo
) -> list[tuple[float, float]]:
    """Return ``[start, end)`` cut at calendar month boundaries: ``[(a, b), ...]``."""
    out: list[tuple[float, float]] = []
    a = start
    while a < end:
        b = min(next_month(a, tz), end)
        out.append((a, b))
        a = b
    return out


_PERIOD_RE = re.compile(r"^(\d{4})(?:-(Q[1-4]|\d{2})(?:-(\d{2}))?)?$")


def parse_period(text: str, tz: str | zoneinfo.ZoneInfo) -> Period:
    """Return the period named by ``text`` (see the module docstring); ``ValueError`` if bad."""
    m = _PERIOD_RE.match(text.strip())
    if m is None:
        raise ValueError(f"period {text!r}: expected YYYY, YYYY-Qn, YYYY-MM or YYYY-MM-DD")
    year = int(m.group(1))
    part, day = m.group(2), m.group(3)
    try:
        if part is None:
            a, b, kind = date(year, 1, 1), date(year + 1, 1, 1), "year"
        elif part.startswith("Q"):
            q = int(part[1])
            a = date(year, 3 * q - 2, 1)
            b = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
            kind = "quarter"
        elif day is None:
            month = int(part)
            a = date(year, month, 1)
            b = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
            kind = "month"
        else:
            a = date(year, int(part), int(day))
            b = a + timedelta(days=1)
            kind = "day"
    except ValueError as exc:
        raise ValueError(f"period {text!r}: {exc}") from None
    return Period(kind, text.strip(), local_midnight(a, tz), local_midnight(b, tz))


def parse_time(text: str, tz: str | zoneinfo.ZoneInfo) -> float:
    """Return epoch seconds of an ISO date or date-time; without an offset it is local time.

    ``2025-11-01`` is local midnight; ``2025-11-01T08:00`` local 08:00;
    ``2025-11-01T00:00:00Z`` or ``...+08:00`` as written. Raises ``ValueError``.
    """
    t = text.strip()
    try:
        if len(t) == 10:
            return local_midnight(date.fromisoformat(t), tz)
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r}: expected an ISO date or date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_zone(tz))
    return dt.timestamp()


def local_label(ts: float, tz: str | zoneinfo.ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format ``ts`` in local time (reports and bills)."""
    return datetime.fromtimestamp(ts, _zone(tz)).strftime(fmt)
