"""The simulated substation over real Modbus on loopback: curve, lag, pump, mixing, metering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.codec import Kind, PointSpec, decode_point, encode_point
from drivers.simulator import Simulator
from drivers.simulator.physics import water_power_kw
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SITE_YAML = """
site: {{id: subtest, name: Substation test, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: modbus-tcp, host: 127.0.0.1, port: {port}}}
  - {{id: plant, protocol: modbus-tcp, host: 127.0.0.1, port: {port2}}}
templates:
  heat-meter:
    role: heat_meter
    points:
      energy_kwh: {{address: 0, kind: holding, type: float32}}
      power_kw:   {{address: 2, kind: holding, type: float32}}
      flow_m3h:   {{address: 4, kind: holding, type: float32}}
      supply_c:   {{address: 6, kind: holding, type: float32}}
      return_c:   {{address: 8, kind: holding, type: float32}}
  valve:
    role: valve
    points:
      open:   {{address: 0, kind: coil, type: bool, writable: true}}
      room_c: {{address: 0, kind: input, type: int16, scale: 0.1}}
  substation:
    role: substation
    points:
      outdoor_c:         {{address: 0, kind: input, type: int16, scale: 0.1}}
      primary_supply_c:  {{address: 1, kind: input, type: int16, scale: 0.1}}
      primary_return_c:  {{address: 2, kind: input, type: int16, scale: 0.1}}
      supply_c:          {{address: 3, kind: input, type: int16, scale: 0.1}}
      return_c:          {{address: 4, kind: input, type: int16, scale: 0.1}}
      pump_speed_pct:    {{address: 5, kind: input, type: uint16, scale: 0.1}}
      flow_m3h:          {{address: 6, kind: input, type: float32}}
      power_kw:          {{address: 8, kind: input, type: float32}}
      energy_kwh:        {{address: 10, kind: input, type: uint32, scale: 0.1}}
      supply_setpoint_c: {{address: 0, kind: holding, type: int16, scale: 0.1, writable: true}}
      pump:              {{address: 0, kind: coil, type: bool, writable: true}}
devices:
  - {{id: b1.hm, template: heat-meter, channel: bus, unit: 1}}
  - {{id: b2.hm, template: heat-meter, channel: bus, unit: 2}}
  - {{id: b3.hm, template: heat-meter, channel: bus, unit: 3}}
  - {{id: sub, template: substation, channel: plant, unit: 1}}
buildings:
  - id: b1
    heat: {{energy_tag: b1.hm.energy_kwh}}
    generate:
      floors: 3
      units_per_floor: 4
      area_m2: 80
      valve_tag: "{{household}}.valve.open"
      room_tag: "{{household}}.valve.room_c"
      devices: [{{id: "{{household}}.valve", template: valve}}]
      channels: {{use: [bus], first_unit: 11}}
  - id: b2
    heat: {{energy_tag: b2.hm.energy_kwh}}
    generate:
      floors: 2
      units_per_floor: 3
      area_m2: 120
      valve_tag: "{{household}}.valve.open"
      room_tag: "{{household}}.valve.room_c"
      devices: [{{id: "{{household}}.valve", template: valve}}]
      channels: {{use: [bus], first_unit: 31}}
  - id: b3
    heat: {{energy_tag: b3.hm.energy_kwh}}
    households:
      - {{id: b3.1, area_m2: 60}}
substations:
  - id: st
    name: Test substation
    buildings: [b1, b2]
    outdoor_tag: sub.outdoor_c
    primary_supply_tag: sub.primary_supply_c
    primary_return_tag: sub.primary_return_c
    supply_tag: sub.supply_c
    return_tag: sub.return_c
    supply_setpoint_tag: sub.supply_setpoint_c
    pump_tag: sub.pump
    pump_speed_tag: sub.pump_speed_pct
    flow_tag: sub.flow_m3h
    power_tag: sub.power_kw
    energy_tag: sub.energy_kwh
    heating_curve: [[-20, 80], [-10, 72], [0, 63], [10, 54]]
"""
CURVE = np.array([[-20, 80], [-10, 72], [0, 63], [10, 54]], dtype=float)
BUILDINGS = ("b1", "b2")


@pytest.fixture(name="site")
def site_fixture(tmp_path: Path) -> Any:
    """The test site: two buildings on a substation, one without, on free loopback ports."""
    return load_site_text(SITE_YAML.format(port=free_port(), port2=free_port()), tmp_path)


class Plant:
    """A started simulator of ``site`` and pymodbus clients of its channels."""

    def __init__(self, site: Any, sim: Simulator) -> None:
        self.site = site
        self.sim = sim
        self.clients: dict[str, AsyncModbusTcpClient] = {}

    async def connect(self) -> None:
        for channel in ("bus", "plant"):
            address = self.sim.address(channel)
            assert isinstance(address, tuple)
            host, port = address
            client = AsyncModbusTcpClient(host, port=port, timeout=2.0, retries=0)
            assert await client.connect()
            self.clients[channel] = client

    def _where(self, tag: str) -> tuple[AsyncModbusTcpClient, int, PointSpec]:
        device_id, point = tag.rsplit(".", 1)
        device = self.site.device(device_id)
        spec = PointSpec.of(self.site.points(device_id)[point], name=point)
        return self.clients[device.channel], device.unit, spec

    async def read(self, tag: str) -> Any:
        """Return a point's value as a master polls it."""
        client, unit, spec = self._where(tag)
        if spec.kind is Kind.COIL:
            rr = await client.read_coils(spec.address, count=1, device_id=unit)
            data: list[Any] = list(rr.bits[:1])
        elif spec.kind is Kind.INPUT:
            rr = await client.read_input_registers(spec.address, count=spec.width, device_id=unit)
            data = list(rr.registers)
        else:
            rr = await client.read_holding_registers(spec.address, count=spec.width, device_id=unit)
            data = list(rr.registers)
        assert not rr.isError(), f"{tag}: {rr}"
        return decode_point(spec, data)

    async def write(self, tag: str, value: Any) -> None:
        """Write a point as a master's command does."""
        client, unit, spec = self._where(tag)
        if spec.kind is Kind.COIL:
            rr = await client.write_coil(spec.address, bool(value), device_id=unit)
        else:
            regs = encode_point(spec, value)
            rr = await client.write_registers(spec.address, regs, device_id=unit)
        assert not rr.isError(), f"{tag}: {rr}"

    async def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture(name="plant")
async def plant_fixture(site: Any) -> AsyncIterator[Plant]:
    """The simulator (time moves only with ``step``) and clients of both channels."""
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
    await sim.start()
    plant = Plant(site, sim)
    try:
        await plant.connect()
        yield plant
    finally:
        await plant.close()
        await sim.stop()


async def test_setpoint_follows_the_heating_curve_and_the_supply_follows_the_setpoint(
    plant: Plant,
) -> None:
    seen: list[float] = []
    for _ in range(12):  # half a day: the weather's daily swing moves the setpoint
        plant.sim.step(3600)
        outdoor = await plant.read("sub.outdoor_c")
        setpoint = await plant.read("sub.supply_setpoint_c")
        curve = float(np.interp(outdoor, CURVE[:, 0], CURVE[:, 1]))
        # both registers hold 0.1 K: the curve's slope (0.9) times half a step, plus half a step
        assert setpoint == pytest.approx(curve, abs=0.1)
        supply = await plant.read("sub.supply_c")
        assert supply == pytest.approx(setpoint, abs=1.0)  # a 10 min lag behind a slow setpoint
        for b in BUILDINGS:  # the buildings' meters see the substation's supply less 1 K
            assert await plant.read(f"{b}.hm.supply_c") == pytest.approx(supply - 1.0, abs=0.06)
        primary = await plant.read("sub.primary_supply_c")
        assert primary > supply + 3
        seen.append(setpoint)
    assert max(seen) - min(seen) > 2.0


async def test_a_written_setpoint_holds_and_the_supply_lags_behind_it(plant: Plant) -> None:
    plant.sim.step(3600)
    before = await plant.read("sub.supply_c")
    await plant.write("sub.supply_setpoint_c", before + 8.0)
    plant.sim.step(300)
    assert await plant.read("sub.supply_setpoint_c") == pytest.approx(before + 8.0, abs=0.06)
    halfway = await plant.read("sub.supply_c")
    assert before + 1.0 < halfway < before + 6.0  # on its way, not there
    plant.sim.step(6 * 3600)  # the weather moves on; the written setpoint does not
    assert await plant.read("sub.supply_setpoint_c") == pytest.approx(before + 8.0, abs=0.06)
    assert await plant.read("sub.supply_c") == pytest.approx(before + 8.0, abs=0.1)


async def test_stopping_the_pump_stops_the_flow_and_the_buildings_cool(plant: Plant) -> None:
    plant.sim.step(1800)
    assert await plant.read("sub.pump") is True
    assert await plant.read("sub.flow_m3h") > 0.5
    assert 30.0 <= await plant.read("sub.pump_speed_pct") <= 100.0
    supply = {b: await plant.read(f"{b}.hm.supply_c") for b in BUILDINGS}
    energy = await plant.read("sub.energy_kwh")
    unfed = await plant.read("b3.hm.flow_m3h")
    await plant.write("sub.pump", False)
    assert await plant.read("sub.pump") is False
    assert await plant.read("sub.flow_m3h") == 0.0  # at once
    assert await plant.read("sub.pump_speed_pct") == 0.0
    plant.sim.step(15)
    for b in BUILDINGS:
        assert await plant.read(f"{b}.hm.flow_m3h") == 0.0
        assert await plant.read(f"{b}.hm.power_kw") == 0.0
    plant.sim.step(2 * 3600)
    for b in BUILDINGS:  # the water standing in the pipes cools down
        assert await plant.read(f"{b}.hm.supply_c") < supply[b] - 10.0
    assert await plant.read("sub.energy_kwh") == pytest.approx(energy, abs=0.1)
    assert await plant.read("sub.power_kw") == 0.0
    assert await plant.read("b3.hm.flow_m3h") == pytest.approx(unfed, rel=0.5)  # not on it
    await plant.write("sub.pump", True)
    plant.sim.step(15)
    assert await plant.read("sub.flow_m3h") > 0.5
    plant.sim.step(3600)
    assert await plant.read("sub.energy_kwh") > energy + 1.0


async def test_flow_return_and_power_add_up_over_the_buildings(plant: Plant) -> None:
    for _ in range(8):
        plant.sim.step(1800)
        flows = [await plant.read(f"{b}.hm.flow_m3h") for b in BUILDINGS]
        returns = [await plant.read(f"{b}.hm.return_c") for b in BUILDINGS]
        flow = await plant.read("sub.flow_m3h")
        ret = await plant.read("sub.return_c")
        supply = await plant.read("sub.supply_c")
        assert flow == pytest.approx(sum(flows), rel=1e-5)
        assert min(returns) - 0.05 <= ret <= max(returns) + 0.05
        mixed = sum(f * r for f, r in zip(flows, returns, strict=True)) / sum(flows)
        assert ret == pytest.approx(mixed, abs=0.06)
        # power is the water's heat over the substation's own temperatures (0.1 K registers)
        power = await plant.read("sub.power_kw")
        assert power == pytest.approx(float(water_power_kw(flow, supply - ret)), rel=0.02)
        # and covers the buildings' heat plus the network's loss
        heat = sum([await plant.read(f"{b}.hm.power_kw") for b in BUILDINGS])
        assert power > heat
        assert await plant.read("sub.primary_return_c") == pytest.approx(ret + 3.0, abs=0.1)


def test_energy_is_the_integral_of_power(site: Any) -> None:
    sim = Simulator(site, seed=2, start_ts=START_TS, tick_s=None)
    subs = sim.model.subs
    assert subs is not None
    integral = 0.0
    start = float(subs.energy_kwh[0])
    q = sim.model.params.substep_s
    for _ in range(int(6 * 3600 / q)):
        sim.step(q)
        integral += float(subs.power_kw[0]) * q / 3600.0
    assert float(subs.energy_kwh[0]) - start == pytest.approx(integral, rel=1e-9)
    assert integral > 10.0


def test_a_substation_device_no_config_names_feeds_nothing(tmp_path: Path) -> None:
    text = SITE_YAML.format(port=free_port(), port2=free_port())
    text = text[: text.index("substations:")]
    sim = Simulator(load_site_text(text, tmp_path), seed=1, start_ts=START_TS, tick_s=None)
    sim.step(3600)
    assert sim.model.roles["sub"] == "substation"
    assert sim.value("sub", "flow_m3h") == 0.0
    # its setpoint follows the simulator's default curve; the buildings keep the site's supply
    assert sim.value("sub", "supply_setpoint_c") == pytest.approx(
        sim.model.params.rooms.supply_c(sim.value("sub", "outdoor_c"))
    )
    assert sim.value("b1.hm", "supply_c") == pytest.approx(sim.model.supply_c)
