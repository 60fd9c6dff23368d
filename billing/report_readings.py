"""The ``meter_readings`` report: every meter's reading as of the period's end (a reading export).

One row per meter of ``billing.report_energy.meters`` (heat meters, building master meters,
account meters, household ``*energy_kwh`` tags): the newest stored sample at or before the
period's end (``--period today``: the current state), its value rounded by the tag's decimals
(``energy_decimals``, the figure ``meter_energy`` shows), unit, quality (``good``,
``uncertain``, ``bad``) with its reason, and its local time. A meter without a sample by then
has an empty value and quality ``no data``.

Raises ``ValueError`` when no meter is configured and when no meter has a sample at or before
the period's end (it lies before the stored history).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from billing.report_energy import Meter, energy_decimals, meters
from historian.base import as_float
from i18n import _
from tags.model import TagDef

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Sheet
    from billing.service import Billing
    from historian.base import Historian

__all__ = ["meter_readings", "meter_readings_sheets"]


def meter_readings(b: Billing, p: Period) -> list[Sheet]:
    """Return the sheet of the ``meter_readings`` report as of ``p.end`` (module docstring).

    Blocking (reads the historian): run it in a worker thread from the event loop.
    """
    return meter_readings_sheets(b.site.tag_defs(), meters(b.site), b._hist(), b.tz, p)


def meter_readings_sheets(
    tag_defs: Iterable[TagDef], ms: list[Meter], h: Historian, tz: str, p: Period
) -> list[Sheet]:
    """Return the ``readings`` sheet of meters ``ms`` from historian ``h`` (time zone ``tz``)."""
    from billing.reports import Column, Sheet

    if not ms:
        raise ValueError(_("no electricity or heat meter is configured (heat.energy_tag, meters)"))
    zone = ZoneInfo(tz)
    defs = {d.name: d for d in tag_defs}
    sheet = Sheet(
        "readings",
        [
            Column("meter"),
            Column("kind"),
            Column("building"),
            Column("value"),
            Column("unit"),
            Column("quality"),
            Column("reason"),
            Column("time"),
        ],
    )
    found = 0
    for m in ms:
        d = defs.get(m.tag) or TagDef(m.tag, unit="kWh")
        s = h.value_at(m.tag, p.end)
        if s is None:
            sheet.rows.append([m.tag, m.kind, m.building, None, d.unit, "no data", "", ""])
            continue
        found += 1
        v = as_float(s.value)
        value = None if v is None else round(v, energy_decimals(d))
        when = datetime.fromtimestamp(s.ts, zone).isoformat(timespec="seconds")
        reason = s.reason.label or ""
        sheet.rows.append(
            [m.tag, m.kind, m.building, value, d.unit, s.quality.name.lower(), reason, when]
        )
    if not found:
        raise ValueError(
            _(
                "no reading of any of the {count} meters by the end of {period}: "
                "the period lies before the stored history",
                count=len(ms),
                period=p.label,
            )
        )
    return [sheet]
