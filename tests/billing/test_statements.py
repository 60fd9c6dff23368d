"""Household heat statements: what they say (built from the fee), the PDF and the Excel file."""

from __future__ import annotations

import io
import re
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from billing.heat_fees import HeatFee
from billing.ledger import Ledger
from billing.service import Billing
from billing.statements import (
    CORE_FONT,
    FONT_CANDIDATES,
    build_statement,
    statement_pdf,
    statement_xlsx,
)
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.config import load_site_text
from tests.billing.test_heat_fees import TARIFF, WINDOW, _fill_two_days, _site_yaml

D = Decimal


def _fee(**changes: Any) -> HeatFee:
    """b1.101 of the worked example in ``test_heat_fees`` (86.5 m2, 5000 kWh, 1585.00)."""
    fields: dict[str, Any] = {
        "household": "b1.101",
        "building": "b1",
        "area_m2": 86.5,
        "heat_kwh": D("5000.000000"),
        "area_fee": D("2162.50"),
        "advance": D("2162.50"),
        "basic": D("865.00"),
        "metered": D("720.00"),
        "floor": D("1297.50"),
        "cap": D("2595.00"),
        "total": D("1585.00"),
        "settlement": D("577.50"),
        "suspended": False,
        "suspended_days": 0,
        "paid": D("2000.00"),
        "window_days": 121,
    }
    return HeatFee(**{**fields, **changes})


START, END = 1_763_136_000.0, 1_763_136_000.0 + 121 * 86400  # 2025-11-15 .. 2026-03-16 local


def _pdf_text(pdf: bytes) -> str:
    """Return the text drawn by a PDF written with the core font (its streams inflated)."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(m.group(1)).decode("latin-1"))
        except zlib.error:
            out.append(m.group(1).decode("latin-1"))
    return "".join(re.findall(r"\((.*?)\) ?Tj", "\n".join(out)))


def test_a_statement_shows_area_heat_prices_and_the_money() -> None:
    st = build_statement(_fee(), TARIFF, START, END, "Asia/Shanghai", site_name="Riverside")
    assert st.title == "Riverside: Heating statement"
    facts = dict(st.facts)
    assert facts["Household"] == "b1.101" and facts["Heated area"] == "86.50 m²"
    assert facts["Period"] == "2025-11-15 to 2026-03-15 (121 days)"
    assert facts["Heat allocated"] == "5,000.000 kWh = 18.0000 GJ"
    assert facts["Area price"] == "25 CNY/m²" and facts["Energy price"] == "40 CNY/GJ"
    assert (facts["Minimum ratio"], facts["Maximum ratio"]) == ("0.6", "1.2")
    assert facts["Paid so far"] == "2,000.00 CNY"
    lines = {ln.label: ln for ln in st.lines}
    assert [ln.label for ln in st.lines] == [
        "Area fee (advance due)",
        "Basic fee",
        "Metered fee",
        "Total for the season",
        "Settlement (advance - total)",
    ]
    assert lines["Metered fee"].detail == "18.0000 GJ x 40 CNY/GJ"
    assert lines["Total for the season"].amount == D("1585.00")
    assert lines["Settlement (advance - total)"].detail == "to be refunded"
    assert lines["Settlement (advance - total)"].amount == D("577.50")


def test_floor_cap_and_suspension_have_their_own_lines() -> None:
    floor = build_statement(
        _fee(metered=D("72.00"), total=D("1297.50"), settlement=D("865.00"), paid=None),
        TARIFF,
        START,
        END,
        "Asia/Shanghai",
    )
    got = {ln.label: ln.amount for ln in floor.lines}
    assert got["Raised to the minimum"] == D("360.50")  # 1297.50 - 865.00 - 72.00
    assert "Paid so far" not in dict(floor.facts)
    cap = build_statement(
        _fee(metered=D("7200.00"), total=D("2595.00"), settlement=D("-432.50")),
        TARIFF,
        START,
        END,
        "Asia/Shanghai",
    )
    lines = {ln.label: ln for ln in cap.lines}
    assert lines["Limited to the maximum"].amount == D("-5470.00")
    assert lines["Settlement (advance - total)"].detail == "to pay"
    whole = build_statement(
        _fee(
            basic=D("0.00"),
            metered=D("0.00"),
            floor=None,
            cap=None,
            suspended=True,
            suspended_days=121,
            suspended_fee=D("432.50"),
            total=D("432.50"),
            settlement=D("1730.00"),
        ),
        TARIFF,
        START,
        END,
        "Asia/Shanghai",
    )
    lines = {ln.label: ln for ln in whole.lines}
    assert "Basic fee" not in lines and "Metered fee" not in lines
    assert lines["Suspended heating"].detail == "area fee x 0.2 x 121/121 days"
    assert lines["Suspended heating"].amount == D("432.50")
    assert dict(whole.facts)["Suspended"] == "121 of 121 days"


def test_the_pdf_prints_every_line_one_page_per_statement() -> None:
    a = build_statement(_fee(), TARIFF, START, END, "Asia/Shanghai", site_name="Riverside")
    b = build_statement(_fee(household="b1.102"), TARIFF, START, END, "Asia/Shanghai")
    pdf = statement_pdf([a, b], font=CORE_FONT)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 2
    text = _pdf_text(pdf)
    for s in ("Riverside: Heating statement", "b1.101", "b1.102", "86.50 m", "2,162.50"):
        assert s in text, s
    for s in ("865.00", "720.00", "1,585.00", "577.50", "to be refunded", "40 CNY/GJ"):
        assert s in text, s


def test_the_pdf_takes_a_unicode_font_for_names_beyond_latin_1() -> None:
    font = next((Path(p) for p in FONT_CANDIDATES if Path(p).is_file()), None)
    if font is None:
        pytest.skip("no Unicode TrueType font installed")
    st = build_statement(_fee(), TARIFF, START, END, "Asia/Shanghai", site_name="Ørsted Hof")
    pdf = statement_pdf(st, font=font)
    # the font is embedded: TrueType outlines (FontFile2) or CFF ones (FontFile3, Noto Sans CJK)
    assert pdf.startswith(b"%PDF-") and (b"/FontFile2" in pdf or b"/FontFile3" in pdf)
    core = _pdf_text(statement_pdf(st, font=CORE_FONT))
    assert "Ørsted Hof".encode().decode("latin-1") not in core  # no mojibake, Latin-1 kept
    assert "\xd8rsted Hof" in core


def test_the_excel_statement_has_the_same_rows() -> None:
    st = build_statement(_fee(), TARIFF, START, END, "Asia/Shanghai")
    book = openpyxl.load_workbook(io.BytesIO(statement_xlsx([st, st])))
    assert book.sheetnames == ["b1.101", "b1.101~2"]
    rows = list(book["b1.101"].iter_rows(values_only=True))
    assert rows[0][0] == "Heating statement"
    money = {r[0]: r[2] for r in rows if r and len(r) > 2 and r[2] is not None}
    assert money["Total for the season"] == pytest.approx(1585.00)
    assert money["Settlement (advance - total)"] == pytest.approx(577.50)
    facts = {r[0]: r[1] for r in rows if r and r[1] is not None and r[0]}
    assert facts["Heated area"] == "86.50 m²"


async def test_statements_from_the_historian_and_the_cli(
    ledger: Ledger, historian: SqliteHistorian, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill_two_days(historian)
    site = load_site_text(_site_yaml())
    b = Billing(site, ledger, historian, commander=None, audit=None)
    (st,) = b.heat_statements(*WINDOW, ["b1.201"])
    lines = {ln.label: ln.amount for ln in st.lines}
    assert lines["Limited to the maximum"] == D("-10.95")  # 25.00 - 7.50 - 28.45
    assert lines["Suspended heating"] == D("5.00") and lines["Total for the season"] == D("30.00")
    with pytest.raises(KeyError, match=r"b1\.s1"):
        b.heat_statements(*WINDOW, ["b1.s1"])  # the shop has no valve
    with pytest.raises(KeyError, match="unknown household"):
        b.heat_statements(*WINDOW, ["b9.1"])
    cfg = tmp_path / "site.yaml"
    cfg.write_text(_site_yaml(), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill_two_days(h)
    h.close()
    out = tmp_path / "statements"
    argv = ["bill", "heat", str(cfg), "--from", "2025-11-01", "--to", "2025-11-03"]
    argv += ["--data-dir", str(data), "--statements", str(out)]
    assert main(argv) == 0
    assert "wrote 3 statements" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["heat-b1.101.pdf", "heat-b1.102.pdf", "heat-b1.201.pdf"]
    assert (out / "heat-b1.101.pdf").read_bytes().startswith(b"%PDF-")
    assert main([*argv, "--format", "xlsx", "--household", "b1.102"]) == 0
    book = openpyxl.load_workbook(out / "heat-b1.102.xlsx")
    assert book.sheetnames == ["b1.102"]
