"""Why a device is ``comm_lost``: the cause reaches the tags' quality detail (issue 18, item 8).

Real Modbus TCP over loopback: a pymodbus server answering an exception code, falling
silent, answering short; a raw TCP peer answering bytes that are no Modbus response; a
port nobody listens on. On CAN (python-can's virtual bus): a silent node, a short frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import can
import pytest
from pymodbus.constants import ExcCodes

from drivers.manager import DriverManager
from hmi.theme import value_html
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import FieldServer, free_port, make_site, wait_until

POINTS = {
    "energy_kwh": {"address": 0, "kind": "holding", "type": "float32", "unit": "kWh"},
    "power_kw": {"address": 2, "kind": "holding", "type": "float32"},
}


def site_dict(port: int) -> dict[str, Any]:
    return {
        "site": {"id": "t", "name": "Test"},
        "channels": [
            {
                "id": "bus",
                "protocol": "modbus-tcp",
                "host": "127.0.0.1",
                "port": port,
                "timeout_s": 0.3,
                "retries": 1,  # one failure: offline
                "poll_s": 60,
                "offline_probe_s": 60,
                "backoff_max_s": 0.2,
            }
        ],
        "templates": {"meter": {"points": POINTS}},
        "devices": [
            {"id": "m1", "template": "meter", "channel": "bus", "unit": 1},
            {"id": "m2", "template": "meter", "channel": "bus", "unit": 2},
        ],
    }


class CauseServer(FieldServer):
    """A :class:`FieldServer` that also answers ``exception:N`` with exception code ``N``."""

    def _make_action(self, unit: int) -> Callable[..., Any]:
        base = super()._make_action(unit)

        async def action(fc, start, address, count, registers, set_values):
            fault = self.faults.get(unit, "")
            if fault.startswith("exception:"):
                self.requests[unit] += 1
                return ExcCodes(int(fault.partition(":")[2]))
            return await base(fc, start, address, count, registers, set_values)

        return action


@pytest.fixture
async def field() -> AsyncIterator[tuple[CauseServer, TagDatabase, DriverManager]]:
    port = free_port()
    site = make_site(site_dict(port))
    server = CauseServer(site, "bus")
    await server.start_tcp(port)
    for dev in ("m1", "m2"):
        server.set(dev, "energy_kwh", 1234.5)
        server.set(dev, "power_kw", 2.5)
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        yield server, db, manager
    finally:
        await manager.stop()
        await server.stop()


def lost(db: TagDatabase, tag: str) -> str | None:
    """Return the detail of ``tag``'s ``bad/comm_lost``; fail if it is not comm_lost."""
    tv = db.read(tag)
    assert (tv.quality, tv.reason) == (Quality.BAD, Reason.COMM_LOST), (tag, tv)
    return tv.detail


async def test_exception_code_is_the_cause_then_a_timeout_then_recovery(field) -> None:
    server, db, manager = field
    await manager.poll_once()
    assert db.read("m1.energy_kwh").quality is Quality.GOOD
    server.faults[1] = f"exception:{int(ExcCodes.ILLEGAL_ADDRESS)}"
    await manager.poll_once()
    detail = lost(db, "m1.energy_kwh")
    assert detail == "Modbus exception code 2 (illegal data address), FC3 0+4"
    assert lost(db, "m1.power_kw") == detail and db.read("m1.energy_kwh").value == 1234.5
    assert db.read("m2.energy_kwh").quality is Quality.GOOD  # the other device is fine
    lost_at = db.read("m1.energy_kwh").ts
    # the REST API's form (TagValue.to_json) and the HMI tooltip carry it
    assert db.read("m1.energy_kwh").to_json()["detail"] == detail
    html = value_html(db.read("m1.energy_kwh"), "kWh", tag="m1.energy_kwh")
    assert 'title="bad: comm_lost — Modbus exception code 2 (illegal data address)' in html
    # still offline, now for another reason: the detail follows, the time of the loss stays
    server.faults[1] = "offline"  # the server does not answer unit 1 at all
    await manager.poll_once()
    assert lost(db, "m1.energy_kwh") == "timeout: no answer within 0.3 s, FC3 0+4"
    assert db.read("m1.energy_kwh").ts == lost_at
    server.faults.pop(1)
    await manager.poll_once()
    tv = db.read("m1.energy_kwh")
    assert (tv.quality, tv.detail) == (Quality.GOOD, None) and "detail" not in tv.to_json()
    assert 'title="' not in value_html(tv, "kWh")


async def test_short_answer_is_the_cause(field) -> None:
    server, db, manager = field
    server.faults[2] = "short"  # one register missing from every read answer
    await manager.poll_once()
    assert lost(db, "m2.energy_kwh") == "short answer: 3 of 4 values, FC3 0+4"
    assert db.read("m1.energy_kwh").quality is Quality.GOOD


async def test_refused_connection_is_the_cause() -> None:
    port = free_port()  # nothing listens here
    site = make_site(site_dict(port))
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
    finally:
        await manager.stop()
    for tag in ("m1.energy_kwh", "m2.power_kw"):
        assert lost(db, tag) == f"connection refused by 127.0.0.1:{port}"
    assert db.read("m1.online").value is False


@contextlib.asynccontextmanager
async def garbage_peer(answer: bytes) -> AsyncIterator[int]:
    """Serve a TCP peer that answers every request with ``answer``; yield its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(260):
                writer.write(answer)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        # an MBAP header for 5 bytes of PDU whose byte count claims 8 registers' worth
        bytes.fromhex("0001 0000 0006 01") + bytes([3, 8, 0, 1, 0, 2]),
        b"\xde\xad\xbe\xef" * 4,  # not Modbus at all
    ],
    ids=["bad-byte-count", "noise"],
)
async def test_malformed_answer_is_the_cause_not_a_timeout(answer: bytes) -> None:
    async with garbage_peer(answer) as port:
        site = make_site(site_dict(port))
        db = TagDatabase(site.tag_defs())
        manager = DriverManager(site, db)
        try:
            await manager.poll_once()
        finally:
            await manager.stop()
    detail = lost(db, "m1.energy_kwh")
    assert detail is not None and detail.startswith("malformed answer: "), detail
    assert "bytes that are not a valid response" in detail


def rtu_site(port: str) -> dict[str, Any]:
    data = site_dict(0)
    data["channels"][0] = {
        "id": "bus",
        "protocol": "modbus-rtu",
        "port": port,
        "baudrate": 9600,
        "timeout_s": 0.5,
        "retries": 1,
        "poll_s": 60,
        "offline_probe_s": 60,
    }
    return data


async def test_rtu_bad_crc_is_a_malformed_answer(socat_pair) -> None:
    server_port, client_port = socat_pair
    site = make_site(rtu_site(client_port))
    server = FieldServer(site, "bus")
    await server.start_serial(server_port)
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        server.faults[2] = "crc"
        await manager.poll_once()
    finally:
        await manager.stop()
        await server.stop()
    assert db.read("m1.energy_kwh").quality is Quality.GOOD
    detail = lost(db, "m2.energy_kwh")
    assert detail is not None and detail.startswith("malformed answer: "), detail


async def test_missing_serial_port_is_the_cause(tmp_path) -> None:
    port = str(tmp_path / "no-such-tty")
    site = make_site(rtu_site(port))
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
    finally:
        await manager.stop()
    detail = lost(db, "m1.energy_kwh")
    assert detail is not None and detail.startswith(f"cannot connect to {port}: "), detail
    assert "no-such-tty" in detail.partition(": ")[2]


# ----------------------------------------------------------------------------- CAN


def can_site(bus: str) -> dict[str, Any]:
    return {
        "site": {"id": "can", "name": "CAN test"},
        "channels": [
            {
                "id": "can0",
                "protocol": "can",
                "interface": "virtual",
                "channel": bus,
                "silence_timeout_s": 0.3,
                "timeout_s": 0.3,
            }
        ],
        "templates": {
            "sensor": {
                "points": {
                    "energy_kwh": {"type": "float32", "can_id": 0x181, "start_byte": 0},
                    "flow_m3h": {"type": "float32", "can_id": 0x181, "start_byte": 4},
                }
            },
        },
        "devices": [{"id": "s1", "template": "sensor", "channel": "can0", "unit": 1}],
    }


async def test_can_silence_and_short_frames_are_the_cause() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    site = make_site(can_site(name))
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    node = can.Bus(interface="virtual", channel=name)
    await manager.start()
    try:

        def frame(data: bytes) -> None:
            node.send(can.Message(arbitration_id=0x181, is_extended_id=False, data=data))

        frame(struct.pack(">ff", 1.0, 2.0))
        await wait_until(db, "s1.*", lambda: db.read("s1.flow_m3h").quality is Quality.GOOD)
        await wait_until(db, "s1.*", lambda: db.read("s1.online").value is False)
        assert lost(db, "s1.energy_kwh") == "silent: no frame for 0.3 s"
        # a frame that carries the first point but not the second: only the second is lost
        # (checked as the change arrives: the node falls silent again 0.3 s later)
        short = "malformed frame: tag s1.flow_m3h: frame of 4 bytes, needs 8"

        def partly_read() -> bool:
            a, b = db.read("s1.energy_kwh"), db.read("s1.flow_m3h")
            return (a.value, a.quality, b.quality, b.reason, b.detail) == (
                3.0,
                Quality.GOOD,
                Quality.BAD,
                Reason.COMM_LOST,
                short,
            )

        frame(struct.pack(">f", 3.0))
        await wait_until(db, "s1.*", partly_read)
        # a frame too short for any point: the device is lost, for that reason
        frame(b"\x01")
        await wait_until(
            db,
            "s1.*",
            lambda: (
                db.read("s1.online").value is False
                and db.read("s1.energy_kwh").detail
                == "malformed frame: tag s1.energy_kwh: frame of 1 bytes, needs 4"
            ),
        )
        assert lost(db, "s1.energy_kwh") is not None
    finally:
        await manager.stop()
        node.shutdown()
