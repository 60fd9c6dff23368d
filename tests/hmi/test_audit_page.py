"""The audit page in Chromium (who may see it, refresh, filters, chain status, CSV) and its parts."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, HmiRig, model_data, screenshot, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACTION_INPUT = "input[placeholder='action glob: alarm.*']"
ACKER = "otto"  # an operator who acknowledges through the API


async def _ack_through_the_api(rig: HmiRig, browser: Any, comment: str) -> str:
    """Raise the test alarm and acknowledge it with an operator's bearer token; return its key."""
    engine = rig.runtime.alarms
    rig.runtime.db.update("test.trip", True)

    def raised() -> Any:
        return next((a for a in engine.active() if a.rule_id == "test_trip" and a.unacked), None)

    await wait_for(lambda: raised() is not None, db=rig.runtime.db)
    alarm = raised()
    users = rig.server.ctx.users
    if users.get(ACKER) is None:  # not olga: other tests count olga's acknowledgements
        users.add_user(ACKER, Role.OPERATOR, PASSWORD)
    token = users.create_token(ACKER, label="audit page test")
    context = await browser.new_context()  # no cookie: the bearer token alone
    try:
        reply = await context.request.post(
            f"{rig.base}/api/alarms/ack",
            data={"alarms": [alarm.occurrence], "comment": comment},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status == 200, await reply.text()
    finally:
        await context.close()
        rig.runtime.db.update("test.trip", False)
    return str(alarm.key)


async def test_an_engineer_sees_an_api_ack_after_refresh_and_filters_it(
    open_page, rig: HmiRig, browser: Any
) -> None:
    probe = await open_page("audit", "erik")
    page = probe.page
    await page.locator(".hmi-nav a[href='audit'].current").wait_for()
    chain = page.locator("[data-chain='intact']")
    await chain.wait_for(timeout=10000)
    head = rig.server.ctx.audit.verify()["head"]
    assert int(await chain.get_attribute("data-head")) <= head["seq"]
    await page.locator("[data-rows]").wait_for(timeout=10000)

    key = await _ack_through_the_api(rig, browser, "seen from the audit page")
    (entry,) = rig.server.ctx.audit.query(action="alarm.ack", target=key, user=ACKER, limit=1)
    row = page.locator(".slick-row", has_text="seen from the audit page")
    assert await row.count() == 0  # not until a refresh
    await page.locator(".bk-btn", has_text="Refresh").click()
    await row.wait_for(timeout=10000)
    # the whole entry is shown, and its state before and after when the row is selected
    text = await row.inner_text()
    for part in (ACKER, "operator", "alarm.ack", key, "ok"):
        assert part in text
    await row.locator(".slick-cell").nth(2).click()
    picked = page.locator(f"[data-seq='{entry['seq']}']")
    await picked.wait_for(timeout=5000)
    assert "unacknowledged" in await picked.locator("pre[data-before]").inner_text()
    assert '"acknowledged"' in await picked.locator("pre[data-after]").inner_text()
    await screenshot(page, "audit")

    # a filter narrows the rows to the matching actions
    before = len((await model_data(page, "audit-rows"))["seq"])
    await page.locator(ACTION_INPUT).fill("alarm.ack")
    await page.locator(ACTION_INPUT).press("Enter")
    await page.wait_for_function(
        """() => { const d = Bokeh.documents[0].get_model_by_name('audit-rows').data;
                   return d.action.length > 0 && d.action.every((a) => a === 'alarm.ack'); }""",
        timeout=10000,
    )
    after = await model_data(page, "audit-rows")
    assert entry["seq"] in after["seq"] and len(after["seq"]) < before

    # the CSV link carries the same filters and downloads them
    href = await page.locator("[data-csv]").get_attribute("href")
    assert href.startswith("/api/audit?") and "action=alarm.ack" in href and "format=csv" in href
    reply = await page.context.request.get(rig.base + href)
    assert reply.status == 200
    assert reply.headers["content-disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(await reply.text())))
    assert {r["action"] for r in rows} == {"alarm.ack"}
    assert str(entry["seq"]) in {r["seq"] for r in rows}
    assert probe.errors == []


async def test_an_admin_sees_the_page(open_page, rig: HmiRig) -> None:
    if rig.server.ctx.users.get("ada") is None:
        rig.server.ctx.users.add_user("ada", Role.ADMIN, PASSWORD)
    page = (await open_page("audit", "ada")).page
    await page.locator("[data-chain='intact']").wait_for(timeout=10000)
    await page.locator(".slick-row", has_text="login").first.wait_for(timeout=10000)
    assert await page.locator("[data-denied]").count() == 0


@pytest.mark.parametrize("user", ["vera", "olga", "oscar", "tina"])
async def test_roles_without_audit_read_are_refused(open_page, user: str) -> None:
    page = (await open_page("audit", user)).page
    await page.locator("[data-denied='1']").wait_for()
    assert await page.locator(".hmi-nav a[href='audit']").count() == 0
    assert await page.locator("[name='audit-table'], .slick-row").count() == 0


async def test_the_navigation_links_to_the_password_page(open_page, rig: HmiRig) -> None:
    erik = (await open_page("overview", "erik")).page
    assert await erik.locator(".hmi-nav a[href='audit']").count() == 1
    page = (await open_page("overview", "olga")).page
    link = page.locator(".hmi-nav a[data-link='password']")
    assert await link.get_attribute("href") == "/password"
    logout = page.locator(".hmi-nav form:has([data-link='logout'])")  # POST only (issue 18)
    assert (await logout.get_attribute("action"), await logout.get_attribute("method")) == (
        "/logout",
        "post",
    )
    await link.click()
    await page.wait_for_url(f"{rig.base}/password")
    await page.locator("#current_password").wait_for()
    tenant = (await open_page("tenant", "tina", width=390, height=844)).page
    assert await tenant.locator(".hmi-nav a[data-link='password']").count() == 1
