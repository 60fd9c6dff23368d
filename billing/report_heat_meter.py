"""The ``heat_meter_days`` report: the heat meter's daily parameter sheet (for the heat supplier).

For every building with ``heat:``, one row per local day of the period:

- **heat**: the energy counter's increase that day (``heat.energy_tag``), the figure of
  ``meter_energy`` (``historian.counter_days.consumption_table``: the counter rule, meter
  replacements and resets included), rounded by the tag's decimals; an uncertain day is flagged
  (CSV ``*``, an Excel comment, the ``uncertain`` column);
- **volume**: the integral of the flow (``heat.flow_tag``, per hour: m3/h gives m3, t/h gives
  t) over the known time of the day: its time-weighted mean x known hours;
- **supply** / **return**: time-weighted mean temperatures (``heat.supply_tag`` /
  ``heat.return_tag``, the historian's ``twa`` rule: bad samples are unknown time);
- **operating hours**: the hours the flow was not zero (``flow_tag``; without one, the
  ``power_tag``), the historian's on-time;
- **error hours**: the hours the heat meter's counter had no good value (a bad or
  non-numeric sample until the next good one, or before its first sample).

A column whose tag is not configured stays empty. Raises ``ValueError`` when no building has
``heat:`` and when no heat meter has a reading in the period (outside the stored history).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
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

__all__ = ["heat_meter_days"]


def _mean(h: Historian, tag: str | None, a: float, e: float) -> float | None:
    """Return the time-weighted mean of ``tag`` over ``[a, e)`` (None: unknown or no tag)."""
    if tag is None:
        return None
    ((_, v),) = h.query_agg([tag], a, e, e - a, AggFn.TWA)[tag]
    return v


def _hours(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x / 3600.0, digits)


def heat_meter_days(b: Billing, p: Period, *, historian: Historian | None = None) -> list[Sheet]:
    """Return the ``heat-meter`` sheet of the period (module docstring).

    Blocking (reads the historian): run it in a worker thread from the event loop.
    """
    from billing.reports import Column, Sheet

    h = historian if historian is not None else b._hist()
    zone = ZoneInfo(b.tz)
    heated = [bld for bld in b.site.buildings if bld.heat is not None]
    if not heated:
        raise ValueError(_("no building has a heat meter (heat.energy_tag): nothing to report"))
    days = Buckets.calendar(p.start, p.end, Every(1, Unit.DAY), zone)
    defs = {d.name: d for d in b.site.tag_defs()}
    energy = [defs.get(bld.heat.energy_tag) or TagDef(bld.heat.energy_tag) for bld in heated]  # type: ignore[union-attr]
    table = consumption_table(h, energy, days)
    row_of = {t: i for i, t in enumerate(table.tags)}
    if bool(np.all(np.isnan(table.value))):
        raise ValueError(
            _(
                "no reading of any of the {count} heat meters in {period}: "
                "the period lies outside the stored history",
                count=len(heated),
                period=p.label,
            )
        )
    first = heated[0].heat
    assert first is not None
    flow_unit = (defs[first.flow_tag].unit if first.flow_tag in defs else "") or "m3/h"
    sheet = Sheet(
        "heat-meter",
        [
            Column("building"),
            Column("day"),
            Column("heat", defs[energy[0].name].unit if energy[0].name in defs else "kWh", True),
            Column("volume", flow_unit.removesuffix("/h"), True),
            Column("supply", "degC"),
            Column("return", "degC"),
            Column("operating", "h", True),
            Column("error", "h", True),
            Column("uncertain"),
        ],
        chart=(1, [2]),
    )
    for bld, d in zip(heated, energy, strict=True):
        heat = bld.heat
        assert heat is not None
        i = row_of[d.name]
        dec = energy_decimals(d)
        running = heat.flow_tag or heat.power_tag
        for k, (a, e) in enumerate(zip(days.starts, days.ends, strict=True)):
            v = float(table.value[i, k])
            reason = table.reason(i, k)
            r = len(sheet.rows)
            if reason is not None:
                sheet.notes[(r, 2)] = reason.value
            volume = None
            if heat.flow_tag is not None:
                flow = h.on_time_detail(heat.flow_tag, a, e)
                mean = _mean(h, heat.flow_tag, a, e)
                volume = None if mean is None else round(mean * flow.known_s / 3600.0, 3)
            supply = _mean(h, heat.supply_tag, a, e)
            ret = _mean(h, heat.return_tag, a, e)
            operating = None if running is None else h.on_time_detail(running, a, e).on_s
            meter = h.on_time_detail(heat.energy_tag, a, e)
            sheet.rows.append(
                [
                    bld.id,
                    datetime.fromtimestamp(a, zone).date().isoformat(),
                    None if v != v else round(v, dec),
                    volume,
                    None if supply is None else round(supply, 2),
                    None if ret is None else round(ret, 2),
                    _hours(operating),
                    _hours(meter.unknown_s),
                    "" if reason is None else reason.value,
                ]
            )
    return [sheet]
