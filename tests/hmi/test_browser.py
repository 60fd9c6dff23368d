"""The HMI in headless Chromium against the demo site on the simulator, through the real server."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout

from hmi.theme import TEXT_DIM, fmt_number
from tags.model import Quality, Reason
from tests.hmi.conftest import model_data, screenshot, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAGES = ["overview", "building", "alarms", "trends", "meters", "config"]


async def screen_matches_db(page: Any, db: Any, tag: str, digits: int = 1, tries: int = 5) -> str:
    """Wait until the value shown for ``tag`` is the database's (re-reading it if it moved)."""
    locator = page.locator(f"[data-tag='{tag}']").first
    for _ in range(tries):
        expected = fmt_number(db.read(tag).value, digits)
        try:
            await page.wait_for_function(
                """([tag, text]) => {
                    const find = (root) => {
                        for (const el of root.querySelectorAll('*')) {
                            if (el.shadowRoot) { const r = find(el.shadowRoot); if (r) return r; }
                            if (el.dataset && el.dataset.tag === tag) return el;
                        }
                        return null;
                    };
                    const el = find(document);
                    return el && el.textContent === text;
                }""",
                arg=[tag, expected],
                timeout=3000,
            )
            return expected
        except Exception:
            if fmt_number(db.read(tag).value, digits) == expected:
                raise AssertionError(
                    f"{tag}: screen shows {await locator.text_content()!r}, database {expected!r}"
                ) from None
    raise AssertionError(f"{tag} kept changing")


async def entry_matches_db(page: Any, db: Any, tag: str, label: str, tries: int = 5) -> str:
    """Wait until the mimic's heat entry shows ``tag`` as the database has it (one decimal, °C)."""
    for _ in range(tries):
        expected = f"{label} {db.read(tag).value:.1f} °C"
        try:
            await page.wait_for_function(
                """([tag, text]) => {
                    const d = Bokeh.documents[0].get_model_by_name('mimic-entry').data;
                    return d.text[d.tag.indexOf(tag)] === text;
                }""",
                arg=[tag, expected],
                timeout=3000,
            )
            return expected
        except PlaywrightTimeout:
            if f"{label} {db.read(tag).value:.1f} °C" == expected:
                shown = await model_data(page, "mimic-entry")
                raise AssertionError(
                    f"{tag}: mimic shows {shown['text']}, database {expected!r}"
                ) from None
    raise AssertionError(f"{tag} kept changing")


async def unit_position(page: Any, household: str) -> tuple[float, float]:
    """Return the page coordinates of a unit's cell in the mimic."""
    return await page.evaluate(
        """(hid) => {
            const v = Bokeh.index.query_one((v) => v.model.name == "mimic");
            const r = v.el.getBoundingClientRect();
            const src = Bokeh.documents[0].get_model_by_name("mimic-units");
            const i = src.data.household.indexOf(hid);
            return [r.left + v.frame.x_scale.compute(src.data.x[i]),
                    r.top + v.frame.y_scale.compute(src.data.y[i])];
        }""",
        household,
    )


async def box_select(page: Any, first: str, last: str, count: int) -> None:
    """Drag a box over the meter tiles ``first`` .. ``last`` until ``count`` are selected.

    On a loaded machine the moves after the button press may come later than Bokeh's press
    threshold: Bokeh then sees a press, not a drag, and selects nothing. Drag again then.
    """
    await page.wait_for_function(  # the browser has laid the tiles out
        "() => Bokeh.documents[0].get_model_by_name('meters').tags.length > 0", timeout=10000
    )
    corners = []
    for dev in (first, last):
        corners.append(
            await page.evaluate(
                """(dev) => { const v = Bokeh.index.query_one((v) => v.model.name == "meters");
                const r = v.el.getBoundingClientRect();
                const d = Bokeh.documents[0].get_model_by_name("meter-grid").data;
                const i = d.device.indexOf(dev);
                return [r.left + v.frame.x_scale.compute(d.x[i]), r.top + v.frame.y_scale.compute(d.y[i])]; }""",
                dev,
            )
        )
    (x1, y1), (x2, y2) = corners
    for attempt in range(3):
        await page.mouse.move(x1 - 10, y1 - 10)
        await page.mouse.down()
        await page.mouse.move(x2 + 10, y2 + 10, steps=8)
        await page.mouse.up()
        try:
            await page.wait_for_function(
                "(n) => Bokeh.documents[0].get_model_by_name('meter-grid').selected.indices.length === n",
                arg=count,
                timeout=5000,
            )
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


@pytest.mark.parametrize("name", PAGES)
async def test_every_page_renders_without_console_errors(open_page, name: str) -> None:
    user = "erik" if name == "config" else "olga"
    probe = await open_page(name, user)
    await screenshot(probe.page, name)
    assert await probe.page.locator("[data-denied='login']").count() == 0
    assert probe.errors == []


async def test_pages_require_a_login(rig) -> None:
    request = urllib.request.Request(rig.url("overview"))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as err:
        await asyncio.to_thread(opener.open, request, timeout=10)
    assert err.value.code in (302, 303)
    assert "/login" in err.value.headers["Location"]


async def test_overview_values_match_the_tag_database(open_page, rig) -> None:
    db = rig.runtime.db
    probe = await open_page("overview")
    for tag in ("b1.hm.power_kw", "b1.hm.supply_c", "b2.hm.return_c"):
        await screen_matches_db(probe.page, db, tag)
    await screen_matches_db(probe.page, db, "b2.hm.flow_m3h", digits=2)
    online = probe.page.locator("[data-building='b1'] [data-online]")
    assert await online.get_attribute("data-total") == "10"


async def test_mimic_cells_match_the_tag_database(open_page, rig) -> None:
    db = rig.runtime.db
    probe = await open_page("building", query="?building=b2")
    data = await model_data(probe.page, "mimic-units")
    assert len(data["household"]) == 25  # 6 floors x 4 flats and the corner shop
    mismatches = []
    for i, hid in enumerate(data["household"]):
        if hid == "b2.s1":
            continue
        room = db.read(f"{hid}.valve.room_c").value
        valve = db.read(f"{hid}.valve.open").value
        if data["room"][i] != f"{room:.1f}" or data["valve_state"][i] != (
            "open" if valve else "closed"
        ):
            mismatches.append((hid, data["room"][i], room, data["valve_state"][i], valve))
    # a value may move between the two reads: at most a couple of cells lag by one update
    assert len(mismatches) <= 2, mismatches
    await entry_matches_db(probe.page, db, "b2.hm.supply_c", "supply")


async def test_bad_quality_is_drawn_as_such(open_page, rig) -> None:
    db = rig.runtime.db
    probe = await open_page("building", query="?building=b2")
    lost = db.ids_of([f"b2.301.valve.{p}" for p in ("open", "room_c", "setpoint_c")])
    stale = db.ids_of(["b2.302.valve.room_c", "b2.hm.supply_c"])
    db.set_quality(lost, Quality.BAD, Reason.COMM_LOST)
    db.set_quality(stale, Quality.UNCERTAIN, Reason.STALE)
    await probe.page.wait_for_function(
        """() => { const d = Bokeh.documents[0].get_model_by_name('mimic-units').data;
                   const a = d.household.indexOf('b2.301'), b = d.household.indexOf('b2.302');
                   return d.comm[a] === 'lost' && d.hatch[a] === 'x' && d.comm[b] === 'stale' && d.hatch[b] === '/'; }""",
        timeout=5000,
    )
    # drawn: each hatch overlay shows exactly the cells of its quality
    shown = await probe.page.evaluate(
        """() => { const doc = Bokeh.documents[0], d = doc.get_model_by_name('mimic-units').data;
                   const cells = (name) => [...doc.get_model_by_name(name).view.indices.ones()]
                                           .map((i) => d.household[i]);
                   return [cells('units-lost'), cells('units-stale')]; }"""
    )
    assert shown == [["b2.301"], ["b2.302"]]
    # the heat entry's uncertain supply temperature: dim and marked "?", never like a fresh value
    await probe.page.wait_for_function(
        """(dim) => { const d = Bokeh.documents[0].get_model_by_name('mimic-entry').data;
                     const i = d.tag.indexOf('b2.hm.supply_c');
                     return d.text[i].endsWith(' ?') && d.color[i] === dim; }""",
        arg=TEXT_DIM,
        timeout=5000,
    )
    await screenshot(probe.page, "building-quality")
    db.set_quality(np.concatenate((lost, stale)), Quality.GOOD)  # as the next poll would


async def test_close_and_open_a_valve_through_the_confirm_step(open_page, rig) -> None:
    sim = rig.runtime.simulator
    page = (await open_page("building", query="?building=b1")).page
    x, y = await unit_position(page, "b1.102")
    await page.mouse.click(x, y)
    await page.locator("[data-household='b1.102']").wait_for()
    for label, want in (("Open valve", True), ("Close valve", False)):
        await page.locator(".bk-btn", has_text=label).click()
        confirm = page.locator("[data-command]")
        await confirm.wait_for()
        assert "b1.102.valve.open" in await confirm.inner_text()
        if not want:
            await screenshot(page, "building-confirm")
        await page.locator(".bk-btn", has_text="Confirm").click()
        result = page.locator("[data-state]")
        await result.and_(page.locator("[data-state='confirmed']")).wait_for(timeout=15000)
        assert sim.value("b1.102.valve", "open") is want
        await wait_for(
            lambda w=want: rig.runtime.db.read("b1.102.valve.open").value is w, db=rig.runtime.db
        )
        state = "open" if want else "closed"
        await page.locator(f"[data-valve-state='{state}']").wait_for(timeout=5000)
    sim.release_valve("b1.102.valve")


async def test_a_viewer_gets_no_command_buttons(open_page) -> None:
    page = (await open_page("building", "vera", query="?building=b1")).page
    x, y = await unit_position(page, "b1.101")
    await page.mouse.click(x, y)
    await page.locator("[data-household='b1.101']").wait_for()
    assert await page.locator(".bk-btn", has_text="Close valve").is_disabled()
    await page.locator("[data-denied='1']").wait_for()


async def test_acknowledge_an_alarm_by_clicking(open_page, rig) -> None:
    engine = rig.runtime.alarms
    banner_page = (await open_page("overview")).page
    rig.runtime.db.update("test.trip", True)
    await wait_for(
        lambda: any(a.rule_id == "test_trip" for a in engine.active()), db=rig.runtime.db
    )
    # the banner counts it and rings the priority-1 chime
    await banner_page.locator(".banner [data-priority='1'][data-count='1']").wait_for(timeout=5000)
    await banner_page.wait_for_function("() => (window.hmiChimes || 0) >= 1", timeout=5000)
    page = (await open_page("alarms")).page
    row = page.locator(".slick-row", has_text="test trip raised")
    await row.wait_for()
    await row.locator(".slick-cell").first.click()
    await page.locator(
        "[name='alarm-comment'] input, input[placeholder='comment (optional)']"
    ).first.fill("checked on site")
    await page.locator(".bk-btn", has_text="Acknowledge selected").click()
    await page.locator(".result-ok", has_text="acknowledged 1 alarm").wait_for(timeout=5000)
    acked = next(a for a in engine.points() if a.rule_id == "test_trip")
    assert acked.acked_by == "olga"
    assert acked.state.value == "acknowledged" and acked.ack_comment == "checked on site"
    # the control-room acknowledgement is in the audit log: who, from where, what
    entries = rig.server.ctx.audit.query(action="alarm.ack", target=acked.key, user="olga")
    (entry,) = [e for e in entries if e["after"]["occurrence"] == acked.occurrence]
    assert entry["source"].startswith("hmi 127.0.0.1") and entry["role"] == "operator"
    assert entry["detail"] == "checked on site"
    assert entry["before"]["state"] == "unacknowledged" and entry["before"]["occurrence"]
    assert entry["after"]["state"] == "acknowledged"
    await page.locator("[data-unacked='0']").first.wait_for(timeout=5000)
    await screenshot(page, "alarms-acked")
    rig.runtime.db.update("test.trip", False)


async def test_muted_banner_does_not_chime(open_page, rig) -> None:
    page = (await open_page("overview")).page
    await page.locator(".bk-btn", has_text="mute").click()
    await page.locator(".bk-btn", has_text="muted").wait_for()
    rig.runtime.db.update("test.trip", True)
    await page.locator(".banner [data-newest]", has_text="test trip raised").wait_for(timeout=5000)
    assert await page.evaluate("() => window.hmiChimes || 0") == 0
    rig.runtime.db.update("test.trip", False)


async def test_a_viewer_may_not_ack_or_shelve(open_page) -> None:
    page = (await open_page("alarms", "vera")).page
    assert await page.locator(".bk-btn", has_text="Acknowledge selected").is_disabled()
    assert await page.get_by_role("button", name="Shelve", exact=True).is_disabled()


async def test_alarm_page_fits_a_phone(open_page, rig) -> None:
    rig.runtime.db.update("test.trip", True)
    probe = await open_page("alarms", "oscar", width=390, height=844)
    page = probe.page
    await page.locator(".card", has_text="test trip raised").wait_for()  # cards on a phone
    overflow = await page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 390
    ack = page.locator(".bk-btn", has_text="Acknowledge selected")
    box = await ack.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    await screenshot(page, "alarms-phone")
    assert probe.errors == []
    rig.runtime.db.update("test.trip", False)


async def test_kiosk_rotates_through_buildings(open_page, rig) -> None:
    ids = [b.id for b in rig.runtime.site.buildings]
    last, first = ids[-1], ids[0]
    page = (await open_page("building", query=f"?building={last}&rotate=6")).page
    await page.locator(f"[data-building='{last}'][data-units]").wait_for()
    # after the last building comes the first one again, and the URL follows the selection.
    # Polled in the page (every frame) rather than one Playwright round trip after another:
    # on a loaded machine the round trips can outlast a rotation step, and a missed step
    # only comes round again after a whole cycle of the site's buildings.
    await page.wait_for_function(
        f"() => new URLSearchParams(location.search).get('building') === {first!r}",
        timeout=60000,
    )
    await page.locator(f"[data-building='{first}'][data-units]").wait_for(timeout=6000)


async def test_trends_load_history_then_append_live(open_page, rig) -> None:
    page = (await open_page("trends", query="?tags=b1.hm.power_kw")).page
    await page.locator("[data-points]").wait_for(timeout=10000)
    before = len((await model_data(page, "trend-b1.hm.power_kw"))["t"])
    rig.runtime.db.update("b1.hm.power_kw", 999.0)
    await page.wait_for_function(
        "(n) => Bokeh.documents[0].get_model_by_name('trend-b1.hm.power_kw').data.t.length > n",
        arg=before,
        timeout=5000,
    )


async def test_tenant_sees_only_own_household(open_page, rig) -> None:
    probe = await open_page("tenant", "tina", width=390, height=844)
    page = probe.page
    await page.locator("[data-household='b1.101']").wait_for()
    await page.locator("[data-this-month]").wait_for(timeout=10000)
    html_text = await page.evaluate("() => JSON.stringify(Bokeh.documents[0].to_json())")
    for other in ("b1.102", "b1.201", "b2."):
        assert other not in html_text, f"tenant page leaks {other}"
    await screen_matches_db(page, rig.runtime.db, "b1.101.valve.room_c")
    await screenshot(page, "tenant")
    assert probe.errors == []
    # the operator pages are closed to a tenant
    other = await open_page("building", "tina")
    await other.page.locator("[data-denied='1']").wait_for()


async def test_meters_grid_colours_by_state_and_batch_trips(open_page, rig) -> None:
    db = rig.runtime.db
    page = (await open_page("meters")).page
    data = await model_data(page, "meter-grid")
    assert "b1.101.em" in data["device"]
    i = data["device"].index("b1.101.em")
    assert data["state"][i] in ("no_account", "open", "lost")
    # lose contact with one meter: its cell turns 'lost'
    db.update("b1.102.em.online", False)
    await page.wait_for_function(
        """() => { const d = Bokeh.documents[0].get_model_by_name('meter-grid').data;
                   return d.state[d.device.indexOf('b1.102.em')] === 'lost'; }""",
        timeout=5000,
    )
    db.update("b1.102.em.online", True)
    # drag a box over two meters, trip them as a batch through the confirm step
    await box_select(page, "b1.s1.em", "b1.s2.em", 2)
    await page.locator(".bk-btn", has_text="Trip").click()
    await page.locator("[data-batch]").wait_for()
    await page.locator(".bk-btn", has_text="Confirm batch").click()
    await page.locator("[data-batch-done='2']").wait_for(timeout=15000)
    sim = rig.runtime.simulator
    assert sim.value("b1.s1.em", "relay") is False and sim.value("b1.s2.em", "relay") is False
    await screenshot(page, "meters")
    for dev in ("b1.s1.em", "b1.s2.em"):  # close them again for the other tests
        await rig.runtime.drivers.write(f"{dev}.relay", True)


async def test_config_page_validates_and_applies(open_page, rig) -> None:
    page = (await open_page("config", "erik")).page
    editor = page.locator("textarea")
    text = await editor.input_value()
    await editor.fill(text.replace("site: {id: demo", "site: {id: demo, bogus_key: 1", 1))
    await page.locator(".bk-btn", has_text="Validate").click()
    err = page.locator("[data-valid='0']")
    await err.wait_for(timeout=15000)
    assert "bogus_key" in await err.inner_text()
    await screenshot(page, "config-errors")
    await editor.fill(text.replace("Demo Heating Estate", "Demo Heating Estate (HMI test)", 1))
    await page.locator(".bk-btn", has_text="Diff").click()
    await page.locator("pre", has_text="HMI test").first.wait_for(timeout=15000)
    await page.locator(".bk-btn", has_text="Apply").click()
    await page.locator("[data-confirm-apply]").wait_for(timeout=15000)  # the change, first
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await page.locator("[data-applied]").wait_for(timeout=30000)
    assert rig.runtime.site.site.name == "Demo Heating Estate (HMI test)"
    viewer = await open_page("config", "olga")
    await viewer.page.locator("[data-denied='1']").wait_for()
