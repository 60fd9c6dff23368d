"""The DL/T 645 driver polling the building simulator over TCP and a pty pair (issue 21).

Real sockets: the simulator serves the meters of a ``dlt645-tcp`` channel, the driver
manager polls them; faults are the simulator's fault injection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import NotWritable, WriteState
from drivers.dlt645 import RELAY_STATE_BIT, decode_frame, encode_frame, read_request
from drivers.manager import DriverManager
from drivers.simulator import Simulator
from scada.config.errors import ConfigError
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import is_good, wait_until
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text

TEMPLATE = Path(__file__).parents[2] / "config" / "templates" / "acrel-dlt645.yaml"

SITE = """
site: {{id: dlt, name: DL/T 645 test site, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: dlt645-tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.3,
      retries: 1, offline_probe_s: 0.05, frame_gap_s: 0.001, password: "${{DLT_PW}}",
      operator: "00000001"}}
templates:
{template}
devices:
  - {{id: t1.em, template: acrel-ddsy1352-dlt645, channel: bus, address: "000000000161"}}
  - {{id: t2.em, template: acrel-ddsy1352-dlt645, channel: bus, address: "000000000162"}}
"""

POINTS = ("energy_kwh", "forward_kwh", "voltage_v", "current_a", "power_kw")


def _site(tmp_path: Path) -> Any:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    return load_site_text(SITE.format(port=free_port(), template=template), tmp_path)


@pytest.fixture
async def field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Simulator, TagDatabase, DriverManager]]:
    monkeypatch.setenv("DLT_PW", "02123456")
    site = _site(tmp_path)
    sim = Simulator(site, seed=3, start_ts=START_TS, tick_s=None)
    await sim.start()
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
    for dev in ("t1.em", "t2.em"):
        for point in POINTS:
            tv = db.read(f"{dev}.{point}")
            assert tv.quality is Quality.GOOD, (dev, point, tv)
            model = sim.model.meter(dev, point.replace("forward_", "energy_"))
            assert model is not None
            # BCD resolution: 0.01 kWh, 0.1 V, 0.001 A, 0.0001 kW
            assert tv.value == pytest.approx(float(model.get()), abs=0.051), (dev, point)
        assert db.read(f"{dev}.relay").value is True
        assert db.read(f"{dev}.online").value is True
        frozen = db.read(f"{dev}.frozen_kwh")
        assert frozen.quality is Quality.GOOD and frozen.value == pytest.approx(
            float(sim.model.meter(dev, "energy_kwh").get()),
            abs=0.01,
        )


async def test_background_polling_follows_the_simulation(field: Any) -> None:
    sim, db, manager = field
    await manager.start()
    await wait_until(db, "t2.em.*", lambda: is_good(db, "t2.em.energy_kwh"))
    before = db.read("t1.em.energy_kwh").value
    sim.step(3600.0)
    expected = round(float(sim.model.meter("t1.em", "energy_kwh").get()), 2)
    assert expected > before
    manager.drivers["bus"].probe_now("t1.em")  # no effect on an online meter
    await manager.poll_once()  # the next period is 60 s away: read once now
    assert db.read("t1.em.energy_kwh").value == pytest.approx(expected, abs=0.005)


async def test_trip_and_close_through_the_manager(field: Any) -> None:
    sim, db, manager = field
    await manager.poll_once()
    result = await manager.write("t1.em.relay", False)
    assert result.state is WriteState.CONFIRMED, result
    assert result.read_back is False
    relay = sim.model.meter("t1.em", "relay")
    assert relay is not None and relay.get() is False
    assert db.read("t1.em.relay").value is False
    assert sim.model.meter("t2.em", "relay").get() is True
    await manager.poll_once()
    assert db.read("t1.em.power_kw").value == 0.0  # a tripped meter draws nothing
    result = await manager.write("t1.em.relay", True)
    assert result.state is WriteState.CONFIRMED and result.read_back is True
    assert relay.get() is True
    with pytest.raises(NotWritable):
        await manager.write("t1.em.energy_kwh", 1.0)


async def test_wrong_password_fails_the_write(field: Any) -> None:
    sim, _db, manager = field
    sim._dlt_endpoints["bus"].password = "02999999"
    result = await manager.write("t1.em.relay", False)
    assert result.state is WriteState.FAILED
    assert "meter error 04: password wrong" in result.message
    assert sim.model.meter("t1.em", "relay").get() is True


@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("crc", "wrong checksum"),
        ("short", "truncated frame"),
        ("address", "answer from wrong address 000000000162 (asked 000000000161)"),
    ],
)
async def test_corrupted_answers_are_comm_loss_with_the_cause(
    field: Any, mode: str, cause: str
) -> None:
    sim, db, manager = field
    await manager.poll_once()
    sim.set_fault("t1.em", "garbage", mode=mode)
    sim.step(600.0)
    await manager.poll_once()
    tv = db.read("t1.em.energy_kwh")
    assert (tv.quality, tv.reason) == (Quality.BAD, Reason.COMM_LOST)
    assert tv.detail is not None and tv.detail.startswith(cause), tv.detail
    assert tv.detail.endswith("DI 00000000")
    assert db.read("t1.em.voltage_v").reason is Reason.COMM_LOST
    assert db.read("t1.em.online").value is False
    # the other meter keeps polling, its values fresh
    assert db.read("t2.em.online").value is True
    expected = float(sim.model.meter("t2.em", "energy_kwh").get())
    assert db.read("t2.em.energy_kwh").quality is Quality.GOOD
    assert db.read("t2.em.energy_kwh").value == pytest.approx(expected, abs=0.005)
    # repaired: the probe brings it back
    sim.clear_fault("t1.em")
    await manager.start()
    await wait_until(db, "t1.em.*", lambda: is_good(db, "t1.em.energy_kwh"))
    assert db.read("t1.em.online").value is True


async def test_offline_meter_times_out_while_the_other_polls_on(field: Any) -> None:
    sim, db, manager = field
    sim.set_fault("t2.em", "offline")
    await manager.start()
    await wait_until(db, "t2.em.*", lambda: db.read("t2.em.energy_kwh").reason is Reason.COMM_LOST)
    assert db.read("t2.em.energy_kwh").detail == "timeout: no answer within 0.3 s, DI 00000000"
    await wait_until(db, "t1.em.*", lambda: is_good(db, "t1.em.power_kw"))


async def test_unknown_di_gets_an_error_answer_and_the_status_word_has_the_relay_bit(
    field: Any,
) -> None:
    sim, _db, _manager = field
    host, port = sim.address("bus")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode_frame(read_request("000000000162", 0x12345678)))
        err = decode_frame(await reader.read(64))
        assert (err.control, err.data) == (0xD1, b"\x02")
        sim.model.meter("t2.em", "relay").set(False)
        writer.write(encode_frame(read_request("000000000162", 0x04000503)))
        word = decode_frame(await reader.read(64))
        assert word.control == 0x91
        assert int.from_bytes(word.data[4:6], "little") >> RELAY_STATE_BIT & 1 == 1
    finally:
        writer.close()


async def test_refused_connection_is_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLT_PW", "02123456")
    site = _site(tmp_path)  # nobody listens on the port
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
    finally:
        await manager.stop()
    tv = db.read("t1.em.energy_kwh")
    assert tv.reason is Reason.COMM_LOST
    assert tv.detail is not None and tv.detail.startswith("connection refused by 127.0.0.1:")


async def test_serial_channel_over_a_pty_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, socat_pair: tuple[str, str]
) -> None:
    sim_end, driver_end = socat_pair
    monkeypatch.setenv("DLT_PW", "02123456")
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    text = SITE.format(port=1, template=template).replace(
        "protocol: dlt645-tcp, host: 127.0.0.1, port: 1,",
        f"protocol: dlt645, port: {driver_end}, baudrate: 9600,",
    )
    site = load_site_text(text, tmp_path)
    sim = Simulator(site, seed=3, start_ts=START_TS, tick_s=None, serial_ports={"bus": sim_end})
    await sim.start()
    assert sim.address("bus") == sim_end
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
        for dev in ("t1.em", "t2.em"):
            energy = float(sim.model.meter(dev, "energy_kwh").get())  # type: ignore[union-attr]
            assert is_good(db, f"{dev}.energy_kwh")
            assert db.read(f"{dev}.energy_kwh").value == pytest.approx(energy, abs=0.005)
        result = await manager.write("t2.em.relay", False)
        assert result.state is WriteState.CONFIRMED
        assert sim.model.meter("t2.em", "relay").get() is False  # type: ignore[union-attr]
    finally:
        await manager.stop()
        await sim.stop()


def test_config_needs_addresses_and_data_identifiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLT_PW", "02123456")
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    good = SITE.format(port=free_port(), template=template)
    no_address = good.replace(', address: "000000000162"', "")
    with pytest.raises(ConfigError, match=r"t2\.em' on DL/T 645 channel 'bus' needs `address`"):
        load_site_text(no_address, tmp_path)
    same_address = good.replace('"000000000162"', '"000000000161"')
    with pytest.raises(ConfigError, match="address 000000000161 on channel 'bus' is already used"):
        load_site_text(same_address, tmp_path)
    no_di = good.replace('di: "02010100", ', "")
    with pytest.raises(ConfigError, match="'voltage_v' has no di"):
        load_site_text(no_di, tmp_path)
    monkeypatch.setenv("DLT_PW", "secret")
    with pytest.raises(ConfigError, match="password must be 8 hex digits"):
        load_site_text(good, tmp_path)
