"""The CJ/T 188 driver polling the building simulator's heat meters over TCP and a pty pair (issue 21).

Real sockets and a real ``socat`` pty pair: the simulator serves the meters of a ``cjt188-tcp``
(or ``cjt188``) channel, the driver manager polls them; faults are the simulator's fault
injection (issue 21 item 6: wrong checksum, truncated frame, answer from the wrong address).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import NotWritable
from drivers.cjt188 import (
    WILDCARD_ADDRESS,
    Control,
    Frame,
    decode_frame,
    decode_heat_data,
    encode_frame,
    find_frame,
    read_request,
)
from drivers.manager import DriverManager
from drivers.simulator import Simulator
from scada.config.errors import ConfigError
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import heat_model, is_good, wait_until
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text

TEMPLATE = Path(__file__).parents[2] / "config" / "templates" / "cjt188-heat.yaml"
A1 = "00000000000001"
A2 = "20260000000002"

SITE = """
site: {{id: cj, name: CJ/T 188 test site, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: cjt188-tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.3,
      retries: 1, offline_probe_s: 0.05, frame_gap_s: 0.001}}
templates:
{template}
devices:
  - {{id: h1.hm, template: cjt188-heat-meter, channel: bus, address: "{a1}"}}
  - {{id: h2.hm, template: cjt188-heat-meter, channel: bus, address: "{a2}"}}
"""

#: point -> (model variable, resolution the frame carries)
POINTS = {
    "energy_kwh": ("energy_kwh", 0.01),
    "volume_m3": ("volume_m3", 0.01),
    "power_kw": ("power_kw", 0.01),
    "flow_m3h": ("flow_m3h", 1e-4),
    "supply_c": ("supply_c", 0.01),
    "return_c": ("return_c", 0.01),
}


def _text(port: int) -> str:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    return SITE.format(port=port, template=template, a1=A1, a2=A2)


def _serial(text: str, port: str) -> str:
    return text.replace(
        "protocol: cjt188-tcp, host: 127.0.0.1, port: 1,",
        f"protocol: cjt188, port: {port}, baudrate: 9600,",
    )


@pytest.fixture(params=["tcp", "pty"])
async def field(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Simulator, TagDatabase, DriverManager]]:
    serial_ports: dict[str, str] = {}
    if request.param == "pty":
        sim_end, driver_end = request.getfixturevalue("socat_pair")
        text = _serial(_text(1), driver_end)
        serial_ports = {"bus": sim_end}
    else:
        text = _text(free_port())
    site = load_site_text(text, tmp_path)
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None, serial_ports=serial_ports)
    await sim.start()
    sim.step(3600.0)  # some energy and volume on the counters
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        yield sim, db, manager
    finally:
        await manager.stop()
        await sim.stop()


async def test_values_are_good_and_equal_to_the_simulators(field: Any) -> None:
    sim, db, manager = field
    await manager.poll_once()
    for dev in ("h1.hm", "h2.hm"):
        for point, (var, resolution) in POINTS.items():
            tv = db.read(f"{dev}.{point}")
            assert tv.quality is Quality.GOOD, (dev, point, tv)
            assert tv.value == pytest.approx(heat_model(sim, dev, var), abs=resolution), (
                dev,
                point,
            )
        assert heat_model(sim, dev, "energy_kwh") > 0
        assert db.read(f"{dev}.hours_h").value == 1.0  # one simulated hour since the start
        assert db.read(f"{dev}.battery_low").value is False
        assert db.read(f"{dev}.online").value is True
    assert manager.drivers["bus"].requests_sent == 2  # one request per meter and poll
    await manager.poll_once()
    assert manager.drivers["bus"].requests_sent == 4


async def test_background_polling_follows_the_simulation(field: Any) -> None:
    sim, db, manager = field
    await manager.start()
    await wait_until(db, "h2.hm.*", lambda: is_good(db, "h2.hm.energy_kwh"))
    before = db.read("h2.hm.energy_kwh").value
    sim.step(3600.0)
    expected = heat_model(sim, "h2.hm", "energy_kwh")
    assert expected > before
    await manager.poll_once()  # the next period is 60 s away: read once now
    assert db.read("h2.hm.energy_kwh").value == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("crc", "wrong checksum"),
        ("short", "truncated frame"),
        ("address", f"answer from wrong address 00000000000002 (asked {A1})"),
        ("exception", "meter error: abnormal answer C1"),
    ],
)
async def test_bad_answers_are_counted_and_named_while_the_other_meter_polls_on(
    field: Any, mode: str, cause: str
) -> None:
    sim, db, manager = field
    await manager.poll_once()
    errors_before = db.read("h1.hm.errors").value
    sim.set_fault("h1.hm", "garbage", mode=mode)
    sim.step(600.0)
    await manager.poll_once()
    tv = db.read("h1.hm.energy_kwh")
    assert (tv.quality, tv.reason) == (Quality.BAD, Reason.COMM_LOST)
    assert tv.detail is not None and tv.detail.startswith(cause), tv.detail
    assert db.read("h1.hm.supply_c").reason is Reason.COMM_LOST
    assert db.read("h1.hm.online").value is False
    assert db.read("h1.hm.errors").value == errors_before + 1  # counted
    # the other meter keeps polling, its values fresh
    assert db.read("h2.hm.online").value is True
    expected = heat_model(sim, "h2.hm", "energy_kwh")
    assert is_good(db, "h2.hm.energy_kwh")
    assert db.read("h2.hm.energy_kwh").value == pytest.approx(expected, abs=0.01)
    # repaired: the probe brings it back
    sim.clear_fault("h1.hm")
    await manager.start()
    await wait_until(db, "h1.hm.*", lambda: is_good(db, "h1.hm.energy_kwh"))
    assert db.read("h1.hm.online").value is True


async def test_offline_meter_times_out_while_the_other_polls_on(field: Any) -> None:
    sim, db, manager = field
    sim.set_fault("h2.hm", "offline")
    await manager.start()
    await wait_until(db, "h2.hm.*", lambda: db.read("h2.hm.energy_kwh").reason is Reason.COMM_LOST)
    assert db.read("h2.hm.energy_kwh").detail == "timeout: no answer within 0.3 s"
    await wait_until(db, "h1.hm.*", lambda: is_good(db, "h1.hm.power_kw"))


async def test_a_write_is_refused(tmp_path: Path) -> None:
    site = load_site_text(_text(free_port()), tmp_path)
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        with pytest.raises(NotWritable):
            await manager.write("h1.hm.energy_kwh", 1.0)
        result = await manager.drivers["bus"].write("h1.hm", "energy_kwh", 1.0)
        assert "read-only" in result.message
    finally:
        await manager.stop()


async def test_refused_connection_is_the_cause(tmp_path: Path) -> None:
    site = load_site_text(_text(free_port()), tmp_path)  # nobody listens on the port
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
    finally:
        await manager.stop()
    tv = db.read("h1.hm.energy_kwh")
    assert tv.reason is Reason.COMM_LOST
    assert tv.detail is not None and tv.detail.startswith("connection refused by 127.0.0.1:")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame: Frame
) -> Frame:
    writer.write(encode_frame(frame))
    buf = bytearray()
    while (span := find_frame(buf)) is None:
        buf += await reader.read(256)
    return decode_frame(bytes(buf[span[0] : span[1]]))


async def test_the_simulator_speaks_cjt188(tmp_path: Path) -> None:
    site = load_site_text(
        _text(free_port()).replace(f'address: "{A2}"', 'enabled: false, address: "20260000000002"'),
        tmp_path,
    )
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
    await sim.start()
    host, port = sim.address("bus")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        # the one enabled meter answers the wildcard address, echoing SER
        answer = await _exchange(reader, writer, read_request(0x20, WILDCARD_ADDRESS, ser=0x42))
        assert (answer.address, answer.control, answer.ser) == (A1, 0x81, 0x42)
        heat = decode_heat_data(answer.data[3:])
        assert heat.supply_temp == pytest.approx(heat_model(sim, "h1.hm", "supply_c"), abs=0.01)
        address = Frame(0xAA, WILDCARD_ADDRESS, Control.READ_ADDRESS, b"\x0a\x81\x00")
        answer = await _exchange(reader, writer, address)
        assert (answer.control, answer.data[3:]) == (0x83, bytes.fromhex(A1)[::-1])
        unknown = await _exchange(reader, writer, read_request(0x20, A1, di=0x907F))
        assert unknown.is_error and unknown.control == 0xC1
    finally:
        writer.close()
        await sim.stop()


def test_config_needs_a_fourteen_digit_address_and_items(tmp_path: Path) -> None:
    good = _text(free_port())
    load_site_text(good, tmp_path)
    no_address = good.replace(f', address: "{A1}"}}', "}")
    with pytest.raises(ConfigError, match=r"'h1\.hm' on CJ/T 188 channel 'bus' needs `address`"):
        load_site_text(no_address, tmp_path)
    with pytest.raises(ConfigError, match="a CJ/T 188 address has 14 digits"):
        load_site_text(good.replace(A1, "000000000001"), tmp_path)
    same = good.replace(A2, A1)
    with pytest.raises(ConfigError, match=f"address {A1} on channel 'bus' is already used"):
        load_site_text(same, tmp_path)
    no_item = good.replace("item: supply_temp, ", "")
    with pytest.raises(ConfigError, match="'supply_c' has no item"):
        load_site_text(no_item, tmp_path)
    wrong_item = good.replace("item: supply_temp", "item: supply_temperature")
    with pytest.raises(ConfigError, match="item 'supply_temperature' is not one of"):
        load_site_text(wrong_item, tmp_path)
    with pytest.raises(ConfigError, match="meter_type"):
        load_site_text(
            good.replace("timeout_s: 0.3,", "timeout_s: 0.3, meter_type: 0x10,"), tmp_path
        )
