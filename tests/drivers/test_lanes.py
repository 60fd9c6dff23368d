"""A Modbus TCP channel polled over several connections (``connections: N``), against the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import WriteState
from drivers.lanes import ChannelLanes, deal
from drivers.manager import DriverManager
from drivers.modbus import ModbusDriver
from drivers.simulator import Simulator
from scada.config import ConfigError
from tags.database import TagDatabase
from tags.model import Quality
from tests.drivers.simulator_fixtures import (
    SITE_YAML,
    START_TS,
    free_port,
    load_site_text,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BUS = "b1-bus"
LANES_YAML = SITE_YAML.replace(
    "timeout_s: 0.5, retries: 1}", "timeout_s: 0.5, retries: 1, connections: 3}"
)


@pytest.fixture
def site(tmp_path: Path) -> Any:
    assert LANES_YAML != SITE_YAML
    return load_site_text(LANES_YAML.format(port=free_port(), port2=free_port()), tmp_path)


@pytest.fixture
async def plant(site: Any) -> AsyncIterator[tuple[Simulator, TagDatabase, DriverManager]]:
    sim = Simulator(site, seed=7, start_ts=START_TS, tick_s=None)
    await sim.start()
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        yield sim, db, manager
    finally:
        await manager.stop()
        await sim.stop()


def test_devices_are_dealt_round_robin_and_no_lane_is_empty() -> None:
    devices: list[Any] = list("abcdefg")
    assert deal(devices, 3) == [list("adg"), list("be"), list("cf")]
    assert deal(devices[:2], 5) == [["a"], ["b"]]
    assert deal(devices, 1) == [devices]


async def test_every_device_is_read_over_its_own_lane_and_written_through_it(
    site: Any, plant: tuple[Simulator, TagDatabase, DriverManager]
) -> None:
    sim, db, manager = plant
    driver = manager.drivers[BUS]
    assert isinstance(driver, ChannelLanes)
    assert len(driver.lanes) == 3
    on_bus = {d.id for d in site.devices if d.channel == BUS}
    lanes_of = {
        dev: [k for k, lane in enumerate(driver.lanes) if dev in lane.devices] for dev in on_bus
    }
    assert all(len(ks) == 1 for ks in lanes_of.values()), lanes_of  # each device on one lane
    assert set(driver.devices) == on_bus and set(driver.status) == on_bus
    # the RTU-over-TCP channel beside it keeps its one connection
    assert isinstance(manager.drivers["b1-rs485"], ModbusDriver)

    sim.step(3600)
    await manager.poll_once()
    assert driver.connected
    clients = [lane._client for lane in driver.lanes]
    assert len({id(c) for c in clients}) == 3 and all(
        c is not None and c.connected for c in clients
    )
    assert all(lane.requests_sent > 0 for lane in driver.lanes)
    assert driver.requests_sent == sum(lane.requests_sent for lane in driver.lanes)
    for dev in on_bus:
        assert driver.status[dev].online is True, dev
        for name in site.points(dev):
            if name in ("serial",):
                continue
            tv = db.read(f"{dev}.{name}")
            assert tv.quality is Quality.GOOD, (dev, name, tv)
    assert db.read("b1.hm.energy_kwh").value == pytest.approx(sim.value("b1.hm", "energy_kwh"))

    result = await manager.write("b1.102.valve.setpoint_c", 22.5)
    assert result.state is WriteState.CONFIRMED, result.message
    assert sim.value("b1.102.valve", "setpoint_c") == pytest.approx(22.5)
    lane = driver.lanes[lanes_of["b1.102.valve"][0]]
    assert lane.devices["b1.102.valve"] is driver.devices["b1.102.valve"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ("connections: 3}", "connections"),
        ("connections: 0}", "connections"),
        ("connections: 17}", "connections"),
    ],
)
def test_connections_are_checked(tmp_path: Path, edit: str, field: str) -> None:
    text = LANES_YAML.format(port=free_port(), port2=free_port())
    if edit == "connections: 3}":  # on a serial server's channel: one bus, one request at a time
        text = text.replace(
            "protocol: modbus-rtu-over-tcp, host: 127.0.0.1,",
            "protocol: modbus-rtu-over-tcp, connections: 3, host: 127.0.0.1,",
        )
    else:
        text = text.replace("connections: 3}", edit)
    with pytest.raises(ConfigError) as err:
        load_site_text(text, tmp_path)
    assert field in str(err.value) and "site.yaml" in str(err.value)
