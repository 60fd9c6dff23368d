"""The tenant's consumption: electricity per day (gaps where the meter sent nothing) and heat.

Electricity comes from the historian: per local day the ``delta`` of the household's meter
energy tags; a day in which none of them has a single good sample is *no data*, drawn as a
hatched marker (named in the legend and in a note), never as a zero bar. This month and
last month are summed the same way. Heat is the household's share of its building's heat
meter this month so far, from billing's allocation (``Billing.allocate_heat``: the on-off
time area method of ``billing.heat`` over the 1st of the month .. now, the same computation
the monthly bills use); with a heat price its cost too. All queries run in a worker thread.
"""

from __future__ import annotations

import html
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, DataRange1d
from bokeh.plotting import figure

from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.theme import EQUIPMENT, EQUIPMENT_DARK, local_ms, time_formatter
from i18n import _, ngettext
from i18n.formats import energy_text, number_text

__all__ = [
    "DAYS",
    "ConsumptionPanel",
    "DailyUsage",
    "HeatShare",
    "day_starts",
    "month_start",
    "read_daily_usage",
    "read_heat_share",
]

log = logging.getLogger(__name__)

DAYS = 30


def day_starts(now: float, tz: str, days: int) -> list[float]:
    """Return the epoch starts of the last ``days`` local days (today last) plus tomorrow's."""
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    # by calendar date, then localised: a day with a DST change is 23 or 25 hours long
    dates = [(today - timedelta(days=days - 1 - i)).date() for i in range(days + 1)]
    return [datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() for d in dates]


def month_start(now: float, tz: str, back: int = 0) -> float:
    """Return the epoch start of the local month of ``now`` (``back`` months before)."""
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(now, zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _i in range(back):
        d = (d - timedelta(days=1)).replace(day=1)
    return datetime(d.year, d.month, 1, tzinfo=zone).timestamp()


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """Electricity per local day (None: no data that day) and this / last month's sums (kWh)."""

    starts: list[float]  # day starts, plus the start of tomorrow
    kwh: list[float | None]
    this_month_kwh: float
    last_month_kwh: float


@dataclass(frozen=True, slots=True)
class HeatShare:
    """The household's allocated heat of this month so far; ``cost`` None without a price."""

    heat_kwh: float
    cost: Decimal | None
    estimated: bool
    building_kwh: float


def read_daily_usage(historian: Any, tags: Sequence[str], now: float, tz: str) -> DailyUsage:
    """Return the daily electricity of ``tags`` (blocking: call in a worker thread)."""
    starts = day_starts(now, tz, DAYS)
    kwh: list[float | None] = []
    for s, e in itertools.pairwise(starts):
        end = min(e, now)
        counts = historian.query_agg(list(tags), s, end, end - s, "count") if end > s else {}
        seen = any(c for series in counts.values() for _b, c in series if c)
        kwh.append(sum(historian.delta(t, s, end) for t in tags) if seen else None)
    this_m, last_m = month_start(now, tz), month_start(now, tz, 1)
    this_month = sum(historian.delta(t, this_m, now) for t in tags)
    last_month = sum(historian.delta(t, last_m, this_m) for t in tags)
    return DailyUsage(starts, kwh, this_month, last_month)


def read_heat_share(
    billing: Any, site: Any, historian: Any, household: str, building: str, now: float
) -> HeatShare | None:
    """Return the household's heat this month so far, None when it is not heated (blocking)."""
    start = month_start(now, site.site.timezone)
    if billing is not None:
        alloc = billing.allocate_heat(start, now, [building])
    else:  # no billing service running: the same allocation straight from the historian
        from billing.heat import allocate_heat

        alloc = allocate_heat(site, historian, start, now, [building])
    for b in alloc.buildings:
        for h in b.households:
            if h.id == household:
                return HeatShare(h.heat_kwh, h.cost, h.estimated, b.heat_kwh)
    return None


class DailyChart:
    """Bars of kWh per day; hatched markers on the days without data, named in the legend."""

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self.bars = ColumnDataSource({"day": [], "kwh": []}, name="tenant-daily")
        self.gaps = ColumnDataSource({"day": [], "top": []}, name="tenant-gaps")
        fig = figure(
            name="tenant-daily-plot",
            x_axis_type="datetime",
            height=240,
            sizing_mode="stretch_width",
            toolbar_location=None,
            tools="",
            background_fill_color="#F2F2F2",
            border_fill_color=None,
        )
        width = 0.8 * 86400000
        fig.vbar(
            x="day",
            top="kwh",
            width=width,
            source=self.bars,
            color=EQUIPMENT_DARK,
            legend_label=_("kWh per day"),
        )
        fig.vbar(
            x="day",
            top="top",
            width=width,
            source=self.gaps,
            fill_color="#FFFFFF",
            fill_alpha=0.6,
            line_color=EQUIPMENT,
            line_dash="dashed",
            hatch_pattern="/",
            hatch_color=EQUIPMENT,
            hatch_alpha=0.8,
            legend_label=_("no data (not zero use)"),
        )
        fig.legend.location = "top_left"
        fig.y_range = DataRange1d(start=0, range_padding=0.45)  # room for the legend on top
        fig.legend.background_fill_alpha = 0.7
        fig.yaxis.axis_label = _("kWh per day")
        fig.xaxis.formatter = time_formatter()
        self.figure = fig
        self.note = html_div("", name="tenant-gap-note", sizing_mode="stretch_width")

    def show(self, usage: DailyUsage) -> None:
        """Draw ``usage``: a bar per day with data, a hatched marker per day without."""
        noon = [local_ms(s, self.tz) + 43200000 for s in usage.starts[:-1]]
        known = [v for v in usage.kwh if v is not None]
        top = max([*known, 1.0]) * 0.25
        self.bars.data = {
            "day": [d for d, v in zip(noon, usage.kwh, strict=True) if v is not None],
            "kwh": known,
        }
        gap_days = [d for d, v in zip(noon, usage.kwh, strict=True) if v is None]
        self.gaps.data = {"day": gap_days, "top": [top] * len(gap_days)}
        n = len(gap_days)
        text = (
            ngettext(
                "{n} day without meter data (hatched): the meter sent nothing, not zero use.",
                "{n} days without meter data (hatched): the meter sent nothing, not zero use.",
                n,
            )
            if n
            else _("every day has meter data")
        )
        self.note.text = f'<span class="u" data-gap-days="{n}">{html.escape(text)}</span>'


class ConsumptionPanel:
    """Electricity (this month, last month, per day) beside this month's allocated heat."""

    def __init__(
        self,
        session: HmiSession,
        energy_tags: Sequence[str],
        heated: list[tuple[str, str]],
        currency: str | None,
        redraw: Callable[[], None],
    ) -> None:
        self.session = session
        self.redraw = redraw
        self.tz = session.services.site.site.timezone
        self.energy_tags = list(energy_tags)
        self.heated = heated  # (household, building) of the user's heated households
        self.currency = currency
        self.electricity = self._tile(_("Electricity"), _("loading consumption…"))
        self.heat = self._tile(_("Heat"), _("loading heat allocation…"))
        self.chart = DailyChart(self.tz)
        self.layout = column(self.chart.figure, self.chart.note, sizing_mode="stretch_width")

    @staticmethod
    def _tile(title: str, text: str, table: str = "") -> str:
        note = f'<p class="u">{html.escape(text)}</p>' if text else ""
        return f'<div class="tile"><h2>{html.escape(title)}</h2>{table}{note}</div>'

    def load(self) -> None:
        """Query electricity and heat in worker threads, then draw them."""
        services = self.session.services
        historian = services.historian
        now = time.time()
        if historian is None or not self.energy_tags:
            self.electricity = self._tile(_("Electricity"), _("no consumption history"))
            self.redraw()
        else:
            query = self.session.in_thread(
                read_daily_usage, historian, self.energy_tags, now, self.tz
            )
            self.session.spawn(query, self._redrawn(self._show_electricity))
        if not self.heated or historian is None:
            self.heat = self._tile(_("Heat"), _("no heating allocated to your home"))
            self.redraw()
            return
        household, building = self.heated[0]
        args = (services.billing, services.site, historian, household, building, now)
        heat = self.session.in_thread(read_heat_share, *args)
        self.session.spawn(heat, self._redrawn(self._show_heat))

    def _redrawn(
        self, show: Callable[[Any, BaseException | None], None]
    ) -> Callable[[Any, BaseException | None], None]:
        """Return ``show`` followed by the page's redraw."""

        def then(result: Any, err: BaseException | None) -> None:
            show(result, err)
            self.redraw()

        return then

    def _show_electricity(self, usage: Any, err: BaseException | None) -> None:
        if err is not None:
            log.warning("tenant electricity history: %s", err)
            self.electricity = self._tile(_("Electricity"), _("history unavailable"))
            return
        self.chart.show(usage)
        rows = [
            (_("this month"), usage.this_month_kwh, "this-month"),
            (_("last month"), usage.last_month_kwh, "last-month"),
        ]
        table = "<table>" + "".join(
            f'<tr><td>{html.escape(label)}</td><td><span class="v" data-{key}="{v:.1f}">'
            f'{html.escape(number_text(v, 1))}</span><span class="u">kWh</span></td></tr>'
            for label, v, key in rows
        )
        self.electricity = self._tile(_("Electricity"), "", table + "</table>")

    def _show_heat(self, share: Any, err: BaseException | None) -> None:
        if err is not None:
            log.warning("tenant heat allocation: %s", err)
            self.heat = self._tile(_("Heat"), _("heat allocation unavailable"))
            return
        if share is None:
            self.heat = self._tile(_("Heat"), _("no heating allocated to your home"))
            return
        kwh = share.heat_kwh if math.isfinite(share.heat_kwh) else 0.0
        amount, unit = energy_text(kwh, self.session.services.site.site.energy_unit)
        rows = [
            f'<tr><td>{html.escape(_("this month so far"))}</td><td><span class="v" '
            f'data-heat-kwh="{kwh:.1f}" data-unit="{unit}">{html.escape(amount)}</span>'
            f'<span class="u">{unit}</span></td></tr>'
        ]
        if share.cost is not None:
            rows.append(
                f'<tr><td>{html.escape(_("cost so far"))}</td><td><span class="v" '
                f'data-heat-cost="{share.cost}">{html.escape(money_text(share.cost, self.currency))}'
                "</span></td></tr>"
            )
        note = _("your share of the building's heat meter (area and valve-open time)")
        if share.estimated:
            note += " " + _("(partly estimated: your valve did not report all the time)")
        self.heat = self._tile(_("Heat"), note, f"<table>{''.join(rows)}</table>")
