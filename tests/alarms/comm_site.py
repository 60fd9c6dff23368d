"""A site for the comm-loss default and flood tests, loaded by the real config loader.

``CommSite`` builds the alarm engine the way ``scada run`` does (site rules, the site's
``DeviceInfo`` records and ``alarm_defaults``) over a real TagDatabase and journal, with a
clock the tests move by hand.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from alarms.engine import AlarmEngine
from alarms.journal import AlarmJournal
from alarms.model import Alarm, AlarmEvent, AlarmState, EventKind
from alarms.points import count_tag_defs
from scada.config import SiteConfig, load_site
from scada.config.alarmsite import alarm_devices
from scada.runtime import alarm_rules, devices_by_template
from tags.database import TagDatabase

from .conftest import Clock

TEMPLATES = """
templates:
  heat-meter:
    role: heat_meter
    description: Heat meter
    points:
      energy_kwh: {address: 0, kind: holding, type: float64, unit: kWh}
      power_kw:   {address: 4, kind: holding, type: float32, unit: kW}
      flow_m3h:   {address: 6, kind: holding, type: float32, unit: m3/h}
      supply_c:   {address: 8, kind: holding, type: float32, unit: degC}
      return_c:   {address: 10, kind: holding, type: float32, unit: degC}
  valve:
    role: valve
    description: Valve
    points:
      open:       {address: 0, kind: coil, type: bool, writable: true}
      room_c:     {address: 0, kind: input, type: int16, scale: 0.1, unit: degC}
      setpoint_c: {address: 1, kind: holding, type: int16, scale: 0.1, unit: degC, writable: true}
  elec-meter:
    role: electricity_meter
    description: Electricity meter
    points:
      energy_kwh: {address: 0, kind: holding, type: uint32, scale: 0.01, unit: kWh}
      power_kw:   {address: 2, kind: holding, type: float32, unit: kW}
      relay:      {address: 0, kind: coil, type: bool, writable: true}
  master-meter:
    role: electricity_meter
    points:
      energy_kwh: {address: 0, kind: holding, type: uint32, scale: 0.01, unit: kWh}
"""

#: Building 1: two channels (a heat meter and three valves; four electricity meters);
#: building 2: 24 generated valves, a heat meter and a master meter on one channel (26 devices).
SITE = """
site: {{id: commtest, name: Comm-loss test site, timezone: Europe/Berlin}}
channels:
  - {{id: b1-bus, protocol: modbus-tcp, host: 127.0.0.1, port: {port1}, timeout_s: 0.2, retries: 1}}
  - {{id: b1-meters, protocol: modbus-tcp, host: 127.0.0.1, port: {port2}, timeout_s: 0.2, retries: 1}}
  - {{id: b2-bus, protocol: modbus-tcp, host: 127.0.0.1, port: {port3}, timeout_s: 0.2, retries: 1}}
devices:
  - {{id: b1.hm, template: heat-meter, channel: b1-bus, unit: 1, building: b1}}
  - {{id: b1.101.valve, template: valve, channel: b1-bus, unit: 11, household: b1.101}}
  - {{id: b1.102.valve, template: valve, channel: b1-bus, unit: 12, household: b1.102}}
  - {{id: b1.103.valve, template: valve, channel: b1-bus, unit: 13, household: b1.103}}
  - {{id: b1.101.em, template: elec-meter, channel: b1-meters, unit: 21, household: b1.101}}
  - {{id: b1.102.em, template: elec-meter, channel: b1-meters, unit: 22, household: b1.102}}
  - {{id: b1.s1.em, template: elec-meter, channel: b1-meters, unit: 23, household: b1.s1}}
  - {{id: b1.main, template: master-meter, channel: b1-meters, unit: 24, building: b1}}
  - {{id: b2.hm, template: heat-meter, channel: b2-bus, unit: 1, building: b2}}
  - {{id: b2.main, template: master-meter, channel: b2-bus, unit: 2, building: b2}}
buildings:
  - id: b1
    name: Building 1
    households:
      - {{id: b1.101, area_m2: 80}}
      - {{id: b1.102, area_m2: 60}}
      - {{id: b1.103, area_m2: 60}}
      - {{id: b1.s1, name: Bakery, area_m2: 40}}
  - id: b2
    name: Building 2
    generate:
      floors: 6
      units_per_floor: 4
      household_id: "{{building}}.{{floor}}{{unit:02d}}"
      area_m2: 70
      devices:
        - {{id: "{{household}}.valve", template: valve}}
      channels: {{use: [b2-bus], first_unit: 11}}
"""


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_text(extra: str = "") -> str:
    """Return the test site's YAML on free ports, with ``extra`` (more sections) appended."""
    ports = {"port1": free_port(), "port2": free_port(), "port3": free_port()}
    return SITE.format(**ports) + TEMPLATES + extra


def load(tmp: Path, extra: str = "") -> SiteConfig:
    """Write the site (with ``extra``) to ``tmp/site.yaml`` and load it with the real loader."""
    path = tmp / "site.yaml"
    path.write_text(site_text(extra), encoding="utf-8")
    return load_site(path)


class CommSite:
    """The engine of a site as ``scada run`` builds it, on a hand-moved clock."""

    def __init__(self, tmp: Path, site: SiteConfig, db: TagDatabase | None = None) -> None:
        self.site = site
        self.clock = Clock()
        self.db = db or TagDatabase(
            [*site.tag_defs(), *count_tag_defs(b.id for b in site.buildings)], clock=self.clock
        )
        self.journal = AlarmJournal.open(tmp / "alarms.sqlite")
        self.events: list[AlarmEvent] = []
        self.engine = AlarmEngine(
            self.db,
            alarm_rules(site),
            self.journal,
            devices_by_template=devices_by_template(site),
            devices=alarm_devices(site),
            defaults=site.alarm_defaults,
            clock=self.clock,
            tick_s=None,
        )
        self.engine.subscribe(self.events.append)
        self.engine.start()

    def online(self, devices: Iterable[str], value: bool) -> None:
        """Write ``<device>.online`` of ``devices`` in one batch, as a driver would."""
        for d in devices:
            self.db.update(f"{d}.online", value)
        self.db.flush()

    def all_online(self) -> None:
        self.online((d.id for d in self.site.devices), True)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.tick()

    def active(self) -> list[Alarm]:
        return self.engine.active()

    def raised(self) -> list[str]:
        """Keys of the points that raised an occurrence, in order."""
        return [e.alarm.key for e in self.events if e.kind is EventKind.RAISED]

    def state(self, key: str) -> AlarmState:
        return self.engine.get(key).state

    def point_keys(self, rule_prefix: str = "comm_loss") -> list[str]:
        return [a.key for a in self.engine.points() if a.rule_id.startswith(rule_prefix)]

    def close(self) -> None:
        self.journal.close()


def devices_of(site: SiteConfig, building: str) -> list[str]:
    """Return the ids of the devices of ``building`` (their own or their household's)."""
    return [d.id for d in alarm_devices(site) if d.building == building]
