"""DL/T 645 broadcast time synchronisation (control code 08) against the simulator (issue 21).

Real sockets: the simulator serves the meters of a ``dlt645-tcp`` channel and sets their
clocks from a broadcast; the driver sends it on demand (``scada poll --time-sync``) or daily.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.dlt645 import BROADCAST_ADDRESS, decode_frame, encode_frame, time_sync_request
from drivers.dlt645_driver import Dlt645Driver
from drivers.manager import device_bindings
from drivers.simulator import Simulator
from scada.commands.poll import time_sync
from tags.database import TagDatabase
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text

TZ = ZoneInfo("Asia/Shanghai")
TEMPLATE = Path(__file__).parents[2] / "config" / "templates" / "acrel-dlt645.yaml"

SITE = """
site: {{id: sync, name: Time sync test site, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: dlt645-tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.3,
      retries: 1, frame_gap_s: 0.001, time_sync: "03:00"}}
templates:
{template}
devices:
  - {{id: t1.em, template: acrel-ddsy1352-dlt645, channel: bus, address: "000000000401"}}
  - {{id: t2.em, template: acrel-ddsy1352-dlt645, channel: bus, address: "000000000402"}}
"""


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[Any, Simulator, Any]]:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    site = load_site_text(SITE.format(port=free_port(), template=template), tmp_path)
    sim = Simulator(site, seed=3, start_ts=START_TS, tick_s=None)
    await sim.start()
    try:
        yield site, sim, sim._dlt_endpoints["bus"]
    finally:
        await sim.stop()


def _driver(site: Any, sim: Simulator) -> Dlt645Driver:
    channel = next(c for c in site.channels if c.id == "bus")
    db = TagDatabase(site.tag_defs())
    return Dlt645Driver(
        channel, device_bindings(site, "bus"), db, tz=TZ, wall_clock=lambda: sim.now
    )


def _sim_local(sim: Simulator) -> datetime:
    return datetime.fromtimestamp(sim.now, TZ).replace(tzinfo=None)


def test_the_broadcast_frame_is_the_standards() -> None:
    frame = time_sync_request(datetime(2025, 11, 21, 8, 30, 15))
    assert frame.address == BROADCAST_ADDRESS and frame.control == 0x08
    wire = encode_frame(frame, preamble=False)
    # 68 99*6 68 08 06, data ss mm hh DD MM YY (BCD) + 33h each, CS, 16
    assert wire[:10].hex() == "68999999999999680806"
    assert bytes(b - 0x33 for b in wire[10:16]).hex() == "153008211125"
    assert decode_frame(wire).data == bytes.fromhex("153008211125")


async def test_broadcast_sets_every_meter_clock_and_gets_no_answer(field: Any) -> None:
    site, sim, endpoint = field
    for dev in ("t1.em", "t2.em"):
        endpoint.clock_offset_s[dev] = 600.0 if dev == "t1.em" else -95.0  # drifted clocks
    driver = _driver(site, sim)
    try:
        await driver.poll_once()
        requests = endpoint.requests
        sent = await driver.time_sync()
        await asyncio.wait_for(endpoint.time_synced.wait(), 5.0)
        assert endpoint.requests == requests  # nobody answers a broadcast
        assert sent == _sim_local(sim).replace(microsecond=0)
        for dev in ("t1.em", "t2.em"):
            assert abs(endpoint.meter_clock(dev) - _sim_local(sim)) < timedelta(seconds=1), dev
        await driver.poll_once()  # the bus is quiet again: the meters answer as before
        assert all(st.online for st in driver.status.values())
    finally:
        await driver.stop()


async def test_scada_poll_time_sync_sends_the_sites_local_time(field: Any) -> None:
    site, _sim, endpoint = field
    endpoint.clock_offset_s["t1.em"] = 3600.0
    code, message = await time_sync(site, "bus")
    assert code == 0 and "bus" in message
    await asyncio.wait_for(endpoint.time_synced.wait(), 5.0)
    # the command sends the real time: the meter clock now shows it, not the simulated time
    assert abs(endpoint.meter_clock("t1.em") - datetime.now(TZ).replace(tzinfo=None)) < timedelta(
        seconds=5
    )
    code, message = await time_sync(site, "nope")
    assert code == 1 and "nope" in message and "bus" in message


def test_daily_time_sync_is_due_at_the_channels_local_time(tmp_path: Path) -> None:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    site = load_site_text(SITE.format(port=free_port(), template=template), tmp_path)
    channel = next(c for c in site.channels if c.id == "bus")
    db = TagDatabase(site.tag_defs())
    driver = Dlt645Driver(channel, device_bindings(site, "bus"), db, tz=TZ)
    # START_TS is 08:00 local: the next 03:00 is tomorrow's
    due = driver.next_time_sync(START_TS)
    assert due is not None
    assert datetime.fromtimestamp(due, TZ).replace(tzinfo=None) == datetime(2025, 11, 22, 3, 0)
    assert driver.next_time_sync(due - 1) == due
    off = load_site_text(
        SITE.format(port=free_port(), template=template).replace(', time_sync: "03:00"', ""),
        tmp_path,
    )
    ch_off = next(c for c in off.channels if c.id == "bus")
    quiet = Dlt645Driver(ch_off, device_bindings(off, "bus"), TagDatabase(off.tag_defs()), tz=TZ)
    assert quiet.next_time_sync(START_TS) is None


def test_a_bad_time_sync_setting_names_the_field(tmp_path: Path) -> None:
    from scada.config.errors import ConfigError

    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    text = SITE.format(port=free_port(), template=template).replace('"03:00"', '"25:00"')
    with pytest.raises(ConfigError, match="time_sync"):
        load_site_text(text, tmp_path)
