"""The HMI in the user's language, in Chromium: page build, callbacks, switching.

A viewer whose language is Chinese opens the trends page: the navigation is Chinese, and
so are the texts made later in callbacks: the history's answer (a worker thread's result
applied on a next tick) and the answer to a changed range (a browser event on the
session's websocket). They switch to Russian on the password page; the next page load is
Russian, without a restart.
"""

from __future__ import annotations

from typing import Any

import pytest

from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, HmiRig, wait_rendered

pytestmark = pytest.mark.asyncio(loop_scope="session")

USER = "lin"


TRENDS = "trends?tags=b1.hm.power_kw"


async def _open_trends(page: Any, rig: HmiRig) -> Any:
    await page.goto(f"{rig.base}/hmi/{TRENDS}")
    await wait_rendered(page)
    return page.locator("select[name='trend-range']")


async def test_the_hmi_follows_the_users_language(rig: HmiRig, browser: Any) -> None:
    users = rig.server.ctx.users
    if users.get(USER) is None:
        users.add_user(USER, Role.VIEWER, PASSWORD)
    users.set_language(USER, "zh_CN")
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        await rig.login(context, USER)
        page = await context.new_page()
        span = await _open_trends(page, rig)
        await page.get_by_role("link", name="趋势", exact=True).wait_for()
        status = page.locator("[data-points]")
        await status.filter(has_text="最近一天：").filter(has_text="秒分桶，之后为实时").wait_for()
        await span.select_option(label="最近一小时")  # BokehJS: an option's DOM value is its label
        await status.filter(has_text="最近一小时：").wait_for()

        await page.goto(f"{rig.base}/password")
        assert await page.title() == "修改密码"
        await page.select_option("#language", "ru")
        async with page.expect_navigation():  # saved, the page reloads itself
            await page.click("#lang button[type=submit]")
        assert users.language_of(USER) == "ru"
        assert await page.title() == "Сменить пароль"
        assert await page.locator("#language").input_value() == "ru"

        span = await _open_trends(page, rig)
        await page.get_by_role("link", name="Тренды", exact=True).wait_for()
        await status.filter(has_text="последние сутки:").wait_for()
        await span.select_option(label="последний час")
        await (
            status.filter(has_text="последний час:")
            .filter(has_text="в реальном времени")
            .wait_for()
        )

        # back to the site's default (English) for the next load
        users.set_language(USER, None)
        await _open_trends(page, rig)
        await page.get_by_role("link", name="Trends", exact=True).wait_for()
        await status.filter(has_text="last day:").wait_for()
    finally:
        await context.close()
    changes = rig.server.ctx.audit.query(action="user.language")
    assert [(e["user"], e["result"]) for e in changes if e["user"] == USER] == [(USER, "ok")]
