"""Prepaid levels, account tags, alarm rules, and trip / close through real Modbus writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from alarms.config import LimitRule, StateRule
from billing.ledger import EntryKind, Ledger
from billing.prepaid import PrepaidController, level_of
from billing.tags import Level, account_tag_defs, alarm_rules
from drivers.manager import DriverManager
from drivers.simulator import Simulator
from scada.config import load_site_text
from scada.services.audit import AuditLog
from tags.database import TagDatabase
from tests.billing.conftest import NOV1, free_port, relay_commander, site_text

D = Decimal
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_levels() -> None:
    a1, a2 = D("100.00"), D("50.00")
    assert level_of(D("100.01"), a1, a2) is Level.OK
    assert level_of(D("100.00"), a1, a2) is Level.ALARM1
    assert level_of(D("50.00"), a1, a2) is Level.ALARM2
    assert level_of(D("0.01"), a1, a2) is Level.ALARM2
    assert level_of(D("0.00"), a1, a2) is Level.ARREARS
    assert level_of(D("-3.00"), a1, a2) is Level.ARREARS


def test_account_tags_and_alarm_rules(site: Any) -> None:
    names = [d.name for d in account_tag_defs(site)]
    assert names == [
        "acct.shop-101.balance",
        "acct.shop-101.level",
        "acct.shop-101.held",
        "acct.home-102.balance",
        "acct.home-102.level",
        "acct.home-102.held",
    ]
    rules = alarm_rules(site)
    states = [r for r in rules if isinstance(r, StateRule)]
    assert [(r.id, r.equals, r.priority, r.tags) for r in states] == [
        ("billing.alarm1", 1, 3, "acct.*.level"),
        ("billing.alarm2", 2, 2, "acct.*.level"),
        ("billing.arrears", 3, 1, "acct.*.level"),
        ("billing.held", 1, 2, "acct.*.held"),
    ]
    text = site_text(free_port()).replace(
        "meters: [e.101.energy_kwh]", "meters: [{energy: e.101.energy_kwh, overload_kw: 12.5}]"
    )
    with_overload = alarm_rules(load_site_text(text))
    limits = [r for r in with_overload if isinstance(r, LimitRule)]
    assert [(r.id, r.tag, r.limits.h) for r in limits] == [
        ("billing.overload.e.101", "e.101.power_kw", 12.5)
    ]


@pytest.fixture
async def field(site: Any) -> AsyncIterator[tuple[Simulator, DriverManager, TagDatabase]]:
    sim = Simulator(site, seed=3, start_ts=NOV1, tick_s=None)
    await sim.start()
    db = TagDatabase([*site.tag_defs(), *account_tag_defs(site)])
    manager = DriverManager(site, db)
    await manager.start()
    try:
        yield sim, manager, db
    finally:
        await manager.stop()
        await sim.stop()


async def test_arrears_trips_and_topup_closes_through_modbus(
    site: Any,
    ledger: Ledger,
    audit: AuditLog,
    field: tuple[Simulator, DriverManager, TagDatabase],
) -> None:
    sim, manager, db = field
    assert sim.value("e.101", "relay") is True
    ctl = PrepaidController(site, ledger, relay_commander(site, db, audit, manager), db)
    assert await ctl.evaluate("shop-101") is None  # not open yet: nothing happens
    ledger.open_account("shop-101", "120.00")
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.level is Level.OK and s.actions == []
    assert db.read("acct.shop-101.balance").value == pytest.approx(120.0)
    ledger.charge("shop-101", EntryKind.CONSUMPTION, D("75.00"), key="c1")
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.level is Level.ALARM2  # 45.00 <= alarm2 50.00
    assert db.read("acct.shop-101.level").value == 2
    assert sim.value("e.101", "relay") is True
    ledger.charge("shop-101", EntryKind.CONSUMPTION, D("45.50"), key="c2")
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.level is Level.ARREARS and s.actions == ["e.101.relay tripped"]
    assert sim.value("e.101", "relay") is False  # written over Modbus, read back
    assert db.read("e.101.relay").value is False
    assert ledger.relay_tripped("e.101.relay")
    s = await ctl.evaluate("shop-101")  # no second command while it stays tripped
    assert s is not None and s.actions == []
    ledger.topup("shop-101", "0.50")  # balance 0.00: still arrears
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.level is Level.ARREARS and sim.value("e.101", "relay") is False
    ledger.topup("shop-101", "30.00")  # above zero: close again
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.actions == ["e.101.relay closed"] and s.level is Level.ALARM2
    assert sim.value("e.101", "relay") is True
    assert not ledger.relay_tripped("e.101.relay")


async def test_keep_power_never_trips_and_operator_trips_are_left_alone(
    ledger: Ledger, audit: AuditLog, tmp_path: Any
) -> None:
    text = site_text(free_port()).replace("keep_power: false", "keep_power: true")
    site = load_site_text(text)
    sim = Simulator(site, seed=3, start_ts=NOV1, tick_s=None)
    await sim.start()
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    await manager.start()
    try:
        ctl = PrepaidController(site, ledger, relay_commander(site, db, audit, manager), db)
        ledger.open_account("shop-101", "0.00")
        s = await ctl.evaluate("shop-101")
        assert s is not None and s.level is Level.ARREARS and s.actions == []
        assert sim.value("e.101", "relay") is True
        # an operator trips home-102's relay; billing does not close what it did not trip
        assert (await manager.write("e.102.relay", False)).ok
        ledger.open_account("home-102", "50.00")
        s = await ctl.evaluate("home-102")
        assert s is not None and s.actions == [] and sim.value("e.102", "relay") is False
    finally:
        await manager.stop()
        await sim.stop()


async def test_failed_command_is_retried_next_time(site: Any, ledger: Ledger) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls: list[tuple[str, bool]] = []

        async def set_relay(self, meter: str, closed: bool, reason: str) -> Any:
            self.calls.append((meter, closed))
            ok = len(self.calls) > 1

            class R:
                pass

            r = R()
            r.ok, r.message = ok, "" if ok else "device offline"  # type: ignore[attr-defined]
            return r

    flaky = Flaky()
    ctl = PrepaidController(site, ledger, flaky)
    ledger.open_account("shop-101", "0.00")
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.failures and not ledger.relay_tripped("e.101.relay")
    s = await ctl.evaluate("shop-101")
    assert s is not None and s.actions == ["e.101.relay tripped"]
    assert flaky.calls == [("e.101.relay", False), ("e.101.relay", False)]
