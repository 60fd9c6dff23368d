"""Trends: pick tags and a range (last hour … last year); history from the historian, then live.

History comes from ``historian.query_agg`` (time-weighted mean, about ``POINTS`` buckets per
range) in a worker thread; afterwards every change of a picked tag is appended with
``ColumnDataSource.stream(..., rollover=ROLLOVER)``. A value that is not good is appended as
a gap (NaN), so a trend never continues a line through bad data. ``?tags=a,b`` preselects tags.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import Button, MultiChoice, Select
from bokeh.plotting import figure

from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.session import HmiSession
from hmi.theme import local_ms, time_formatter
from scada.services.bundle import Services
from tags.bus import ChangeBatch
from tags.model import Quality

__all__ = ["RANGES", "make_trends"]

log = logging.getLogger(__name__)

RANGES: dict[str, float] = {
    "last hour": 3600.0,
    "last 8 hours": 8 * 3600.0,
    "last day": 86400.0,
    "last week": 7 * 86400.0,
    "last month": 31 * 86400.0,
    "last year": 365 * 86400.0,
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


def make_trends(session: HmiSession, doc: Document) -> None:
    """Build the trends page into ``doc``."""
    if not page_allowed(session, "trends"):
        page_frame(session, doc, "trends", denied_body("not allowed for your role"), "Trends")
        return
    services = session.services
    db = services.db
    tz = services.site.site.timezone
    options = [d.name for d in db.definitions() if d.type.numeric and d.historize]
    wanted = [t for t in (session.arg("tags") or "").split(",") if t in db] or default_tags(
        services
    )
    picker = MultiChoice(
        value=wanted[:MAX_TAGS],
        options=select_options(options),
        name="trend-tags",
        sizing_mode="stretch_width",
        placeholder="pick tags",
        max_items=MAX_TAGS,
    )
    span = Select(value="last day", options=select_options(RANGES), name="trend-range", width=140)
    reload_btn = Button(label="Reload", name="trend-reload", width=90)
    status = html_div("", name="trend-status", sizing_mode="stretch_width")
    fig = figure(
        name="trend-plot",
        x_axis_type="datetime",
        sizing_mode="stretch_both",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        background_fill_color="#F2F2F2",
        border_fill_color=None,
    )
    fig.xaxis.formatter = time_formatter()
    fig.xaxis.axis_label = f"local time ({tz})"
    slot = column(fig, sizing_mode="stretch_both")
    state: dict[str, Any] = {"sources": {}, "unsub": None, "token": 0}

    def build() -> None:
        tags = list(picker.value)
        if state["unsub"] is not None:
            state["unsub"]()
            state["unsub"] = None
        fig.renderers = []
        sources: dict[str, ColumnDataSource] = {}
        for i, tag in enumerate(tags):
            src = ColumnDataSource({"t": [], "v": []}, name=f"trend-{tag}")
            unit = db.definition(tag).unit
            fig.line(
                "t",
                "v",
                source=src,
                color=PENS[i % len(PENS)],
                line_width=2,
                legend_label=f"{tag} [{unit}]" if unit else tag,
            )
            sources[tag] = src
        if tags:
            fig.legend.visible = True
            fig.legend.location = "top_left"
            fig.legend.background_fill_alpha = 0.7
        state["sources"] = sources
        load(tags)
        if tags:
            state["unsub"] = session.subscribe(tags, on_changes)

    def load(tags: list[str]) -> None:
        historian = services.historian
        if historian is None or not tags:
            status.text = '<span class="u">no historian</span>' if historian is None else ""
            return
        end = time.time()
        start = end - RANGES[span.value]
        every = max(1.0, (end - start) / POINTS)
        state["token"] += 1
        token = state["token"]
        status.text = '<span class="u">loading…</span>'

        def query() -> Any:
            return historian.query_agg(tags, start, end, every, "twa")

        def done(series: Any, error: BaseException | None) -> None:
            if token != state["token"]:
                return
            if error is not None:
                status.text = f'<span class="result-bad">history query failed: {error}</span>'
                return
            n = 0
            for tag, src in state["sources"].items():
                pts = series.get(tag, [])
                live = dict(src.data)
                src.data = {
                    "t": [local_ms(t, tz) for t, _ in pts] + list(live["t"]),
                    "v": [float("nan") if v is None else v for _, v in pts] + list(live["v"]),
                }
                n += len(pts)
            status.text = (
                f'<span class="u" data-points="{n}">{span.value}: {n} points, '
                f"{every:.0f} s buckets, then live</span>"
            )

        session.spawn(session.in_thread(query), done)

    def on_changes(batch: ChangeBatch) -> None:
        now_ms = local_ms(time.time(), tz)
        for name, tv in batch.items():
            src = state["sources"].get(name)
            if src is None:
                continue
            v = tv.value
            if tv.quality is Quality.GOOD and isinstance(v, int | float) and math.isfinite(v):
                y = float(v)
            else:
                y = float("nan")
            src.stream({"t": [now_ms], "v": [y]}, rollover=ROLLOVER)

    picker.on_change("value", lambda _a, _o, _n: build())
    span.on_change("value", lambda _a, _o, _n: build())
    reload_btn.on_click(build)
    body = column(
        row(picker, span, reload_btn, sizing_mode="stretch_width"),
        status,
        slot,
        sizing_mode="stretch_both",
    )
    page_frame(session, doc, "trends", body, "Trends")
    build()
