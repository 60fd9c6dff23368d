"""The simulator's CAN devices on python-can's virtual bus: status frames, commands, faults."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import can
import pytest

from drivers.simulator import Simulator
from tests.drivers.simulator_fixtures import START_TS, load_site_text

CAN_SITE = """
site: {{id: cantest, timezone: UTC}}
channels:
  - {{id: can0, protocol: can, interface: virtual, channel: {bus}}}
templates:
  can-valve:
    role: valve
    points:
      open:       {{type: bool, can_id: 0x181, start_byte: 1, mux: 1, writable: true,
                    write: {{can_id: 0x201, start_byte: 1, mux: 1}}}}
      room_c:     {{type: int16, can_id: 0x181, start_byte: 2, mux: 1, byte_order: little, scale: 0.1}}
      setpoint_c: {{type: int16, can_id: 0x181, start_byte: 4, mux: 1, byte_order: little, scale: 0.1,
                    writable: true, write: {{can_id: 0x201, start_byte: 2, mux: 2}}}}
      battery:    {{type: uint16, can_id: 0x181, start_byte: 6, mux: 1, byte_order: big}}
devices:
  - {{id: c1.valve, template: can-valve, channel: can0, unit: 1}}
  - {{id: c2.valve, template: can-valve, channel: can0, unit: 2, points: {{
      open: {{can_id: 0x182, write: {{can_id: 0x202, start_byte: 1, mux: 1}}}},
      room_c: {{can_id: 0x182}}, battery: {{can_id: 0x182}},
      setpoint_c: {{can_id: 0x182, write: {{can_id: 0x202, start_byte: 2, mux: 2}}}}}}}}
"""


@pytest.fixture
async def can_sim(tmp_path: Path) -> AsyncIterator[tuple[Simulator, can.BusABC]]:
    """A started simulator of two CAN valves and a master's bus on the same virtual channel."""
    bus_name = f"simtest-{uuid.uuid4().hex[:8]}"
    site = load_site_text(CAN_SITE.format(bus=bus_name), tmp_path)
    sim = Simulator(site, start_ts=START_TS, tick_s=None, can_period_s=0.05)
    master = can.Bus(interface="virtual", channel=bus_name)
    await sim.start()
    try:
        yield sim, master
    finally:
        await sim.stop()
        master.shutdown()


async def _next_frame(
    bus: can.BusABC, accept: Callable[[can.Message], bool], timeout_s: float = 5.0
) -> can.Message:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (remaining := deadline - loop.time()) > 0:
        msg = await asyncio.to_thread(bus.recv, min(remaining, 0.5))
        if msg is not None and accept(msg):
            return msg
    raise AssertionError("no matching CAN frame")


def _decode(msg: can.Message) -> dict[str, Any]:
    d = bytes(msg.data)
    return {
        "mux": d[0],
        "open": d[1] != 0,
        "room_c": struct.unpack("<h", d[2:4])[0] * 0.1,
        "setpoint_c": struct.unpack("<h", d[4:6])[0] * 0.1,
        "battery": struct.unpack(">H", d[6:8])[0],
    }


async def test_status_frames_carry_the_model_values(can_sim: tuple[Simulator, can.BusABC]) -> None:
    sim, master = can_sim
    assert sim.address("can0") == f"virtual:{sim.site.channels[0].channel}"
    sim.step(3600)
    await asyncio.to_thread(
        lambda: [master.recv(0) for _ in range(100)]
    )  # frames sent before the step
    msg = await _next_frame(master, lambda m: m.arbitration_id == 0x181)
    assert len(msg.data) == 8
    v = _decode(msg)
    assert v["mux"] == 1
    assert v["open"] is sim.value("c1.valve", "open")
    assert v["room_c"] == pytest.approx(sim.value("c1.valve", "room_c"), abs=0.051)
    assert v["setpoint_c"] == pytest.approx(sim.value("c1.valve", "setpoint_c"), abs=0.051)
    assert v["battery"] == sim.value("c1.valve", "battery") == 0  # generic: nothing written yet


async def test_command_frames_reach_the_model_and_are_answered(
    can_sim: tuple[Simulator, can.BusABC],
) -> None:
    sim, master = can_sim
    want = not sim.value("c2.valve", "open")
    master.send(can.Message(arbitration_id=0x202, data=bytes([1, int(want)]), is_extended_id=False))
    msg = await _next_frame(
        master, lambda m: m.arbitration_id == 0x182 and _decode(m)["open"] is want
    )
    assert _decode(msg)["open"] is want
    assert sim.value("c2.valve", "open") is want
    assert sim.model.rooms.override[sim.model.household_of["c2.valve"]]
    master.send(
        can.Message(
            arbitration_id=0x202, data=bytes([2, 0]) + struct.pack("<h", 235), is_extended_id=False
        )
    )
    await _next_frame(
        master, lambda m: m.arbitration_id == 0x182 and round(_decode(m)["setpoint_c"], 1) == 23.5
    )
    assert sim.value("c2.valve", "setpoint_c") == pytest.approx(23.5)
    assert sim.value("c1.valve", "setpoint_c") != pytest.approx(
        23.5
    )  # the other node's frame ids differ


async def test_offline_node_goes_silent_and_ignores_commands(
    can_sim: tuple[Simulator, can.BusABC],
) -> None:
    sim, master = can_sim
    await _next_frame(master, lambda m: m.arbitration_id == 0x181)
    sim.set_fault("c1.valve", "offline")
    before = sim.value("c1.valve", "open")
    master.send(
        can.Message(arbitration_id=0x201, data=bytes([1, int(not before)]), is_extended_id=False)
    )
    # drain what was in flight, then count frames over ten periods of the other node
    await asyncio.to_thread(lambda: [master.recv(0) for _ in range(100)])
    seen: dict[int, int] = {0x181: 0, 0x182: 0}
    while seen[0x182] < 10:
        msg = await _next_frame(master, lambda m: m.arbitration_id in seen)
        seen[msg.arbitration_id] += 1
    assert seen[0x181] == 0
    assert sim.value("c1.valve", "open") is before
    sim.clear_fault("c1.valve")
    await _next_frame(master, lambda m: m.arbitration_id == 0x181)


async def test_garbage_node_sends_frames_of_wrong_length(
    can_sim: tuple[Simulator, can.BusABC],
) -> None:
    sim, master = can_sim
    sim.set_fault("c2.valve", "garbage")
    msg = await _next_frame(master, lambda m: m.arbitration_id == 0x182 and len(m.data) < 8)
    assert len(msg.data) == 1
    sim.clear_fault("c2.valve")
    await _next_frame(master, lambda m: m.arbitration_id == 0x182 and len(m.data) == 8)
