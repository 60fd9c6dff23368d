"""Command limits that protect equipment, against the running server on the simulator.

``min_interval_s`` (per point, overridable per device) refuses a select too soon after the
tag's last operate, with the time it may be tried again, across a restart and for billing's
automatic relay commands too; ``max_step`` refuses a setpoint change too large for one
command. Time is moved with the command service's injectable ``clock`` (shifted real time),
never slept.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarms.text import local_time_text
from scada.config import load_site, load_site_text
from scada.runtime import Runtime
from scada.server.billing_schemas import MoneyOut
from tags.model import iso
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_config_errors import BASE, at, errors

LIMITS_YAML = """
templates:
  limited-valve:
    role: valve
    points:
      open:       {address: 0, kind: coil, type: bool, writable: true, min_interval_s: 60}
      room_c:     {address: 0, kind: input, type: int16, scale: 0.1, unit: degC}
      setpoint_c: {address: 1, kind: holding, type: int16, scale: 0.1, unit: degC, writable: true,
                   min: 5, max: 30, max_step: 3}
  electricity-meter:
    role: electricity_meter
    points:
      energy_kwh: {address: 0, kind: input, type: uint32, scale: 0.01, unit: kWh}
      power_kw:   {address: 2, kind: input, type: float32, unit: kW}
      relay:      {address: 0, kind: coil, type: bool, writable: true, min_interval_s: 300}
devices:
  - {id: b1.103.valve, template: limited-valve, channel: b1-bus, unit: 13,
     points: {open: {min_interval_s: 30}}}
  - {id: b1.101.em, template: electricity-meter, channel: b1-bus, unit: 21, building: b1}
  - {id: b1.102.em, template: electricity-meter, channel: b1-bus, unit: 22, building: b1}
tags:
  - {name: test.step, type: float, unit: degC, initial: 20, max_step: 2}
tariffs:
  - {id: flat, price: "0.5000"}
accounts:
  - {id: a101, tenant: "Flat 101", tariff: flat, household: b1.101, meters: [b1.101.em.energy_kwh],
     alarm1: "30.00", alarm2: "10.00", opening_balance: "20.00"}
"""

VALVE = "b1.103.valve.open"
SETPOINT = "b1.103.valve.setpoint_c"
RELAY = "b1.101.em.relay"
OTHER_RELAY = "b1.102.em.relay"


class ShiftedClock:
    """Real time plus ``shift_s``: moves the command service past an interval without sleeping."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift_s


async def _start(tmp_path: Path) -> Served:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "limits.yaml").write_text(LIMITS_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [limits.yaml]\n")
    await s.wait_good([VALVE, SETPOINT, RELAY, OTHER_RELAY])
    await s.runtime.billing_scheduler.catch_up_task  # its evaluation is done before ours
    return s


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[tuple[Served, ShiftedClock]]:
    """The server test site plus limited valves, relays and a prepaid account, with a clock."""
    s = await _start(tmp_path)
    clock = ShiftedClock()
    s.server.ctx.commands.clock = clock
    try:
        yield s, clock
    finally:
        await s.runtime.stop()


async def _select(site: Served, tag: str, value: object, role: str = "operator") -> tuple:
    return await site.api("POST", "/api/commands", role=role, body={"tag": tag, "value": value})


async def _operate(site: Served, command_id: str) -> dict:
    st, done, _ = await site.api("POST", f"/api/commands/{command_id}/operate", role="operator")
    assert st == 200, done
    return done


async def test_a_second_operate_inside_the_interval_is_refused_with_the_retry_time(
    site: tuple[Served, ShiftedClock],
) -> None:
    served, clock = site
    sim = served.runtime.simulator
    st, sel, _ = await _select(served, VALVE, False)
    assert st == 201, sel
    assert (await _operate(served, sel["id"]))["state"] == "confirmed"
    operated_ts = served.server.ctx.commands.get(sel["id"]).operated_ts
    retry_at = iso(operated_ts + 30)  # the device's override (30 s), not the template's 60 s
    tz = served.runtime.plant.site.site.timezone
    allowed_at = local_time_text(operated_ts + 30, tz, date=False, now=operated_ts)

    st, body, resp = await _select(served, VALVE, True, role="operator2")
    assert st == 409, body
    assert "once every 30 s" in body["error"]
    assert body["error"].endswith(f"next command allowed at {allowed_at}")  # site time, zone named
    assert body["retry_at"] == retry_at and 1 <= int(resp.headers["Retry-After"]) <= 30
    assert body["command"]["state"] == "failed" and body["command"]["user"] == "operator2"
    refused = served.server.ctx.audit.query(action="command.select", result="failed")
    assert [(e["user"], e["target"]) for e in refused] == [("operator2", VALVE)]
    assert "min_interval_s" in refused[0]["detail"]

    clock.shift_s = 29.0
    st, body, _ = await _select(served, VALVE, True)
    assert st == 409 and body["retry_at"] == retry_at
    clock.shift_s = 30.0  # the interval has passed
    st, sel, _ = await _select(served, VALVE, True)
    assert st == 201, sel
    assert (await _operate(served, sel["id"]))["state"] == "confirmed"
    assert sim.value("b1.103.valve", "open") is True
    # the interval counts again from this operate
    st, body, _ = await _select(served, VALVE, False)
    assert st == 409 and "next command allowed at" in body["error"]


async def test_batches_refuse_the_targets_inside_their_interval(
    site: tuple[Served, ShiftedClock],
) -> None:
    served, _ = site
    st, sel, _ = await _select(served, RELAY, False)
    assert st == 201
    assert (await _operate(served, sel["id"]))["state"] == "confirmed"
    st, batch, _ = await served.api(
        "POST",
        "/api/commands/batch",
        role="operator",
        body={"targets": [{"tag": RELAY, "value": True}, {"tag": OTHER_RELAY, "value": False}]},
    )
    assert st == 201
    first, second = batch["results"]
    assert first["state"] == "failed" and "once every 300 s" in first["error"]
    assert second["state"] == "selected"


async def test_max_step_refuses_a_change_too_large_for_one_command(
    site: tuple[Served, ShiftedClock],
) -> None:
    served, _ = site
    current = served.db.read(SETPOINT).value
    st, body, _ = await _select(served, SETPOINT, current + 3.5)
    assert st == 422, body
    assert f"the current value {current:g}" in body["error"]
    assert "3.5 °C from" in body["error"] and "(max_step 3 °C)" in body["error"]
    assert body["command"]["state"] == "failed"
    st, sel, _ = await _select(served, SETPOINT, current - 3)  # exactly max_step passes
    assert st == 201, sel
    done = await _operate(served, sel["id"])
    assert done["state"] == "confirmed"
    assert served.runtime.simulator.value("b1.103.valve", "setpoint_c") == pytest.approx(
        current - 3
    )
    # min/max still come first; a memory tag steps from its current value too
    st, body, _ = await _select(served, SETPOINT, 99)
    assert st == 422 and "above max" in body["error"]
    st, body, _ = await _select(served, "test.step", 22.5)
    assert st == 422 and "current value 20" in body["error"] and "(max_step 2 °C)" in body["error"]
    st, sel, _ = await _select(served, "test.step", 18)
    assert st == 201 and (await _operate(served, sel["id"]))["state"] == "confirmed"
    st, body, _ = await _select(served, "test.step", 15.5)
    assert st == 422 and "current value 18" in body["error"]


async def test_the_limits_are_in_the_tag_metadata(site: tuple[Served, ShiftedClock]) -> None:
    served, _ = site
    expected = {
        VALVE: (30.0, None),
        "b1.103.valve.setpoint_c": (None, 3.0),
        RELAY: (300.0, None),
        "test.step": (None, 2.0),
        "b1.101.valve.open": (None, None),
    }
    for tag, (interval, step) in expected.items():
        st, body, _ = await served.api("GET", f"/api/tags/{tag}", role="viewer")
        assert st == 200, body
        assert (body["min_interval_s"], body["max_step"]) == (interval, step), tag


async def test_the_interval_survives_a_restart(tmp_path: Path) -> None:
    served = await _start(tmp_path)
    try:
        st, sel, _ = await _select(served, OTHER_RELAY, False)
        assert st == 201
        assert (await _operate(served, sel["id"]))["state"] == "confirmed"
        operated_ts = served.server.ctx.commands.get(sel["id"]).operated_ts
    finally:
        await served.runtime.stop()

    again = Runtime(load_site(served.config), served.data_dir, serve=True, port=0)
    await again.start()
    restarted = Served(again, served.data_dir, served.config, served.tokens)
    try:
        st, body, _ = await _select(restarted, OTHER_RELAY, True)
        assert st == 409, body
        assert body["retry_at"] == iso(operated_ts + 300)  # from the command store
    finally:
        await again.stop()


async def test_billing_close_inside_the_interval_is_refused_and_retried_later(
    site: tuple[Served, ShiftedClock],
) -> None:
    served, clock = site
    billing, commands = served.runtime.billing, served.server.ctx.commands
    (account,) = [a for a in billing.accounts() if a["id"] == "a101"]
    await billing.refund("a101", account["balance"], user="test", note="into arrears")
    await served.wait_for(lambda: served.db.read(RELAY).value is False, RELAY)
    (trip,) = [c for c in commands.list() if c.tag == RELAY]  # billing tripped it
    assert trip.user == "billing" and trip.state.value == "confirmed"

    st, body, _ = await served.api(
        "POST", "/api/accounts/a101/topup", role="operator", body={"amount": "50.00"}
    )
    assert st == 200, body
    out = MoneyOut.model_validate(body)
    assert out.relay_actions == [] and out.relays == {RELAY: True}  # still tripped
    assert len(out.relay_failures) == 1 and "once every 300 s" in out.relay_failures[0]
    refused = commands.list()[0]
    assert (refused.tag, refused.value, refused.user) == (RELAY, True, "billing")
    assert refused.state.value == "failed" and "next command allowed at" in refused.message
    assert served.runtime.simulator.value("b1.101.em", "relay") is False

    clock.shift_s = 100.0  # the next scheduled evaluation, still inside the interval
    await served.runtime.billing_scheduler.prepaid_check()
    assert served.runtime.simulator.value("b1.101.em", "relay") is False
    clock.shift_s = 300.0  # the first evaluation after it: the close goes through
    await served.runtime.billing_scheduler.prepaid_check()
    await served.wait_for(lambda: served.db.read(RELAY).value is True, RELAY)
    assert served.runtime.simulator.value("b1.101.em", "relay") is True
    closes = [c for c in commands.list() if c.tag == RELAY and c.state.value == "confirmed"]
    assert [c.value for c in closes] == [True, False]  # newest first: the close, the trip
    (account,) = [a for a in billing.accounts() if a["id"] == "a101"]
    assert account["level"] == 0


# ---------------------------------------------------------------- scada check


def at_value(text: str, token: str, nth: int = 1) -> str:
    """Return ``line:col`` of the value in ``key: value`` (where a value error points)."""
    key = token.split(": ", 1)[0]
    line, col = at(text, token, nth).split(":")
    return f"{line}:{int(col) + len(key) + 2}"


def test_scada_check_locates_bad_limits() -> None:
    text = (
        BASE.replace("type: bool, writable: true}", "type: bool, writable: true, max_step: 1}")
        .replace("scale: 0.1}", "scale: 0.1, min_interval_s: 5}")
        .replace("min: 5, max: 30}", "min: 5, max: 30, max_step: -3, min_interval_s: 0}")
        .replace("unit: 2}", "unit: 2, points: {open: {min_interval_s: fast}}}")
        .replace(
            "  - {name: note, type: str}\n",
            "  - {name: note, type: str, max_step: 2}\n"
            "  - {name: level, type: float, max_step: 2}\n"
            "  - {name: fixed, type: float, initial: 1, writable: false, min_interval_s: 3}\n",
        )
    )
    assert errors(text) == [
        f"site.yaml:{at_value(text, 'max_step: 1')}: templates.valve.points.open.max_step: "
        "max_step is only for numeric points, not type bool",
        f"site.yaml:{at_value(text, 'min_interval_s: 5')}: templates.valve.points.room_c.min_interval_s: "
        "min_interval_s is only for writable points",
        f"site.yaml:{at_value(text, 'max_step: -3')}: templates.valve.points.setpoint_c.max_step: "
        "input should be greater than 0 (got -3)",
        f"site.yaml:{at_value(text, 'min_interval_s: 0')}: "
        "templates.valve.points.setpoint_c.min_interval_s: input should be greater than 0 (got 0)",
        f"site.yaml:{at(text, 'fast')}: devices[1].points.open.min_interval_s: "
        "input should be a valid number, unable to parse string as a number (got 'fast')",
        f"site.yaml:{at_value(text, 'max_step: 2}')}: tags[0].max_step: "
        "max_step is only for numeric points, not type str",
        f"site.yaml:{at_value(text, 'max_step: 2', 2)}: tags[1].max_step: "
        "max_step needs an `initial` value (the first command steps from it)",
        f"site.yaml:{at_value(text, 'min_interval_s: 3')}: tags[2].min_interval_s: "
        "min_interval_s is only for writable points",
    ]


def test_a_device_overrides_the_template_limits() -> None:
    text = BASE.replace(
        "type: bool, writable: true}", "type: bool, writable: true, min_interval_s: 60}"
    ).replace(
        "unit: 2}", "unit: 2, points: {open: {min_interval_s: 5}, setpoint_c: {max_step: 2}}}"
    )
    defs = {d.name: d for d in load_site_text(text).tag_defs()}
    assert (defs["v1.open"].min_interval_s, defs["v2.open"].min_interval_s) == (60.0, 5.0)
    assert (defs["v1.setpoint_c"].max_step, defs["v2.setpoint_c"].max_step) == (None, 2.0)
