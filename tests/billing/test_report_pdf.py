"""PDF reports (``billing.report_pdf``): read back with ``pdftotext``; the CLI writes them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from billing.ledger import Ledger
from billing.periods import parse_period
from billing.report_pdf import report_pdf
from billing.reports import Column, Report, Sheet, build_report
from billing.service import Billing
from billing.statements import CORE_FONT
from historian.base import Sample
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.services.audit import AuditLog
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

TZ = "Asia/Shanghai"
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="no pdftotext")


def pdf_text(data: bytes, tmp_path: Path) -> tuple[int, list[str]]:
    """Return the page count and each page's text of a PDF (``pdfinfo`` / ``pdftotext``)."""
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    pages = int(next(ln for ln in info.stdout.splitlines() if ln.startswith("Pages:")).split()[1])
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return pages, text.split("\f")[:pages]


def _fill_month(h: SqliteHistorian) -> None:
    ts = np.arange(NOV1 - HOUR, NOV1 + 30 * 24 * HOUR + 1, 3 * HOUR)
    x = (ts - NOV1) / HOUR
    write(h, "e.101.energy_kwh", [(float(t), 100.0 + v) for t, v in zip(ts, x, strict=True)])
    write(h, "e.main.energy_kwh", [(float(t), 2.0 * v) for t, v in zip(ts, x, strict=True)])
    write(h, "b1.hm.energy_kwh", [(float(t), 5000.0 + 25 * v) for t, v in zip(ts, x, strict=True)])


@needs_poppler
def test_long_sheet_pages_with_its_header_and_totals(tmp_path: Path) -> None:
    p = parse_period("2025-11", TZ)
    sheet = Sheet("flats", [Column("flat"), Column("heat", "kWh", True), Column("note")])
    sheet.rows = [[f"b1.{i:03d}", float(i), "" if i % 7 else "check"] for i in range(150)]
    sheet.notes[(3, 1)] = "gap"
    report = Report("demo", p, "Test site: flats, 2025-11", [sheet])
    pages, texts = pdf_text(report_pdf(report, TZ, generated_ts=NOV1), tmp_path)
    assert pages >= 3
    for page in texts:  # every page: title, period, page number, the table's header
        assert "Test site: flats, 2025-11" in page
        assert "period 2025-11" in page and "generated 2025-11-01 00:00 CST" in page
        assert "heat" in page and "[kWh]" in page  # the header: names, then units
    assert f"page {pages}" in texts[-1]
    whole = "\n".join(texts)
    assert "b1.000" in whole and "b1.149" in texts[-1]
    assert "3.0*" in whole  # a flagged cell, as in CSV
    total = next(ln for ln in texts[-1].splitlines() if ln.strip().startswith("Total"))
    assert total.split()[1] == str(float(sum(range(150))))


@needs_poppler
def test_month_of_days_splits_columns_and_keeps_the_figures(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path
) -> None:
    _fill_month(historian)
    b = Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)
    report = build_report(b, "meter_energy", "2025-11")
    _pages, texts = pdf_text(report_pdf(report, b.tz), tmp_path)
    whole = "\n".join(texts)
    # 30 day columns do not fit one A4 width: column groups, each with the meter column
    assert "electricity (1/" in whole and "heat (2/" in whole
    assert whole.count("b1.hm.energy_kwh") >= 2
    assert "2025-11-30" in whole and "total" in whole and "[kWh]" in whole
    heat = next(s for s in report.sheets if s.name == "heat")
    assert heat.rows[0][-2] == pytest.approx(30 * 24 * 25.0)
    assert "18000.0" in whole  # the month's heat, as the other formats give it
    # the core font (no TrueType file) still makes a readable PDF
    core = report_pdf(report, b.tz, font=CORE_FONT)
    assert core.startswith(b"%PDF") and pdf_text(core, tmp_path)[0] >= 1


@needs_poppler
def test_cli_writes_pdf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site_text(free_port()), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill_month(h)
    h.close()
    common = [str(cfg), "--data-dir", str(data), "--from", "2025-11-01", "--to", "2025-11-03"]
    out = tmp_path / "energy.pdf"
    assert main(["report", "meter_energy", *common, "--pdf", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    out2 = tmp_path / "heat.pdf"
    assert main(["report", "heat_meter_days", *common, "--format", "pdf", "-o", str(out2)]) == 0
    _, texts = pdf_text(out2.read_bytes(), tmp_path)
    assert "operating" in texts[0] and "b1" in texts[0]
    capsys.readouterr()
    assert main(["report", "meter_energy", *common, "--format", "pdf"]) == 2
    assert "needs --output" in capsys.readouterr().err


async def test_rest_serves_pdf_and_the_runtime_schedules_report_jobs(tmp_path: Path) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.scada.server_fixtures import start_served

    site = await start_served(tmp_path)
    try:
        await site.wait_good(["b1.hm.energy_kwh"])
        tz = ZoneInfo(site.runtime.site.site.timezone)
        jan = datetime(2020, 1, 15, 12, tzinfo=tz).timestamp()
        site.runtime.historian.write([Sample("b1.hm.energy_kwh", jan, 1234.5678)])
        month = "2020-01"
        resp = await site.http.fetch(
            f"{site.url}/api/reports/meter_readings?period={month}&format=pdf",
            headers={"Authorization": f"Bearer {site.tokens['viewer']}"},
            raise_error=False,
        )
        assert resp.code == 200, resp.body
        assert resp.headers["Content-Type"] == "application/pdf"
        assert resp.body.startswith(b"%PDF")
        assert f'meter_readings-{month}.pdf"' in resp.headers["Content-Disposition"]
        st, body, _ = await site.api(
            "GET", "/api/reports/heat_meter_days?period=2001-01&format=pdf"
        )
        assert st == 400 and "outside the stored history" in str(body)
        jobs = {j.id for j in site.runtime.scheduler.get_jobs()}
        assert {"reports.subscriptions", "reports.counter_days"} <= jobs
    finally:
        for conn in site.sockets:
            conn.close()
        await site.runtime.stop()
    assert site.runtime.report_delivery is None
