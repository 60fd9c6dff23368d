"""The cashier page's office parts (issue 16 item 1), in headless Chromium against the HMI test
site: a card payment with its slip number (on the entry and on the receipt), the receipt URL
(a printable page by number), the closing report as xlsx and PDF, the whole desk's day for an
admin, and the entry table's time column uncut on a phone, a desktop and a wall.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest

from billing.receipts import CASH_KINDS, Receipts
from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, screenshot

pytestmark = pytest.mark.asyncio(loop_scope="session")

CASHIER = "cara"
ADMIN = "ada"
ACCOUNT = "b1-101"


def _users(rig: Any) -> None:
    users = rig.server.ctx.users
    for name, role in ((CASHIER, Role.CASHIER), (ADMIN, Role.ADMIN)):
        if users.get(name) is None:
            users.add_user(name, role, PASSWORD)


async def _pick(page: Any, query: str) -> None:
    box = page.locator(".bk-TextInput", has_text="Flat, name, phone or meter").locator("input")
    await box.fill(query)
    await box.press("Enter")
    await page.locator(f"[data-account='{ACCOUNT}'][data-balance]").wait_for()


async def _fill(page: Any, title: str, text: str) -> None:
    box = page.locator(".bk-TextInput", has_text=title).locator("input")
    await box.fill(text)
    await box.press("Enter")


async def test_card_payment_with_slip_number_and_the_receipt_url(open_page, rig) -> None:
    _users(rig)
    ledger = rig.runtime.ledger
    before = ledger.balance(ACCOUNT)
    probe = await open_page("cashier", CASHIER)
    page = probe.page
    await _pick(page, "b1.101")
    await _fill(page, "Amount", "60.00")
    await page.locator(".bk-Select", has_text="Method").locator("select").select_option("card")
    await _fill(page, "Reference", "SLIP-7731")
    await page.locator(".bk-btn", has_text="Pay").click()
    box = page.locator("[data-confirm='topup']")
    await box.wait_for()
    assert "SLIP-7731" in await box.inner_text()
    await page.locator(".bk-btn", has_text="Confirm").click()
    receipt = page.locator("[data-receipt-number]")
    await receipt.wait_for(timeout=15000)
    number = int(await receipt.get_attribute("data-receipt-number") or 0)
    shown = await receipt.inner_text()
    assert "SLIP-7731" in shown and "card" in shown
    stored = Receipts(ledger).get(number)
    entry = ledger.entry(stored.seq)
    assert entry is not None and entry.note == "method=card; SLIP-7731"
    assert stored.reference == "SLIP-7731" and stored.amount == Decimal("60.00")
    assert ledger.balance(ACCOUNT) == before + Decimal("60.00")
    # the receipt URL: a printable page of that number (a reprint any time later)
    link = page.locator(f"[data-receipt-url='{number}']")
    assert await link.get_attribute("href") == f"/receipts/{number}"
    async with page.expect_popup() as popup_info:
        await link.click()
    popup = await popup_info.value
    again = popup.locator(f"[data-receipt-number='{number}']")
    await again.wait_for()
    text = await again.inner_text()
    assert "SLIP-7731" in text and CASHIER in text and "60.00" in text
    assert await popup.locator(f"[data-receipt-pdf='{number}']").count() == 1
    await screenshot(popup, "receipt-page")
    reply = await page.context.request.get(f"{rig.base}/receipts/{number}?format=pdf")
    assert reply.status == 200 and (await reply.body()).startswith(b"%PDF")
    # my day: the closing report as xlsx and as PDF
    await page.locator(".bk-btn", has_text="My day").click()
    day = page.locator("[data-day-cashier='cara']")
    await day.wait_for()
    mine = [e for e in ledger.entries() if e.user == CASHIER and e.kind in CASH_KINDS]
    assert await day.get_attribute("data-day-total") == str(sum(e.amount for e in mine))
    card = page.locator("[data-method='card']")
    assert Decimal(await card.get_attribute("data-total") or "0") >= Decimal("60.00")
    pdf = page.locator("[data-day-report='pdf']")
    href = await pdf.get_attribute("href") or ""
    assert base64.b64decode(href.split(",", 1)[1]).startswith(b"%PDF")
    assert await page.locator("[data-day-report='xlsx']").count() == 1
    # a cashier has no desk's day
    assert not await page.locator(".bk-btn", has_text="Desk's day").is_visible()
    assert probe.errors == []


async def test_admin_sees_the_whole_desks_day(open_page, rig) -> None:
    _users(rig)
    ledger = rig.runtime.ledger
    billing = rig.runtime.services.billing
    await billing.topup(ACCOUNT, "3.00", user=CASHIER, note="method=cash")
    await billing.topup(ACCOUNT, "4.00", user="olga", note="method=cash")
    probe = await open_page("cashier", ADMIN)
    page = probe.page
    await page.locator(".bk-btn", has_text="Desk's day").click()
    day = page.locator("[data-day-cashier='*']")
    await day.wait_for()
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from billing.receipts import day_bounds

    tz = billing.tz
    start, end = day_bounds(datetime.now(ZoneInfo(tz)).date(), tz)
    everyone = ledger.entries(since=start, until=end, kinds=CASH_KINDS)
    assert {e.user for e in everyone} >= {CASHIER, "olga"}
    assert await day.get_attribute("data-day-total") == str(sum(e.amount for e in everyone))
    assert await day.get_attribute("data-day-count") == str(len(everyone))
    assert await page.locator("[data-day-report='pdf']").count() == 1
    await screenshot(page, "cashier-desk-day")
    assert probe.errors == []


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1920, 1080), (3840, 2160)])
async def test_entry_table_time_column_is_not_cut(open_page, rig, width, height) -> None:
    _users(rig)
    query = "?wall=1" if width > 3000 else ""
    probe = await open_page("cashier", CASHIER, width=width, height=height, query=query)
    page = probe.page
    await _pick(page, "b1.101")
    await page.locator(".slick-cell.l1").first.wait_for()
    await screenshot(page, f"cashier-table-{width}")
    # every time cell shows all its text: nothing is clipped by the column
    cut = await page.evaluate(
        """() => {
            const roots = [document];
            const out = [];
            while (roots.length) {
                const r = roots.pop();
                for (const el of r.querySelectorAll('*')) {
                    if (el.shadowRoot) roots.push(el.shadowRoot);
                    if (el.classList && el.classList.contains('slick-cell')
                        && el.classList.contains('l1') && el.scrollWidth > el.clientWidth + 1) {
                        out.push(el.textContent);
                    }
                }
            }
            return out;
        }"""
    )
    assert cut == []
    wide = await page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= width  # the page itself does not scroll sideways
    assert probe.errors == []
