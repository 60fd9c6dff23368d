"""The ``meter_energy`` report: energy of every electricity and heat meter per hour, day or month.

One row per meter (tag), one column per calendar bucket of the site's time zone (``1h``,
``1d`` or ``1mo``; ``historian.buckets``), one sheet per kind of meter (``electricity``,
``heat``) so the totals row of a bucket adds like with like. Every figure is the meter's
``delta_buckets`` (``historian.counter.consumption``: the counter rule, meter replacements
and resets included), the computation the tenant page, the trends page and the API share, so
the same meter never shows two values for one bucket.

Meters: each heated building's ``heat.energy_tag``, each building's electricity
``master_tag``, every account's meters and the household tags named ``*energy_kwh``.

Values are rounded to the tag's decimals: the tags declare no decimals field, so a tag with a
deadband gets the digits its deadband resolves (0.01 -> 2) and one without gets 3 (a watt-hour
of a kWh counter). A bucket whose quality is uncertain (``no_data``, ``comm_lost``, ``gap``,
``stale``) is flagged in the sheet's ``notes``: CSV writes the value with a trailing ``*``,
Excel adds a cell comment with the reason, and the row's last column ``uncertain`` lists the
flagged buckets (``2025-11-03 gap``) for every format, JSON included.

Raises ``ValueError`` (the CLI prints it, the API answers 400) when no meter is configured,
when ``every`` is not a calendar unit, and when no meter has a reading in the period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from historian.buckets import Buckets, Every, Unit, parse_every
from historian.counter_days import DeltaTable, consumption_table
from tags.model import TagDef

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Sheet
    from billing.service import Billing
    from billing.site import BillingSite
    from historian.base import Historian

__all__ = [
    "DEFAULT_DECIMALS",
    "MAX_BUCKETS",
    "Meter",
    "energy_decimals",
    "meter_energy",
    "meter_energy_sheets",
    "meters",
    "round_rows",
]

#: Decimals of a meter whose tag has no deadband (kWh to the watt-hour).
DEFAULT_DECIMALS = 3
#: The most bucket columns one report may have (a month of hours is 744).
MAX_BUCKETS = 2000
_LABEL = {Unit.HOUR: "%Y-%m-%d %H:%M", Unit.DAY: "%Y-%m-%d", Unit.MONTH: "%Y-%m", Unit.YEAR: "%Y"}


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter of the report: its energy tag, kind (``electricity`` or ``heat``) and building."""

    tag: str
    kind: str
    building: str | None


def meters(site: BillingSite) -> list[Meter]:
    """Return the electricity and heat meters of ``site`` (module docstring), each once, in order."""
    defs = {d.name: d for d in site.tag_defs()}
    found: dict[str, Meter] = {}

    def add(tag: str, kind: str, building: str | None) -> None:
        if tag not in found:
            d = defs.get(tag)
            found[tag] = Meter(tag, kind, building or (d.building if d else None))

    for b in site.buildings:
        if b.heat is not None:
            add(b.heat.energy_tag, "heat", b.id)
    for b in site.buildings:
        if b.electricity is not None:
            add(b.electricity.master_tag, "electricity", b.id)
    for a in site.accounts:
        for m in a.meters:
            add(m.energy, "electricity", None)
    for b in site.buildings:
        for h in b.households:
            for t in h.tags:
                if t.endswith("energy_kwh"):
                    add(t, "electricity", b.id)
    return list(found.values())


def energy_decimals(d: TagDef) -> int:
    """Return the decimals a meter's energy is shown with (module docstring)."""
    if d.deadband > 0 and math.isfinite(d.deadband):
        return max(0, min(6, math.ceil(round(-math.log10(d.deadband), 9))))
    return DEFAULT_DECIMALS


def round_rows(values: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """Return ``round(v, decimals[i])`` of every ``values[i, k]``, exactly as Python's ``round``.

    Vectorised: ``rint(v * 10**d) / 10**d`` is the correctly rounded result (an exact integer
    over an exact power of ten, IEEE division) unless ``v * 10**d`` lies within its rounding
    error of a half, where the product's error could change the digit: those few go through
    ``round`` itself. NaN stays NaN.
    """
    scale = np.power(10.0, decimals.astype(np.float64))[:, None]
    y = values * scale
    out = np.rint(y) / scale
    frac = np.abs(y - np.floor(y) - 0.5)
    near = np.isfinite(y) & (frac <= np.abs(y) * 4e-16 + 1e-300)
    for i, k in zip(*np.nonzero(near), strict=True):
        out[i, k] = round(float(values[i, k]), int(decimals[i]))
    return out


def _every(every: str | Every | None) -> Every:
    if every is None:
        return Every(1, Unit.DAY)
    e = every if isinstance(every, Every) else parse_every(every)
    if not isinstance(e, Every) or e.unit not in _LABEL:
        raise ValueError(f"every: expected a calendar unit such as 1h, 1d or 1mo, got {every!r}")
    return e


def meter_energy(b: Billing, p: Period, every: str | Every | None = None) -> list[Sheet]:
    """Return the sheets of the ``meter_energy`` report of period ``p`` (module docstring).

    ``every`` is ``1h``, ``1d`` (default) or ``1mo`` (or a count of them, ``6h``).
    Blocking (reads the historian): run it in a worker thread from the event loop.
    """
    return meter_energy_sheets(b.site, b._hist(), b.tz, p, every)


def meter_energy_sheets(
    site: BillingSite, h: Historian, tz: str, p: Period, every: str | Every | None = None
) -> list[Sheet]:
    """Return the sheets of ``meter_energy`` of ``site`` from historian ``h`` (time zone ``tz``)."""
    from billing.reports import Column, Sheet

    e = _every(every)
    ms = meters(site)
    if not ms:
        raise ValueError("no electricity or heat meter is configured (heat.energy_tag, meters)")
    buckets = Buckets.calendar(p.start, p.end, e, tz)
    if len(buckets) > MAX_BUCKETS:
        raise ValueError(
            f"every={e}: {len(buckets)} buckets in {p.label}; at most {MAX_BUCKETS} (use a wider every)"
        )
    zone = ZoneInfo(tz)
    fmt = _LABEL[e.unit]
    labels = [datetime.fromtimestamp(t, zone).strftime(fmt) for t in buckets.starts]
    defs = {d.name: d for d in site.tag_defs()}
    tag_defs = [defs.get(m.tag) or TagDef(m.tag, unit="kWh") for m in ms]
    table = consumption_table(h, tag_defs, buckets)
    row_of = {t: i for i, t in enumerate(table.tags)}
    by_tag = {d.name: d for d in tag_defs}
    rounded = round_rows(table.value, np.array([energy_decimals(by_tag[t]) for t in table.tags]))
    if bool(np.all(np.isnan(table.value))):
        raise ValueError(
            f"no reading of any of the {len(ms)} meters in {p.label}: "
            "the period lies outside the stored history"
        )
    sheets = []
    for kind in ("electricity", "heat"):
        rows = [(m, d) for m, d in zip(ms, tag_defs, strict=True) if m.kind == kind]
        if not rows:
            continue
        units = {d.unit or "kWh" for _, d in rows}
        unit = units.pop() if len(units) == 1 else ""
        sheet = Sheet(
            kind,
            [
                Column("meter"),
                Column("building"),
                Column("unit"),
                *(Column(lb, unit, True) for lb in labels),
                Column("total", unit, True),
                Column("uncertain"),
            ],
        )
        for m, d in rows:
            sheet.rows.append(_row(sheet, m, d, table, rounded, row_of[m.tag], labels))
        sheets.append(sheet)
    return sheets


def _row(
    sheet: Sheet,
    m: Meter,
    d: TagDef,
    t: DeltaTable,
    rounded: np.ndarray,
    i: int,
    labels: list[str],
) -> list:
    """Return the row of meter ``m`` (row ``i`` of ``t``) and flag its uncertain buckets in ``sheet.notes``."""
    dec = energy_decimals(d)
    r = len(sheet.rows)
    raw = t.value[i]
    values = [None if v != v else v for v in rounded[i].tolist()]
    flagged = []
    for k in np.flatnonzero(t.gap[i] >= 0).tolist() if t.gap[i].max() >= 0 else ():
        reason = t.reason(i, k)
        assert reason is not None
        sheet.notes[(r, 3 + k)] = reason.value
        flagged.append(f"{labels[k]} {reason.value}")
    known = raw[~np.isnan(raw)]
    total = round(sum(known.tolist()), dec) if len(known) else None
    return [m.tag, m.building, d.unit or "kWh", *values, total, ", ".join(flagged)]
