"""PDF output of a report (``billing.reports.Report``): fpdf2, A4 landscape.

Each page starts with the report's title (site and period), the time it was generated (site
time zone) and the page number; each sheet is a table whose header row is repeated on every
page, the flagged (uncertain) cells carry a trailing ``*`` as in CSV, and the totals row
closes it. A sheet wider than the page (a month of day columns) is cut into column groups
that each repeat the sheet's first column (the meter, building or day), one group after the
other. Fonts as ``billing.statements``: the first installed CJK / Unicode font of
``FONT_CANDIDATES`` (Chinese names), else the core font Helvetica (Latin-1 only).
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from billing.statements import _font
from i18n import _

if TYPE_CHECKING:
    from fpdf import FPDF

    from billing.reports import Report, Sheet

__all__ = ["report_pdf"]

#: Table text size (pt) and row height (mm).
FONT_PT = 7.0
ROW_MM = 4.6
#: Narrowest and widest column (mm).
MIN_COL_MM = 12.0
MAX_COL_MM = 60.0


def cell_text(v: Any, flagged: bool = False) -> str:
    """Return a report cell as text: money to the cent, None empty, a flagged cell with ``*``."""
    if v is None:
        s = ""
    elif isinstance(v, Decimal):
        s = f"{v:.2f}"
    elif isinstance(v, float):
        s = repr(round(v, 6)) if v == v else ""
    else:
        s = str(v)
    return f"{s}*" if flagged else s


def _unit(c: Any) -> str:
    return f"[{c.unit}]" if c.unit else ""


class _Pdf:
    """One report's document: the page heading and the paged tables."""

    def __init__(self, report: Report, tz: str, generated_ts: float, font: str | Path | None):
        from fpdf import FPDF

        self.report = report
        self.pdf: FPDF = FPDF(orientation="L", format="A4")
        self.pdf.set_margins(10, 10, 10)
        self.pdf.set_auto_page_break(auto=False)
        path = _font(font)
        self.unicode = path is not None
        self.family = "Helvetica"
        if path is not None:
            self.pdf.add_font("report", "", str(path))
            self.family = "report"
        when = datetime.fromtimestamp(generated_ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")
        self.generated = _("generated {time}", time=when)
        self.bottom = self.pdf.h - 12

    def text(self, s: str) -> str:
        return s if self.unicode else s.encode("latin-1", "replace").decode("latin-1")

    def page(self) -> None:
        p = self.pdf
        p.add_page()
        p.set_font(self.family, size=11)
        p.cell(0, 6, self.text(self.report.title), new_x="LMARGIN", new_y="NEXT")
        p.set_font(self.family, size=8)
        line = _(
            "period {period}; {generated}; page {page}",
            period=self.report.period.label,
            generated=self.generated,
            page=p.page_no(),
        )
        p.cell(0, 5, self.text(line), new_x="LMARGIN", new_y="NEXT")
        p.ln(1)

    def widths(self, sheet: Sheet, rows: list[list[str]]) -> list[float]:
        p = self.pdf
        p.set_font(self.family, size=FONT_PT)
        out = []
        for j, c in enumerate(sheet.columns):
            w = max(p.get_string_width(self.text(c.name)), p.get_string_width(_unit(c)))
            for r in rows[:400]:  # the widest of the first rows: enough, and fast
                w = max(w, p.get_string_width(self.text(r[j])))
            out.append(min(MAX_COL_MM, max(MIN_COL_MM, w + 2.5)))
        return out

    def groups(self, widths: list[float]) -> list[list[int]]:
        """Return the column groups that fit the page, each starting with column 0."""
        room = self.pdf.w - self.pdf.l_margin - self.pdf.r_margin
        if sum(widths) <= room or len(widths) < 2:
            return [list(range(len(widths)))]
        out: list[list[int]] = []
        cur = [0]
        used = widths[0]
        for j in range(1, len(widths)):
            if used + widths[j] > room and len(cur) > 1:
                out.append(cur)
                cur, used = [0], widths[0]
            cur.append(j)
            used += widths[j]
        out.append(cur)
        return out

    def row(
        self,
        cells: list[str],
        widths: list[float],
        bold: bool,
        border: str,
        aligns: list[str] | None = None,
    ) -> None:
        p = self.pdf
        p.set_font(self.family, size=FONT_PT, style="B" if bold and not self.unicode else "")
        for i, (w, c) in enumerate(zip(widths, cells, strict=True)):
            text = self.text(c)
            while text and p.get_string_width(text) > w - 1:
                text = text[:-1]  # a cell never spills into the next
            if aligns is not None:
                align = aligns[i]
            else:
                align = "L" if i == 0 else ("R" if _numeric(c) else "L")
            p.cell(w, ROW_MM, text, border=border, align=align)
        p.ln(ROW_MM)

    def head(self, names: list[str], units: list[str], widths: list[float]) -> None:
        """Draw a table's header: the column names, under them the units (when any has one)."""
        aligns = ["R" if u else "L" for u in units]
        if any(units):
            self.row(names, widths, True, "", aligns)
            self.row(units, widths, True, "B", aligns)
        else:
            self.row(names, widths, True, "B", aligns)

    def sheet(self, sheet: Sheet) -> None:
        p = self.pdf
        rows = [
            [cell_text(v, (i, j) in sheet.notes) for j, v in enumerate(r)]
            for i, r in enumerate(sheet.rows)
        ]
        totals = sheet.totals()
        total_row = None if totals is None else [cell_text(v) for v in totals]
        if total_row is not None:
            total_row[0] = _("Total")
        widths = self.widths(sheet, rows + ([total_row] if total_row else []))
        groups = self.groups(widths)
        for g, cols in enumerate(groups):
            name = sheet.name if len(groups) == 1 else f"{sheet.name} ({g + 1}/{len(groups)})"
            if p.get_y() + 4 * ROW_MM > self.bottom:
                self.page()
            p.set_font(self.family, size=9)
            p.cell(0, 6, self.text(name), new_x="LMARGIN", new_y="NEXT")
            ws = [widths[j] for j in cols]
            head = [sheet.columns[j].name for j in cols]
            units = [_unit(sheet.columns[j]) for j in cols]
            self.head(head, units, ws)
            if not rows:
                self.row([_("no rows")] + [""] * (len(cols) - 1), ws, False, "")
            for r in rows:
                if p.get_y() + ROW_MM > self.bottom:
                    self.page()
                    self.head(head, units, ws)  # the header repeats on every page
                self.row([r[j] for j in cols], ws, False, "")
            if total_row is not None:
                if p.get_y() + ROW_MM > self.bottom:
                    self.page()
                    self.head(head, units, ws)
                self.row([total_row[j] for j in cols], ws, True, "T")
            p.ln(3)

    def render(self) -> bytes:
        self.page()
        for sheet in self.report.sheets:
            self.sheet(sheet)
        return bytes(self.pdf.output())


def _numeric(s: str) -> bool:
    t = s.rstrip("*").replace(",", "")
    if not t:
        return False
    try:
        float(t)
    except ValueError:
        return False
    return True


def report_pdf(
    report: Report,
    tz: str,
    *,
    generated_ts: float | None = None,
    font: str | Path | None = None,
) -> bytes:
    """Return ``report`` as a PDF (A4 landscape; module docstring); ``tz`` the site's zone.

    ``generated_ts`` (epoch seconds, default now) is printed on every page; ``font`` a
    TrueType file, or ``billing.statements.CORE_FONT`` for Helvetica. Blocking (fpdf2 builds
    the file in memory): run it in a worker thread from the event loop.
    """
    ts = time.time() if generated_ts is None else generated_ts
    return _Pdf(report, tz, ts, font).render()
