"""The alarm list, cards and banner in headless Chromium, against the real server and engine.

An acknowledgement or a shelving made on the page shows in its row at once, carried by the
engine's own event (no reload, no other alarm event); on a phone the rows are cards showing
priority, state, time and the whole message; the banner's bubbles say what they count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from alarms.model import AlarmEvent, AlarmState
from alarms.text import local_time_text
from hmi.theme import PRIORITY_COLOURS
from tests.hmi.conftest import screenshot, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

TRIP = "test_trip:test.trip"
SUPPLY = "test_supply:test.supply_c:l"
SUPPLY_MESSAGE = (
    "Supply temperature of the test substation behind building 1, north wing low: "
    "66.0 °C (limit 70.0 °C)"
)


async def fresh_alarm(rig: Any, key: str, tag: str, on: Any, off: Any) -> Any:
    """Bring ``key`` back to normal whatever earlier tests left, then raise a new occurrence."""
    engine, db = rig.runtime.alarms, rig.runtime.db
    if engine.get(key).state is AlarmState.SHELVED:
        engine.unshelve(key, "test")
    db.update(tag, off)
    await wait_for(lambda: not engine.get(key).active, db=db)
    if engine.get(key).unacked:
        engine.ack(key, "test")
    db.update(tag, on)
    await wait_for(lambda: engine.get(key).state is AlarmState.UNACKED, db=db)
    return engine.get(key)


def record_events(rig: Any) -> tuple[list[AlarmEvent], Callable[[], None]]:
    """Return the list the engine's events go into from now on, and its unsubscribe."""
    events: list[AlarmEvent] = []
    return events, rig.runtime.alarms.subscribe(events.append)


def site_tz(rig: Any) -> str:
    return str(rig.runtime.plant.site.site.timezone)


async def test_an_acknowledgement_shows_in_its_row_at_once(open_page, rig) -> None:
    alarm = await fresh_alarm(rig, TRIP, "test.trip", True, False)
    page = (await open_page("alarms")).page
    row = page.locator(".slick-row", has_text="test trip raised")
    await row.filter(has_text="active, unacknowledged").wait_for()
    # the time in the site's zone, the zone named
    assert local_time_text(alarm.raised_ts, site_tz(rig)) in await row.inner_text()
    await page.evaluate("() => { window.hmiSamePage = true; }")
    events, unsubscribe = record_events(rig)
    try:
        await row.locator(".slick-cell").first.click()
        await page.get_by_role("button", name="Acknowledge selected").click()
        await row.filter(has_text="active, acknowledged").wait_for(timeout=5000)
        # the row changed with the acknowledgement itself, not with anything later
        assert [(e.kind.value, e.alarm.key) for e in events] == [("acked", TRIP)]
    finally:
        unsubscribe()
    assert await page.evaluate("() => window.hmiSamePage === true")  # no reload
    assert await row.locator("svg.prio.acked").count() == 1  # outlined and steady now
    await page.locator(".result-ok", has_text="acknowledged 1 alarm").wait_for()
    rig.runtime.db.update("test.trip", False)


async def test_a_shelving_shows_in_its_row_at_once(open_page, rig) -> None:
    await fresh_alarm(rig, TRIP, "test.trip", True, False)
    page = (await open_page("alarms", "oscar")).page  # on call: may shelve
    await page.get_by_role("button", name="hidden too").click()
    row = page.locator(".slick-row", has_text="test trip raised")
    await row.filter(has_text="active, unacknowledged").wait_for()
    await page.evaluate("() => { window.hmiSamePage = true; }")
    events, unsubscribe = record_events(rig)
    try:
        await row.locator(".slick-cell").first.click()
        await page.locator("input[placeholder='shelve reason']").fill("sensor swap")
        await page.get_by_role("button", name="Shelve", exact=True).click()
        await page.locator(".result-ok", has_text="shelved 1 alarm for 1 h").wait_for(timeout=5000)
        shelved = rig.runtime.alarms.get(TRIP)
        until = local_time_text(shelved.shelved_until, site_tz(rig), date=False, now=time.time())
        await row.filter(has_text=f"shelved until {until}").wait_for(timeout=5000)
        assert [(e.kind.value, e.alarm.key) for e in events] == [("shelved", TRIP)]
    finally:
        unsubscribe()
    assert await page.evaluate("() => window.hmiSamePage === true")
    rig.runtime.alarms.unshelve(TRIP, "test")
    rig.runtime.db.update("test.trip", False)


async def test_phone_cards_show_priority_state_time_and_the_whole_message(open_page, rig) -> None:
    alarm = await fresh_alarm(rig, SUPPLY, "test.supply_c", 66.006294, 80.0)
    assert alarm.message == SUPPLY_MESSAGE  # in words, with the unit's symbol and decimals
    probe = await open_page("alarms", "oscar", width=390, height=844)
    page = probe.page
    card = page.locator(f".card[data-key='{SUPPLY}']")
    await card.wait_for()
    text = " ".join((await card.inner_text()).split())
    assert SUPPLY_MESSAGE in text
    assert "P2 high" in text and "active, unacknowledged" in text
    assert local_time_text(alarm.raised_ts, site_tz(rig)) in text
    for part in (card, card.locator(".msg")):  # nothing clipped, nothing wider than the phone
        width, visible = await part.evaluate("(el) => [el.scrollWidth, el.clientWidth]")
        assert width <= visible
    box = await card.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert not await page.locator(".slick-row", has_text="north wing").first.is_visible()
    # priority as shape + number + colour
    icon = card.locator("svg.prio")
    assert await icon.get_attribute("data-shape") == "2"
    assert await icon.locator("text").text_content() == "2"
    assert await icon.locator("g").get_attribute("fill") == PRIORITY_COLOURS[2]
    # a tap selects the card; the acknowledgement shows in it at once
    await card.click()
    await page.locator(f".card.picked[data-key='{SUPPLY}']").wait_for(timeout=5000)
    await page.get_by_role("button", name="Acknowledge selected").click()
    await card.filter(has_text="active, acknowledged").wait_for(timeout=5000)
    await screenshot(page, "alarms-phone-cards")
    assert probe.errors == []
    rig.runtime.db.update("test.supply_c", 80.0)


async def test_banner_bubbles_say_what_they_count(open_page, rig) -> None:
    engine = rig.runtime.alarms
    alarm = await fresh_alarm(rig, TRIP, "test.trip", True, False)
    page = (await open_page("overview")).page
    critical = [a for a in engine.active() if a.priority == 1]
    unacked = sum(a.unacked for a in critical)
    bubble = page.locator(".banner .bubble[data-priority='1']")
    await bubble.filter(has_text=f"{len(critical)} critical").wait_for(timeout=5000)
    noun = "alarm" if len(critical) == 1 else "alarms"
    assert await bubble.get_attribute("title") == (
        f"{len(critical)} critical-priority {noun} active, {unacked} unacknowledged"
    )
    assert await bubble.locator("svg.prio.unacked").count() == 1  # filled and blinking
    newest = page.locator(".banner [data-newest]", has_text="test trip raised")
    assert local_time_text(alarm.raised_ts, site_tz(rig)) in await newest.inner_text()
    engine.ack(TRIP, "olga")
    if unacked == 1:  # outlined once nothing of that priority waits for an acknowledgement
        await bubble.locator("svg.prio.acked").wait_for(timeout=5000)
        assert (await bubble.get_attribute("title") or "").endswith(", 0 unacknowledged")
    rig.runtime.db.update("test.trip", False)
