"""The trends page's "consumption per day" view in headless Chromium, on the demo's week of history.

An operator picks an electricity meter's energy counter and a power tag, a week and the
view; the page draws a bar per local day for the counter only (the power tag is named as
not a counter), and each complete day's bar is the historian's consumption of that day with
its quality: the same call the API's ``fn=delta`` makes.
"""

from __future__ import annotations

import pytest

from historian.buckets import Buckets, Every, Unit
from historian.counter import consumption
from tests.hmi.conftest import model_data, screenshot

pytestmark = pytest.mark.asyncio(loop_scope="session")

METER = "b1.101.em.energy_kwh"
POWER = "b1.hm.power_kw"


async def test_consumption_per_day_bars_are_the_historians(open_page, rig) -> None:
    probe = await open_page("trends", query=f"?tags={METER},{POWER}")
    page = probe.page
    await page.locator("[data-points]").wait_for(timeout=10000)  # the values view first
    await page.locator("select:has(option[value='last week'])").select_option("last week")
    await page.locator("select:has(option[value='consumption per day'])").select_option(
        "consumption per day"
    )
    status = page.locator("[data-bars]")
    await status.wait_for(timeout=20000)
    text = await status.text_content() or ""
    assert "last week" in text and POWER in text  # the power tag is no counter
    data = await model_data(page, f"consumption-{METER}")
    assert int(await status.get_attribute("data-bars") or 0) == len(data["top"]) >= 7
    unsure = int(await status.get_attribute("data-uncertain") or 0)
    assert unsure >= data["quality"].count("uncertain")
    assert "good" in data["quality"]  # the days of simulated history are complete
    # every complete day (the last bar is today, still counting) is the historian's answer
    runtime = rig.runtime
    starts = data["start"]
    tz = runtime.site.site.timezone
    want = consumption(
        runtime.historian,
        [runtime.db.definition(METER)],
        Buckets.calendar(starts[1], starts[-1], Every(1, Unit.DAY), tz),
    )[METER]
    assert [b.start for b in want] == starts[1:-1]
    assert data["top"][1:-1] == pytest.approx([b.value for b in want])
    assert data["quality"][1:-1] == [b.quality.label for b in want]
    assert all(v > 0 for v in data["top"][1:-1])  # the simulated flat uses power every day
    await screenshot(page, "trends-consumption-per-day")
    assert probe.errors == []
