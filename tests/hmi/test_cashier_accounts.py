"""Opening and closing an account from the cashier page (issue 16 item 2), in headless Chromium
against the HMI test site: a bad form names its field; a good one asks, then opens the account
(a roster row applied as a configuration version, opened with its opening balance) and chooses
it; a payment; the closing's preview (the closing's own code, nothing written) equals the
closing; after it the account shows as closed, the money buttons say why and the ledger
refuses a payment. Also the form's roster row and the preview without a browser.
"""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from typing import Any

import pytest

from billing.errors import AccountClosed
from billing.ledger import EntryKind
from billing.lifecycle import preview_close
from billing.roster import read_roster
from hmi.cashier_accounts import roster_csv
from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, screenshot

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = "ada"
CASHIER = "cara"
#: Free meters for the office's tests (the demo's meters all have accounts).
OFFICE_YAML = """
tags:
  - {name: office.m1.energy_kwh, type: float, unit: kWh, initial: 120}
  - {name: office.m2.energy_kwh, type: float, unit: kWh, initial: 80}
  - {name: office.m3.energy_kwh, type: float, unit: kWh, initial: 40}
  - {name: office.m4.energy_kwh, type: float, unit: kWh, initial: 10}
  - {name: office.m5.energy_kwh, type: float, unit: kWh, initial: 10}
"""
OFFICE_FILE = "hmi-office.yaml"


def users(rig: Any) -> None:
    """Add the admin and the cashier of these tests (once)."""
    store = rig.server.ctx.users
    for name, role in ((ADMIN, Role.ADMIN), (CASHIER, Role.CASHIER)):
        if store.get(name) is None:
            store.add_user(name, role, PASSWORD)


async def office_meters(rig: Any) -> None:
    """Add the office's free meter tags to the running site (a configuration version, once)."""
    users(rig)
    if "office.m1.energy_kwh" in rig.runtime.plant.db:
        return
    config = rig.runtime.config
    files = config.current_files()
    main = config.main_name()
    text = files[main].replace("include:\n", f"include:\n  - {OFFICE_FILE}\n", 1)
    admin = rig.server.ctx.users.get(ADMIN)
    result = await config.apply(admin, {main: text, OFFICE_FILE: OFFICE_YAML}, comment="office")
    assert result["valid"], result["errors"]
    assert "office.m1.energy_kwh" in rig.runtime.plant.db


async def fill(page: Any, label: str, text: str) -> None:
    """Type ``text`` into the input titled exactly ``label``."""
    title = re.compile(rf"^\s*{re.escape(label)}\s*$")
    box = page.locator(".bk-TextInput").filter(has=page.locator("label", has_text=title))
    await box.locator("input").fill(text)
    await box.locator("input").press("Enter")


async def test_the_forms_row_is_a_roster_row() -> None:
    data = roster_csv(
        {"building": "b1", "flat": "901", "tenant": "Li Na", "phone": "", "meter": "x.m"}
    )
    roster = read_roster(data, "csv")
    assert roster.columns == {"building", "flat", "tenant", "meter"}  # an empty field: left out
    (r,) = roster.rows
    assert (r.building, r.flat, r.tenant, r.meters) == ("b1", "901", "Li Na", ("x.m",))


async def test_open_pay_close_and_no_payment_after(open_page, rig) -> None:
    await office_meters(rig)
    billing = rig.runtime.services.billing
    ledger = rig.runtime.ledger
    probe = await open_page("cashier", ADMIN)
    page = probe.page
    await page.locator(".bk-btn", has_text="Open account…").click()
    await fill(page, "Flat", "901")
    await fill(page, "Tenant name", "Li Na")
    await fill(page, "Phone", "+86 139 0000 0901")
    await fill(page, "Meter(s)", "office.m1")
    await fill(page, "Opening balance", "25.00")
    await page.locator(".bk-btn", has_text="Check").click()
    bad = page.locator("[data-bad] li[data-field='area_m2']")  # a new flat needs its area
    await bad.wait_for()
    assert (await bad.inner_text()).startswith("Area (m²):")
    await fill(page, "Area (m²)", "55")
    await page.locator(".bk-btn", has_text="Check").click()
    await page.locator("[data-confirm='open'][data-household='b1.901']").wait_for()
    await screenshot(page, "cashier-open-confirm")
    assert billing.account_ids().count("b1.901") == 0  # the check applied nothing
    await page.locator(".bk-btn:visible", has_text="Confirm").click()
    await page.locator("span[data-opened='b1.901']").wait_for(timeout=30000)
    await page.locator("[data-account='b1.901'][data-balance='25.00']").wait_for()
    assert ledger.is_open("b1.901") and ledger.balance("b1.901") == Decimal("25.00")
    # a payment
    await fill(page, "Amount", "10.00")
    await page.locator(".bk-btn", has_text="Pay").click()
    await page.locator("[data-confirm='topup']").wait_for()
    await page.locator(".bk-btn:visible", has_text="Confirm").click()
    await page.locator("[data-receipt-number]").wait_for(timeout=15000)
    assert ledger.balance("b1.901") == Decimal("35.00")
    # the closing: preview, then confirm
    await page.locator(".bk-btn", has_text="Close account…").click()
    box = page.locator("[data-confirm='close'] [data-closing-statement='b1.901']")
    await box.wait_for(timeout=15000)
    previewed = (await box.get_attribute("data-settlement"), await box.get_attribute("data-amount"))
    assert ledger.is_open("b1.901")  # the preview wrote nothing
    await screenshot(page, "cashier-close-preview")
    await page.locator(".bk-btn", has_text="Confirm closing").click()
    done = page.locator(".bk-Div [data-closing-statement='b1.901']").last
    await page.locator("[data-closed='b1.901']").wait_for(timeout=15000)
    closing = ledger.closed_entry("b1.901")
    assert closing is not None and closing.kind is EntryKind.CLOSING
    assert ledger.balance("b1.901") == Decimal("0.00")
    assert previewed == (closing.data["settlement"], str(abs(closing.amount)))
    assert await done.get_attribute("data-settlement") == closing.data["settlement"]
    assert await page.locator(".bk-btn", has_text="Print statement").is_visible()
    pdf = page.locator("[data-closing-pdf='b1.901']")
    await pdf.wait_for(timeout=15000)
    href = await pdf.get_attribute("href") or ""
    assert base64.b64decode(href.split(",", 1)[1]).startswith(b"%PDF")
    pay = page.locator(".bk-btn", has_text="Pay: account closed")
    assert await pay.is_disabled()
    assert await page.locator(".bk-btn", has_text="Close account…").is_disabled()
    await screenshot(page, "cashier-closed")
    with pytest.raises(AccountClosed):
        await billing.topup("b1.901", "1.00", user=ADMIN)
    assert probe.errors == []


async def test_a_cashier_sees_why_a_closed_account_takes_no_payment(open_page, rig) -> None:
    await office_meters(rig)
    billing = rig.runtime.services.billing
    ledger = rig.runtime.ledger
    if "b1.903" not in billing.account_ids():
        from scada.services.roster import RosterService

        service = RosterService(rig.runtime.config, lambda: ledger)
        row = b"building,flat,area_m2,tenant,meter,tariff,opening_balance\nb1,903,40,Wu,office.m3,home-tier,5.00\n"
        admin = rig.server.ctx.users.get(ADMIN)
        result = await service.import_roster(admin, row, "csv", dry_run=False)
        assert result["valid"], result
    if not ledger.is_closed("b1.903"):
        await billing.close_account("b1.903", readings={"office.m3.energy_kwh": 40.0}, user=ADMIN)
    probe = await open_page("cashier", CASHIER)
    page = probe.page
    box = page.locator(".bk-TextInput", has_text="Flat, name, phone or meter").locator("input")
    await box.fill("b1.903")
    await box.press("Enter")
    await page.locator("[data-closed='b1.903']").wait_for()
    for label in ("Pay: account closed", "Refund: account closed", "Reverse: account closed"):
        assert await page.locator(".bk-btn", has_text=label).is_disabled()
    assert probe.errors == []


async def test_the_preview_is_the_closing_and_writes_nothing(rig) -> None:
    await office_meters(rig)
    billing = rig.runtime.services.billing
    ledger = rig.runtime.ledger
    if "b1.904" not in billing.account_ids():
        from scada.services.roster import RosterService

        service = RosterService(rig.runtime.config, lambda: ledger)
        row = b"building,flat,area_m2,tenant,meter,tariff,opening_balance\nb1,904,40,Ma,office.m2,home-tier,9.00\n"
        admin = rig.server.ctx.users.get(ADMIN)
        assert (await service.import_roster(admin, row, "csv", dry_run=False))["valid"]
    acct = billing.account_config("b1.904")
    seq = max(e.seq for e in ledger.entries())
    at = max(e.ts for e in ledger.entries("b1.904")) + 1.0
    readings = {"office.m2.energy_kwh": 80.0}
    p = preview_close(billing.site, ledger, acct, at=at, readings=readings)
    assert ledger.is_open("b1.904") and max(e.seq for e in ledger.entries()) == seq
    c = await billing.close_account("b1.904", at=at, readings=readings, user=ADMIN)
    assert (c.settlement, c.amount, c.balance) == (p.settlement, p.amount, p.balance)
    assert c.settlement == "refund" and c.amount == Decimal("9.00")
