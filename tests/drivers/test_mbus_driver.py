"""The M-Bus driver polling the building simulator's heat meters over TCP and a pty pair (issue 21).

Real sockets: the simulator serves the meters of an ``mbus-tcp`` channel, the driver manager
polls them; faults are the simulator's fault injection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import NotWritable
from drivers.manager import DriverManager
from drivers.mbus import (
    decode_frame,
    decode_variable,
    encode_frame,
    req_ud2,
    select_secondary,
    snd_nke,
)
from drivers.simulator import Simulator
from scada.config.errors import ConfigError
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import heat_model, is_good, wait_until
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text

TEMPLATE = Path(__file__).parents[2] / "config" / "templates" / "mbus-heat.yaml"

SITE = """
site: {{id: mb, name: M-Bus test site, timezone: Europe/Berlin}}
channels:
  - {{id: bus, protocol: mbus-tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.3,
      retries: 1, offline_probe_s: 0.05, frame_gap_s: 0.001}}
templates:
{template}
devices:
  - {{id: h1.hm, template: mbus-heat-meter, channel: bus, address: 1}}
  - {{id: h2.hm, template: mbus-heat-meter, channel: bus, secondary: "71234567"}}
"""

#: point -> (model variable, resolution the telegram carries)
POINTS = {
    "energy_kwh": ("energy_kwh", 0.01),
    "volume_m3": ("volume_m3", 0.001),
    "power_kw": ("power_kw", 1e-4),
    "flow_m3h": ("flow_m3h", 0.001),
    "supply_c": ("supply_c", 0.01),
    "return_c": ("return_c", 0.01),
    "delta_t_k": ("delta_t_k", 0.01),
}


def _text(port: int) -> str:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    return SITE.format(port=port, template=template)


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[Simulator, TagDatabase, DriverManager]]:
    site = load_site_text(_text(free_port()), tmp_path)
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
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
        assert db.read(f"{dev}.online").value is True
        archive = db.read(f"{dev}.midnight_kwh")
        assert archive.quality is Quality.GOOD
    # one telegram per meter and poll: SND_NKE + REQ_UD2 for the primary, select + REQ_UD2 for
    # the secondary
    assert manager.drivers["bus"].requests_sent == 4
    await manager.poll_once()
    assert manager.drivers["bus"].requests_sent == 7


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


async def test_secondary_addressing_selects_the_meter(field: Any) -> None:
    sim, _db, _manager = field
    host, port = sim.address("bus")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode_frame(select_secondary("7123FFFF")))  # wildcard digits
        assert await reader.readexactly(1) == b"\xe5"
        writer.write(encode_frame(req_ud2(0xFD)))
        head = await reader.readexactly(4)
        frame = decode_frame(head + await reader.readexactly(head[1] + 2))
        telegram = decode_variable(frame.data)
        assert (telegram.header.ident, telegram.header.manufacturer) == ("71234567", "SIM")
        writer.write(encode_frame(snd_nke(1)))  # the primary meter
        assert await reader.readexactly(1) == b"\xe5"
        writer.write(encode_frame(select_secondary("99999999")))  # nobody: silence
        writer.write(encode_frame(snd_nke(1)))
        assert await reader.readexactly(1) == b"\xe5"  # the next answer is the primary's
    finally:
        writer.close()


async def test_a_write_is_refused(field: Any) -> None:
    _sim, _db, manager = field
    with pytest.raises(NotWritable):
        await manager.write("h1.hm.energy_kwh", 1.0)
    result = await manager.drivers["bus"].write("h1.hm", "energy_kwh", 1.0)
    assert "read-only" in result.message


@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("crc", "wrong checksum"),
        ("short", "truncated frame"),
        ("address", "answer from wrong address 2 (asked 1)"),
        ("exception", "collision"),
    ],
)
async def test_corrupted_telegrams_are_comm_loss_with_the_cause(
    field: Any, mode: str, cause: str
) -> None:
    sim, db, manager = field
    await manager.poll_once()
    sim.set_fault("h1.hm", "garbage", mode=mode)
    sim.step(600.0)
    await manager.poll_once()
    tv = db.read("h1.hm.energy_kwh")
    assert (tv.quality, tv.reason) == (Quality.BAD, Reason.COMM_LOST)
    assert tv.detail is not None and tv.detail.startswith(cause), tv.detail
    assert db.read("h1.hm.supply_c").reason is Reason.COMM_LOST
    assert db.read("h1.hm.online").value is False
    # the other meter keeps polling, its values fresh
    assert db.read("h2.hm.online").value is True
    assert is_good(db, "h2.hm.energy_kwh")
    expected = heat_model(sim, "h2.hm", "energy_kwh")
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


async def test_a_record_the_meter_lacks_is_a_config_error(tmp_path: Path) -> None:
    text = re.sub(
        r"delta_t_k: .*",
        "delta_t_k: {record: pressure, unit: bar, type: float32}",
        _text(free_port()),
    )
    site = load_site_text(text, tmp_path)
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
    await sim.start()
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
    finally:
        await manager.stop()
        await sim.stop()
    assert (db.read("h1.hm.delta_t_k").quality, db.read("h1.hm.delta_t_k").reason) == (
        Quality.BAD,
        Reason.CONFIG_ERROR,
    )
    assert is_good(db, "h1.hm.energy_kwh") and db.read("h1.hm.online").value is True


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


async def test_serial_channel_over_a_pty_pair(tmp_path: Path, socat_pair: tuple[str, str]) -> None:
    sim_end, driver_end = socat_pair
    text = _text(1).replace(
        "protocol: mbus-tcp, host: 127.0.0.1, port: 1,",
        f"protocol: mbus, port: {driver_end}, baudrate: 9600,",
    )
    site = load_site_text(text, tmp_path)
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None, serial_ports={"bus": sim_end})
    await sim.start()
    assert sim.address("bus") == sim_end
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
        for dev in ("h1.hm", "h2.hm"):
            assert is_good(db, f"{dev}.supply_c")
            assert db.read(f"{dev}.supply_c").value == pytest.approx(
                heat_model(sim, dev, "supply_c"), abs=0.01
            )
    finally:
        await manager.stop()
        await sim.stop()


def test_config_needs_an_address_and_records(tmp_path: Path) -> None:
    good = _text(free_port())
    load_site_text(good, tmp_path)  # the real loader accepts both addressings
    no_address = good.replace(", address: 1}", "}")
    with pytest.raises(ConfigError, match=r"'h1\.hm' on M-Bus channel 'bus' needs `address`"):
        load_site_text(no_address, tmp_path)
    with pytest.raises(ConfigError, match=r"primary address must be 1\.\.250, not 251"):
        load_site_text(good.replace("address: 1}", "address: 251}"), tmp_path)
    same = good.replace('secondary: "71234567"', "address: 1")
    with pytest.raises(ConfigError, match="address 1 on channel 'bus' is already used"):
        load_site_text(same, tmp_path)
    no_record = good.replace("record: flow_temp, ", "")
    with pytest.raises(ConfigError, match="'supply_c' has no record"):
        load_site_text(no_record, tmp_path)
    wrong_unit = good.replace(
        "record: power, type: float32, unit: kW", "record: power, type: float32, unit: kWh"
    )
    with pytest.raises(ConfigError, match="unit 'kWh' is not one of record 'power'"):
        load_site_text(wrong_unit, tmp_path)
