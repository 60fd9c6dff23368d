"""The tenant pays from their page (issue 16 item 5), in headless Chromium, end to end.

The HMI test site plus a demo payment provider (secret from the environment): the tenant's
*Pay* link opens the simulated provider page, the tenant confirms an amount, the page calls the
site's real payment callback signed with the shared secret, and back on the tenant page the
top-up shows (balance and receipt). The provider's retry of the same transaction posts
nothing more. The tenant's receipt opens as a printable page; another account's does not.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from billing.ledger import EntryKind
from billing.receipts import Method, Receipts
from tests.hmi.conftest import (
    PASSWORD,
    USERS,
    HmiRig,
    screenshot,
    wait_rendered,
    write_test_site,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "demo-provider-secret-0123456789"
ENV = "SCADA_TEST_DEMO_PAY_SECRET"
PAYMENTS_YAML = f"""
payments:
  providers:
    - {{id: demopay, name: Demo Pay, secret: "${{{ENV}}}", demo: true}}
"""
ACCOUNT = "b1-101"
OTHER = "b2-s1"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pay_rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HmiRig]:
    from scada.config import load_site
    from scada.runtime import Runtime
    from scada.services.users import UserStore

    os.environ[ENV] = SECRET
    base = tmp_path_factory.mktemp("hmi-pay")
    main = write_test_site(base / "config")
    (base / "config" / "payments.yaml").write_text(PAYMENTS_YAML, encoding="utf-8")
    text = main.read_text(encoding="utf-8").replace(
        "include:\n", "include:\n  - payments.yaml\n", 1
    )
    main.write_text(text, encoding="utf-8")
    site = load_site(main)
    data = base / "var"
    with UserStore.in_data_dir(data) as users:
        for name, (role, links) in USERS.items():
            users.add_user(name, role, PASSWORD, links)
        users.add_user("cara", "cashier", PASSWORD)
    runtime = Runtime(site, data, simulate=True, serve=True, port=0)
    await runtime.start()
    server = runtime.server
    assert server is not None
    try:
        yield HmiRig(runtime, server, server.url)
    finally:
        await runtime.stop()
        os.environ.pop(ENV, None)


async def _tenant_page(pay_rig: HmiRig, browser: Any) -> tuple[Any, Any, list[str]]:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    await pay_rig.login(context, "tina")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(pay_rig.url("tenant"))
    await wait_rendered(page)
    return context, page, errors


async def test_tenant_pays_through_the_demo_provider_once(pay_rig: HmiRig, browser: Any) -> None:
    ledger = pay_rig.runtime.ledger
    before = ledger.balance(ACCOUNT)
    topups = len(ledger.entries(ACCOUNT, kinds=[EntryKind.TOPUP]))
    context, page, errors = await _tenant_page(pay_rig, browser)
    try:
        link = page.locator(f"[data-pay='{ACCOUNT}']")
        await link.wait_for()
        assert await page.locator(f"[data-pay='{OTHER}']").count() == 0
        await screenshot(page, "tenant-pay-390")
        await link.click()
        await page.locator("#amount").wait_for()
        assert "Demo payment provider" in await page.content()
        await page.locator("#amount").fill("42.50")
        await screenshot(page, "tenant-pay-provider")
        await page.locator("#confirm").click()
        status = page.locator("[data-demo-status]")
        await status.wait_for()
        assert await status.get_attribute("data-demo-status") == "posted"
        assert ledger.balance(ACCOUNT) == before + Decimal("42.50")
        # the provider retries the same transaction: nothing more is posted
        await page.locator("#resend").click()
        await page.locator("[data-demo-status='repeated']").wait_for()
        assert ledger.balance(ACCOUNT) == before + Decimal("42.50")
        new = ledger.entries(ACCOUNT, kinds=[EntryKind.TOPUP])[topups:]
        assert [(e.amount, e.user) for e in new] == [(Decimal("42.50"), "payment:demopay")]
        # back on the tenant page: the top-up and its receipt are shown
        await page.locator("#back").click()
        await wait_rendered(page)
        receipt = Receipts(ledger).by_seq(new[0].seq)
        assert receipt is not None and receipt.method is Method.ONLINE
        row = page.locator(f"[data-receipt='{receipt.number}']")
        await row.wait_for(timeout=15000)
        assert "42.50" in await row.inner_text()
        last = page.locator("[data-last-topup]")
        await last.wait_for()
        assert "42.50" in await last.inner_text()
        await screenshot(page, "tenant-paid-390")
        # the statements: this month's of their account, a PDF with the top-up; not another's
        statement = page.locator("[data-statement]").last
        href = await statement.get_attribute("href") or ""
        assert href.startswith(f"/api/accounts/{ACCOUNT}/statement?month=")
        reply = await context.request.get(pay_rig.base + href)
        assert reply.status == 200 and (await reply.body()).startswith(b"%PDF")
        other = href.replace(ACCOUNT, OTHER)
        assert (await context.request.get(pay_rig.base + other)).status == 404
        # the receipt opens as a printable page with its reference (the transaction)
        async with page.expect_popup() as popup_info:
            await row.locator("a", has_text="print").click()
        popup = await popup_info.value
        shown = popup.locator(f"[data-receipt-number='{receipt.number}']")
        await shown.wait_for()
        assert receipt.reference in await shown.inner_text()
        # another account's receipt URL is refused
        other = ledger.post_cash(EntryKind.TOPUP, OTHER, Decimal("1.00"), user="t", note="x")
        foreign = Receipts(ledger).issue(other.entry.seq, Method.CASH, "cara")
        reply = await context.request.get(f"{pay_rig.base}/receipts/{foreign.number}")
        assert reply.status == 404
        reply = await context.request.get(f"{pay_rig.base}/receipts/{receipt.number}?format=pdf")
        assert reply.status == 200 and (await reply.body()).startswith(b"%PDF")
        assert errors == []
    finally:
        await context.close()


async def test_demo_page_is_absent_without_a_demo_provider(open_page: Any, rig: HmiRig) -> None:
    """The shared HMI site has no provider: no page, and the tenant page says where to pay."""
    probe = await open_page("tenant", "tina", width=390, height=844)
    pay = probe.page.locator(".tile", has_text="pay at the cash desk")
    await pay.wait_for()
    assert await probe.page.locator("[data-pay]").count() == 0
    reply = await probe.page.context.request.get(f"{rig.base}/demo-pay/demopay?account={ACCOUNT}")
    assert reply.status == 404
    assert probe.errors == []
