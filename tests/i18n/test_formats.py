"""Formats by locale (issue 20, item 4) and fonts in PDFs and xlsx (item 5)."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from billing.ledger import EntryKind
from billing.receipts import Method, Receipt, receipt_pdf
from billing.statements import (
    CJK_FONTS,
    FONT_CANDIDATES,
    XLSX_CJK_FONT,
    Statement,
    StatementLine,
    statement_xlsx,
)
from hmi.mimic_entry import EntryRow, entry_text
from hmi.tenant_labels import money_text
from hmi.timefmt import localised_time_text
from i18n import use_language
from i18n.formats import date_text, energy_in, energy_text, number_text

TS = datetime(2026, 12, 7, 15, 9, 41, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
CJK_FONT = next((p for p in FONT_CANDIDATES if p in CJK_FONTS and Path(p).is_file()), None)


@pytest.mark.parametrize(
    ("language", "cny", "rub", "number"),
    [
        ("en", "1,234.50 CNY", "1,234.50 RUB", "1,234.6"),
        ("zh_CN", "¥1,234.50", "RUB1,234.50", "1,234.6"),
        ("ru", "1\xa0234,50\xa0CN¥", "1\xa0234,50\xa0₽", "1\xa0234,6"),
    ],
)
def test_money_and_numbers_by_locale(language: str, cny: str, rub: str, number: str) -> None:
    with use_language(language):
        assert money_text(Decimal("1234.5")) == cny
        assert money_text("1234.5", "RUB") == rub
        assert number_text(1234.56, 1) == number
        assert money_text(None) == "—" and money_text(float("nan")) == "—"
        cent = money_text(Decimal("0.005"))  # half-up to the cent, as billing rounds
        assert "0.01" in cent or "0,01" in cent


def test_dates_and_times_by_locale() -> None:
    tz = "Asia/Shanghai"
    with use_language("en"):
        assert localised_time_text(TS, tz) == "2026-12-07 15:09:41 CST"
    with use_language("zh_CN"):
        assert localised_time_text(TS, tz) == "2026年12月7日 15:09:41 CST"
        assert localised_time_text(TS, tz, date=False, now=TS) == "15:09:41 CST"
        assert localised_time_text(None, tz) == "—"
    with use_language("ru"):
        assert localised_time_text(TS, tz) == "07.12.2026 15:09:41 CST"
        # another day than now: the date is shown even when only the time was asked for
        assert localised_time_text(TS, tz, date=False, now=TS + 3 * 86400).startswith("07.12.2026")
    moment = datetime.fromtimestamp(TS, ZoneInfo(tz))
    assert date_text(moment, "ru") == "07.12.2026"


def test_heat_energy_in_the_sites_unit() -> None:
    assert energy_in(277.778, "GJ") == pytest.approx(1.0)
    assert energy_in(1163.0, "Gcal") == pytest.approx(1.0)
    assert energy_text(2777.78, "GJ", "en") == ("10.000", "GJ")
    assert energy_text(11630.0, "Gcal", "ru") == ("10,000", "Gcal")
    assert energy_text(1234.56, "kWh", "en") == ("1,234.6", "kWh")
    assert energy_text(float("nan"), "GJ", "en") == ("—", "GJ")
    # the building page's heat meter row shows the site's unit; kWh stays as it was
    row = EntryRow("hm", "energy", "b1.hm.energy_kwh", 0, "energy")
    with use_language("en"):
        assert entry_text(row, 2777.78, 0, "kWh", "GJ")[0] == "energy 10.000 GJ"
        assert entry_text(row, 2777.78, 0, "kWh")[0] == "energy 2,778 kWh"


def _receipt(cashier: str = "王芳") -> Receipt:
    return Receipt(
        number=7,
        seq=42,
        account="b1.101.em",
        kind=EntryKind.TOPUP,
        amount=Decimal("200"),
        balance_before=Decimal("1234.5"),
        balance_after=Decimal("1434.5"),
        method=Method.CASH,
        cashier=cashier,
        ts=TS,
    )


@pytest.mark.skipif(
    CJK_FONT is None, reason="no CJK font (scripts/system-deps.sh installs fonts-noto-cjk)"
)
def test_a_chinese_pdf_receipt_embeds_a_cjk_font_and_reads_back() -> None:
    with use_language("zh_CN"):
        pdf = receipt_pdf(
            _receipt(), title="示范供热小区", time_text="2026年12月7日 15:09:41 CST", currency="CNY"
        )
    assert b"NotoSansCJKSC" in pdf  # the Simplified Chinese face of the collection, embedded
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    for want in ("示范供热小区", "收据", "王芳", "¥1,434.50", "2026年12月7日"):
        assert want in text, (want, text)


@pytest.mark.skipif(CJK_FONT is None, reason="no CJK font installed")
def test_a_russian_receipt_takes_the_small_font_and_keeps_cyrillic() -> None:
    with use_language("ru"):
        pdf = receipt_pdf(
            _receipt("Иванова"), title="Квартал", time_text="07.12.2026", currency="RUB"
        )
    assert b"NotoSansCJK" not in pdf and b"DejaVuSans" in pdf  # no CJK font when none is needed
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout
    assert "Квартал" in text.decode() and "₽" in text.decode()


def test_xlsx_cells_get_a_cjk_font_in_chinese() -> None:
    st = Statement(
        "示范供热小区: 供暖结算单",
        "b1.101",
        [("面积", "80 m²")],
        [StatementLine("合计", "", Decimal(1))],
        "",
    )
    with use_language("zh_CN"):
        ws = load_workbook(io.BytesIO(statement_xlsx(st))).active
    assert ws is not None
    assert ws["A1"].font.name == XLSX_CJK_FONT and ws["A1"].font.b
    assert {c.font.name for row in ws.iter_rows() for c in row if c.value is not None} == {
        XLSX_CJK_FONT
    }
    plain = Statement("Estate: statement", "b1.101", [("area", "80 m²")], [], "")
    with use_language("en"):
        ws = load_workbook(io.BytesIO(statement_xlsx(plain))).active
    assert ws is not None and ws["A1"].font.name != XLSX_CJK_FONT
