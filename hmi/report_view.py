"""The report centre's preview: one sheet as a table and a bar chart, and the report's downloads.

:class:`ReportPreview` shows a ``billing.reports.Report``: a sheet picker, the sheet as a
DataTable (cells as text, the uncertain ones with a trailing ``*`` as in CSV, at most
``MAX_ROWS`` rows on screen: the files have all) and a Bokeh bar chart: the sheet's own chart
columns (``Sheet.chart``) per row, else for a sheet of bucket columns (``meter_energy``) the
totals row per bucket. :func:`report_files` renders the xlsx, CSV and PDF (worker thread);
:func:`download_links` carries them in the page as data URLs. Loop-thread only.
"""

from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from pathlib import Path
from typing import Any

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, InlineStyleSheet
from bokeh.models.widgets import DataTable, Select, TableColumn
from bokeh.plotting import figure

from billing.report_pdf import cell_text, report_pdf
from billing.reports import Report, Sheet, write_csv, write_xlsx
from hmi.layout import html_div, redraw_on_update, text_sized_table
from hmi.theme import EQUIPMENT_DARK, SELECT_CSS
from i18n import _

__all__ = ["MAX_ROWS", "MIME", "ReportPreview", "download_links", "report_files"]

#: Rows of a sheet on screen.
MAX_ROWS = 1000
#: Bars of a chart.
MAX_BARS = 60
MIME = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
    "pdf": "application/pdf",
}


def report_files(report: Report, tz: str) -> dict[str, bytes]:
    """Return ``{format: bytes}`` of ``report`` as xlsx, CSV and PDF. Blocking."""
    buf = io.StringIO(newline="")
    write_csv(report, buf)
    with tempfile.TemporaryDirectory(prefix="scada-hmi-report-") as tmp:
        path = Path(tmp) / "r.xlsx"
        write_xlsx(report, path)
        xlsx = path.read_bytes()
    return {"xlsx": xlsx, "csv": buf.getvalue().encode("utf-8"), "pdf": report_pdf(report, tz)}


def file_stem(report: Report) -> str:
    """Return a file name stem: the kind and the period's label, safe for any file system."""
    stem = f"{report.kind}-{report.period.label}".replace(" .. ", "_").replace(" ", "")
    return "".join(c for c in stem if c.isalnum() or c in "-_.")


def download_links(report: Report, files: dict[str, bytes]) -> str:
    """Return the HTML links downloading each file (data URLs carried in the page)."""
    stem = file_stem(report)
    labels = {"xlsx": _("Excel (xlsx)"), "csv": _("CSV"), "pdf": _("PDF")}
    out = []
    for fmt, data in files.items():
        b64 = base64.b64encode(data).decode("ascii")
        name = html.escape(f"{stem}.{fmt}")
        out.append(
            f'<a href="data:{MIME[fmt]};base64,{b64}" download="{name}" '
            f'data-report-file="{fmt}" data-bytes="{len(data)}">'
            f"{html.escape(_('download {what}', what=labels[fmt]))}</a>"
        )
    return " · ".join(out)


def _header(c: Any) -> str:
    return f"{c.name} [{c.unit}]" if c.unit else c.name


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def chart_data(sheet: Sheet) -> tuple[list[str], list[float], str]:
    """Return (categories, values, y label) of the sheet's chart (module docstring)."""
    if sheet.chart is not None and sheet.rows:
        cat, value_cols = sheet.chart
        j = value_cols[0]
        pairs = [(str(r[cat]), _number(r[j])) for r in sheet.rows[:MAX_BARS]]
        c = sheet.columns[j]
        return (
            [p for p, v in pairs if v is not None],
            [v for _p, v in pairs if v is not None],
            (_header(c)),
        )
    totals = sheet.totals()
    summed = [j for j, c in enumerate(sheet.columns) if c.total and c.name != "total"]
    if totals is not None and len(summed) >= 2:
        cats: list[str] = []
        ys: list[float] = []
        for j in summed[:MAX_BARS]:
            v = _number(totals[j])
            if v is not None:
                cats.append(sheet.columns[j].name)
                ys.append(v)
        unit = sheet.columns[summed[0]].unit
        return cats, ys, _("total [{unit}]", unit=unit) if unit else _("total")
    for j, c in enumerate(sheet.columns[1:], start=1):
        if not c.total:
            continue  # a figure that adds up (not a reading, a temperature)
        pairs = [(str(r[0]), _number(r[j])) for r in sheet.rows[:MAX_BARS]]
        if any(v is not None for _p, v in pairs):
            return (
                [p for p, v in pairs if v is not None],
                [v for _p, v in pairs if v is not None],
                (_header(c)),
            )
    return [], [], ""


class ReportPreview:
    """The preview of one report: sheet picker, table, chart (module docstring)."""

    def __init__(self, doc: Any, wall: bool = False) -> None:
        self.report: Report | None = None
        self.sheet = Select(title=_("Sheet"), options=[], name="report-sheet", visible=False)
        self.sheet.stylesheets = [InlineStyleSheet(css=SELECT_CSS)]
        self.sheet.on_change("value", lambda _a, _o, _n: self.show_sheet())
        self.source = ColumnDataSource(data={}, name="report-rows")
        self.table = DataTable(
            source=self.source,
            columns=[],
            name="report-table",
            sizing_mode="stretch_both",
            min_height=200,
            index_position=None,
            visible=False,
        )
        redraw_on_update(self.table, self.source)
        text_sized_table(self.table, doc)
        self.bars = ColumnDataSource(data={"x": [], "y": []}, name="report-chart")
        self.x_range = FactorRange()
        self.chart = figure(
            x_range=self.x_range,
            min_height=200,
            sizing_mode="stretch_both",
            toolbar_location=None,
            name="report-chart-plot",
            visible=False,
        )
        self.chart.vbar(x="x", top="y", width=0.8, source=self.bars, color=EQUIPMENT_DARK)
        if wall:  # axis texts in the wall's size, as the trends page's
            from bokeh.models import CustomJS

            from hmi.trends import WALL_AXES_JS

            fonts = CustomJS(args={"plot": self.chart}, code=WALL_AXES_JS)
            self.chart.js_on_change("inner_height", fonts)
        self.chart.add_tools(HoverTool(tooltips=[("", "@x"), ("", "@y{0,0.000}")]))
        self.chart.xaxis.major_label_orientation = 0.9
        self.note = html_div("", name="report-rows-note")
        self.layout = column(
            self.sheet, self.note, self.table, self.chart, sizing_mode="stretch_both"
        )

    def clear(self) -> None:
        """Hide the preview (a new report is on its way, or none could be made)."""
        self.report = None
        for w in (self.sheet, self.table, self.chart):
            w.visible = False
        self.note.text = ""

    def show(self, report: Report) -> None:
        """Show ``report``'s first sheet."""
        self.report = report
        names = [s.name for s in report.sheets]
        self.sheet.options = list(names)  # type: ignore[assignment]
        self.sheet.visible = len(names) > 1
        if self.sheet.value != names[0]:
            self.sheet.value = names[0]  # calls show_sheet
        else:
            self.show_sheet()

    def show_sheet(self) -> None:
        """Show the picked sheet in the table and the chart."""
        if self.report is None:
            return
        sheet = next((s for s in self.report.sheets if s.name == self.sheet.value), None)
        if sheet is None:
            sheet = self.report.sheets[0]
        rows = sheet.rows[:MAX_ROWS]
        data: dict[str, list[str]] = {}
        for j, _c in enumerate(sheet.columns):
            data[f"c{j}"] = [cell_text(r[j], (i, j) in sheet.notes) for i, r in enumerate(rows)]
        totals = sheet.totals()
        if totals is not None:
            for j, v in enumerate(totals):
                data[f"c{j}"].append(_("Total") if j == 0 else cell_text(v))
        self.table.columns = [
            TableColumn(field=f"c{j}", title=_header(c)) for j, c in enumerate(sheet.columns)
        ]
        self.source.data = data
        self.table.visible = True
        n = len(sheet.rows)
        self.note.text = (
            f'<span class="u" data-sheet="{html.escape(sheet.name)}" data-rows="{n}">'
            + html.escape(
                _("{n} rows; the first {max} are shown, the files have all", n=n, max=MAX_ROWS)
                if n > MAX_ROWS
                else _("{n} rows", n=n)
            )
            + "</span>"
        )
        cats, vals, label = chart_data(sheet)
        self.chart.visible = bool(cats)
        if cats:
            unique = list(dict.fromkeys(cats))
            keep = [(c, v) for c, v in zip(cats, vals, strict=True) if c in unique]
            seen: set[str] = set()
            xs, ys = [], []
            for c, v in keep:
                if c not in seen:
                    seen.add(c)
                    xs.append(c)
                    ys.append(v)
            self.x_range.factors = xs
            self.bars.data = {"x": xs, "y": ys}
            self.chart.yaxis.axis_label = label
            self.chart.title = f"{sheet.name}: {label}"
