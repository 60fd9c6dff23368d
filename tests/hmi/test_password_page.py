"""The change-password page in Chromium: sign in, change the password, the old one is gone."""

from __future__ import annotations

from typing import Any

import pytest

from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, HmiRig

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEW = "a fresh control-room passphrase"


async def test_a_user_changes_the_password_in_the_browser(rig: HmiRig, browser: Any) -> None:
    rig.server.ctx.users.add_user("pwuser", Role.OPERATOR, PASSWORD)
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{rig.base}/password")  # not signed in: to the login page first
        assert "/login" in page.url
        await page.fill("#username", "pwuser")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{rig.base}/password")
        await page.fill("#current_password", "not the password")
        await page.fill("#new_password", NEW)
        await page.click("button[type=submit]")
        msg = page.locator("#msg")
        await msg.filter(has_text="wrong current password").wait_for()
        await page.fill("#current_password", PASSWORD)
        await page.click("button[type=submit]")  # the page sends the XSRF header itself
        await page.wait_for_url(lambda url: "/password" not in url)
        # the browser's new session works; the old password does not
        me = await context.request.get(f"{rig.base}/api/me")
        assert me.status == 200 and (await me.json())["user"]["name"] == "pwuser"
        old = await context.request.post(
            f"{rig.base}/api/login", data={"username": "pwuser", "password": PASSWORD}
        )
        assert old.status == 401
    finally:
        await context.close()
    entries = rig.server.ctx.audit.query(action="user.password")
    assert [(e["user"], e["result"]) for e in entries if e["user"] == "pwuser"] == [
        ("pwuser", "ok"),
        ("pwuser", "denied"),
    ]
