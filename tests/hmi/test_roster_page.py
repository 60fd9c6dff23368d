"""The roster page (issue 16 item 3), in headless Chromium against the HMI test site: a roster
with a bad row shows the row and column named and imports nothing; a good one shows the dry run
(what would be added), then applies after a confirm step (the account is open); the export
downloads a real xlsx workbook; a cashier may check a roster but not apply or export it; the
page at a desktop, a wall and a phone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from tests.hmi.conftest import screenshot
from tests.hmi.test_cashier_accounts import ADMIN, CASHIER, office_meters, users

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEADER = b"building,flat,area_m2,tenant,phone,email,meter,tariff,opening_balance\n"
BAD = (
    HEADER
    + b"b1,911,48,Zhao Lei,+86 139 0000 0911,zhao@example.org,office.m4,home-tier,12.00\n"
    + b"b1,912,50,Qian Yu,,,no.such.meter,home-tier,3.00\n"
    + b"b1,913,50,Sun Li,not a phone,,office.m5,home-tier,3.00\n"
)
GOOD = HEADER + b"b1,911,48,Zhao Lei,+86 139 0000 0911,zhao@example.org,office.m4,home-tier,12.00\n"


async def _upload(page: Any, tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    await page.locator("input[type=file]").set_input_files(str(path))
    await page.locator("[name='roster-note'], .bk-Div", has_text=f"{name} read").last.wait_for()
    await page.locator(".bk-btn", has_text="Dry run").click()


async def test_a_bad_row_imports_nothing_then_a_good_file_applies(
    open_page, rig, tmp_path: Path
) -> None:
    await office_meters(rig)
    billing = rig.runtime.services.billing
    config = rig.runtime.config
    version = config.current_version()
    probe = await open_page("roster", ADMIN)
    page = probe.page
    await _upload(page, tmp_path, "bad.csv", BAD)
    await page.locator("[data-issues]").wait_for(timeout=20000)
    issues = page.locator("li[data-issue]")
    texts = [await issues.nth(i).inner_text() for i in range(await issues.count())]
    assert any("row 3" in t and "column meter" in t for t in texts), texts
    assert any("row 4" in t and "column phone" in t for t in texts), texts
    assert await page.locator(".bk-btn", has_text="Apply").is_disabled()
    await screenshot(page, "roster-bad-row")
    assert config.current_version() == version and "b1.911" not in billing.account_ids()
    # the good file: the dry run, then apply after the confirm step
    await _upload(page, tmp_path, "good.csv", GOOD)
    await page.locator("[data-dry-run='ok']").wait_for(timeout=20000)
    added = page.locator("tr[data-part='accounts']")
    assert await added.get_attribute("data-added") == "1"
    assert config.current_version() == version  # a dry run applies nothing
    await page.locator(".bk-btn", has_text="Apply").click()
    await page.locator("[data-confirm='roster']").wait_for()
    await page.locator(".bk-btn:visible", has_text="Confirm").click()
    await page.locator("[data-applied]").wait_for(timeout=30000)
    assert config.current_version() == version + 1
    assert rig.runtime.ledger.is_open("b1.911")
    assert billing.account_config("b1.911").config.tenant == "Zhao Lei"
    await screenshot(page, "roster-applied")
    # the export: a real xlsx workbook with the new flat
    await page.locator(".bk-btn", has_text="Export xlsx").click()
    link = page.locator("[data-roster-export='xlsx']")
    await link.wait_for()
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    data = Path(await download.path()).read_bytes()
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["Roster"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("building", "flat")
    assert any(r[0] == "b1" and str(r[1]) in ("911", "b1.911") for r in rows[1:])
    assert probe.errors == []


async def test_a_cashier_checks_but_neither_applies_nor_exports(
    open_page, rig, tmp_path: Path
) -> None:
    await office_meters(rig)
    users(rig)
    probe = await open_page("roster", CASHIER)
    page = probe.page
    assert "Roster" in await page.locator(".hmi-nav").inner_text()
    await _upload(page, tmp_path, "good.csv", GOOD)
    await page.locator("[data-dry-run='ok']").wait_for(timeout=20000)
    assert await page.locator(".bk-btn", has_text="Apply").is_disabled()
    assert await page.locator(".bk-btn", has_text="Export xlsx").is_disabled()
    assert await page.locator("[data-why]").count() == 2
    assert probe.errors == []


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1920, 1080), (3840, 2160)])
async def test_roster_and_open_form_at_every_size(open_page, rig, width, height) -> None:
    await office_meters(rig)
    query = "?wall=1" if width > 3000 else ""
    probe = await open_page("roster", ADMIN, width=width, height=height, query=query)
    await screenshot(probe.page, f"roster-{width}")
    wide = await probe.page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= width
    cashier = await open_page("cashier", ADMIN, width=width, height=height, query=query)
    await cashier.page.locator(".bk-btn", has_text="Open account…").click()
    await cashier.page.locator(".bk-btn", has_text="Check").wait_for()
    await screenshot(cashier.page, f"cashier-open-form-{width}")
    wide = await cashier.page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= width
    assert probe.errors == [] and cashier.errors == []
