"""Household heat statements: one printable page per household and season (PDF or Excel).

``build_statement`` turns a ``HeatFee`` and its ``HeatTariff`` into a ``Statement`` (the
texts and amounts, computed once); ``statement_pdf`` and ``statement_xlsx`` render it. Both
show the same rows: who and when, area, heat, prices, what was paid so far, then the money
lines that lead to the settlement (area fee due in advance, basic, metered, floor or cap where
it applied, suspension, total, settlement = advance - total).

Texts go through ``i18n._`` (the caller picks the language with ``use_language``). The PDF
needs a Unicode TrueType font for texts beyond Latin-1 (Chinese names): pass ``font``, else
the first of ``FONT_CANDIDATES`` found is used, else (or with ``font=CORE_FONT``) the PDF core
font Helvetica (Latin-1 only; other characters print as ``?``). Chinese texts need a CJK font such as Debian's
``fonts-noto-cjk``; a font without a glyph leaves that character out (fpdf2 logs a warning).
:func:`add_pdf_font` embeds the CJK font (Noto Sans CJK SC of the collection) only when the
texts hold CJK characters, else a smaller Latin and Cyrillic one (DejaVu Sans). Amounts are
formatted by the current language (``i18n.formats``: ``1 234,50`` in Russian).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from billing.config import GJ_PER_GCAL, GJ_PER_KWH
from billing.heat_fees import window_days
from i18n import _
from i18n.formats import number_text

if TYPE_CHECKING:
    from billing.config import HeatTariff
    from billing.heat_fees import HeatFee

__all__ = [
    "CJK_FONTS",
    "CORE_FONT",
    "FONT_CANDIDATES",
    "XLSX_CJK_FONT",
    "Statement",
    "StatementLine",
    "add_pdf_font",
    "build_statement",
    "cjk_xlsx_fonts",
    "needs_cjk",
    "statement_pdf",
    "statement_xlsx",
]

CURRENCY = "CNY"

#: ``font=CORE_FONT``: the PDF core font (Latin-1 only), whatever fonts are installed.
CORE_FONT = "Helvetica"

#: Unicode fonts tried in order for the PDF (CJK first: site and tenant names may be Chinese).
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
#: The candidates with CJK glyphs (the others cover Latin and Cyrillic).
CJK_FONTS = frozenset(FONT_CANDIDATES[:3])
#: The font of xlsx cells in Chinese (fonts-noto-cjk; Excel substitutes a CJK font without it).
XLSX_CJK_FONT = "Noto Sans CJK SC"
#: Noto Sans CJK collections: face 2 is Simplified Chinese (SC); 0 is Japanese.
_TTC_FACE = {"NotoSansCJK-Regular.ttc": 2}


@dataclass(frozen=True, slots=True)
class StatementLine:
    """A money line: label, how it was computed (may be empty), amount; ``bold`` for totals."""

    label: str
    detail: str
    amount: Decimal
    bold: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    """One household's season statement: ``facts`` (label, value) then money ``lines``."""

    title: str
    household: str
    facts: list[tuple[str, str]]
    lines: list[StatementLine]
    note: str

    def file_name(self, suffix: str) -> str:
        """Return ``heat-<household>.<suffix>``."""
        return f"heat-{self.household}.{suffix}"


def _money(d: Decimal) -> str:
    return number_text(d, 2)


def _ratio(d: Decimal) -> str:
    return f"{d.normalize():f}"


def _energy_line(tariff: HeatTariff, heat_kwh: Decimal) -> tuple[str, str]:
    """Return (heat in the tariff's unit, the unit price) as texts."""
    unit, price = tariff.energy_price
    if unit == "kWh":
        amount = f"{heat_kwh:,.3f} kWh"
    elif unit == "GJ":
        amount = f"{heat_kwh * GJ_PER_KWH:,.4f} GJ"
    else:
        amount = f"{heat_kwh * GJ_PER_KWH / GJ_PER_GCAL:,.4f} Gcal"
    return amount, f"{_ratio(price)} {CURRENCY}/{unit}"


def build_statement(
    fee: HeatFee,
    tariff: HeatTariff,
    start: float,
    end: float,
    tz: str,
    *,
    site_name: str = "",
) -> Statement:
    """Return the statement of ``fee`` (its tariff, the billed window ``[start, end)``, site tz)."""
    first, last = window_days(start, end, tz)
    heat_text, price_text = _energy_line(tariff, fee.heat_kwh)
    facts = [
        (_("Household"), fee.household),
        (_("Building"), fee.building),
        (
            _("Period"),
            _(
                "{first} to {last} ({days} days)",
                first=first,
                last=last,
                days=(last - first).days + 1,
            ),
        ),
        (_("Heated area"), f"{fee.area_m2:,.2f} m²"),
        (
            _("Heat allocated"),
            f"{fee.heat_kwh:,.3f} kWh" + ("" if heat_text.endswith("kWh") else f" = {heat_text}"),
        ),
        (_("Area price"), f"{_ratio(tariff.area_price_per_m2)} {CURRENCY}/m²"),
        (_("Energy price"), price_text),
        (_("Basic ratio"), _ratio(tariff.basic_ratio)),
    ]
    if tariff.min_ratio is not None:
        facts.append((_("Minimum ratio"), _ratio(tariff.min_ratio)))
    if tariff.max_ratio is not None:
        facts.append((_("Maximum ratio"), _ratio(tariff.max_ratio)))
    if fee.paid is not None:
        facts.append((_("Paid so far"), f"{_money(fee.paid)} {CURRENCY}"))
    if fee.suspended:
        facts.append(
            (
                _("Suspended"),
                _("{days} of {total} days", days=fee.suspended_days, total=fee.window_days),
            )
        )
    lines = [
        StatementLine(
            _("Area fee (advance due)"),
            f"{fee.area_m2:g} m² x {_ratio(tariff.area_price_per_m2)}",
            fee.advance,
        )
    ]
    active = fee.suspended_days < fee.window_days or not fee.suspended
    if active:
        lines.append(
            StatementLine(
                _("Basic fee"), _("area fee x {r}", r=_ratio(tariff.basic_ratio)), fee.basic
            )
        )
        lines.append(StatementLine(_("Metered fee"), f"{heat_text} x {price_text}", fee.metered))
    if fee.limit == "floor" and fee.floor is not None:
        lines.append(
            StatementLine(_("Raised to the minimum"), "", fee.floor - fee.basic - fee.metered)
        )
    elif fee.limit == "cap" and fee.cap is not None:
        lines.append(
            StatementLine(_("Limited to the maximum"), "", fee.cap - fee.basic - fee.metered)
        )
    if fee.suspended:
        lines.append(
            StatementLine(
                _("Suspended heating"),
                _(
                    "area fee x {r} x {days}/{total} days",
                    r=_ratio(tariff.suspended_fee_ratio),
                    days=fee.suspended_days,
                    total=fee.window_days,
                ),
                fee.suspended_fee,
            )
        )
    lines.append(StatementLine(_("Total for the season"), "", fee.total, bold=True))
    lines.append(
        StatementLine(
            _("Settlement (advance - total)"),
            _("to be refunded")
            if fee.settlement > 0
            else _("to pay")
            if fee.settlement < 0
            else "",
            fee.settlement,
            bold=True,
        )
    )
    title = _("Heating statement")
    if site_name:
        title = f"{site_name}: {title}"
    note = _("Amounts in {currency}, each rounded half-up to the cent.", currency=CURRENCY)
    return Statement(title, fee.household, facts, lines, note)


def _font(font: str | Path | None, texts: Sequence[str] | None = None) -> Path | None:
    """Return the TrueType file for ``font`` (module docstring); None: the core font.

    With ``texts``, a font with CJK glyphs only when they hold CJK characters.
    """
    if font == CORE_FONT:
        return None
    if font is not None:
        return Path(font)
    found = [p for p in FONT_CANDIDATES if Path(p).is_file()]
    if texts is not None and not needs_cjk(texts):
        found.sort(key=lambda p: p in CJK_FONTS)  # Latin and Cyrillic: the small font first
    return Path(found[0]) if found else None


def needs_cjk(texts: Sequence[str]) -> bool:
    """Return whether any of ``texts`` holds a CJK character (or a full-width sign)."""
    return any(
        "\u2e80" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" or "\uff00" <= c <= "\uffef"
        for t in texts
        for c in t
    )


def add_pdf_font(pdf: Any, name: str, font: str | Path | None, texts: Sequence[str]) -> str | None:
    """Add the font for ``texts`` to ``pdf`` as ``name``; return it, or None for the core font.

    A CJK font is embedded only when ``texts`` need it (the PDF stays small otherwise).
    """
    path = _font(font, texts)
    if path is None:
        return None
    pdf.add_font(name, "", str(path), collection_font_number=_TTC_FACE.get(path.name, 0))
    return name


def statement_pdf(
    statements: Statement | Sequence[Statement], *, font: str | Path | None = None
) -> bytes:
    """Return a PDF of one page per statement (A4); ``font`` a TrueType file (module docstring)."""
    from fpdf import FPDF

    pages = [statements] if isinstance(statements, Statement) else list(statements)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    texts = [t for st in pages for t in _statement_texts(st)]
    added = add_pdf_font(pdf, "statement", font, texts)
    family = added or CORE_FONT

    def text(s: str) -> str:
        return s if added is not None else s.encode("latin-1", "replace").decode("latin-1")

    for st in pages:
        pdf.add_page()
        pdf.set_font(family, size=15)
        pdf.cell(0, 10, text(st.title), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font(family, size=10)
        for label, value in st.facts:
            pdf.cell(50, 6, text(label))
            pdf.cell(0, 6, text(value), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        width = pdf.epw
        for ln in st.lines:
            pdf.set_font(family, size=11 if ln.bold else 10)
            if ln.bold:
                pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
            pdf.cell(60, 7, text(ln.label))
            pdf.cell(width - 60 - 35, 7, text(ln.detail))
            pdf.cell(35, 7, text(_money(ln.amount)), align="R", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(6)
        pdf.set_font(family, size=8)
        pdf.multi_cell(0, 5, text(st.note))
    return bytes(pdf.output())


def _statement_texts(st: Statement) -> list[str]:
    texts = [st.title, st.note, *(t for fact in st.facts for t in fact)]
    return texts + [t for ln in st.lines for t in (ln.label, ln.detail)]


def cjk_xlsx_fonts(ws: Any) -> bool:
    """Give every cell of worksheet ``ws`` a CJK font when the language is Chinese or a cell needs it.

    Keeps each cell's bold and size; returns whether the font was set.
    """
    from openpyxl.styles import Font

    from i18n import current_language

    cells = [c for row in ws.iter_rows() for c in row if c.value is not None]
    if current_language() != "zh_CN" and not needs_cjk([str(c.value) for c in cells]):
        return False
    for c in cells:
        c.font = Font(name=XLSX_CJK_FONT, bold=c.font.bold, size=c.font.size)
    return True


def statement_xlsx(statements: Statement | Sequence[Statement]) -> bytes:
    """Return an Excel workbook with one worksheet per statement (money as numbers, 0.00)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    pages = [statements] if isinstance(statements, Statement) else list(statements)
    wb = Workbook()
    default = wb.active
    if default is not None:
        wb.remove(default)
    for st in pages:
        ws = wb.create_sheet(_sheet_name(st.household, wb.sheetnames))
        ws.append([st.title])
        ws["A1"].font = Font(bold=True, size=12)
        ws.append([])
        for label, value in st.facts:
            ws.append([label, value])
        ws.append([])
        for ln in st.lines:
            ws.append([ln.label, ln.detail, float(ln.amount)])
            row = ws[ws.max_row]
            row[2].number_format = "#,##0.00"
            if ln.bold:
                for cell in row:
                    cell.font = Font(bold=True)
        ws.append([])
        ws.append([st.note])
        ws.column_dimensions["A"].width = 32
        ws.column_dimensions["B"].width = 40
        ws.column_dimensions["C"].width = 14
        cjk_xlsx_fonts(ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _sheet_name(household: str, taken: list[str]) -> str:
    """Return a worksheet name for ``household`` (31 characters, none of ``[]:*?/\\``)."""
    base = "".join("_" if c in "[]:*?/\\" else c for c in household)[:31] or "statement"
    name, n = base, 2
    while name in taken:
        suffix = f"~{n}"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    return name
