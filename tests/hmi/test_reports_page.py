"""The report centre in headless Chromium: pick, preview, download a real xlsx and PDF, bad input
as a message, subscriptions listed / edited / deleted, and the page at three screen sizes."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from scada.services.subscriptions import SubscriptionStore
from tests.hmi.conftest import model_data, screenshot

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _select(page: Any, title: str) -> Any:
    return page.locator(".bk-Select", has_text=title).first.locator("select")


def _input(page: Any, title: str) -> Any:
    return page.locator(".bk-TextInput", has_text=title).first.locator("input")


async def _state(page: Any, state: str) -> str:
    loc = page.locator(f"[data-report-state='{state}']")
    await loc.wait_for(timeout=60000)
    return str(await loc.inner_text())


async def _show(page: Any) -> None:
    await page.locator(".bk-btn", has_text="Show report").click()


async def _download(page: Any, fmt: str, dest: Path) -> bytes:
    async with page.expect_download() as info:
        await page.locator(f"[data-report-file='{fmt}']").click()
    download = await info.value
    path = dest / download.suggested_filename
    await download.save_as(str(path))
    return path.read_bytes()


async def test_report_centre_previews_and_downloads(open_page, rig, tmp_path: Path) -> None:
    probe = await open_page("reports", "olga")
    page = probe.page
    assert "Reports" in await page.locator(".hmi-nav").inner_text()
    await _select(page, "Report").select_option(label="Meter readings")
    await _select(page, "Period").select_option(label="this month")
    await _show(page)
    title = await _state(page, "shown")
    assert "Meter readings" in title
    note = page.locator("[data-sheet='readings']")
    await note.wait_for()
    assert int(await note.get_attribute("data-rows") or 0) > 0
    shown = await model_data(page, "report-rows")
    assert "b1.hm.energy_kwh" in shown["c0"]
    await page.locator(".slick-cell", has_text="b1.hm.energy_kwh").first.wait_for()
    xlsx = await _download(page, "xlsx", tmp_path)
    wb = openpyxl.load_workbook(io.BytesIO(xlsx))
    assert wb.sheetnames == ["readings"]
    meters = [r[0] for r in wb["readings"].iter_rows(min_row=3, values_only=True)]
    assert "b1.hm.energy_kwh" in meters
    pdf = await _download(page, "pdf", tmp_path)
    assert pdf.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        (tmp_path / "r.pdf").write_bytes(pdf)
        text = subprocess.run(
            ["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Meter readings" in text and "b1.hm.energy_kwh" in text
    await screenshot(page, "reports-1920")
    # a building's heat meter sheet of this month, with its chart
    await _select(page, "Report").select_option(label="Heat meter daily parameters")
    await _select(page, "Scope").select_option(index=1)
    await _show(page)
    # the previous report stays shown until this one replaces it: wait for the new title
    shown = page.locator("[data-report-state='shown']", has_text="Heat meter daily parameters")
    await shown.wait_for(timeout=60000)
    assert "(b" in str(await shown.inner_text())
    await page.locator("[data-sheet='heat-meter']").wait_for()
    await screenshot(page, "reports-heat-1920")
    assert probe.errors == []


async def test_bad_input_is_a_message(open_page, rig) -> None:
    probe = await open_page("reports", "olga")
    page = probe.page
    await _select(page, "Report").select_option(label="Energy per meter and bucket")
    await _select(page, "Period").select_option(label="from / to")
    await _input(page, "from (YYYY-MM-DD)").fill("2001-01-01")
    await _input(page, "to, last day").fill("2001-01-31")
    await _show(page)
    assert "outside the stored history" in await _state(page, "error")
    assert await page.locator("[data-report-file]").count() == 0
    await _input(page, "to, last day").fill("Jan 31")
    await _show(page)
    await page.locator("[data-report-state='error']", has_text="to: expected a date").wait_for()
    await _select(page, "Report").select_option(label="Household statement")
    await _input(page, "to, last day").fill("2001-01-31")
    await _show(page)  # a household without any data in the period
    # the previous error stays on the page until this answer replaces it: wait for the new one
    error = page.locator("[data-report-state='error']", has_text=re.compile("household", re.I))
    await error.wait_for(timeout=60000)
    await screenshot(page, "reports-error-1920")
    assert probe.errors == []


async def test_subscriptions_on_the_page(open_page, rig) -> None:
    probe = await open_page("reports", "olga")
    page = probe.page
    await page.locator(".bk-tab", has_text="E-mail subscriptions").click()
    panel = page.locator(".bk-Row", has=page.locator(".bk-btn", has_text="Subscribe")).last
    kinds = page.locator(".bk-Select", has_text="Report").locator("select")
    await kinds.nth(1).select_option(label="Heat meter daily parameters")
    recipients = _input(page, "e-mail recipients")
    await recipients.fill("not-an-address")
    await page.locator(".bk-btn", has_text="Subscribe").click()
    await page.locator("[data-sub-message='error']", has_text="recipients:").wait_for()
    await recipients.fill("office@heat.example")
    await _select(panel, "Schedule").select_option(label="weekly")
    await page.locator(".bk-btn", has_text="Subscribe").click()
    await page.locator("[data-sub-message='added']").wait_for()
    store = SubscriptionStore.in_data_dir(rig.runtime.data_dir, "UTC")
    try:
        (sub,) = [s for s in store.all("olga") if s.kind == "heat_meter_days"]
        assert sub.every == "weekly" and sub.recipients == ("office@heat.example",)
        row = page.locator(".slick-row", has_text="heat_meter_days (pdf)")
        await row.first.locator(".slick-cell").first.click()
        at = _input(page, "at (HH:MM)")
        await at.fill("06:15")
        await at.press("Enter")
        await page.locator(".bk-btn", has_text="Save changes").click()
        await page.locator("[data-sub-message='saved']").wait_for()
        assert store.get(sub.id).at == "06:15"
        await screenshot(page, "reports-subscriptions-1920")
        await row.first.locator(".slick-cell").first.click()
        await page.locator(".bk-btn", has_text="Delete").click()
        await page.locator("[data-sub-message='deleted']").wait_for()
        assert all(s.id != sub.id for s in store.all())
    finally:
        store.close()
    assert probe.errors == []


@pytest.mark.parametrize(("width", "height", "query"), [(390, 844, ""), (3840, 2160, "?wall=1")])
async def test_report_page_fits_phone_and_wall(open_page, rig, width, height, query) -> None:
    probe = await open_page("reports", "olga", width=width, height=height, query=query)
    page = probe.page
    await _select(page, "Report").select_option(label="Meter readings")
    await _show(page)
    await _state(page, "shown")
    await screenshot(page, f"reports-{width}")
    wide = await page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= width
    show = await page.locator(".bk-btn", has_text="Show report").bounding_box()
    assert show is not None and show["x"] >= 0 and show["x"] + show["width"] <= width
    assert probe.errors == []


async def _trend_download(page: Any, fmt: str, dest: Path) -> bytes:
    async with page.expect_download() as info:
        await page.locator(f"[data-trend-file='{fmt}']").click()
    download = await info.value
    path = dest / download.suggested_filename
    await download.save_as(str(path))
    return path.read_bytes()


async def test_trend_export_downloads_the_shown_series(open_page, rig, tmp_path: Path) -> None:
    tag = "b1.hm.energy_kwh"
    probe = await open_page("trends", "olga", query=f"?tags={tag}&view=day")
    page = probe.page
    await page.locator("[data-bars]").wait_for(timeout=30000)
    await page.locator(".bk-btn", has_text="Export CSV / xlsx").click()
    await page.locator("[data-trend-file='xlsx']").wait_for(timeout=30000)
    ws = openpyxl.load_workbook(io.BytesIO(await _trend_download(page, "xlsx", tmp_path)))["trend"]
    assert "consumption per day" in ws["A1"].value
    assert [c.value for c in ws[2]] == ["time", f"{tag} [kWh]"]
    rows = list(ws.iter_rows(min_row=3, values_only=True))
    assert rows and all(r[0].endswith("00:00:00") for r in rows)  # local midnights
    # values: the time-weighted means of the shown range, as CSV
    await (
        page.locator(".bk-Select")
        .filter(has_text="consumption per day")
        .locator("select")
        .select_option(label="values")
    )
    await page.locator("[data-points]").wait_for(timeout=30000)
    await page.locator(".bk-btn", has_text="Export CSV / xlsx").click()
    await page.locator("[data-trend-file='csv'][data-view='values']").wait_for(timeout=30000)
    text = (await _trend_download(page, "csv", tmp_path)).decode("utf-8").splitlines()
    assert "last day" in text[0] and text[1] == f"time,{tag} [kWh]" and len(text) > 2
    await screenshot(page, "trends-export-1920")
    assert probe.errors == []
