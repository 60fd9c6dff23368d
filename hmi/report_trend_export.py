"""The trends page's export: the shown series over the shown range as CSV and xlsx downloads.

:class:`TrendExport` is a button under the trend controls. It reads the picked tags, range and
view of :class:`~hmi.trends.TrendControls` and queries the same data the page draws, in a
worker thread: for "values" the time-weighted means per bucket (``historian.query_agg``,
``twa``, range / ``hmi.trends.POINTS`` buckets) up to now; for a consumption view each
counter's increase per local hour / day / month (``historian.counter.consumption``, the
bars), with each bucket's quality (an uncertain bucket keeps a trailing ``*`` in CSV, as the
reports do). One row per time, one column per tag with its unit; times in the site's zone.
The files come as links carried in the page (data URLs), named for the range and time.
Loop-thread only.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bokeh.layouts import row
from bokeh.models.widgets import Button

from historian.buckets import Buckets, floor
from historian.counter import consumption
from hmi.layout import html_div
from hmi.report_view import MIME
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, WIDGET_FONT
from i18n import _
from tags.model import Quality

__all__ = ["TrendExport", "trend_table"]

LINK_CSS = "a { margin-right: 0.8em; color: inherit; font-weight: 600; }"


def trend_table(
    series: dict[str, list[Any]], tags: list[str], units: dict[str, str], tz: str, counters: bool
) -> tuple[list[str], list[list[Any]]]:
    """Return (header, rows): one row per time (site zone), one column per tag.

    ``series`` is ``query_agg``'s (tag -> ``[(ts, value)]``) or, with ``counters``,
    ``consumption``'s (tag -> ``[DeltaBucket]``): a bucket's value with a ``*`` when uncertain.
    """
    zone = ZoneInfo(tz)
    head = [_("time")] + [f"{t} [{units[t]}]" if units.get(t) else t for t in tags]
    by_ts: dict[float, list[Any]] = {}
    for j, tag in enumerate(tags):
        for p in series.get(tag, []):
            if counters:
                ts, v = float(p.start), p.value
                good = p.quality is Quality.GOOD
                cell: Any = None if v is None else (float(v) if good else f"{float(v)}*")
            else:
                ts, v = float(p[0]), p[1]
                cell = None if v is None or v != v else float(v)
            by_ts.setdefault(ts, [None] * len(tags))[j] = cell
    rows = []
    for ts in sorted(by_ts):
        when = datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([when, *by_ts[ts]])
    return head, rows


def _csv(title: str, head: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow([title])
    w.writerow(head)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode("utf-8")


def _xlsx(title: str, head: list[str], rows: list[list[Any]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = _("trend")[:31]  # a sheet name is at most 31 characters
    ws.append([title])
    ws["A1"].font = Font(bold=True)
    ws.append(head)
    for c in ws[2]:
        c.font = Font(bold=True)
    for r in rows:
        ws.append(r)
    ws.column_dimensions["A"].width = 20
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


class TrendExport:
    """The export button and its download links (module docstring)."""

    def __init__(self, session: HmiSession, controls: Any, counter: Callable[[Any], bool]) -> None:
        self.session = session
        self.controls = controls
        self.is_counter = counter
        self.button = Button(
            label=_("Export CSV / xlsx"),
            name="trend-export",
            styles={**AUTO_WIDTH, "--bokeh-font-size": WIDGET_FONT},
        )
        self.button.on_click(self.export)
        self.links = html_div("", name="trend-export-links", css=LINK_CSS)
        self.layout = row(self.button, self.links, styles={"align-items": "center", "gap": "8px"})
        self._token = 0

    def export(self) -> None:
        """Query the shown series (worker thread) and offer them as CSV and xlsx."""
        from hmi.trends import POINTS

        services = self.session.services
        historian = services.historian
        tags = list(self.controls.tags)
        if historian is None or not tags:
            self.links.text = html_span("u", _("no historian") if tags else _("pick tags first"))
            return
        db = services.db
        defs = [db.definition(t) for t in tags]
        tz = services.site.site.timezone
        every = self.controls.every
        end = time.time()
        title = f"{services.site.site.name or services.site.site.id}: {self.controls.range_label}"
        if every is not None:
            defs = [d for d in defs if self.is_counter(d)]
            if not defs:
                self.links.text = html_span("u", _("no counter picked: nothing to export"))
                return
            tags = [d.name for d in defs]
            start = floor(end - self.controls.range_s, every, tz)
            title += f", {self.controls.view_label}"

            def query() -> Any:
                return consumption(historian, defs, Buckets.calendar(start, end, every, tz))
        else:
            start = end - self.controls.range_s
            bucket = max(1.0, (end - start) / POINTS)

            def query() -> Any:
                return historian.query_agg(tags, start, end, bucket, "twa")

        units = {d.name: d.unit for d in defs}
        counters = every is not None
        self._token += 1
        token = self._token
        self.links.text = html_span("u", _("exporting…"))

        def build() -> tuple[bytes, bytes, int]:
            head, rows = trend_table(query(), tags, units, tz, counters)
            return _csv(title, head, rows), _xlsx(title, head, rows), len(rows)

        stamp = datetime.fromtimestamp(end, ZoneInfo(tz)).strftime("%Y%m%d-%H%M")
        view = "values" if every is None else str(every)
        self.session.spawn(
            self.session.in_thread(build),
            lambda res, err: self._built(token, f"trend-{stamp}", view, res, err),
        )

    def _built(self, token: int, stem: str, view: str, res: Any, err: BaseException | None) -> None:
        import base64
        import html

        if token != self._token:
            return
        if err is not None or res is None:
            self.links.text = html_span("result-bad", _("export failed: {error}", error=err))
            return
        csv_bytes, xlsx_bytes, n = res
        parts = []
        for fmt, data in (("csv", csv_bytes), ("xlsx", xlsx_bytes)):
            b64 = base64.b64encode(data).decode("ascii")
            label = html.escape(_("download {fmt} ({n} rows)", fmt=fmt.upper(), n=n))
            parts.append(
                f'<a href="data:{MIME[fmt]};base64,{b64}" download="{stem}.{fmt}" '
                f'data-trend-file="{fmt}" data-view="{html.escape(view)}" data-rows="{n}">'
                f"{label}</a>"
            )
        self.links.text = " ".join(parts)


def html_span(cls: str, text: str) -> str:
    """Return ``text`` escaped in a span of class ``cls``."""
    import html

    return f'<span class="{cls}">{html.escape(text)}</span>'
