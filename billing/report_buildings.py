"""The ``building_heat`` report: buildings compared by heat per m2 per degree-day and return temperature.

For every building with ``heat:`` over the period:

- **heat**: the sum of the heat meter's daily figures (``meter_energy``'s, the counter rule
  of ``historian.counter_days.consumption_table``), rounded by the tag's decimals;
- **area**: the heated area, the sum of its households' ``area_m2``;
- **degree-days**: the sum over the local days of ``max(0, base_c - outdoor mean)``, the
  outdoor mean being the time-weighted mean (``twa``) of the day of the building's outdoor
  temperature tag: the ``outdoor_tag`` of the substation feeding it (``substations:``), or the
  ``outdoor`` tag given to the report for every building. ``base_c`` defaults to 18 degC.
  A day without a known outdoor temperature adds nothing and is counted under
  ``days without outdoor``;
- **heat per m2** and **per m2 per degree-day** (Wh/m2/Kd): the figure that compares
  buildings in different weather;
- **return**: the time-weighted mean return temperature (``heat.return_tag``) over the period,
  and its difference from the mean of the buildings' returns (``return spread``): a building
  far above the others is over-supplied, a sign of secondary-network imbalance.

Rows are ranked by heat per m2 per degree-day, highest first. Raises ``ValueError`` when no
building has ``heat:``, when no building has an outdoor temperature, and when no heat meter
has a reading in the period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from billing.report_energy import energy_decimals
from historian.base import AggFn
from historian.buckets import Buckets, Every, Unit
from historian.counter_days import consumption_table
from i18n import _
from tags.model import TagDef

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Sheet
    from billing.service import Billing
    from historian.base import Historian

__all__ = ["DEFAULT_BASE_C", "Weather", "building_heat", "degree_days"]

#: The base temperature of degree-days (degC): below it, a building needs heat.
DEFAULT_BASE_C = 18.0


@dataclass(frozen=True, slots=True)
class Weather:
    """Degree-days over some days and the days whose outdoor mean was unknown."""

    degree_days: float
    unknown_days: int


def degree_days(means: list[float | None], base_c: float = DEFAULT_BASE_C) -> Weather:
    """Return the degree-days of daily outdoor means (None: unknown day, adds nothing)."""
    known = [m for m in means if m is not None]
    return Weather(sum(max(0.0, base_c - m) for m in known), len(means) - len(known))


def _outdoor_tags(b: Billing, outdoor: str | None) -> dict[str, str]:
    """Return each building's outdoor temperature tag (``outdoor`` for all, else its substation's)."""
    if outdoor is not None:
        return {bld.id: outdoor for bld in b.site.buildings}
    out: dict[str, str] = {}
    for s in getattr(b.site, "substations", ()):
        for bid in s.buildings:
            out.setdefault(bid, s.outdoor_tag)
    return out


def _twa(h: Historian, tag: str, a: float, e: float) -> float | None:
    ((_, v),) = h.query_agg([tag], a, e, e - a, AggFn.TWA)[tag]
    return v


def building_heat(
    b: Billing,
    p: Period,
    *,
    base_c: float | None = None,
    outdoor: str | None = None,
    historian: Historian | None = None,
) -> list[Sheet]:
    """Return the ``buildings`` sheet of the period (module docstring).

    Blocking (reads the historian): run it in a worker thread from the event loop.
    """
    from billing.reports import Column, Sheet

    base = DEFAULT_BASE_C if base_c is None else float(base_c)
    if not -50.0 <= base <= 50.0:
        raise ValueError(_("base_c: expected -50 .. 50 degC, got {value}", value=base))
    h = historian if historian is not None else b._hist()
    zone = ZoneInfo(b.tz)
    heated = [bld for bld in b.site.buildings if bld.heat is not None]
    if not heated:
        raise ValueError(_("no building has a heat meter (heat.energy_tag): nothing to report"))
    tags = _outdoor_tags(b, outdoor)
    if not any(bld.id in tags for bld in heated):
        raise ValueError(
            _(
                "no outdoor temperature for any heated building: give the report an outdoor "
                "tag, or configure the substation feeding them (substations: outdoor_tag)"
            )
        )
    days = Buckets.calendar(p.start, p.end, Every(1, Unit.DAY), zone)
    defs = {d.name: d for d in b.site.tag_defs()}
    energy = [defs.get(bld.heat.energy_tag) or TagDef(bld.heat.energy_tag) for bld in heated]  # type: ignore[union-attr]
    table = consumption_table(h, energy, days)
    if bool(np.all(np.isnan(table.value))):
        raise ValueError(
            _(
                "no reading of any of the {count} heat meters in {period}: "
                "the period lies outside the stored history",
                count=len(heated),
                period=p.label,
            )
        )
    row_of = {t: i for i, t in enumerate(table.tags)}
    weather: dict[str, Weather] = {}
    for tag in sorted({tags[bld.id] for bld in heated if bld.id in tags}):
        means = [_twa(h, tag, a, e) for a, e in zip(days.starts, days.ends, strict=True)]
        weather[tag] = degree_days(means, base)
    rows: list[list[Any]] = []
    for bld, d in zip(heated, energy, strict=True):
        heat = bld.heat
        assert heat is not None
        vs = table.value[row_of[d.name]]
        known = vs[~np.isnan(vs)]
        kwh = round(float(sum(known.tolist())), energy_decimals(d)) if len(known) else None
        area = sum(hh.area_m2 or 0.0 for hh in bld.households) or None
        w = weather.get(tags.get(bld.id, ""))
        dd = None if w is None else round(w.degree_days, 2)
        per_m2 = None if kwh is None or not area else kwh / area
        per_dd = None if per_m2 is None or not dd else round(1000.0 * per_m2 / dd, 3)
        ret = None if heat.return_tag is None else _twa(h, heat.return_tag, p.start, p.end)
        rows.append(
            [
                bld.id,
                area,
                kwh,
                dd,
                None if w is None else w.unknown_days,
                None if per_m2 is None else round(per_m2, 3),
                per_dd,
                None if ret is None else round(ret, 2),
            ]
        )
    returns: list[float] = [r[7] for r in rows if r[7] is not None]
    mean_ret = sum(returns) / len(returns) if returns else None
    for r in rows:
        r.append(None if r[7] is None or mean_ret is None else round(r[7] - mean_ret, 2))
    rows.sort(key=lambda r: (r[6] is None, -(r[6] or 0.0), r[0]))
    sheet = Sheet(
        "buildings",
        [
            Column("building"),
            Column("area", "m2"),
            Column("heat", "kWh", True),
            Column("degree-days", "Kd"),
            Column("days without outdoor"),
            Column("heat per m2", "kWh/m2"),
            Column("heat per m2 per degree-day", "Wh/m2/Kd"),
            Column("return", "degC"),
            Column("return spread", "K"),
        ],
        rows=rows,
        chart=(0, [6]),
    )
    return [sheet]
