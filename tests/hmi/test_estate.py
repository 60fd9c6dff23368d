"""A generated 1,000-unit building renders completely in Chromium and follows live updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hmi.conftest import PASSWORD, screenshot, wait_rendered

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_1000_unit_building_renders_and_updates(browser: Any, tmp_path: Path) -> None:
    from hmi.app import apps
    from scada.bench.hmi import Estate
    from scada.server.hmi_only import serve_hmi
    from scada.services.auth import SESSION_COOKIE

    estate = Estate(25, 40, tmp_path)
    users = estate.services.users
    users.add_user("wall", "viewer", PASSWORD)
    token = users.create_token("wall", kind="session", ttl_s=600)
    server, port = serve_hmi(apps(estate.services), auth=estate.services.auth)
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        url = f"http://127.0.0.1:{port}/hmi/building?building=big"
        await context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": url}])
        page = await context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(url)
        await wait_rendered(page, timeout_ms=60000)
        rows = await page.evaluate(
            "() => Bokeh.documents[0].get_model_by_name('mimic-units').data.household.length"
        )
        assert rows == 1000 == estate.n
        await page.locator("[data-units='1000']").wait_for()
        # every room of the building moves: the browser's cells follow (patched, not reloaded)
        estate.step()
        want = f"{estate.db.read_id(int(estate.room_ids[999])).value:.1f}"
        await page.wait_for_function(
            "(t) => Bokeh.documents[0].get_model_by_name('mimic-units').data.room[999] === t",
            arg=want,
            timeout=10000,
        )
        await screenshot(page, "building-1000-units")
        assert errors == []
    finally:
        await context.close()
        server.stop()
        estate.close()
