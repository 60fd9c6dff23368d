"""Device archives: an M-Bus heat meter's historic values fill the history gap of a comm loss.

Real parts as for DL/T 645 (tests/drivers/test_archive_dlt645.py): the simulator serves the
meter over TCP and keeps its counter at each local midnight as storage numbers 1..12 (each
with a date record); when the meter answers again the driver takes the values of the gap from
that same telegram, and the building's heat allocation over the day is measured, not estimated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from billing.heat import allocate_heat
from drivers.manager import device_bindings
from drivers.mbus import decode_frame, decode_variable, encode_frame, req_ud2
from drivers.mbus_driver import MbusDriver, historic_values
from drivers.simulator import Simulator
from drivers.simulator.mbus import STORAGES
from historian.base import Sample
from historian.recorder import Recorder
from historian.sqlite import SqliteHistorian
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.simulator_fixtures import START_TS, free_port, load_site_text
from tests.drivers.test_archive_dlt645 import TZ, _local, _step_to

TEMPLATE = Path(__file__).parents[2] / "config" / "templates" / "mbus-heat.yaml"

SITE = """
site: {{id: arch, name: M-Bus archive test site, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: mbus-tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.3,
      retries: 1, offline_probe_s: 0.05, frame_gap_s: 0.001}}
  - {{id: valves, protocol: modbus-tcp, host: 127.0.0.1, port: {port2}}}
templates:
{template}
  valve:
    role: valve
    points:
      open: {{address: 0, kind: coil, type: bool, writable: true}}
devices:
  - {{id: b1.hm, template: mbus-heat-meter, channel: bus, address: 3}}
  - {{id: b1.101.valve, template: valve, channel: valves, unit: 11}}
buildings:
  - id: b1
    heat: {{energy_tag: b1.hm.energy_kwh, basic_share: 0.3, price_per_kwh: "0.25"}}
    households:
      - {{id: b1.101, area_m2: 100, position_factor: 1.0, valve_tag: b1.101.valve.open}}
"""


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    template = TEMPLATE.read_text(encoding="utf-8").split("templates:\n", 1)[1]
    site = load_site_text(
        SITE.format(port=free_port(), port2=free_port(), template=template), tmp_path
    )
    sim = Simulator(site, seed=5, start_ts=START_TS, tick_s=None)
    await sim.start()
    historian = SqliteHistorian(tmp_path / "history.db")
    db = TagDatabase(site.tag_defs())
    recorder = Recorder(db, historian, flush_s=0.05)
    await recorder.start()

    def archive(tag: str, rows: Sequence[tuple[float, float]]) -> None:
        historian.write([Sample(tag, ts, v, Quality.GOOD, Reason.ARCHIVE) for ts, v in rows])

    channel = next(c for c in site.channels if c.id == "bus")
    driver = MbusDriver(
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


async def test_historic_values_fill_a_comm_loss_across_midnight(field: dict[str, Any]) -> None:
    sim, db, h, recorder, driver = (field[k] for k in ("sim", "db", "h", "rec", "drv"))
    counter = sim.model.heat_meter("b1.hm", "energy_kwh")
    at_midnight: dict[float, float] = {}

    def note() -> None:
        local = datetime.fromtimestamp(sim.now, TZ)
        if (local.hour, local.minute) == (0, 0) and sim.now not in at_midnight:
            at_midnight[sim.now] = float(counter.get())

    sim.midnight_hooks.append(note)
    h.write([Sample("b1.101.valve.open", START_TS - 60, True)])
    await driver.poll_once()
    _step_to(sim, _local(0, 23))
    await driver.poll_once()
    sim.set_fault("b1.hm", "offline")
    _step_to(sim, _local(0, 23.5))
    await driver.poll_once()
    assert db.read("b1.hm.energy_kwh").reason is Reason.COMM_LOST
    _step_to(sim, _local(2, 1))
    await driver.poll_once()
    await recorder.flush()
    day = (_local(1, 0), _local(2, 0))
    assert set(at_midnight) == set(day)
    assert allocate_heat(field["site"], h, *day).buildings[0].estimated

    sim.clear_fault("b1.hm")
    await driver.poll_once()
    await recorder.flush()
    assert driver.archived == 2
    samples = [s for s in h.query_raw("b1.hm.energy_kwh", day[0], day[1] + 1) if s.ts in day]
    assert [(s.ts, s.reason) for s in samples] == [(t, Reason.ARCHIVE) for t in day]
    for s in samples:  # 10 Wh resolution on the wire
        assert s.value == pytest.approx(at_midnight[s.ts], abs=0.01)
    after = allocate_heat(field["site"], h, *day).buildings[0]
    assert not after.estimated
    assert after.heat_kwh == pytest.approx(at_midnight[day[1]] - at_midnight[day[0]], abs=0.02)


async def test_the_telegram_holds_twelve_dated_storage_numbers(field: dict[str, Any]) -> None:
    sim = field["sim"]
    _step_to(sim, _local(12, 2))  # the start-up day and 12 midnights: the first drops out
    endpoint = sim._dlt_endpoints["bus"]
    reply, _ = endpoint.answer(encode_frame(req_ud2(3)))
    assert reply is not None and len(reply) <= 261  # one long frame (L <= 255)
    telegram = decode_variable(decode_frame(reply).data)
    values = historic_values(telegram, "kWh", TZ)
    assert len(values) == STORAGES
    assert values[0][0] == _local(12, 0) and values[-1][0] == _local(1, 0)  # storage 1: the last
    assert [v for _, v in values] == sorted((v for _, v in values), reverse=True)
