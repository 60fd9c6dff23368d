"""Modbus TCP driver against a real pymodbus server on loopback: values, status, writes, faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from drivers.base import NotWritable, OutOfRange, UnknownTag, WriteState, WrongType
from drivers.manager import DriverManager
from drivers.modbus import next_slot
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import FieldServer, free_port, make_site, wait_until

METER_POINTS = {
    "energy_kwh": {"address": 0, "kind": "holding", "type": "float32", "unit": "kWh"},
    "power_kw": {"address": 2, "kind": "holding", "type": "float32", "word_order": "little"},
    "volume_m3": {"address": 4, "kind": "holding", "type": "uint32", "scale": 0.01},
    "pulses": {"address": 6, "kind": "holding", "type": "int64", "byte_order": "little"},
    "flow_temp_c": {"address": 10, "kind": "holding", "type": "int16", "scale": 0.1},
    "total_f64": {"address": 12, "kind": "holding", "type": "float64"},
    "serial": {"address": 20, "kind": "holding", "type": "str", "count": 4},
    "alarm_bit": {"address": 24, "kind": "holding", "type": "bit", "bit": 3},
    "setpoint_c": {
        "address": 30,
        "kind": "holding",
        "type": "int16",
        "scale": 0.1,
        "writable": True,
        "min": 5,
        "max": 30,
    },
    "limit_kw": {"address": 32, "kind": "holding", "type": "float32", "writable": True},
    "mode_bit": {"address": 24, "kind": "holding", "type": "bit", "bit": 7, "writable": True},
    "room_c": {"address": 0, "kind": "input", "type": "int16", "scale": 0.1, "offset": -10},
    "count_u16": {"address": 1, "kind": "input", "type": "uint16"},
    "relay": {"address": 0, "kind": "coil", "type": "bool", "writable": True},
    "door": {"address": 3, "kind": "discrete", "type": "bool"},
}


def site_dict(port: int, **channel: Any) -> dict[str, Any]:
    ch = {
        "id": "bus",
        "protocol": "modbus-tcp",
        "host": "127.0.0.1",
        "port": port,
        "timeout_s": 0.3,
        "retries": 2,
        "poll_s": 0.05,
        "offline_probe_s": 60,
        "backoff_max_s": 0.2,
        "max_gap": 8,
    }
    ch.update(channel)
    return {
        "site": {"id": "t", "name": "Test"},
        "channels": [ch],
        "templates": {"meter": {"points": METER_POINTS}},
        "devices": [
            {"id": "m1", "template": "meter", "channel": "bus", "unit": 1},
            {"id": "m2", "template": "meter", "channel": "bus", "unit": 2},
        ],
    }


VALUES = {
    "energy_kwh": 12345.5,
    "power_kw": -3.25,
    "volume_m3": 123456.78,
    "pulses": -(2**40) - 5,
    "flow_temp_c": -12.3,
    "total_f64": 1e12 + 0.5,
    "serial": "HM-0042",
    "alarm_bit": True,
    "setpoint_c": 21.5,
    "limit_kw": 7.5,
    "mode_bit": False,
    "room_c": 11.5,
    "count_u16": 65535,
    "relay": True,
    "door": True,
}


@pytest.fixture
async def field():
    port = free_port()
    site = make_site(site_dict(port))
    server = FieldServer(site, "bus")
    await server.start_tcp(port)
    for dev in ("m1", "m2"):
        for name, value in VALUES.items():
            server.set(dev, name, value)
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        yield site, server, db, manager
    finally:
        await manager.stop()
        await server.stop()


def good(db: TagDatabase, tag: str) -> bool:
    return db.read(tag).quality is Quality.GOOD


async def test_poll_once_reads_every_type(field):
    _site, server, db, manager = field
    await manager.poll_once()
    for dev in ("m1", "m2"):
        for name, expected in VALUES.items():
            tv = db.read(f"{dev}.{name}")
            assert tv.quality is Quality.GOOD, (dev, name, tv)
            if isinstance(expected, float):
                assert tv.value == pytest.approx(expected, rel=1e-6), name
            else:
                assert tv.value == expected, name
        assert db.read(f"{dev}.online").value is True
        assert db.read(f"{dev}.errors").value == 0
        assert db.read(f"{dev}.latency_ms").value > 0
        assert abs(db.read(f"{dev}.last_ok").value - time.time()) < 60
    # planned: per device one holding block (0..34 with gaps <= 8), one input, one coil, one discrete
    driver = manager.drivers["bus"]
    assert [(r.kind.value, r.start, r.count) for r in driver.plan if r.device == "m1"] == [
        ("holding", 0, 34),
        ("input", 0, 2),
        ("coil", 0, 1),
        ("discrete", 3, 1),
    ]
    assert driver.requests_sent == 8
    assert server.requests == {1: 4, 2: 4}


def test_reads_keep_their_own_slots_spread_over_the_period() -> None:
    period = 10.0
    for phase in (0.0, 2.5, 9.9):
        # on time: exactly one period later; late or after a reconnect: back on its own grid,
        # never more than one period after the read
        assert next_slot(phase, period, 100 * period + phase + 0.01) == pytest.approx(
            101 * period + phase
        )
        for done in (3.3, 47.0, 1234.56):
            due = next_slot(phase, period, done)
            assert done < due <= done + period + 1e-9
            assert (due - phase) / period == pytest.approx(round((due - phase) / period))


async def test_the_devices_of_a_channel_are_polled_at_spread_phases(field):
    _site, _server, _db, manager = field
    driver = manager.drivers["bus"]
    phases = {s.req.device: s.phase for s in driver._schedule}
    period = driver._schedule[0].req.period_s
    assert sorted(phases.values()) == [0.0, period / 2]  # two devices, half a period apart
    assert all(s.phase == phases[s.req.device] for s in driver._schedule)


async def test_background_polling_follows_changes(field):
    _site, server, db, manager = field
    await manager.start()
    await wait_until(db, "m1.*", lambda: good(db, "m1.power_kw"))
    server.set("m1", "power_kw", 42.0)
    await wait_until(db, "m1.power_kw", lambda: db.read("m1.power_kw").value == 42.0)


async def test_writes_confirmed_with_right_function_codes(field):
    _site, server, db, manager = field
    await manager.poll_once()
    result = await manager.write("m1.setpoint_c", 22.4)
    assert result.state is WriteState.CONFIRMED and result.ok
    assert result.read_back == pytest.approx(22.4)
    assert server.raw("m1", "setpoint_c") == [224]  # FC6, inverse scaling
    assert db.read("m1.setpoint_c").value == pytest.approx(22.4)

    result = await manager.write("m1.limit_kw", 1.5)  # FC16, two registers
    assert result.state is WriteState.CONFIRMED
    assert server.raw("m1", "limit_kw") == [0x3FC0, 0]

    result = await manager.write("m1.relay", False)  # FC5
    assert result.state is WriteState.CONFIRMED
    assert server.get("m1", "relay") is False

    result = await manager.write("m1.mode_bit", True)  # read-modify-write keeps bit 3
    assert result.state is WriteState.CONFIRMED
    assert server.raw("m1", "alarm_bit") == [(1 << 3) | (1 << 7)]
    assert server.get("m2", "setpoint_c") == pytest.approx(21.5)  # other unit untouched


async def test_rejected_writes_send_nothing(field):
    _site, server, _db, manager = field
    before = sum(server.requests.values())
    with pytest.raises(NotWritable, match=r"m1\.energy_kwh"):
        await manager.write("m1.energy_kwh", 1.0)
    with pytest.raises(OutOfRange, match=r"m1\.setpoint_c.*above max 30"):
        await manager.write("m1.setpoint_c", 31)
    with pytest.raises(OutOfRange, match="below min"):
        await manager.write("m1.setpoint_c", 4.9)
    with pytest.raises(WrongType, match=r"m1\.relay"):
        await manager.write("m1.relay", "on")
    with pytest.raises(WrongType, match=r"m1\.limit_kw"):
        await manager.write("m1.limit_kw", "fast")
    with pytest.raises(OutOfRange, match="overflows"):
        await manager.write("m1.limit_kw", 1e39)
    with pytest.raises(UnknownTag, match=r"m9\.x"):
        await manager.write("m9.x", 1)
    with pytest.raises(UnknownTag):
        await manager.write("m1.online", True)  # a status tag is not a device point
    assert sum(server.requests.values()) == before


async def test_write_mismatch_and_failed(field):
    _site, server, _db, manager = field
    await manager.poll_once()
    server.faults[1] = "clamp"  # the device stores 0 whatever we write
    result = await manager.write("m1.setpoint_c", 25)
    assert result.state is WriteState.MISMATCH
    assert result.read_back == 0
    assert "m1.setpoint_c" in result.message and "m1" in result.message
    server.faults[1] = "exception"
    result = await manager.write("m1.setpoint_c", 25)
    assert result.state is WriteState.FAILED
    assert "exception code 4" in result.message and "m1.setpoint_c" in result.message
    server.faults[1] = "offline"
    result = await manager.write("m1.relay", True)
    assert result.state is WriteState.FAILED
    assert "m1.relay" in result.message


async def test_offline_device_comm_lost_others_fine_then_recovers(field):
    _site, server, db, manager = field
    await manager.start()
    await wait_until(db, "m*", lambda: good(db, "m1.energy_kwh") and good(db, "m2.energy_kwh"))
    server.faults[1] = "offline"
    await wait_until(db, "m1.*", lambda: db.read("m1.online").value is False, timeout=5)
    for name in VALUES:
        tv = db.read(f"m1.{name}")
        assert (tv.quality, tv.reason) == (Quality.BAD, Reason.COMM_LOST), name
    assert db.read("m1.errors").value >= 2  # retries: 2 consecutive failures
    assert db.read("m1.energy_kwh").value == pytest.approx(12345.5)  # value kept, shown bad
    # the healthy device on the same channel keeps being polled
    server.set("m2", "power_kw", 9.0)
    await wait_until(db, "m2.power_kw", lambda: db.read("m2.power_kw").value == 9.0)
    assert good(db, "m2.power_kw") and db.read("m2.online").value is True
    # recovery: the probe is due at once when we shorten the probe interval
    server.faults.pop(1)
    manager.drivers["bus"].probe_now("m1")
    await wait_until(
        db, "m1.*", lambda: db.read("m1.online").value is True and good(db, "m1.room_c")
    )
    assert good(db, "m1.energy_kwh")


async def test_offline_device_costs_one_request_per_probe(field):
    _site, server, db, manager = field
    server.faults[1] = "offline"
    await manager.start()
    await wait_until(db, "m1.online", lambda: db.read("m1.online").value is False, timeout=5)
    seen_offline = server.requests[1]
    for n in range(10):  # ten completed scans of the healthy device on the same channel
        server.set("m2", "power_kw", float(n + 100))
        await wait_until(
            db, "m2.power_kw", lambda n=n: db.read("m2.power_kw").value == float(n + 100)
        )
    assert server.requests[1] == seen_offline  # offline_probe_s is 60: no request to m1 at all
    driver = manager.drivers["bus"]
    errors = db.read("m1.errors").value
    driver.probe_now("m1")
    await wait_until(db, "m1.errors", lambda: db.read("m1.errors").value == errors + 1, timeout=5)
    for n in range(3):
        server.set("m2", "power_kw", float(n + 500))
        await wait_until(
            db, "m2.power_kw", lambda n=n: db.read("m2.power_kw").value == float(n + 500)
        )
    assert server.requests[1] == seen_offline + 1  # a single request per probe
    assert db.read("m1.online").value is False


@pytest.mark.parametrize("fault", ["exception", "short"])
async def test_garbage_is_an_error_for_that_device_only(field, fault):
    _site, server, db, manager = field
    server.faults[2] = fault
    await manager.poll_once()
    await manager.poll_once()  # retries: 2
    assert db.read("m2.online").value is False
    assert (db.read("m2.energy_kwh").quality, db.read("m2.energy_kwh").reason) == (
        Quality.BAD,
        Reason.COMM_LOST,
    )
    assert db.read("m2.errors").value == 2
    assert good(db, "m1.energy_kwh") and db.read("m1.online").value is True
    assert db.read("m1.errors").value == 0
    server.faults.clear()
    await manager.poll_once()
    assert good(db, "m2.energy_kwh") and db.read("m2.online").value is True


async def test_server_down_then_back_reconnects(field):
    site, server, db, manager = field
    await manager.start()
    await wait_until(db, "m1.*", lambda: good(db, "m1.energy_kwh"))
    port = site.channel("bus").port
    await server.stop()
    await wait_until(
        db,
        "m*.online",
        lambda: db.read("m1.online").value is False and db.read("m2.online").value is False,
        timeout=10,
    )
    assert db.read("m2.serial").reason is Reason.COMM_LOST
    assert not manager.drivers["bus"].connected
    await server.start_tcp(port)
    for name, value in VALUES.items():
        server.set("m1", name, value)
        server.set("m2", name, value)
    await wait_until(
        db, "m*", lambda: good(db, "m1.energy_kwh") and good(db, "m2.serial"), timeout=10
    )
    assert db.read("m1.online").value is True


async def test_unreachable_channel_marks_devices_comm_lost():
    port = free_port()  # nothing listens here
    site = make_site(site_dict(port, retries=1))
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    await manager.poll_once()
    assert db.read("m1.online").value is False
    assert db.read("m1.energy_kwh").reason is Reason.COMM_LOST
    assert db.read("m2.errors").value == 1
    await manager.stop()


async def test_stale_after_three_poll_periods(field):
    _site, _server, db, manager = field
    await manager.poll_once()
    now = time.time()
    db.check_stale(now + 0.05)
    assert good(db, "m1.energy_kwh")
    db.check_stale(now + 3 * 0.05 + 1.0)  # not refreshed within 3 x poll_s
    tv = db.read("m1.energy_kwh")
    assert (tv.quality, tv.reason) == (Quality.UNCERTAIN, Reason.STALE)
    await manager.poll_once()
    assert good(db, "m1.energy_kwh")


async def test_channels_run_concurrently():
    """Two channels with a silent device each: the second request goes out before the first times out."""
    ports = [free_port(), free_port()]
    data = site_dict(ports[0], timeout_s=0.5, retries=1)
    ch2 = dict(data["channels"][0], id="bus2", port=ports[1])
    data["channels"].append(ch2)
    data["devices"][1]["channel"] = "bus2"
    site = make_site(data)
    servers = [FieldServer(site, "bus"), FieldServer(site, "bus2")]
    seen = asyncio.Event()
    for s, p in zip(servers, ports, strict=True):
        s.changed = seen
        await s.start_tcp(p)
    servers[0].faults[1] = "offline"
    servers[1].faults[2] = "offline"
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        task = asyncio.create_task(manager.poll_once())
        while not (servers[0].requests[1] and servers[1].requests[2]):
            seen.clear()
            await asyncio.wait_for(seen.wait(), 5)
        # both requests are pending at once: neither channel has seen its timeout yet
        assert (
            db.read("m1.errors").quality is Quality.BAD
            and db.read("m1.errors").reason is Reason.NOT_CONNECTED
        )
        assert db.read("m2.errors").reason is Reason.NOT_CONNECTED
        await asyncio.wait_for(task, 5)
        assert db.read("m1.online").value is False and db.read("m2.online").value is False
    finally:
        await manager.stop()
        for s in servers:
            await s.stop()
