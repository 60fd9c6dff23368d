"""The plant mimic and the wall display in Chromium: alarms on the graphics, legend, wall sizes, phone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.hmi.conftest import model_data, screenshot, wait_rendered

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Every visible text on the page (shadow roots included): its font size and whether it is cut.
TEXTS_JS = """() => {
  const out = [];
  const W = window.innerWidth, H = window.innerHeight;
  // a text inside a scrolling box (a table's rows) is seen through that box: clip it there;
  // a box that cuts its content off (overflow hidden) does not count, that is what is looked for
  const parentOf = (e) => e.parentElement ?? (e.getRootNode().host ?? null);
  const seen = (el, r) => {
    let box = {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
    for (let a = parentOf(el); a && a !== document.body && a !== document.documentElement; a = parentOf(a)) {
      const s = getComputedStyle(a);
      if (!/(auto|scroll)/.test(s.overflowX + s.overflowY)) continue;
      const b = a.getBoundingClientRect();
      box = {left: Math.max(box.left, b.left), right: Math.min(box.right, b.right),
             top: Math.max(box.top, b.top), bottom: Math.min(box.bottom, b.bottom)};
    }
    return box;
  };
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      const own = ['SELECT', 'BUTTON', 'TEXTAREA'].includes(el.tagName)
        || (el.tagName === 'INPUT' && !['checkbox', 'radio', 'hidden', 'range', 'color'].includes(el.type))
        || [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own) continue;
      const r = el.getBoundingClientRect();
      const cs = getComputedStyle(el);
      if (r.width === 0 || r.height === 0 || cs.visibility === 'hidden' || cs.display === 'none') continue;
      if (parseFloat(cs.opacity) === 0) continue;
      const v = seen(el, r);
      if (v.right <= v.left || v.bottom <= v.top) continue;  // scrolled out of its box
      // an SVG text is scaled with its viewBox: its drawn size is its box's height
      const size = el.closest('svg') ? r.height : parseFloat(cs.fontSize);
      out.push({text: el.textContent.trim().slice(0, 40), size: size,
                left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                cut: el.scrollWidth > el.clientWidth + 1 && cs.overflow !== 'visible'
                     && cs.textOverflow !== 'ellipsis' && el.clientWidth > 0,
                outside: v.right > W + 1 || v.bottom > H + 1 || v.left < -1});
    }
  };
  walk(document);
  return out;
}"""


async def _marks(page: Any) -> dict[str, list[Any]]:
    return await model_data(page, "mimic-alarms")


async def test_an_alarm_is_drawn_on_its_unit_filled_then_hollow_after_ack(open_page, rig) -> None:
    db, engine = rig.runtime.db, rig.runtime.services.alarms
    page = (await open_page("building", query="?building=b1")).page
    data = await model_data(page, "mimic-units")
    i = data["household"].index("b1.201")
    db.update("b1.201.valve.room_c", 65.0)  # above the test rule's hh limit (priority 2)
    await page.wait_for_function(
        """() => { const d = Bokeh.documents[0].get_model_by_name('mimic-alarms').data;
                   return d.key.some((k) => k.startsWith('test_room_hot')); }""",
        timeout=10000,
    )
    marks = await _marks(page)
    j = next(n for n, k in enumerate(marks["key"]) if k.startswith("test_room_hot"))
    # at the unit's top-left corner, priority 2 = a diamond with its number, filled (unacked)
    assert abs(marks["x"][j] - (data["x"][i] - 0.36)) < 1e-6
    assert abs(marks["y"][j] - (data["y"][i] + 0.28)) < 1e-6
    assert (marks["marker"][j], marks["num"][j], marks["fill_alpha"][j]) == ("diamond", "2", 1)
    assert "Room temperature" in marks["tip"][j]
    await screenshot(page, "mimic-alarm-unacked")
    key = marks["key"][j]
    engine.ack(key, "olga", "seen on the mimic")
    await page.wait_for_function(
        """(key) => { const d = Bokeh.documents[0].get_model_by_name('mimic-alarms').data;
                      const j = d.key.indexOf(key); return j >= 0 && d.fill_alpha[j] === 0; }""",
        arg=key,
        timeout=10000,
    )
    await screenshot(page, "mimic-alarm-acked")
    db.update("b1.201.valve.room_c", 20.5)  # back to normal: acked + cleared -> gone
    await page.wait_for_function(
        """(key) => !Bokeh.documents[0].get_model_by_name('mimic-alarms').data.key.includes(key)""",
        arg=key,
        timeout=10000,
    )


async def test_the_mimic_draws_the_plant_and_a_legend(open_page) -> None:
    page = (await open_page("building", query="?building=b1")).page
    units = await model_data(page, "mimic-units")
    kinds = dict(zip(units["household"], units["kind"], strict=True))
    assert kinds["b1.101"] == "flat" and kinds["b1.s1"] == "shop"
    s1 = units["household"].index("b1.s1")
    assert units["title"][s1] == "Bakery"
    assert "kW" in units["info1"][s1] and units["relay_state"][s1] in ("closed", "tripped")
    entry = await model_data(page, "mimic-entry")
    assert "b1.hm.supply_c" in entry["tag"] and any(t.startswith("supply ") for t in entry["text"])
    legend = page.locator("[data-legend]")
    text = await legend.inner_text()
    for words in (
        "valve open",
        "valve closed",
        "command under way",
        "valve fault",
        "device lost contact",
    ):
        assert words in text
    assert await page.locator("[data-legend] svg").count() >= 12


async def test_wall_mode_at_4k_has_no_small_text_and_nothing_cut_off(open_page) -> None:
    for name in (
        "building?building=b2&wall=1",
        "overview?wall=1",
        "alarms?wall=1",
        "meters?wall=1",
        "trends?wall=1",
        "config?wall=1",
        "audit?wall=1",
    ):
        page_name, query = name.split("?")
        user = "erik" if page_name in ("config", "audit") else "olga"
        probe = await open_page(page_name, user, width=3840, height=2160, query="?" + query)
        page = probe.page
        await wait_rendered(page)
        if page_name == "building":
            await page.wait_for_function("() => window.hmiMimicFonts && window.hmiMimicFonts.wall")
            fonts = await page.evaluate("() => window.hmiMimicFonts")
            assert fonts["minpx"] == pytest.approx(2160 / 60)
            # every canvas text group is either hidden or at least 1/60 of the screen height
            small = {g: s for g, s in fonts["sizes"].items() if 0 < s < fonts["minpx"] - 0.5}
            assert not small, small
            assert fonts["sizes"]["room"] >= fonts["minpx"]
        texts = await page.evaluate(TEXTS_JS)
        await screenshot(page, f"wall-{page_name}-3840")  # before the checks: shows a failure
        assert texts, "no text found"
        tiny = [t for t in texts if t["size"] < 2160 / 60 - 0.5]
        assert not tiny, (page_name, [(t["text"], t["size"]) for t in tiny])
        cut = [t for t in texts if t["outside"]]
        assert not cut, (page_name, [(t["text"], t["right"], t["bottom"]) for t in cut])
        assert probe.errors == []


async def test_the_overview_fills_the_screen_worst_building_first(open_page, rig) -> None:
    db = rig.runtime.db
    db.update("test.trip", True)  # a priority-1 alarm in area b1
    try:
        page = (await open_page("overview", width=1366, height=768, query="?wall=1")).page
        await page.locator(".btile[data-building='b1'] [data-worst='1']").wait_for(timeout=10000)
        order = await page.evaluate(
            """() => { const d = Bokeh.documents[0].get_model_by_name('estate');
                       return [...d.text.matchAll(/class="btile[^"]*" data-building="([^"]+)"/g)].map((m) => m[1]); }"""
        )
        n = len(rig.runtime.site.buildings)
        assert len(order) == n and order[0] == "b1"
        boxes = await page.evaluate(
            """() => { const v = Bokeh.index.query_one((v) => v.model.name == 'estate');
                       return [...v.shadow_el.querySelectorAll('.btile')].map((e) => {
                         const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }); }"""
        )
        assert len(boxes) == n
        right = max(b[2] for b in boxes)
        bottom = max(b[3] for b in boxes)
        assert right <= 1366 + 1 and bottom <= 768 + 1  # nothing cut off
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
        top = min(b[1] for b in boxes)
        assert area > 0.75 * 1366 * (768 - top)  # the tiles fill the screen below the banner
        await screenshot(page, "overview-wall-1366")
    finally:
        db.update("test.trip", False)


async def test_the_overview_on_a_phone_shows_every_figure_whole(open_page) -> None:
    page = (await open_page("overview", width=390, height=844)).page
    lines = await page.evaluate(
        """() => { const v = Bokeh.index.query_one((v) => v.model.name == 'estate');
                   return [...v.shadow_el.querySelectorAll('.btile .l')].map((e) =>
                     [e.textContent, e.scrollWidth, e.clientWidth]); }"""
    )
    assert lines
    cut = [text for text, scroll, client in lines if scroll > client + 1]
    assert not cut, cut
    await screenshot(page, "overview-phone")


async def test_the_overview_patches_a_changed_figure_in_place(open_page, rig) -> None:
    """A new heat power goes to the page as its value span alone, not as the whole grid."""
    db = rig.runtime.db
    tag = "b3.hm.power_kw"
    page = (await open_page("overview")).page
    shown = """([tag, want]) => { const v = Bokeh.index.query_one((v) => v.model.name == 'estate');
        const el = v.shadow_el.querySelector('[data-tag="' + tag + '"]');
        return el !== null && el.textContent === want; }"""
    text = "() => Bokeh.documents[0].get_model_by_name('estate').text"
    driver = rig.runtime.drivers.drivers[rig.runtime.drivers.channel_of(tag)]
    await driver.stop()  # no polled value may race the written ones
    try:
        db.update(tag, 123.4)
        await page.wait_for_function(shown, arg=[tag, "123.4"], timeout=10000)
        before = await page.evaluate(text)
        db.update(tag, 432.1)
        await page.wait_for_function(shown, arg=[tag, "432.1"], timeout=10000)
        assert await page.evaluate(text) == before  # the grid was not sent again
        patched = await model_data(page, "estate-values")
        assert tag in patched["key"]
    finally:
        await driver.start()


async def test_on_a_phone_the_detail_is_a_sheet_shown_for_a_selection(open_page) -> None:
    page = (await open_page("building", width=390, height=844, query="?building=b1")).page
    detail = page.locator("[data-household]")
    assert await detail.count() == 0
    x, y = await page.evaluate(
        """() => { const v = Bokeh.index.query_one((v) => v.model.name == 'mimic');
                   const r = v.el.getBoundingClientRect();
                   const src = Bokeh.documents[0].get_model_by_name('mimic-units');
                   const i = src.data.household.indexOf('b1.102');
                   return [r.left + v.frame.x_scale.compute(src.data.x[i]),
                           r.top + v.frame.y_scale.compute(src.data.y[i])]; }"""
    )
    await page.mouse.click(x, y)
    await detail.wait_for(timeout=10000)
    box = await detail.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390 + 1
    await screenshot(page, "building-phone-sheet")
    await page.locator(".bk-btn", has_text="✕ Close").click()
    await detail.wait_for(state="detached", timeout=10000)


async def _click_object(page: Any, source: str, column: str, key: str) -> None:
    """Click the drawn object whose ``column`` is ``key`` in the data source ``source``."""
    x, y = await page.evaluate(
        """([source, column, key]) => {
            const v = Bokeh.index.query_one((v) => v.model.name == 'mimic');
            const r = v.el.getBoundingClientRect();
            const src = Bokeh.documents[0].get_model_by_name(source);
            const i = src.data[column].indexOf(key);
            return [r.left + v.frame.x_scale.compute(src.data.x[i]),
                    r.top + v.frame.y_scale.compute(src.data.y[i])]; }""",
        [source, column, key],
    )
    await page.mouse.click(x, y)


async def test_the_substation_and_a_shop_open_with_their_own_commands(open_page, rig) -> None:
    if rig.runtime.site.substation_of("b1") is None:
        pytest.fail("the demo site has no substation feeding b1")
    page = (await open_page("building", query="?building=b1")).page
    await _click_object(page, "mimic-objects", "obj", "sub")
    tile = page.locator("[data-object='sub']")
    await tile.wait_for(timeout=10000)
    text = await tile.inner_text()
    assert "outdoor" in text and "setpoint" in text and "pump" in text
    for label in ("Start pump", "Stop pump", "Set supply setpoint"):
        assert await page.locator(".bk-btn", has_text=label).count() == 1
    assert await page.locator(".bk-btn", has_text="Open valve").count() == 0
    await screenshot(page, "mimic-substation-detail")
    await _click_object(page, "mimic-units", "household", "b1.s1")
    await page.locator("[data-household='b1.s1']").wait_for(timeout=10000)
    for label in ("Trip relay", "Switch supply on"):
        assert await page.locator(".bk-btn", has_text=label).count() == 1
    assert "balance" in await page.locator("[data-household='b1.s1']").inner_text()
