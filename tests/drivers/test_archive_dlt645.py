"""Device archives: a DL/T 645 meter's daily freezes fill the history gap of a comm loss (issue 21).

End to end with real parts: the simulator serves the meter over TCP and freezes its counter at
each local midnight; the driver polls it into a tag database that a recorder historises into
SQLite. The meter goes silent across two midnights; when it answers again the driver reads its
daily freezes and writes them into history (reason ``archive``), and the day's allocation is no
longer estimated and equals the simulator's counter at the two midnights.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from billing.heat import allocate_heat
from drivers.dlt645 import decode_frame, encode_frame, read_request
from drivers.dlt645_driver import Dlt645Driver
from drivers.manager import device_bindings
from drivers.simulator import Simulator
from historian.base import Sample
from historian.recorder import Recorder
from historian.sqlite import SqliteHistorian
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text

TZ = ZoneInfo("Asia/Shanghai")
TEMPLATE = Path(__file__).parents[2] / "config" / "templates" / "acrel-dlt645.yaml"

SITE = """
site: {{id: arch, name: Archive test site, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: dlt645-tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.3,
      retries: 1, offline_probe_s: 0.05, frame_gap_s: 0.001}}
  - {{id: valves, protocol: modbus-tcp, host: 127.0.0.1, port: {port2}}}
templates:
{template}
  valve:
    role: valve
    points:
      open: {{address: 0, kind: coil, type: bool, writable: true}}
devices:
  - {{id: b1.em, template: acrel-ddsy1352-dlt645, channel: bus, address: "000000000301"}}
  - {{id: b1.101.valve, template: valve, channel: valves, unit: 11}}
buildings:
  - id: b1
    heat: {{energy_tag: b1.em.forward_kwh, basic_share: 0.3, price_per_kwh: "0.25"}}
    households:
      - {{id: b1.101, area_m2: 100, position_factor: 1.0, valve_tag: b1.101.valve.open}}
"""


def _local(day: int, hour: float) -> float:
    """Return the epoch of ``hour`` local on the ``day``-th day after the start (day 0)."""
    start = datetime.fromtimestamp(START_TS, TZ).replace(hour=0, minute=0, second=0)
    return (start + timedelta(days=day, hours=hour)).timestamp()


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    text = SITE.format(port=free_port(), port2=free_port(), template=template)
    site = load_site_text(text, tmp_path)
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
    await sim.start()
    historian = SqliteHistorian(tmp_path / "history.db")
    db = TagDatabase(site.tag_defs())
    recorder = Recorder(db, historian, flush_s=0.05)
    await recorder.start()

    def archive(tag: str, rows: Sequence[tuple[float, float]]) -> None:
        historian.write([Sample(tag, ts, v, Quality.GOOD, Reason.ARCHIVE) for ts, v in rows])

    channel = next(c for c in site.channels if c.id == "bus")
    driver = Dlt645Driver(
        channel,
        device_bindings(site, "bus"),
        db,
        tz=TZ,
        archive=archive,
        wall_clock=lambda: sim.now,
    )
    try:
        yield {"site": site, "sim": sim, "db": db, "h": historian, "rec": recorder, "drv": driver}
    finally:
        await driver.stop()
        await recorder.stop()
        await sim.stop()
        historian.close()


def _step_to(sim: Simulator, ts: float) -> None:
    sim.step(ts - sim.now)


async def test_daily_freezes_fill_a_comm_loss_across_midnight(field: dict[str, Any]) -> None:
    sim, db, h, recorder, driver = (field[k] for k in ("sim", "db", "h", "rec", "drv"))
    site = field["site"]
    counter = sim.model.meter("b1.em", "energy_kwh")
    at_midnight: dict[float, float] = {}

    def note() -> None:  # the simulator's own counter at each local midnight
        local = datetime.fromtimestamp(sim.now, TZ)
        if (local.hour, local.minute) == (0, 0) and sim.now not in at_midnight:
            at_midnight[sim.now] = round(float(counter.get()), 2)

    sim.midnight_hooks.append(note)
    h.write([Sample("b1.101.valve.open", START_TS - 60, True)])  # the valve: open throughout

    await driver.poll_once()
    assert db.read("b1.em.forward_kwh").quality is Quality.GOOD
    for hour in (12, 18, 23):
        _step_to(sim, _local(0, hour))
        await driver.poll_once()
    sim.set_fault("b1.em", "offline")
    _step_to(sim, _local(0, 23.5))
    await driver.poll_once()
    assert db.read("b1.em.forward_kwh").reason is Reason.COMM_LOST
    for hour in (6, 12, 18):  # a silent meter the whole next day
        _step_to(sim, _local(1, hour))
        await driver.poll_once()
    _step_to(sim, _local(2, 1))
    await driver.poll_once()
    await recorder.flush()
    day = (_local(1, 0), _local(2, 0))
    assert set(at_midnight) == set(day)

    before = allocate_heat(site, h, *day).buildings[0]
    assert before.estimated  # the day starts and ends inside the gap

    sim.clear_fault("b1.em")
    await driver.poll_once()  # back: the driver reads the freezes covering the gap
    await recorder.flush()
    assert driver.archived == 2
    archived = [s for s in h.query_raw("b1.em.forward_kwh", day[0], day[1] + 1) if s.ts in day]
    assert [(s.ts, s.value, s.reason) for s in archived] == [
        (t, pytest.approx(at_midnight[t], abs=0.005), Reason.ARCHIVE) for t in day
    ]
    # the combined energy point is filled too; nothing before the loss is touched
    assert [s.ts for s in h.query_raw("b1.em.energy_kwh", day[0], day[1] + 1) if s.ts in day] == [
        *day
    ]
    after = allocate_heat(site, h, *day).buildings[0]
    assert not after.estimated
    assert after.heat_kwh == pytest.approx(at_midnight[day[1]] - at_midnight[day[0]], abs=0.01)
    assert after.to_json()["estimated"] is False


async def test_the_simulator_serves_its_archive_and_no_more(field: dict[str, Any]) -> None:
    sim = field["sim"]
    _step_to(sim, _local(3, 2))
    host, port = sim.address("bus")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        stamps = []
        for n in range(1, 6):
            writer.write(encode_frame(read_request("000000000301", 0x05060000 + n)))
            answer = decode_frame(await reader.read(64))
            stamps.append(answer.control)
        # start-up day + three midnights: four freezes, the fifth is "no data"
        assert stamps == [0x91, 0x91, 0x91, 0x91, 0xD1]
    finally:
        writer.close()
    endpoint = sim._dlt_endpoints["bus"]
    days = [f.at for f in endpoint.archive["b1.em"]]
    assert days == sorted(days, reverse=True)
    assert days[0] == datetime.fromtimestamp(_local(3, 0), TZ).replace(tzinfo=None)


async def test_no_archive_reader_no_backfill(field: dict[str, Any]) -> None:
    sim, driver = field["sim"], field["drv"]
    driver.archive = None
    await driver.poll_once()
    sim.set_fault("b1.em", "offline")
    await driver.poll_once()
    _step_to(sim, _local(1, 2))
    sim.clear_fault("b1.em")
    await driver.poll_once()
    assert driver.archived == 0
    assert await driver.backfill("b1.em", START_TS, sim.now) == 0
