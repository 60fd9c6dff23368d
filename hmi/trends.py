"""Trends: pick tags and a range (last hour … last year); history from the historian, then live.

History comes from ``historian.query_agg`` (time-weighted mean, about ``POINTS`` buckets per
range) in a worker thread; afterwards every change of a picked tag is appended with
``ColumnDataSource.stream(..., rollover=ROLLOVER)``. A value that is not good is appended as
a gap (NaN), so a trend never continues a line through bad data. ``?tags=a,b`` preselects tags.

The page is :class:`TrendControls` (tags, range, reload) and :class:`TrendPlot` (one line and
one source ``trend-<tag>`` per tag) put together by :class:`TrendPage`, which loads the history
and follows the live changes. Every text goes through :func:`i18n._`; the range values stay
English keys, their labels are translated. Loop-thread only, like the session.
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
from bokeh.models import ColumnDataSource, CustomJS, InlineStyleSheet
from bokeh.models.widgets import Button, MultiChoice, Select
from bokeh.plotting import figure

from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, SELECT_CSS, WIDGET_FONT, local_ms, time_formatter
from i18n import N_, _, ngettext
from scada.services.bundle import Services
from tags.bus import ChangeBatch
from tags.model import Quality

__all__ = ["RANGES", "TrendControls", "TrendPage", "TrendPlot", "default_tags", "make_trends"]

log = logging.getLogger(__name__)

RANGES: dict[str, float] = {
    N_("last hour"): 3600.0,
    N_("last 8 hours"): 8 * 3600.0,
    N_("last day"): 86400.0,
    N_("last week"): 7 * 86400.0,
    N_("last month"): 31 * 86400.0,
    N_("last year"): 365 * 86400.0,
}
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


def _gap_or_value(value: Any, good: bool) -> float:
    """Return ``value`` as a float, or NaN (a gap) when it is not good or not a finite number."""
    if good and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return float("nan")


def _status(cls: str, text: str, attrs: str = "") -> str:
    """Return the status line: ``text`` escaped in a span of the class ``cls``."""
    return f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'


class TrendControls:
    """The tag picker, the time range and the reload button."""

    def __init__(
        self, options: list[str], wanted: list[str], on_change: Callable[[], None]
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
        self.reload = Button(
            label=_("Reload"),
            name="trend-reload",
            styles={**AUTO_WIDTH, "--bokeh-font-size": WIDGET_FONT},
        )
        self.picker.on_change("value", lambda _a, _o, _n: on_change())
        self.span.on_change("value", lambda _a, _o, _n: on_change())
        self.reload.on_click(on_change)
        self.layout = row(self.picker, self.span, self.reload, sizing_mode="stretch_width")

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


class TrendPage:
    """The trends page of one session: controls, plot and status, history then live."""

    def __init__(self, session: HmiSession) -> None:
        self.session = session
        services = session.services
        db = services.db
        options = [d.name for d in db.definitions() if d.type.numeric and d.historize]
        picked = [t for t in (session.arg("tags") or "").split(",") if t in db]
        self.controls = TrendControls(options, picked or default_tags(services), self.build)
        wall = (session.arg("wall") or "").lower() in ("1", "true", "yes", "on")
        self.plot = TrendPlot(services.site.site.timezone, wall)
        self.status = html_div("", name="trend-status", sizing_mode="stretch_width")
        self._unsubscribe: Callable[[], None] | None = None
        self._token = 0
        self.layout = column(
            self.controls.layout, self.status, self.plot.layout, sizing_mode="stretch_both"
        )

    def build(self) -> None:
        """Draw the picked tags afresh: load their history, follow their changes."""
        tags = self.controls.tags
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        db = self.session.services.db
        self.plot.show(tags, {t: db.definition(t).unit for t in tags})
        self._load(tags)
        if tags:
            self._unsubscribe = self.session.subscribe(tags, self.plot.append)

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
