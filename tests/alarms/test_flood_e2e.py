"""Comm-loss defaults and flood suppression end to end: simulator, Modbus driver, alarm engine.

The ``.online`` tags come from the real driver polling the simulator over loopback; faults
are injected at the simulator (a device that does not answer, a channel's server stopped).
Each poll is awaited (``DriverManager.poll_once``); the alarm engine's clock is moved by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from alarms.model import AlarmState
from drivers.manager import DriverManager
from drivers.simulator import Simulator

from .comm_site import CommSite, load

START_TS = 1_763_683_200.0
VALVES = ["b1.101.valve", "b1.102.valve", "b1.103.valve"]
METERS = ["b1.101.em", "b1.102.em", "b1.s1.em", "b1.main"]


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[CommSite, Simulator, DriverManager]]:
    site = load(tmp_path)
    s = CommSite(tmp_path, site)
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
    await sim.start()
    manager = DriverManager(site, s.db)
    try:
        await manager.poll_once()
        assert all(s.db.read(f"{d.id}.online").value is True for d in site.devices)
        yield s, sim, manager
    finally:
        await manager.stop()
        await sim.stop()
        s.close()


async def poll_until(
    manager: DriverManager, s: CommSite, done: Callable[[], bool], polls: int = 5
) -> None:
    """Poll the field until ``done()`` holds (a dropped connection may take a second poll)."""
    for _ in range(polls):
        await manager.poll_once()
        if done():
            return
    raise AssertionError(f"not reached after {polls} polls")


def offline(s: CommSite, devices: list[str]) -> Callable[[], bool]:
    return lambda: all(s.db.read(f"{d}.online").value is False for d in devices)


def online(s: CommSite, devices: list[str]) -> Callable[[], bool]:
    return lambda: all(s.db.read(f"{d}.online").value is True for d in devices)


async def test_valves_and_a_meter_silent_raise_one_building_alarm_then_one_valve(field) -> None:
    s, sim, manager = field
    for d in [*VALVES, "b1.101.em"]:
        sim.set_fault(d, "offline")
    await poll_until(manager, s, offline(s, [*VALVES, "b1.101.em"]))
    s.advance(61)
    (alarm,) = s.active()
    assert alarm.key == "comm_loss.building:b1"
    assert alarm.message == (
        "Building 1: communication lost with 4 of 8 devices (channels b1-bus, b1-meters)"
    )
    assert s.state("comm_loss:b1.101.valve") is AlarmState.SUPPRESSED
    assert s.raised() == ["comm_loss.building:b1"]

    for d in [*VALVES[1:], "b1.101.em"]:
        sim.clear_fault(d)
    await poll_until(manager, s, online(s, [*VALVES[1:], "b1.101.em"]))
    assert s.state("comm_loss.building:b1") is AlarmState.RTN_UNACKED
    s.advance(61)
    assert [a.key for a in s.active() if a.active] == ["comm_loss:b1.101.valve"]
    assert s.engine.get("comm_loss:b1.101.valve").message == (
        "Valve b1.101.valve (flat b1.101): communication lost"
    )


async def test_a_stopped_channel_server_raises_one_channel_alarm(field) -> None:
    s, sim, manager = field
    (endpoint,) = [e for e in sim.endpoints.values() if "b1-meters" in e.spec.channels]
    await endpoint.stop()
    await poll_until(manager, s, offline(s, METERS))
    s.advance(61)
    assert [a.key for a in s.active()] == ["comm_loss.channel:b1-meters"]
    assert all(s.state(f"comm_loss:{d}") is AlarmState.SUPPRESSED for d in METERS)
    assert s.db.read("alarms.active").value == 1

    await endpoint.start()
    await poll_until(manager, s, online(s, METERS))
    s.advance(61)
    assert s.state("comm_loss.channel:b1-meters") is AlarmState.RTN_UNACKED
    assert s.raised() == ["comm_loss.channel:b1-meters"]
