"""HMI paths in headless Chromium: setpoint command, config roll-back, keep power, batch cancel."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.hmi.conftest import model_data, screenshot, wait_for
from tests.hmi.test_browser import box_select, unit_position

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def meter_position(page: Any, device: str) -> tuple[float, float]:
    """Return the page coordinates of a meter's cell in the meters grid (once laid out)."""
    await page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('meters').tags.length > 0", timeout=10000
    )
    return await page.evaluate(
        """(dev) => { const v = Bokeh.index.query_one((v) => v.model.name == "meters");
        const r = v.el.getBoundingClientRect();
        const d = Bokeh.documents[0].get_model_by_name("meter-grid").data;
        const i = d.device.indexOf(dev);
        return [r.left + v.frame.x_scale.compute(d.x[i]), r.top + v.frame.y_scale.compute(d.y[i])]; }""",
        device,
    )


async def wait_selected(page: Any, count: int) -> None:
    await page.wait_for_function(
        "(n) => Bokeh.documents[0].get_model_by_name('meter-grid').selected.indices.length === n",
        arg=count,
        timeout=5000,
    )


async def test_set_a_setpoint_through_the_confirm_step(open_page, rig) -> None:
    sim = rig.runtime.simulator
    page = (await open_page("building", query="?building=b1")).page
    x, y = await unit_position(page, "b1.201")
    await page.mouse.click(x, y)
    await page.locator("[data-household='b1.201']").wait_for()
    old = sim.value("b1.201.valve", "setpoint_c")
    want = 17.5 if old != 17.5 else 23.5
    spinner = page.get_by_label("setpoint °C")
    await spinner.fill(str(want))
    await spinner.press("Enter")
    await page.wait_for_function(
        "(v) => Bokeh.documents[0].get_model_by_name('cmd-sp').value === v", arg=want, timeout=5000
    )
    await page.locator(".bk-btn", has_text="Set setpoint").click()
    confirm = page.locator("[data-command]")
    await confirm.wait_for()
    assert "b1.201.valve.setpoint_c" in await confirm.inner_text()
    command_id = await confirm.get_attribute("data-command")
    assert sim.value("b1.201.valve", "setpoint_c") == old  # selected, not operated yet
    await page.locator(".bk-btn", has_text="Confirm").click()
    await page.locator("[data-state='confirmed']").wait_for(timeout=15000)
    assert sim.value("b1.201.valve", "setpoint_c") == pytest.approx(want)
    cmd = rig.commands.get(command_id)
    assert cmd.tag == "b1.201.valve.setpoint_c" and cmd.state.value == "confirmed"
    assert cmd.value == pytest.approx(want)
    steps = rig.runtime.audit.query(action="command.*", target=cmd.tag, user="olga")
    assert {"command.select", "command.operate"} <= {e["action"] for e in steps}
    assert all(e["source"] == "hmi 127.0.0.1" for e in steps), steps
    await screenshot(page, "building-setpoint")


async def test_config_apply_then_roll_back_from_the_page(open_page, rig) -> None:
    api = rig.runtime.config

    def description() -> str:
        return next(t for t in rig.runtime.site.tags if t.name == "test.trip").description

    old_text = description()
    before = api.current_version()
    page = (await open_page("config", "erik")).page
    await page.locator("select").first.select_option("hmi-test.yaml")
    editor = page.locator("textarea")
    await page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('config-editor').value.includes('test.trip')",
        timeout=5000,
    )
    text = await editor.input_value()
    await editor.fill(text.replace(old_text, "Changed by the roll-back test", 1))
    await page.get_by_placeholder("comment for the version history").fill("roll-back test")
    await page.locator(".bk-btn", has_text="Apply").click()
    await page.locator("[data-confirm-apply]").wait_for(timeout=15000)
    await page.get_by_role("button", name="Confirm", exact=True).click()
    applied = page.locator("[data-applied]")
    await applied.wait_for(timeout=30000)
    new_version = int(await applied.get_attribute("data-applied"))
    assert description() == "Changed by the roll-back test"
    # select the version before the change in the versions list, roll back to it
    row = page.locator(".slick-row").filter(
        has=page.locator(".slick-cell.l0", has_text=re.compile(rf"^{before}$"))
    )
    await row.locator(".slick-cell").nth(1).click()
    await page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('config-versions').selected.indices.length === 1",
        timeout=5000,
    )
    await page.locator(".bk-btn", has_text="Roll back to selected").click()
    await page.locator("[data-confirm-apply]").wait_for(timeout=15000)
    await page.get_by_role("button", name="Confirm", exact=True).click()
    rolled = page.locator("[data-rolled-back]")
    await rolled.wait_for(timeout=30000)
    rollback_version = int(await rolled.get_attribute("data-rolled-back"))
    assert description() == old_text
    assert rollback_version > new_version > before
    await page.wait_for_function(
        "(v) => Bokeh.documents[0].get_model_by_name('config-versions').data.version.includes(v)",
        arg=rollback_version,
        timeout=5000,
    )
    shown = (await model_data(page, "config-versions"))["version"]
    assert {before, new_version, rollback_version} <= set(shown)
    changes = rig.runtime.audit.query(action="config.*", user="erik", limit=2)
    assert [e["action"] for e in changes] == ["config.rollback", "config.apply"]
    assert all(e["source"] == "hmi 127.0.0.1" for e in changes), changes
    await screenshot(page, "config-rolled-back")


async def test_keep_power_for_an_account_in_arrears(open_page, rig) -> None:
    billing, sim, db = rig.runtime.billing, rig.runtime.simulator, rig.runtime.db
    account, meter = "b1-102", "b1.102.em"

    def info() -> dict[str, Any]:
        return next(a for a in billing.accounts() if a["id"] == account)

    if not info()["open"]:
        await billing.open_account(account, user="test")
    await billing.set_keep_power(account, False, user="test")
    balance = info()["balance"]
    if float(balance) > 0:
        await billing.refund(account, balance, user="test", note="put in arrears")
    assert info()["level"] == 3 and info()["keep_power"] is False
    await wait_for(lambda: sim.value(meter, "relay") is False, db=db)  # prepaid tripped it
    page = (await open_page("meters")).page
    await page.wait_for_function(
        """(dev) => { const d = Bokeh.documents[0].get_model_by_name('meter-grid').data;
                      return d.state[d.device.indexOf(dev)] === 'arrears'; }""",
        arg=meter,
        timeout=10000,
    )
    x, y = await meter_position(page, meter)
    await page.mouse.click(x, y)
    await wait_selected(page, 1)
    await page.locator(".bk-btn", has_text="Keep power").click()
    await page.locator(f"[data-billing='keep'][data-accounts~='{account}']").wait_for()
    assert info()["keep_power"] is False  # nothing happens before the confirm
    await page.locator(".bk-btn", has_text="Confirm batch").click()
    await page.locator("[data-billing-done='1']").wait_for(timeout=15000)
    assert info()["keep_power"] is True
    await wait_for(lambda: sim.value(meter, "relay") is True, db=db)
    records = rig.runtime.audit.query(action="billing.keep_power", target=account)
    assert records and records[0]["user"] == "olga" and records[0]["role"] == "operator"
    assert records[0]["source"] == "hmi 127.0.0.1", records
    await screenshot(page, "meters-keep-power")
    await billing.topup(account, "200.00", user="test", note="test clean-up")
    await billing.set_keep_power(account, False, user="test")


async def test_cancel_a_batch_trip(open_page, rig) -> None:
    sim = rig.runtime.simulator
    devices = ("b1.s1.em", "b1.s2.em")
    for dev in devices:
        await wait_for(lambda d=dev: sim.value(d, "relay") is True, db=rig.runtime.db)
    page = (await open_page("meters")).page
    await box_select(page, devices[0], devices[-1], 2)
    await page.locator(".bk-btn", has_text="Trip").click()
    pending = page.locator("[data-batch]")
    await pending.wait_for()
    batch_id = await pending.get_attribute("data-batch")
    await page.get_by_role("button", name="Cancel", exact=True).click()
    await page.wait_for_function(
        """() => { const s = Bokeh.documents[0].get_model_by_name('meter-results').data.state;
                   return s.length === 2 && Array.from(s).every((x) => x === 'cancelled'); }""",
        timeout=15000,
    )
    batch = rig.commands.get_batch(batch_id)
    assert [c.state.value for c in batch.commands] == ["cancelled", "cancelled"]
    assert all(sim.value(d, "relay") is True for d in devices)
    assert await page.locator("[data-batch]").count() == 0
