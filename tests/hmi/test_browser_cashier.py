"""The cashier page: a cashier finds a flat, takes a cash payment, prints and reprints the receipt.

In headless Chromium against the HMI test site (``tests/hmi/conftest.py``); the search itself
directly on the site's billing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.ledger import EntryKind
from billing.receipts import CASH_KINDS
from hmi.cashier_search import account_summary, find_accounts
from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, screenshot

pytestmark = pytest.mark.asyncio(loop_scope="session")

CASHIER = "cara"
ACCOUNT = "b1-101"


def _cashier(rig: Any) -> None:
    users = rig.server.ctx.users
    if users.get(CASHIER) is None:
        users.add_user(CASHIER, Role.CASHIER, PASSWORD)


async def test_search_finds_by_flat_name_and_meter(rig) -> None:
    billing = rig.runtime.services.billing
    assert [m.account for m in find_accounts(billing, "b1.101")] == [ACCOUNT]
    assert [m.account for m in find_accounts(billing, "bakery")] == ["b1-s1"]
    assert [m.account for m in find_accounts(billing, "b2.s1.em")] == ["b2-s1"]
    assert find_accounts(billing, "  ") == [] and find_accounts(billing, "no such flat") == []
    s = account_summary(billing, ACCOUNT)
    assert s.balance == rig.runtime.ledger.balance(ACCOUNT) and len(s.entries) <= 10


async def _pick(page: Any, query: str) -> None:
    box = page.locator(".bk-TextInput", has_text="Flat, name, phone or meter").locator("input")
    await box.fill(query)
    await box.press("Enter")
    await page.locator(f"[data-account='{ACCOUNT}'][data-balance]").wait_for()


async def test_cashier_takes_cash_prints_and_reprints(open_page, rig) -> None:
    _cashier(rig)
    ledger = rig.runtime.ledger
    assert ledger.is_open(ACCOUNT)
    last = max((e.seq for e in ledger.entries()), default=0)
    before = ledger.balance(ACCOUNT)
    probe = await open_page("cashier", CASHIER)
    page = probe.page
    nav = await page.locator(".hmi-nav").inner_text()
    assert "Cashier" in nav and "Meters" not in nav and "Overview" not in nav
    await _pick(page, "b1.101")
    amount = page.locator(".bk-TextInput", has_text="Amount").locator("input")
    await amount.fill("50.00")
    await amount.press("Enter")
    await page.locator(".bk-btn", has_text="Pay").click()
    box = page.locator("[data-confirm='topup']")
    await box.wait_for()
    assert await box.get_attribute("data-after") == str(before + Decimal("50.00"))
    text = await box.inner_text()
    assert "b1-101" in text and "50.00 CNY" in text and "cash" in text
    await screenshot(page, "cashier-confirm")
    await page.locator(".bk-btn", has_text="Confirm").dblclick()  # posts once
    receipt = page.locator("[data-receipt-number]")
    await receipt.wait_for(timeout=15000)
    number = await receipt.get_attribute("data-receipt-number")
    assert await receipt.get_attribute("data-before") == str(before)
    assert await receipt.get_attribute("data-after") == str(before + Decimal("50.00"))
    shown = await receipt.inner_text()
    assert CASHIER in shown and "cash" in shown and "CST" in shown
    assert await page.locator(f"[data-receipt-pdf='{number}']").count() == 1
    await screenshot(page, "cashier-receipt")
    new = [e for e in ledger.entries(ACCOUNT) if e.seq > last]
    topups = [e for e in new if e.kind is EntryKind.TOPUP]
    assert [(e.amount, e.note, e.user) for e in topups] == [
        (Decimal("50.00"), "method=cash", CASHIER)
    ]
    assert ledger.balance(ACCOUNT) == before + Decimal("50.00")
    # the entry list shows the receipt; a reprint of that entry shows the same number
    await page.locator(".bk-btn", has_text="Reprint receipt").click()
    await page.locator(f"[data-reprint='{number}']").wait_for()
    assert (
        await page.locator("[data-receipt-number]").get_attribute("data-receipt-number") == number
    )
    # the cashier's day: the cash total includes the payment and matches the ledger
    await page.locator(".bk-btn", has_text="My day").click()
    day = page.locator("[data-day-total]")
    await day.wait_for()
    mine = [e for e in ledger.entries() if e.user == CASHIER and e.kind in CASH_KINDS]
    assert await day.get_attribute("data-day-total") == str(sum(e.amount for e in mine))
    cash = page.locator("[data-method='cash']")
    assert Decimal(await cash.get_attribute("data-total") or "0") >= Decimal("50.00")
    assert await page.locator("[data-day-report='xlsx']").count() == 1
    await screenshot(page, "cashier-day")
    # a reversal of the listed payment: its own receipt, the balance back where it was
    await page.locator(".bk-btn", has_text="Reverse entry").click()
    await page.locator("[data-confirm='reverse']").wait_for()
    await page.locator(".bk-btn", has_text="Confirm").click()
    await page.locator(f"[data-receipt-number]:not([data-receipt-number='{number}'])").wait_for()
    back = page.locator("[data-receipt-number]")
    assert int(await back.get_attribute("data-receipt-number") or 0) > int(number or 0)
    assert await back.get_attribute("data-after") == str(before)
    assert ledger.balance(ACCOUNT) == before
    (reversal,) = [
        e for e in ledger.entries(ACCOUNT) if e.kind is EntryKind.REVERSAL and e.seq > last
    ]
    assert reversal.reverses == topups[0].seq and reversal.amount == Decimal("-50.00")
    assert probe.errors == []


@pytest.mark.parametrize(("width", "height", "query"), [(390, 844, ""), (3840, 2160, "?wall=1")])
async def test_cashier_page_fits_phone_and_wall(open_page, rig, width, height, query) -> None:
    _cashier(rig)
    probe = await open_page("cashier", CASHIER, width=width, height=height, query=query)
    page = probe.page
    await _pick(page, "Flat 101")
    await screenshot(page, f"cashier-{width}")
    # nothing wider than the viewport: no horizontal scrolling, every control reachable
    wide = await page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= width
    pay = page.locator(".bk-btn", has_text="Pay")
    bounds = await pay.bounding_box()
    assert bounds is not None and bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= width
    assert probe.errors == []
