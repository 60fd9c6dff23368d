"""Heat arrears: valves locked and opened through the command service over real Modbus.

First against the simulator and the driver manager with billing's own controller (grace period,
``min_interval_s``, keep-heat, the cold-weather rule, suspension), then against the running
server: the start-up catch-up posts the season's advance and locks the valves of the unpaid
accounts, a payment over REST opens them (after the valve's interval), ``keep-heat`` is an
audited REST operation, tenants see their own heat account only. Time is moved with injected
clocks, never slept.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.heat_accounts import heat_households, post_season_advance, season_of
from billing.heat_arrears import HeatArrears
from billing.ledger import EntryKind, Ledger
from billing.tags import account_tag_defs
from drivers.manager import DriverManager
from drivers.simulator import Simulator
from scada.config import load_site_text
from scada.server.app import ROUTES
from scada.server.billing_schemas import HeatAccountsOut, KeepHeatOut, MoneyOut
from scada.services.audit import AuditLog
from scada.services.auth import Role, User, may
from scada.services.commands import CommandRelayCommander, CommandService
from scada.services.plant import Plant
from tags.database import TagDatabase
from tests.billing.conftest import NOV1
from tests.billing.test_heat_accounts import heat_site_text
from tests.scada import server_fixtures
from tests.scada.server_fixtures import ROLES, Served, start_served

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

D = Decimal
DAY = 86400.0
TZ = "Asia/Shanghai"
VALVE = "b1.101.valve.open"
LIMITED = "open:   {address: 0, kind: coil, type: bool, writable: true}"


class ShiftedClock:
    """Real time plus ``shift_s``: moves the command service past an interval without sleeping."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift_s


def field_site_text() -> str:
    """The heat site: valves with ``min_interval_s`` and an ``auto`` point, an outdoor tag."""
    text = heat_site_text(
        "{grace_days: 10, cold_weather_tag: wx.outdoor_c, cold_weather_below_c: -15}"
    )
    assert LIMITED in text
    text = text.replace(
        LIMITED,
        "open:   {address: 0, kind: coil, type: bool, writable: true, min_interval_s: 60}\n"
        "      auto:   {address: 1, kind: coil, type: bool, writable: true}",
    )
    return text + "tags:\n  - {name: wx.outdoor_c, type: float, unit: degC, initial: 2.0}\n"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    lg = Ledger.in_data_dir(tmp_path)
    yield lg
    lg.close()


@pytest.fixture
async def field(
    tmp_path: Path,
) -> AsyncIterator[tuple[Any, Simulator, TagDatabase, CommandService, ShiftedClock]]:
    site = load_site_text(field_site_text())
    sim = Simulator(site, seed=3, start_ts=NOV1, tick_s=None)
    await sim.start()
    db = TagDatabase([*site.tag_defs(), *account_tag_defs(site)])
    manager = DriverManager(site, db)
    await manager.start()
    audit = AuditLog.in_data_dir(tmp_path)
    clock = ShiftedClock()
    commands = CommandService(Plant(site, db, drivers=manager, writer=manager), audit, clock=clock)
    try:
        yield site, sim, db, commands, clock
    finally:
        commands.close()
        await manager.stop()
        await sim.stop()
        audit.close()


async def test_overdue_locks_payment_opens_and_the_exemptions_hold(
    field: tuple[Any, Simulator, TagDatabase, CommandService, ShiftedClock], ledger: Ledger
) -> None:
    site, sim, db, commands, clock = field
    season = season_of(heat_households(site)[0].tariff, 2025, TZ)
    now = [season.start + 300]
    ctl = HeatArrears(site, ledger, CommandRelayCommander(commands), db, clock=lambda: now[0])
    assert await ctl.evaluate("b1.101.heat") is None  # not open: nothing happens
    post_season_advance(ledger, heat_households(site), season, ts=now[0])
    now[0] += 9 * DAY  # within the grace period: due, not overdue
    for s in await ctl.evaluate_all():
        assert s.actions == [] and s.level == 0 and s.balance < 0
    assert db.read("acct.b1.101.heat.balance").value == pytest.approx(-3000.0)

    now[0] += 2 * DAY  # 11 days unpaid: past the grace of 10
    db.update("wx.outdoor_c", -20.0)  # cold: nobody is locked
    s = await ctl.evaluate("b1.101.heat")
    assert s is not None and s.actions == [] and s.level == 3
    assert db.read("acct.b1.101.heat.level").value == 3  # the arrears alarm all the same
    db.update("wx.outdoor_c", -5.0)
    ledger.set_keep_power("b1.102.heat", True, user="anna", note="vulnerable")  # keep-heat
    s = await ctl.evaluate("b1.102.heat")
    assert s is not None and s.actions == [] and not ledger.relay_tripped("b1.102.valve.open")

    s = await ctl.evaluate("b1.101.heat")
    assert s is not None and s.actions == [f"{VALVE} locked"] and s.failures == []
    assert sim.value("b1.101.valve", "open") is False  # written over Modbus, read back
    assert sim.value("b1.101.valve", "auto") is False  # held against the thermostat
    assert ledger.relay_tripped(VALVE) and db.read("acct.b1.101.heat.locked").value == 1
    (lock,) = [c for c in commands.list() if c.tag == VALVE]
    assert (lock.user, lock.value, lock.state.value) == ("billing", False, "confirmed")
    assert "b1.101.heat in arrears (balance -3000.00)" in lock.reason
    assert (await ctl.evaluate("b1.101.heat")).actions == []  # type: ignore[union-attr]

    assert len(await ctl.evaluate_changed()) == 3  # the first call: every account with entries
    assert await ctl.evaluate_changed() == []  # nothing new
    # paid (as with the CLI: only the ledger changes): the minute check sees the new entry,
    # and the thermostat takes over again
    ledger.topup("b1.101.heat", "3000.00", ts=now[0])
    (s,) = await ctl.evaluate_changed()
    assert s.account == "b1.101.heat" and s.actions == [f"{VALVE} opened"] and s.level == 0
    assert sim.value("b1.101.valve", "auto") is True and not ledger.relay_tripped(VALVE)
    assert db.read("acct.b1.101.heat.locked").value == 0

    # unpaid again at once: the lock inside the valve's min_interval_s is refused, reported,
    # and retried by the next evaluation once the interval has passed
    ledger.post_keyed("b1.101.heat", EntryKind.HEAT_CHARGE, D("-100.00"), key="x", ts=now[0])
    now[0] += 11 * DAY
    s = await ctl.evaluate("b1.101.heat")
    assert s is not None and s.actions == [] and len(s.failures) == 1
    assert "once every 60 s" in s.failures[0] and not ledger.relay_tripped(VALVE)
    clock.shift_s = 60.0
    (s,) = await ctl.evaluate_changed()  # the failed command is retried by the minute check
    assert s.account == "b1.101.heat" and s.actions == [f"{VALVE} locked"]
    assert sim.value("b1.101.valve", "open") is False
    assert await ctl.evaluate_changed() == []


async def test_a_suspended_household_stays_locked_paid_or_not(
    field: tuple[Any, Simulator, TagDatabase, CommandService, ShiftedClock], ledger: Ledger
) -> None:
    site, sim, db, commands, _clock = field
    old = "{id: b1.102, area_m2: 50, position_factor: 1.2, valve_tag: b1.102.valve.open}"
    text = field_site_text()
    assert old in text
    suspended = load_site_text(text.replace(old, old[:-1] + ", suspended: true}"))
    season = season_of(heat_households(site)[0].tariff, 2025, TZ)
    now = season.start + DAY
    ctl = HeatArrears(suspended, ledger, CommandRelayCommander(commands), db, clock=lambda: now)
    ledger.ensure_open("b1.102.heat")
    ledger.topup("b1.102.heat", "100.00")  # nothing owed, credit even
    s = await ctl.evaluate("b1.102.heat")
    assert s is not None and s.actions == ["b1.102.valve.open locked"]
    assert sim.value("b1.102.valve", "open") is False
    (lock,) = [c for c in commands.list() if c.tag == "b1.102.valve.open"]
    assert "heating suspended" in lock.reason
    ledger.topup("b1.102.heat", "500.00")
    ledger.set_keep_power("b1.102.heat", True)  # keep-heat exempts from arrears, not suspension
    s = await ctl.evaluate("b1.102.heat")
    assert s is not None and s.actions == [] and ledger.relay_tripped("b1.102.valve.open")


# ---------------------------------------------------------------- the running server


def heat_tariff_yaml() -> str:
    """A site-wide heat tariff whose season runs from 30 days ago to 30 days ahead (UTC)."""
    today = datetime.now(UTC).date()
    start, end = (today + timedelta(days=d) for d in (-30, 30))
    return (
        'heat_tariff: {area_price_per_m2: "25.00", basic_ratio: "0.4",'
        f' energy_price_per_kwh: "0.20", season_start: "{start:%m-%d}",'
        f' season_end: "{end:%m-%d}"}}\n'
    )


@pytest.fixture(name="served")
async def served_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Served, ShiftedClock]]:
    """The server test site with the site-wide heat tariff, a grace of 0 days and valves that
    may switch once a minute; started in the heating season, so its catch-up posts the advance."""
    text = server_fixtures.SITE_YAML
    heat = "flow_tag: b1.hm.flow_m3h}}"
    valve = "open:       {{address: 0, kind: coil, type: bool, writable: true}}"
    assert heat in text and valve in text
    text = text.replace(heat, "flow_tag: b1.hm.flow_m3h, arrears: {{grace_days: 0}}}}")
    text = text.replace(valve, valve[:-2] + ", min_interval_s: 60}}")
    monkeypatch.setattr(server_fixtures, "SITE_YAML", text)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "heat.yaml").write_text(heat_tariff_yaml(), encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [heat.yaml]\n")
    clock = ShiftedClock()
    s.server.ctx.commands.clock = clock
    try:
        valves = [VALVE, "b1.102.valve.open"]
        await s.wait_good(valves)
        sched = s.runtime.billing_scheduler
        assert sched is not None
        await sched.catch_up_task
        if not all(sched.ledger.relay_tripped(v) for v in valves):  # the catch-up was early
            clock.shift_s = 60.0  # past the interval a write that failed may have started
            await sched.prepaid_check()  # the minute check retries failed valve commands
        yield s, clock
    finally:
        await s.runtime.stop()


async def test_unpaid_advance_locks_over_rest_payment_opens_and_keep_heat_is_audited(
    served: tuple[Served, ShiftedClock],
) -> None:
    site, clock = served
    # the catch-up posted the advance (80 m2 x 25.00) and, past a grace of 0 days, locked
    await site.wait_for(lambda: site.db.read(VALVE).value is False, VALVE)
    assert site.runtime.simulator.value("b1.101.valve", "open") is False
    st, body, _ = await site.api("GET", "/api/heat-accounts", role="viewer")
    assert st == 200, body
    heat = {a.account: a for a in HeatAccountsOut.model_validate(body).accounts}
    assert set(heat) == {"b1.101.heat", "b1.102.heat"}
    a101 = heat["b1.101.heat"]
    assert (a101.balance, a101.level, a101.overdue, a101.valves) == (
        "-2000.00",
        3,
        True,
        {VALVE: True},
    )
    commands = site.server.ctx.commands.list()
    locks = [c for c in commands if c.tag == VALVE and c.state.value == "confirmed"]
    assert [(c.user, c.value) for c in locks] == [("billing", False)]
    assert locks[0].operated_ts is not None
    clock.shift_s = locks[0].operated_ts - time.time()  # back at the lock: inside its interval

    # paid at once: the valve may switch once a minute, so the open is refused and reported
    st, body, _ = await site.api(
        "POST",
        "/api/accounts/b1.101.heat/topup",
        role="operator",
        body={"amount": "2000.00", "reference": "receipt 7"},
    )
    assert st == 200, body
    out = MoneyOut.model_validate(body)
    assert (out.balance_before, out.balance, out.level) == ("-2000.00", "0.00", 0)
    assert out.relay_actions == [] and out.relays == {VALVE: True}
    assert len(out.relay_failures) == 1 and "once every 60 s" in out.relay_failures[0]
    past_the_interval(site, clock)  # the hourly check after the interval opens it
    await site.runtime.billing_scheduler.heat_arrears()  # type: ignore[union-attr]
    await site.wait_for(lambda: site.db.read(VALVE).value is True, VALVE)
    assert site.runtime.simulator.value("b1.101.valve", "open") is True
    (topup,) = site.server.ctx.audit.query(action="billing.topup")
    assert (topup["target"], topup["after"]["balance"]) == ("b1.101.heat", "0.00")

    # keep-heat: audited, opens b1.102's valve at once (its interval has passed too)
    st, body, _ = await site.api(
        "POST",
        "/api/accounts/b1.102.heat/keep-heat",
        role="operator",
        body={"keep": True, "reason": "infant in the flat"},
    )
    assert st == 200, body
    kept = KeepHeatOut.model_validate(body)
    assert (kept.keep_heat, kept.previous) == (True, False)
    assert kept.relay_actions == ["b1.102.valve.open opened"]
    (rec,) = site.server.ctx.audit.query(action="billing.keep_heat")
    assert (rec["user"], rec["target"], rec["before"], rec["after"]["keep_heat"]) == (
        "operator",
        "b1.102.heat",
        {"keep_heat": False},
        True,
    )
    assert rec["after"]["reason"] == "infant in the flat"
    st, _, _ = await site.api(
        "POST", "/api/accounts/b1.102.heat/keep-power", body={"keep": True, "reason": "x"}
    )
    assert st == 404  # a heat account has no relays to keep on

    # tenants (linked to b1.101) see their heat account and its ledger only
    st, body, _ = await site.api("GET", "/api/heat-accounts", role="tenant")
    assert st == 200 and [a["account"] for a in body["accounts"]] == ["b1.101.heat"]
    st, ledger, _ = await site.api("GET", "/api/accounts/b1.101.heat/ledger", role="tenant")
    assert st == 200, ledger
    assert [e["kind"] for e in ledger["entries"]] == ["opening", "heat_advance", "topup"]
    st, _, _ = await site.api("GET", "/api/accounts/b1.102.heat/ledger", role="tenant")
    assert st == 404
    # keep-heat needs billing.write, as keep-power: 403 exactly where PERMISSIONS says no
    (op,) = [op for r in ROUTES if r.path.endswith("/keep-heat") for op in r.ops]
    for role in ROLES:
        user = User(role.value, role, ("b1.101",) if role is Role.TENANT else ())
        st, out, _ = await site.api(
            "POST",
            "/api/accounts/b1.101.heat/keep-heat",
            role=role.value,
            body={"keep": False, "reason": "permission test"},
        )
        assert (st == 403) is (not may(user, op.action)), (role, st, out)
        assert st in (200, 403), (role, st, out)


def past_the_interval(site: Served, clock: ShiftedClock) -> None:
    """Move the command service's clock 60 s past the last valve operate (``min_interval_s``)."""
    last = max(
        c.operated_ts
        for c in site.server.ctx.commands.list()
        if c.tag.endswith(".valve.open") and c.operated_ts is not None
    )
    clock.shift_s = last + 60.0 - time.time()
