"""CAN driver on python-can's virtual bus: frames, mux, silence, command frames."""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import Any

import can
import pytest

from drivers.base import WriteState
from drivers.manager import DriverManager
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import make_site, wait_until


def site_data(bus: str, silence_s: float = 0.3) -> dict[str, Any]:
    return {
        "site": {"id": "can", "name": "CAN test"},
        "channels": [
            {
                "id": "can0",
                "protocol": "can",
                "interface": "virtual",
                "channel": bus,
                "silence_timeout_s": silence_s,
                "timeout_s": 0.3,
            }
        ],
        "templates": {
            "valve": {
                "points": {
                    "room_c": {
                        "type": "int16",
                        "can_id": 0x101,
                        "start_byte": 1,
                        "mux": 1,
                        "scale": 0.1,
                    },
                    "setpoint_c": {
                        "type": "int16",
                        "can_id": 0x101,
                        "start_byte": 3,
                        "mux": 1,
                        "scale": 0.1,
                        "writable": True,
                        "min": 5,
                        "max": 30,
                        "write": {"can_id": 0x201, "start_byte": 1, "mux": 1},
                    },
                    "open": {
                        "type": "bool",
                        "can_id": 0x101,
                        "start_byte": 1,
                        "mux": 2,
                        "writable": True,
                        "write": {"can_id": 0x201, "start_byte": 1, "mux": 2},
                    },
                    "battery_v": {
                        "type": "uint16",
                        "can_id": 0x101,
                        "start_byte": 2,
                        "mux": 2,
                        "byte_order": "little",
                        "scale": 0.001,
                    },
                }
            },
            "sensor": {
                "points": {
                    "energy_kwh": {"type": "float32", "can_id": 0x18FF0102, "start_byte": 0},
                }
            },
        },
        "devices": [
            {"id": "v1", "template": "valve", "channel": "can0", "unit": 1},
            {"id": "s1", "template": "sensor", "channel": "can0", "unit": 2},
        ],
    }


@pytest.fixture
async def can_site():
    name = f"test-{uuid.uuid4().hex[:8]}"
    site = make_site(site_data(name))
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    node = can.Bus(interface="virtual", channel=name)
    await manager.start()
    try:
        yield site, db, manager, node
    finally:
        await manager.stop()
        node.shutdown()


def valve_frames(room: float, setpoint: float, open_: bool, battery: float) -> list[can.Message]:
    return [
        can.Message(
            arbitration_id=0x101,
            is_extended_id=False,
            data=bytes([1]) + struct.pack(">hh", round(room * 10), round(setpoint * 10)),
        ),
        can.Message(
            arbitration_id=0x101,
            is_extended_id=False,
            data=bytes([2, int(open_)]) + struct.pack("<H", round(battery * 1000)),
        ),
    ]


async def test_frames_decode_with_mux_and_byte_order(can_site):
    _site, db, _manager, node = can_site
    for msg in valve_frames(21.3, 20.0, True, 3.012):
        node.send(msg)
    node.send(
        can.Message(arbitration_id=0x18FF0102, is_extended_id=True, data=struct.pack(">f", 1234.5))
    )
    await wait_until(
        db,
        "*",
        lambda: (
            db.read("s1.energy_kwh").quality is Quality.GOOD
            and db.read("v1.battery_v").quality is Quality.GOOD
        ),
    )
    assert db.read("v1.room_c").value == pytest.approx(21.3)
    assert db.read("v1.setpoint_c").value == pytest.approx(20.0)
    assert db.read("v1.open").value is True
    assert db.read("v1.battery_v").value == pytest.approx(3.012)
    assert db.read("s1.energy_kwh").value == 1234.5
    assert db.read("v1.online").value is True
    # an unrelated frame id and a foreign mux value change nothing
    node.send(can.Message(arbitration_id=0x102, is_extended_id=False, data=bytes(8)))
    node.send(can.Message(arbitration_id=0x101, is_extended_id=False, data=bytes([9, 0, 0, 0, 0])))
    node.send(valve_frames(22.0, 20.0, True, 3.0)[0])
    await wait_until(db, "v1.room_c", lambda: db.read("v1.room_c").value == pytest.approx(22.0))
    assert db.read("v1.open").value is True


async def test_silence_marks_devices_comm_lost_and_frames_recover(can_site):
    _site, db, _manager, node = can_site
    node.send(
        can.Message(arbitration_id=0x18FF0102, is_extended_id=True, data=struct.pack(">f", 1.0))
    )
    for msg in valve_frames(20.0, 20.0, False, 3.0):
        node.send(msg)
    await wait_until(
        db, "*", lambda: db.read("v1.online").value is True and db.read("s1.online").value is True
    )
    # the valve concentrator keeps talking, the sensor falls silent
    done = asyncio.Event()

    async def keep_valve_alive() -> None:
        while not done.is_set():
            node.send(valve_frames(20.0, 20.0, False, 3.0)[0])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(keep_valve_alive())
    try:
        await wait_until(db, "s1.*", lambda: db.read("s1.online").value is False, timeout=5)
    finally:
        done.set()
        await task
    tv = db.read("s1.energy_kwh")
    assert (tv.quality, tv.reason, tv.value) == (Quality.BAD, Reason.COMM_LOST, 1.0)
    assert db.read("v1.room_c").quality is Quality.GOOD
    node.send(
        can.Message(arbitration_id=0x18FF0102, is_extended_id=True, data=struct.pack(">f", 2.0))
    )
    await wait_until(db, "s1.*", lambda: db.read("s1.energy_kwh").quality is Quality.GOOD)
    assert db.read("s1.online").value is True and db.read("s1.energy_kwh").value == 2.0


async def answer_commands(node: can.BusABC, apply: Any) -> None:
    """Play the valve: read command frames, answer with a status frame."""
    while True:
        msg = await asyncio.to_thread(node.recv, 0.05)
        if msg is not None and msg.arbitration_id == 0x201:
            for reply in apply(msg):
                node.send(reply)


async def test_write_sends_command_frame_and_confirms(can_site):
    _site, _db, manager, node = can_site
    state = {"setpoint": 20.0, "open": False}

    def apply(msg: can.Message) -> list[can.Message]:
        if msg.data[0] == 1:
            state["setpoint"] = struct.unpack(">h", bytes(msg.data[1:3]))[0] / 10
        elif msg.data[0] == 2:
            state["open"] = bool(msg.data[1])
        return valve_frames(20.0, state["setpoint"], state["open"], 3.0)

    task = asyncio.create_task(answer_commands(node, apply))
    try:
        result = await manager.write("v1.setpoint_c", 23.5)
        assert result.state is WriteState.CONFIRMED, result.message
        assert state["setpoint"] == 23.5
        result = await manager.write("v1.open", True)
        assert result.state is WriteState.CONFIRMED and state["open"] is True
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_write_mismatch_and_failed(can_site):
    _site, _db, manager, node = can_site

    def stubborn(msg: can.Message) -> list[can.Message]:
        return valve_frames(20.0, 20.0, False, 3.0)  # the valve ignores the command

    task = asyncio.create_task(answer_commands(node, stubborn))
    try:
        result = await manager.write("v1.setpoint_c", 25.0)
        assert result.state is WriteState.MISMATCH
        assert result.read_back == pytest.approx(20.0) and "v1.setpoint_c" in result.message
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    result = await manager.write("v1.open", True)  # nobody answers
    assert result.state is WriteState.FAILED and "v1.open" in result.message
