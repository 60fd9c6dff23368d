"""The simulator over real Modbus on loopback, read and written by a plain pymodbus client."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from drivers.codec import Kind, PointSpec, decode_point
from drivers.simulator import FaultError, Simulator
from tests.drivers.simulator_fixtures import START_TS, sim_fixture, site_fixture  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def _client(sim: Simulator, channel: str = "b1-bus", **kw: Any) -> AsyncModbusTcpClient:
    host, port = sim.address(channel)  # type: ignore[misc]
    kw.setdefault("timeout", 2.0)
    kw.setdefault("retries", 0)
    client = AsyncModbusTcpClient(host, port=port, **kw)
    assert await client.connect()
    return client


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[AsyncModbusTcpClient]:
    c = await _client(sim)
    yield c
    c.close()


async def _read_point(client: AsyncModbusTcpClient, unit: int, spec: PointSpec) -> Any:
    n = spec.width
    if spec.kind is Kind.COIL:
        rr = await client.read_coils(spec.address, count=n, device_id=unit)
        data: list[Any] = rr.bits[:n]
    elif spec.kind is Kind.DISCRETE:
        rr = await client.read_discrete_inputs(spec.address, count=n, device_id=unit)
        data = rr.bits[:n]
    elif spec.kind is Kind.INPUT:
        rr = await client.read_input_registers(spec.address, count=n, device_id=unit)
        data = rr.registers
    else:
        rr = await client.read_holding_registers(spec.address, count=n, device_id=unit)
        data = rr.registers
    assert not rr.isError(), f"unit {unit} {spec.name}: {rr}"
    return decode_point(spec, data)


def _close(spec: PointSpec, wire: Any, model: Any) -> None:
    if isinstance(model, (bool, str)):
        assert wire == model, spec.name
    elif spec.type.value == "float32":
        assert wire == pytest.approx(model, rel=1e-6, abs=1e-6), spec.name
    elif spec.type.value == "float64":
        assert wire == pytest.approx(model, rel=1e-12), spec.name
    else:  # scaled integers round to the nearest step
        assert abs(wire - model) <= abs(spec.scale) / 2 + 1e-9, spec.name


async def test_every_point_read_over_tcp_matches_the_model(sim: Simulator, site: Any) -> None:
    sim.step(3 * 3600)
    clients = {
        "b1-bus": await _client(sim),
        "b1-rs485": await _client(sim, "b1-rs485", framer=FramerType.RTU),
    }
    try:
        checked = 0
        for device in site.devices:
            for name, point in site.points(device.id).items():
                spec = PointSpec.of(point, name=name)
                wire = await _read_point(clients[device.channel], device.unit, spec)
                _close(spec, wire, sim.value(device.id, name))
                checked += 1
        assert checked == sum(len(site.points(d.id)) for d in site.devices)
    finally:
        for c in clients.values():
            c.close()


async def test_values_move_with_simulated_time(
    sim: Simulator, client: AsyncModbusTcpClient, site: Any
) -> None:
    spec = PointSpec.of(site.points("b1.hm")["energy_kwh"], name="energy_kwh")
    e0 = await _read_point(client, 1, spec)
    sim.step(3600)
    e1 = await _read_point(client, 1, spec)
    assert e1 > e0
    assert e1 == pytest.approx(sim.value("b1.hm", "energy_kwh"), rel=1e-12)


async def test_valve_command_overrides_thermostat_and_release_returns_it(
    sim: Simulator, client: AsyncModbusTcpClient
) -> None:
    model = sim.model
    i = model.household_of["b1.101.valve"]
    model.rooms.room_c[i] = model.rooms.setpoint_c[i] - 3  # the thermostat wants it open
    sim.step(60)
    assert (await client.read_coils(0, count=1, device_id=11)).bits[0] is True
    rr = await client.write_coil(0, False, device_id=11)
    assert not rr.isError()
    assert sim.value("b1.101.valve", "open") is False
    sim.step(3600)
    rr = await client.read_coils(0, count=2, device_id=11)
    assert rr.bits[:2] == [False, False]  # closed, and not in auto
    assert not (await client.write_coil(1, True, device_id=11)).isError()  # release
    sim.step(60)
    rr = await client.read_coils(0, count=2, device_id=11)
    assert rr.bits[:2] == [True, True]


async def test_setpoint_write_reaches_the_thermostat(
    sim: Simulator, client: AsyncModbusTcpClient
) -> None:
    assert not (await client.write_register(1, 235, device_id=12)).isError()  # 23.5 degC
    assert sim.value("b1.102.valve", "setpoint_c") == pytest.approx(23.5)
    assert (await client.read_holding_registers(1, count=1, device_id=12)).registers == [235]
    i = sim.model.household_of["b1.102.valve"]
    sim.model.rooms.room_c[i] = 22.5  # below 23.5 - hysteresis: the thermostat opens
    sim.step(60)
    assert sim.value("b1.102.valve", "open") is True


async def test_relay_trip_over_modbus_stops_energy(sim: Simulator) -> None:
    client = await _client(sim, "b1-rs485", framer=FramerType.RTU)
    try:
        sim.step(600)
        assert not (await client.write_coil(1, True, device_id=21)).isError()  # trip
        rr = await client.read_coils(0, count=2, device_id=21)
        assert rr.bits[:2] == [False, True]  # relay open, tripped
        before = (await client.read_holding_registers(0, count=2, device_id=21)).registers
        sim.step(3600)
        after = (await client.read_holding_registers(0, count=2, device_id=21)).registers
        assert after == before
        assert not (await client.write_coil(0, True, device_id=21)).isError()  # close
        sim.step(3600)
        assert (await client.read_holding_registers(0, count=2, device_id=21)).registers != before
    finally:
        client.close()


async def test_generic_points_keep_what_was_written(
    sim: Simulator, client: AsyncModbusTcpClient, site: Any
) -> None:
    assert not (await client.write_register(0, 7, device_id=40)).isError()
    serial = PointSpec.of(site.points("b1.io")["serial"], name="serial")
    assert not (await client.write_registers(10, [0x4142, 0x4344, 0, 0], device_id=40)).isError()
    sim.step(3600)
    assert (await client.read_holding_registers(0, count=1, device_id=40)).registers == [7]
    assert sim.value("b1.io", "mode") == 7
    assert sim.value("b1.io", "serial") == "ABCD"
    assert await _read_point(client, 40, serial) == "ABCD"
    # a writable generic point of a meter (prepaid balance) too
    client2 = await _client(sim, "b1-rs485", framer=FramerType.RTU)
    try:
        assert not (
            await client2.write_registers(7, [0xFFFF, 0xFC18], device_id=21)
        ).isError()  # -1000 raw
        assert sim.value("b1.101.em", "balance") == pytest.approx(-10.0)
    finally:
        client2.close()


async def test_writes_to_measured_points_and_missing_addresses_are_refused(
    sim: Simulator, client: AsyncModbusTcpClient
) -> None:
    before = sim.value("b1.hm", "energy_kwh")
    rr = await client.write_registers(0, [0, 0, 0, 0], device_id=1)
    assert rr.isError() and rr.exception_code == 2  # illegal data address
    assert sim.value("b1.hm", "energy_kwh") == before
    rr = await client.read_holding_registers(100, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 2
    # volume is an input register: the holding table ends at 11
    rr = await client.read_holding_registers(12, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 2
    # inside a table, unused addresses read as 0 (planners read across gaps) but refuse writes
    rr = await client.read_holding_registers(0, count=9, device_id=30)
    assert not rr.isError() and rr.registers[4:6] == [0, 0]
    rr = await client.write_register(4, 1, device_id=30)
    assert rr.isError() and rr.exception_code == 2


async def test_unknown_unit_gets_no_answer(sim: Simulator) -> None:
    client = await _client(sim, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=1, device_id=99)
    finally:
        client.close()


async def test_offline_device_is_silent_while_its_neighbours_answer(sim: Simulator) -> None:
    sim.set_fault("b1.hm", "offline")
    client = await _client(sim, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=2, device_id=1)
    finally:
        client.close()
    client = await _client(sim)
    try:
        assert not (await client.read_coils(0, count=1, device_id=11)).isError()
        sim.clear_fault("b1.hm")
        rr = await client.read_holding_registers(4, count=2, device_id=1)
        assert not rr.isError() and len(rr.registers) == 2
    finally:
        client.close()


async def test_slow_device_answers_late(sim: Simulator) -> None:
    sim.set_fault("b1.hm", "slow", delay_s=5.0)
    client = await _client(sim, timeout=0.2)
    try:
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(4, count=2, device_id=1)
    finally:
        client.close()
    sim.set_fault("b1.hm", "slow", delay_s=0.05)
    client = await _client(sim, timeout=5.0)
    try:
        rr = await client.read_holding_registers(4, count=2, device_id=1)
        assert not rr.isError()
        assert (
            rr.registers == (await client.read_holding_registers(4, count=2, device_id=1)).registers
        )
    finally:
        client.close()


def _mbap_read(tid: int, unit: int, fc: int, address: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, fc, address, count)


async def _mbap_answer(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    """Return (transaction id, unit, function code, data) of the next answer."""
    tid, _pid, length = struct.unpack(">HHH", await reader.readexactly(6))
    body = await reader.readexactly(length)
    return tid, body[0], body[1], body[2:]


async def test_slow_answers_keep_their_own_transaction_ids(sim: Simulator) -> None:
    """Two requests in flight on one connection: the fast one overtakes, each keeps its id."""
    sim.set_fault("b1.hm", "slow", delay_s=0.3)
    host, port = sim.address("b1-bus")  # type: ignore[misc]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_mbap_read(101, 1, 3, 4, 2) + _mbap_read(102, 11, 1, 0, 2))
        await writer.drain()
        first = await asyncio.wait_for(_mbap_answer(reader), 5)
        second = await asyncio.wait_for(_mbap_answer(reader), 5)
    finally:
        writer.close()
    assert first[:3] == (102, 11, 1) and first[3][0] == 1  # coils of the valve, one byte of bits
    assert second[:3] == (101, 1, 3) and second[3][0] == 4  # two registers of the heat meter
    power = struct.unpack(">f", second[3][1:5])[0]
    assert power == pytest.approx(sim.value("b1.hm", "power_kw"), rel=1e-6, abs=1e-6)


async def test_garbage_exception_and_short_answers(
    sim: Simulator, client: AsyncModbusTcpClient
) -> None:
    sim.set_fault("b1.hm", "garbage")
    rr = await client.read_holding_registers(0, count=4, device_id=1)
    assert rr.isError() and rr.exception_code == 4
    sim.set_fault("b1.hm", "garbage", mode="exception", code=6)
    rr = await client.read_holding_registers(0, count=4, device_id=1)
    assert rr.isError() and rr.exception_code == 6
    sim.set_fault("b1.hm", "garbage", mode="short")
    rr = await client.read_holding_registers(0, count=4, device_id=1)
    assert not rr.isError() and len(rr.registers) == 3
    sim.set_fault("b1.101.valve", "garbage", mode="short")
    rr = await client.read_coils(0, count=2, device_id=11)
    assert rr.bits == []
    sim.clear_fault("b1.hm")
    rr = await client.read_holding_registers(0, count=4, device_id=1)
    assert len(rr.registers) == 4


async def test_garbage_crc_on_rtu_framing_is_rejected_by_the_master(sim: Simulator) -> None:
    sim.set_fault("b1.101.em", "garbage", mode="crc")
    client = await _client(sim, "b1-rs485", framer=FramerType.RTU, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=2, device_id=21)
        sim.clear_fault("b1.101.em")
        assert not (await client.read_holding_registers(0, count=2, device_id=22)).isError()
    finally:
        client.close()


def test_bad_fault_requests_name_the_device(site: Any) -> None:
    s = Simulator(site, start_ts=START_TS, tick_s=None)
    with pytest.raises(FaultError, match=r"b1\.nope"):
        s.set_fault("b1.nope", "offline")
    with pytest.raises(FaultError, match=r"b1\.hm.*unknown fault kind"):
        s.set_fault("b1.hm", "flaky")
    with pytest.raises(FaultError, match=r"b1\.hm.*delay"):
        s.set_fault("b1.hm", "offline", delay_s=3)
    with pytest.raises(FaultError, match=r"b1\.hm.*mode"):
        s.set_fault("b1.hm", "garbage", mode="noise")


def test_fault_file_switches_faults_at_run_time(site: Any, tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    s = Simulator(site, start_ts=START_TS, tick_s=None, fault_file=path)
    s.poll_fault_file()
    assert s.fault_of("b1.hm") is None
    path.write_text("b1.hm: offline\nb1.io: {kind: slow, delay_s: 1.5}\nb9.ghost: offline\n")
    s.poll_fault_file()
    assert s.fault_of("b1.hm").kind == "offline"  # type: ignore[union-attr]
    assert s.fault_of("b1.io").delay_s == 1.5  # type: ignore[union-attr]
    path.write_text("b1.io: {kind: garbage, mode: short}\n")
    s.poll_fault_file()
    assert s.fault_of("b1.hm") is None
    assert s.fault_of("b1.io").mode == "short"  # type: ignore[union-attr]
    path.write_text("b1.io: {kind: garbage, mode: [broken\n")  # a typo keeps the last good faults
    s.poll_fault_file()
    assert s.fault_of("b1.io").mode == "short"  # type: ignore[union-attr]
    path.unlink()
    s.poll_fault_file()
    assert s.fault_of("b1.io") is None


async def test_port_in_use_names_the_channel(site: Any) -> None:
    first = Simulator(site, start_ts=START_TS, tick_s=None)
    await first.start()
    try:
        second = Simulator(site, start_ts=START_TS, tick_s=None)
        with pytest.raises(OSError, match=r"b1-bus|127\.0\.0\.1"):
            await second.start()
    finally:
        await first.stop()


async def test_running_clock_advances_with_speed(site: Any) -> None:
    s = Simulator(site, start_ts=START_TS, tick_s=0.01, speed=360_000.0)
    await s.start()
    try:
        e0 = s.value("b1.hm", "energy_kwh")
        while s.now < START_TS + 3600:  # an hour of simulated time in a few ticks
            await asyncio.sleep(0.01)
        assert s.value("b1.hm", "energy_kwh") > e0
    finally:
        await s.stop()
