"""Fixtures of the billing tests: a small site (the issue's tariffs verbatim), a real SQLite historian."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.ledger import Ledger
from historian.base import Sample
from historian.sqlite import SqliteHistorian
from scada.config import load_site_text
from scada.services.audit import AuditLog
from scada.services.commands import CommandRelayCommander, CommandService
from scada.services.plant import Plant
from tags.database import TagDatabase
from tags.model import Quality

#: 2025-11-01T00:00 in Asia/Shanghai (UTC+8): a local month start.
NOV1 = 1_761_926_400.0
DEC1 = NOV1 + 30 * 86400
HOUR = 3600.0

# Verbatim from issue 8 item 2.
ISSUE_TARIFFS = """\
tariffs:
  - id: shop-tou
    bands:
      - {name: sharp,  price: "1.3782", hours: ["10:00-11:00", "19:00-21:00"]}
      - {name: peak,   price: "1.1452", hours: ["08:00-10:00", "11:00-15:00", "18:00-19:00", "21:00-23:00"]}
      - {name: flat,   price: "0.7135", hours: ["07:00-08:00", "15:00-18:00"]}
      - {name: valley, price: "0.3062", hours: ["23:00-07:00"]}
  - id: home-tier
    tiers:
      - {up_to_kwh: 240, price: "0.4883"}
      - {up_to_kwh: 400, price: "0.5383"}
      - {price: "0.7883"}
accounts:
  - {id: shop-101, tenant: "Shop 101", tariff: shop-tou, area_m2: 120, meters: [e.101.energy_kwh], alarm1: "100.00", alarm2: "50.00", keep_power: false}
"""

SITE = """\
site: {{id: billtest, name: Billing test site, timezone: Asia/Shanghai}}
channels:
  - {{id: bus, protocol: modbus-tcp, host: 127.0.0.1, port: {port}, timeout_s: 1.0, retries: 1}}
templates:
  heat-meter:
    role: heat_meter
    points:
      energy_kwh: {{address: 0, kind: holding, type: float64, unit: kWh}}
      power_kw:   {{address: 4, kind: holding, type: float32, unit: kW}}
  valve:
    role: valve
    points:
      open:   {{address: 0, kind: coil, type: bool, writable: true}}
      room_c: {{address: 0, kind: input, type: int16, scale: 0.1, unit: degC}}
  electricity-meter:
    role: electricity_meter
    points:
      energy_kwh: {{address: 0, kind: input, type: uint32, scale: 0.01, unit: kWh}}
      power_kw:   {{address: 2, kind: input, type: float32, unit: kW}}
      relay:      {{address: 0, kind: coil, type: bool, writable: true}}
devices:
  - {{id: b1.hm, template: heat-meter, channel: bus, unit: 1}}
  - {{id: b1.101.valve, template: valve, channel: bus, unit: 11}}
  - {{id: b1.102.valve, template: valve, channel: bus, unit: 12}}
  - {{id: b1.201.valve, template: valve, channel: bus, unit: 13}}
  - {{id: e.101, template: electricity-meter, channel: bus, unit: 21, building: b1}}
  - {{id: e.102, template: electricity-meter, channel: bus, unit: 22, building: b1}}
  - {{id: e.main, template: electricity-meter, channel: bus, unit: 30, building: b1}}
buildings:
  - id: b1
    heat: {{energy_tag: b1.hm.energy_kwh, basic_share: 0.3, price_per_kwh: "0.25"}}
    electricity: {{master_tag: e.main.energy_kwh, allocate_by: area}}
    households:
      - {{id: b1.101, area_m2: 100, position_factor: 1.0, valve_tag: b1.101.valve.open}}
      - {{id: b1.102, area_m2: 50, position_factor: 1.2, valve_tag: b1.102.valve.open}}
      - {{id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open}}
      - {{id: b1.s1, area_m2: 120}}
{tariffs}  - {{id: home-102, tenant: "Flat 102", tariff: home-tier, area_m2: 80, meters: [e.102.energy_kwh], alarm1: "20.00", alarm2: "10.00"}}
"""


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_text(port: int = 5020) -> str:
    """Return the test site's YAML (the issue's tariffs and account verbatim)."""
    return SITE.format(port=port, tariffs=ISSUE_TARIFFS)


@pytest.fixture
def site() -> Any:
    return load_site_text(site_text(free_port()))


@pytest.fixture
def historian(tmp_path: Path) -> Iterator[SqliteHistorian]:
    h = SqliteHistorian(tmp_path / "history.sqlite")
    yield h
    h.close()


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog.in_data_dir(tmp_path)
    yield log
    log.close()


def relay_commander(site: Any, db: TagDatabase, audit: AuditLog, drivers: Any = None) -> Any:
    """Return billing's relay commander over a real command service on ``drivers`` (or none)."""
    plant = Plant(site, db, drivers=drivers, writer=drivers)
    return CommandRelayCommander(CommandService(plant, audit))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    lg = Ledger.in_data_dir(tmp_path)
    yield lg
    lg.close()


def write(
    h: SqliteHistorian, tag: str, points: list[tuple[float, Any]], quality: Quality = Quality.GOOD
) -> None:
    """Write ``(ts, value)`` samples of one tag."""
    h.write([Sample(tag, float(t), v, quality) for t, v in points])
