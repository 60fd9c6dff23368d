"""Trends: pick tags and a range (last hour … last year); history from the historian, then live.

History comes from ``historian.query_agg`` (time-weighted mean, about ``POINTS`` buckets per
range) in a worker thread; afterwards every change of a picked tag is appended with
``ColumnDataSource.stream(..., rollover=ROLLOVER)``. A value that is not good is appended as
a gap (NaN), so a trend never continues a line through bad data. ``?tags=a,b`` preselects tags.

The view "consumption per hour / day / month" draws the picked counters (tags whose unit is
an amount: kWh, m3, …; ``is_counter``) as bars of their increase per local hour, day or
calendar month, from ``historian.counter.consumption`` (the call behind the API's
``fn=delta``), over the chosen range widened to whole buckets. A bucket whose samples are
missing (quality uncertain) is hatched, never drawn as a plain bar; the status line counts
them. ``?view=day`` preselects a view (``hour``, ``day``, ``month``).

The page is :class:`TrendControls` (tags, range, view, reload), :class:`TrendPlot` (one line
and one source ``trend-<tag>`` per tag) and :class:`ConsumptionPlot` (bars, one source
``consumption-<tag>`` per counter) put together by :class:`TrendPage`, which loads the history
and follows the live changes. Every text goes through :func:`i18n._`; the range and view
values stay English keys, their labels are translated. Loop-thread only, like the session.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    CDSView,
    ColumnDataSource,
    CustomJS,
    DataRange1d,
    GroupFilter,
    InlineStyleSheet,
)
from bokeh.models.widgets import Button, MultiChoice, Select
from bokeh.plotting import figure

from historian.buckets import Buckets, Every, floor, parse_every
from historian.counter import DeltaBucket, consumption
from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, SELECT_CSS, STALE, WIDGET_FONT, local_ms, time_formatter
from i18n import N_, _, ngettext
from scada.services.bundle import Services
from tags.bus import ChangeBatch
from tags.model import Quality, TagDef

__all__ = [
    "COUNTER_UNITS",
    "RANGES",
    "VIEWS",
    "ConsumptionPlot",
    "TrendControls",
    "TrendPage",
    "TrendPlot",
    "default_tags",
    "is_counter",
    "make_trends",
]

log = logging.getLogger(__name__)

RANGES: dict[str, float] = {
    N_("last hour"): 3600.0,
    N_("last 8 hours"): 8 * 3600.0,
    N_("last day"): 86400.0,
    N_("last week"): 7 * 86400.0,
    N_("last month"): 31 * 86400.0,
    N_("last year"): 365 * 86400.0,
}
#: The views: the values as lines, or a counter's consumption per local hour, day or month
#: (the bucket of ``historian.buckets``; None: the values).
VIEWS: dict[str, str | None] = {
    N_("values"): None,
    N_("consumption per hour"): "1h",
    N_("consumption per day"): "1d",
    N_("consumption per month"): "1mo",
}
#: ``?view=`` words for the views.
VIEW_ARGS = {
    "values": "values",
    "hour": "consumption per hour",
    "day": "consumption per day",
    "month": "consumption per month",
}
#: Units of amounts a counter adds up (not rates such as kW or m3/h): energy and volume.
COUNTER_UNITS = frozenset({"Wh", "kWh", "MWh", "GWh", "kJ", "MJ", "GJ", "m3", "l", "kvarh"})
POINTS = 500
ROLLOVER = 5000
MAX_TAGS = 8
#: Muted pen colours: distinguishable, none of them an alarm colour.
PENS = ["#404040", "#2F6F8F", "#7A5C2E", "#4F7F4F", "#6A4C7A", "#8A8A8A", "#1F4F5F", "#9A7A5A"]


def default_tags(services: Services) -> list[str]:
    """Return the tags shown when none are picked: the first building's heat meter values."""
    for b in services.site.buildings:
        heat = b.heat
        if heat is None:
            continue
        tags = [
            t for t in (heat.power_tag, heat.supply_tag, heat.return_tag) if t and t in services.db
        ]
        if tags:
            return tags
    return []


def is_counter(d: TagDef) -> bool:
    """Return True for a cumulative counter: a numeric tag whose unit is an amount (kWh, m3)."""
    return d.type.numeric and d.unit in COUNTER_UNITS


def _gap_or_value(value: Any, good: bool) -> float:
    """Return ``value`` as a float, or NaN (a gap) when it is not good or not a finite number."""
    if good and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return float("nan")


def _status(cls: str, text: str, attrs: str = "") -> str:
    """Return the status line: ``text`` escaped in a span of the class ``cls``."""
    return f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'


class TrendControls:
    """The tag picker, the time range, the view (values or consumption) and the reload button."""

    def __init__(
        self,
        options: list[str],
        wanted: list[str],
        on_change: Callable[[], None],
        view: str = "values",
    ) -> None:
        self.picker = MultiChoice(
            value=wanted[:MAX_TAGS],
            options=select_options(options),
            name="trend-tags",
            sizing_mode="stretch_width",
            placeholder=_("pick tags"),
            max_items=MAX_TAGS,
            stylesheets=[InlineStyleSheet(css=CHOICES_CSS)],
        )
        self.span = Select(
            value="last day",
            options=select_options((r, _(r)) for r in RANGES),
            name="trend-range",
            styles={"width": "10.8em", "--bokeh-font-size": WIDGET_FONT},
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        self.view = Select(
            value=view if view in VIEWS else "values",
            options=select_options((v, _(v)) for v in VIEWS),
            name="trend-view",
            styles={"width": "19.5em", "--bokeh-font-size": WIDGET_FONT},
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        self.reload = Button(
            label=_("Reload"),
            name="trend-reload",
            styles={**AUTO_WIDTH, "--bokeh-font-size": WIDGET_FONT},
        )
        self.picker.on_change("value", lambda _a, _o, _n: on_change())
        self.span.on_change("value", lambda _a, _o, _n: on_change())
        self.view.on_change("value", lambda _a, _o, _n: on_change())
        self.reload.on_click(on_change)
        self.layout = row(
            self.picker, self.span, self.view, self.reload, sizing_mode="stretch_width"
        )

    @property
    def tags(self) -> list[str]:
        """The picked tags, in order."""
        return list(self.picker.value)

    @property
    def range_s(self) -> float:
        """The chosen time range in seconds back from now."""
        return RANGES[self.span.value]

    @property
    def range_label(self) -> str:
        """The chosen time range in words (translated)."""
        return _(self.span.value)

    @property
    def every(self) -> Every | None:
        """The bucket of the consumption view, None for the values."""
        text = VIEWS.get(self.view.value)
        if text is None:
            return None
        every = parse_every(text)
        assert isinstance(every, Every)
        return every

    @property
    def view_label(self) -> str:
        """The chosen view in words (translated)."""
        return _(self.view.value)


#: The tag picker's chips and input follow the widget text size (choices.js fixes 12 px).
CHOICES_CSS = f"""
.choices, .choices__inner, .choices__input, .choices__item, .choices__button,
.choices__list--dropdown .choices__item {{ font-size: {WIDGET_FONT} !important; }}
"""

#: On a wall display the plot's axis and legend texts follow the screen height (1/60 of it
#: at least): canvas texts take pixel sizes, so set from the browser's window height.
WALL_AXES_JS = """
const px = Math.max(13, Math.ceil(window.innerHeight / 60)) + 'px';
for (const m of [...plot.left, ...plot.right, ...plot.below, ...plot.above]) {
  if ('major_label_text_font_size' in m) {
    m.major_label_text_font_size = px; m.axis_label_text_font_size = px;
  }
}
for (const m of plot.center) { if ('label_text_font_size' in m) m.label_text_font_size = px; }
"""


class TrendPlot:
    """The trend figure: one pen and one ``trend-<tag>`` source per tag, history then live."""

    def __init__(self, tz: str, wall: bool = False) -> None:
        self.tz = tz
        self.wall = wall
        self.sources: dict[str, ColumnDataSource] = {}
        self.figure = figure(
            name="trend-plot",
            x_axis_type="datetime",
            sizing_mode="stretch_both",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            background_fill_color="#F2F2F2",
            border_fill_color=None,
        )
        self.figure.xaxis.formatter = time_formatter()
        self.figure.xaxis.axis_label = _("local time ({tz})", tz=tz)
        if wall:  # at the first layout, and when show() draws new lines (and legend items)
            fonts = CustomJS(args={"plot": self.figure}, code=WALL_AXES_JS)
            self.figure.js_on_change("inner_height", fonts)
            self.figure.js_on_change("renderers", fonts)
        self.layout = column(self.figure, sizing_mode="stretch_both")

    def show(self, tags: list[str], units: dict[str, str]) -> None:
        """Replace the lines with one empty line per tag (``units``: tag -> unit, may be empty)."""
        fig = self.figure
        fig.renderers = []
        self.sources = {}
        for i, tag in enumerate(tags):
            src = ColumnDataSource({"t": [], "v": []}, name=f"trend-{tag}")
            unit = units.get(tag)
            fig.line(
                "t",
                "v",
                source=src,
                color=PENS[i % len(PENS)],
                line_width=2,
                legend_label=f"{tag} [{unit}]" if unit else tag,
            )
            self.sources[tag] = src
        if tags:
            fig.legend.visible = True
            fig.legend.location = "top_left"
            fig.legend.background_fill_alpha = 0.7

    def add_history(self, series: dict[str, list[tuple[float, float | None]]]) -> int:
        """Put ``series`` (tag -> ``(ts, value)``) before the live points; return the points added."""
        n = 0
        for tag, src in self.sources.items():
            pts = series.get(tag, [])
            live = dict(src.data)
            src.data = {
                "t": [local_ms(t, self.tz) for t, _v in pts] + list(live["t"]),
                "v": [float("nan") if v is None else v for _t, v in pts] + list(live["v"]),
            }
            n += len(pts)
        return n

    def append(self, batch: ChangeBatch) -> None:
        """Append the changes of the plotted tags at now (a value not good is a gap)."""
        now_ms = local_ms(time.time(), self.tz)
        for name, tv in batch.items():
            src = self.sources.get(name)
            if src is not None:
                y = _gap_or_value(tv.value, tv.quality is Quality.GOOD)
                src.stream({"t": [now_ms], "v": [y]}, rollover=ROLLOVER)


class ConsumptionPlot:
    """Bars of counters' consumption per bucket: one ``consumption-<tag>`` source per counter.

    A source's rows are the drawn buckets: ``x``, ``w`` (local ms), ``top`` (the value),
    ``start`` (epoch seconds), ``quality`` and ``reason`` (``historian.counter``).

    Side by side within a bucket, one pen per counter; a bucket whose quality is uncertain is
    drawn hatched (white with blue-grey hatching, dashed outline in the counter's pen), so its
    state shows by pattern, not by colour alone. Each bucket's hatching is one of two overlays
    filtered on the ``quality`` column (scalar hatch properties: see ``hmi.mimic``).
    """

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self.sources: dict[str, ColumnDataSource] = {}
        self.figure = figure(
            name="consumption-plot",
            x_axis_type="datetime",
            sizing_mode="stretch_both",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            background_fill_color="#F2F2F2",
            border_fill_color=None,
            y_range=DataRange1d(start=0),
            visible=False,
        )
        self.figure.xaxis.formatter = time_formatter()
        self.figure.xaxis.axis_label = _("local time ({tz})", tz=tz)

    def show(self, tags: list[str], units: dict[str, str], view: str) -> None:
        """Replace the bars with an empty set per counter (``view``: the view's words)."""
        fig = self.figure
        fig.renderers = []
        self.sources = {}
        names = sorted({units[t] for t in tags if units.get(t)})
        fig.yaxis.axis_label = _("{view} ({units})", view=view, units=", ".join(names))
        for i, tag in enumerate(tags):
            src = ColumnDataSource(
                {"x": [], "w": [], "top": [], "start": [], "quality": [], "reason": []},
                name=f"consumption-{tag}",
            )
            pen = PENS[i % len(PENS)]
            unit = units.get(tag)
            good = CDSView(filter=GroupFilter(column_name="quality", group="good"))
            fig.vbar(
                x="x",
                width="w",
                top="top",
                source=src,
                view=good,
                color=pen,
                legend_label=f"{tag} [{unit}]" if unit else tag,
            )
            unsure = CDSView(filter=GroupFilter(column_name="quality", group="uncertain"))
            fig.vbar(
                x="x",
                width="w",
                top="top",
                source=src,
                view=unsure,
                fill_color="#FFFFFF",
                line_color=pen,
                line_dash="dashed",
                hatch_pattern="/",
                hatch_color=STALE,
                hatch_alpha=0.9,
                legend_label=_("uncertain (hatched): samples missing"),
            )
            self.sources[tag] = src
        if tags:
            fig.legend.visible = True
            fig.legend.location = "top_left"
            fig.legend.background_fill_alpha = 0.7

    def add(self, series: dict[str, list[DeltaBucket]]) -> tuple[int, int]:
        """Draw ``series`` (tag -> buckets); return (bars drawn, buckets uncertain).

        A bucket with no value (before the counter's first sample) is uncertain and not drawn.
        """
        n = len(self.sources)
        drawn = unsure = 0
        for i, (tag, src) in enumerate(self.sources.items()):
            cols: dict[str, list[Any]] = {
                "x": [],
                "w": [],
                "top": [],
                "start": [],
                "quality": [],
                "reason": [],
            }
            for b in series.get(tag, []):
                if b.value is None or b.quality is not Quality.GOOD:
                    unsure += 1
                if b.value is None:
                    continue
                a, e = local_ms(b.start, self.tz), local_ms(b.end, self.tz)
                slot = (e - a) / n
                cols["x"].append(a + slot * (i + 0.5))
                cols["w"].append(slot * 0.8)
                cols["top"].append(max(b.value, 0.0))
                cols["start"].append(b.start)  # epoch seconds
                cols["quality"].append(b.quality.label)
                cols["reason"].append(b.reason or "")
                drawn += 1
            src.data = cols
        return drawn, unsure


class TrendPage:
    """The trends page of one session: controls, plot and status, history then live."""

    def __init__(self, session: HmiSession) -> None:
        self.session = session
        services = session.services
        db = services.db
        options = [d.name for d in db.definitions() if d.type.numeric and d.historize]
        picked = [t for t in (session.arg("tags") or "").split(",") if t in db]
        view = VIEW_ARGS.get((session.arg("view") or "values").lower(), "values")
        self.controls = TrendControls(options, picked or default_tags(services), self.build, view)
        wall = (session.arg("wall") or "").lower() in ("1", "true", "yes", "on")
        tz = services.site.site.timezone
        self.plot = TrendPlot(tz, wall)
        self.bars = ConsumptionPlot(tz)
        self.status = html_div("", name="trend-status", sizing_mode="stretch_width")
        self._unsubscribe: Callable[[], None] | None = None
        self._token = 0
        from hmi.report_trend_export import TrendExport

        self.export = TrendExport(session, self.controls, is_counter)  # CSV / xlsx downloads
        self.layout = column(
            self.controls.layout,
            row(self.status, self.export.layout, sizing_mode="stretch_width"),
            self.plot.layout,
            self.bars.figure,
            sizing_mode="stretch_both",
        )

    def build(self) -> None:
        """Draw the picked tags afresh: load their history, follow their changes."""
        tags = self.controls.tags
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        db = self.session.services.db
        every = self.controls.every
        self.plot.layout.visible = every is None
        self.bars.figure.visible = every is not None
        if every is not None:
            self._load_consumption([db.definition(t) for t in tags], every)
            return
        self.plot.show(tags, {t: db.definition(t).unit for t in tags})
        self._load(tags)
        if tags:
            self._unsubscribe = self.session.subscribe(tags, self.plot.append)

    def _load_consumption(self, defs: list[TagDef], every: Every) -> None:
        """Query the consumption of the picked counters per bucket (worker thread)."""
        self._token += 1
        token = self._token
        counters = [d for d in defs if is_counter(d)]
        others = [d.name for d in defs if not is_counter(d)]
        self.bars.show(
            [d.name for d in counters], {d.name: d.unit for d in counters}, self.controls.view_label
        )
        historian = self.session.services.historian
        if historian is None:
            self.status.text = _status("u", _("no historian"))
            return
        if not counters:
            text = _("pick a counter (a tag in kWh, m3, …) to see its consumption")
            self.status.text = _status("u", text, ' data-bars="0"')
            return
        tz = self.session.services.site.site.timezone
        end = time.time()
        start = floor(end - self.controls.range_s, every, tz)
        self.status.text = _status("u", _("loading…"))

        def query() -> dict[str, list[DeltaBucket]]:
            return consumption(historian, counters, Buckets.calendar(start, end, every, tz))

        self.session.spawn(
            self.session.in_thread(query),
            lambda series, error: self._consumption_loaded(token, others, series, error),
        )

    def _consumption_loaded(
        self, token: int, others: list[str], series: Any, error: BaseException | None
    ) -> None:
        if token != self._token:
            return
        if error is not None:
            text = _("history query failed: {error}", error=error)
            self.status.text = _status("result-bad", text)
            return
        drawn, unsure = self.bars.add(series)
        text = ngettext(
            "{range}: {n} bar, {uncertain} uncertain (hatched: samples missing)",
            "{range}: {n} bars, {uncertain} uncertain (hatched: samples missing)",
            drawn,
            range=self.controls.range_label,
            uncertain=unsure,
        )
        if others:
            text += " " + _("Not counters, not shown: {tags}", tags=", ".join(others))
        attrs = f' data-bars="{drawn}" data-uncertain="{unsure}"'
        self.status.text = _status("u", text, attrs)

    def _load(self, tags: list[str]) -> None:
        """Query the history of ``tags`` over the chosen range (worker thread)."""
        self._token += 1  # an answer for the tags drawn before is dropped
        token = self._token
        historian = self.session.services.historian
        if historian is None or not tags:
            self.status.text = _status("u", _("no historian")) if historian is None else ""
            return
        end = time.time()
        start = end - self.controls.range_s
        every = max(1.0, (end - start) / POINTS)
        self.status.text = _status("u", _("loading…"))
        self.session.spawn(
            self.session.in_thread(historian.query_agg, tags, start, end, every, "twa"),
            lambda series, error: self._loaded(token, every, series, error),
        )

    def _loaded(self, token: int, every: float, series: Any, error: BaseException | None) -> None:
        if token != self._token:
            return
        if error is not None:
            text = _("history query failed: {error}", error=error)
            self.status.text = _status("result-bad", text)
            return
        n = self.plot.add_history(series)
        text = ngettext(
            "{range}: {n} point, {bucket} s buckets, then live",
            "{range}: {n} points, {bucket} s buckets, then live",
            n,
            range=self.controls.range_label,
            bucket=f"{every:.0f}",
        )
        self.status.text = _status("u", text, f' data-points="{n}"')


def make_trends(session: HmiSession, doc: Document) -> None:
    """Build the trends page into ``doc``."""
    title = _("Trends")
    if not page_allowed(session, "trends"):
        page_frame(session, doc, "trends", denied_body(_("not allowed for your role")), title)
        return
    page = TrendPage(session)
    page_frame(session, doc, "trends", page.layout, title)
    page.build()
