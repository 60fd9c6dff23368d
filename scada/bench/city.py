"""A city's estate as a site configuration: N buildings of 100 flats each (issue 22).

``city_yaml(buildings)`` returns the YAML text of a site whose buildings are all alike:

* one Modbus TCP channel per building, ``c{b}`` on ``host:base_port + b`` (``b`` is the
  0-based building number, so building 0 listens on ``base_port``);
* per building a heat meter ``{b}.hm`` (unit 1) and a master electricity meter ``{b}.mm``
  (unit 2), both listed as devices, with the building's ``heat`` and ``electricity`` naming them;
* per building a ``generate:`` block of 10 floors x 10 flats; each flat ``{b}.{floor}{unit:02d}``
  gets a valve ``{flat}.valve`` and an electricity meter ``{flat}.em``, packed onto the
  building's channel from unit 3 on.

Building ids are ``b0001``, ``b0002`` ... (four digits up to 9,999 buildings). The templates
are those of ``config/templates/standard.yaml`` (valve, electricity-meter, heat-meter,
master-meter). Per building: 202 devices and 1,615 tags (points plus the four status tags of
every device); 200 buildings are 40,400 devices and 323,000 tags.
"""

from __future__ import annotations

import time

__all__ = [
    "DEVICES_PER_BUILDING",
    "FLATS_PER_BUILDING",
    "TAGS_PER_BUILDING",
    "building_id",
    "building_meters",
    "city_yaml",
    "load_times",
]

#: Flats of one building (10 floors x 10 flats), each with a valve and an electricity meter.
FLATS_PER_BUILDING = 100
#: Devices of one building: two per flat, the heat meter and the master meter.
DEVICES_PER_BUILDING = 2 * FLATS_PER_BUILDING + 2
#: Tags of one building: valve 4 + 4 status, meter 4 + 4 per flat; heat meter 5 + 4; master 2 + 4.
TAGS_PER_BUILDING = FLATS_PER_BUILDING * (8 + 8) + 9 + 6

_TEMPLATES = """\
templates:
  heat-meter:
    role: heat_meter
    description: Building heat meter (ultrasonic, Modbus)
    points:
      energy_kwh: {address: 0, kind: holding, type: float32, unit: kWh, deadband: 0.1, description: "Heat energy, total"}
      power_kw:   {address: 2, kind: holding, type: float32, unit: kW, deadband: 0.5, description: Heat power}
      flow_m3h:   {address: 4, kind: holding, type: float32, unit: m3/h, deadband: 0.01, description: Flow}
      supply_c:   {address: 6, kind: holding, type: float32, unit: degC, deadband: 0.1, description: Supply temperature}
      return_c:   {address: 8, kind: holding, type: float32, unit: degC, deadband: 0.1, description: Return temperature}
  valve:
    role: valve
    description: Household on/off valve with room thermostat
    poll_s: 30
    points:
      open:       {address: 0, kind: coil, type: bool, writable: true, min_interval_s: 60, description: Valve open}
      room_c:     {address: 0, kind: input, type: int16, scale: 0.1, unit: degC, deadband: 0.1, description: Room temperature}
      fault:      {address: 1, kind: input, type: bit, bit: 0, description: Valve fault}
      setpoint_c: {address: 1, kind: holding, type: int16, scale: 0.1, unit: degC, writable: true, min: 5, max: 30, max_step: 5, description: Room setpoint}
  electricity-meter:
    role: electricity_meter
    description: Tenant electricity meter with relay (prepaid)
    points:
      energy_kwh: {address: 0, kind: input, type: uint32, scale: 0.01, unit: kWh, description: "Active energy, total"}
      power_kw:   {address: 2, kind: input, type: float32, unit: kW, deadband: 0.01, description: Active power}
      voltage_v:  {address: 4, kind: input, type: uint16, scale: 0.1, unit: V, deadband: 1, historize: false, description: Voltage}
      relay:      {address: 0, kind: coil, type: bool, writable: true, min_interval_s: 60, description: Supply relay closed}
  master-meter:
    role: electricity_meter
    description: Building master electricity meter
    points:
      energy_kwh: {address: 0, kind: input, type: uint32, scale: 0.01, unit: kWh, description: "Active energy, total"}
      power_kw:   {address: 2, kind: input, type: float32, unit: kW, deadband: 0.05, description: Active power}
"""


def building_id(b: int) -> str:
    """Return the id of the ``b``-th (0-based) building of a city: ``b0001`` for 0."""
    return f"b{b + 1:04d}"


def building_meters(building: str, channel: str) -> list[str]:
    """Return the YAML device items of a building's heat meter (unit 1) and master meter (2)."""
    return [
        f"  - {{id: {building}.{dev}, template: {template}, channel: {channel}, unit: {unit}, "
        f"building: {building}}}"
        for dev, template, unit in (("hm", "heat-meter", 1), ("mm", "master-meter", 2))
    ]


def city_yaml(buildings: int, base_port: int = 20000, host: str = "127.0.0.1") -> str:
    """Return a site config of ``buildings`` buildings x 100 flats, one channel per building.

    Building ``b`` (0-based) has its channel ``c{id}`` on ``host:base_port + b``; a simulator
    serving the estate must listen on those ports. Raises ``ValueError`` for fewer than one
    building or ports beyond 65535.
    """
    if buildings < 1:
        raise ValueError(f"a city needs at least one building, not {buildings}")
    if base_port < 1 or base_port + buildings - 1 > 65535:
        raise ValueError(f"ports {base_port}..{base_port + buildings - 1} are not all valid")
    ids = [building_id(b) for b in range(buildings)]
    lines = [
        f"site: {{id: city, name: City Estate ({buildings} buildings), timezone: UTC}}",
        _TEMPLATES.rstrip("\n"),
        "channels:",
        *(
            f"  - {{id: c{bid}, protocol: modbus-tcp, host: {host}, port: {base_port + b}}}"
            for b, bid in enumerate(ids)
        ),
        "devices:",
    ]
    for bid in ids:
        lines += building_meters(bid, f"c{bid}")
    lines.append("buildings:")
    for b, bid in enumerate(ids):
        lines += [
            f"  - id: {bid}",
            f"    name: House {b + 1}",
            f"    heat: {{energy_tag: {bid}.hm.energy_kwh, price_per_kwh: '0.30', power_tag: {bid}.hm.power_kw,",
            f"           flow_tag: {bid}.hm.flow_m3h, supply_tag: {bid}.hm.supply_c, return_tag: {bid}.hm.return_c}}",
            f"    electricity: {{master_tag: {bid}.mm.energy_kwh}}",
            "    generate:",
            "      floors: 10",
            "      units_per_floor: 10",
            '      household_id: "{building}.{floor}{unit:02d}"',
            "      area_m2: 70",
            "      position_factor: {top_floor: 1.2, ground_floor: 1.1, end_unit: 1.05}",
            '      valve_tag: "{household}.valve.open"',
            '      room_tag: "{household}.valve.room_c"',
            '      setpoint_tag: "{household}.valve.setpoint_c"',
            '      tags: ["{household}.em.energy_kwh"]',
            "      devices:",
            '        - {id: "{household}.valve", template: valve}',
            '        - {id: "{household}.em", template: electricity-meter, poll_s: 60}',
            f"      channels: {{use: [c{bid}]}}",
        ]
    return "\n".join(lines) + "\n"


def load_times(buildings: int) -> dict[str, float]:
    """Return the seconds a city of ``buildings`` takes to load, per start-up stage.

    ``load``: ``load_site_text``; ``tag_defs``: ``site.tag_defs()`` (builds the lookups);
    ``tag_database``: the ``TagDatabase`` of those and the runtime's own tags. For looking
    at one stage from a shell; ``scada bench`` reports the whole start-up.
    """
    from scada.config import load_site_text
    from scada.runtime import system_tag_defs
    from tags.database import TagDatabase

    text = city_yaml(buildings)
    t0 = time.perf_counter()
    site = load_site_text(text, name="<city>")
    t1 = time.perf_counter()
    defs = site.tag_defs()
    t2 = time.perf_counter()
    TagDatabase([*defs, *system_tag_defs(site)])
    t3 = time.perf_counter()
    return {"load": t1 - t0, "tag_defs": t2 - t1, "tag_database": t3 - t2}
