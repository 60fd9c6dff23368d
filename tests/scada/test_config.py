"""Loading site configurations: the issue's snippet, derived tags, lookups, includes, generator, demo."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from scada.config import (
    CanChannel,
    ComputedTagConfig,
    MemoryTagConfig,
    ModbusTcpChannel,
    SiteConfig,
    load_site,
    load_site_text,
)
from tags.model import Source, TagType

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).parent / "configs"

# Verbatim from issue 2 (later issues rely on these key names).
SNIPPET = """\
site: {id: demo, name: Demo Heating Estate, timezone: Asia/Shanghai}
channels:
  - {id: b1-bus, protocol: modbus-tcp, host: 127.0.0.1, port: 5020, timeout_s: 1.0, retries: 1}
templates:
  heat-meter:
    points:
      energy_kwh: {address: 0, kind: holding, type: float32, word_order: big, unit: kWh}
      power_kw:   {address: 2, kind: holding, type: float32, unit: kW}
  valve:
    points:
      open:       {address: 0, kind: coil, type: bool, writable: true}
      room_c:     {address: 0, kind: input, type: int16, scale: 0.1, unit: degC}
      setpoint_c: {address: 1, kind: holding, type: int16, scale: 0.1, unit: degC, writable: true, min: 5, max: 30}
devices:
  - {id: b1.hm, template: heat-meter, channel: b1-bus, unit: 1, poll_s: 10}
  - {id: b1.101.valve, template: valve, channel: b1-bus, unit: 11}
tags:
  - {name: b1.note, type: str}
  - {name: b1.power_total, type: float, unit: kW, expr: "sum(tags('b1.*.power_kw'))"}
buildings:
  - id: b1
    name: Building 1
    heat: {energy_tag: b1.hm.energy_kwh, basic_share: 0.3, price_per_kwh: "0.30"}
    households:
      - {id: b1.101, area_m2: 86.5, position_factor: 1.0, valve_tag: b1.101.valve.open}
"""


@pytest.fixture(scope="module")
def snippet() -> SiteConfig:
    return load_site_text(SNIPPET, name="snippet.yaml")


def test_issue_snippet_is_accepted(snippet: SiteConfig) -> None:
    assert snippet.site.id == "demo"
    assert snippet.site.timezone == "Asia/Shanghai"
    [channel] = snippet.channels
    assert isinstance(channel, ModbusTcpChannel)
    assert (channel.host, channel.port, channel.timeout_s, channel.retries) == (
        "127.0.0.1",
        5020,
        1.0,
        1,
    )
    assert (channel.poll_s, channel.max_gap, channel.max_gap_bits) == (10.0, 8, 32)
    assert set(snippet.templates) == {"heat-meter", "valve"}
    assert [d.id for d in snippet.devices] == ["b1.hm", "b1.101.valve"]
    [note, total] = snippet.tags
    assert isinstance(note, MemoryTagConfig) and note.type == "str" and note.writable
    assert isinstance(total, ComputedTagConfig) and total.expr == "sum(tags('b1.*.power_kw'))"
    [b1] = snippet.buildings
    assert b1.heat is not None
    assert b1.heat.price_per_kwh == Decimal("0.30")
    assert b1.heat.basic_share == 0.3
    assert snippet.households()[0].valve_tag == "b1.101.valve.open"
    assert snippet.simulate.enabled is False
    assert snippet.historian.backend == "sqlite"
    assert snippet.alarms == [] and snippet.users == []


def test_every_point_becomes_a_tag(snippet: SiteConfig) -> None:
    defs = {t.name: t for t in snippet.tag_defs()}
    points = [
        "b1.hm.energy_kwh",
        "b1.hm.power_kw",
        "b1.101.valve.open",
        "b1.101.valve.room_c",
        "b1.101.valve.setpoint_c",
    ]
    status = [
        f"{d}.{s}"
        for d in ("b1.hm", "b1.101.valve")
        for s in ("online", "last_ok", "errors", "latency_ms")
    ]
    assert set(defs) == {*points, *status, "b1.note", "b1.power_total"}
    assert len(snippet.tag_defs()) == len(defs)  # no duplicates

    sp = defs["b1.101.valve.setpoint_c"]
    assert (sp.type, sp.source, sp.writable, sp.min, sp.max, sp.unit) == (
        TagType.FLOAT,
        Source.DEVICE,
        True,
        5.0,
        30.0,
        "degC",
    )
    assert (sp.device, sp.building, sp.household) == ("b1.101.valve", "b1", "b1.101")
    assert defs["b1.101.valve.open"].type is TagType.BOOL
    assert defs["b1.hm.energy_kwh"].type is TagType.FLOAT
    assert defs["b1.hm.energy_kwh"].poll_s == 10.0  # device poll_s
    assert defs["b1.101.valve.room_c"].poll_s == 10.0  # channel default
    assert defs["b1.hm.energy_kwh"].building == "b1"  # inferred from the building's energy_tag
    online, last_ok = defs["b1.hm.online"], defs["b1.hm.last_ok"]
    assert (online.type, online.source, online.device) == (TagType.BOOL, Source.STATUS, "b1.hm")
    assert (last_ok.type, last_ok.unit) == (TagType.FLOAT, "s")
    assert defs["b1.hm.errors"].type is TagType.INT
    assert defs["b1.hm.latency_ms"].unit == "ms"
    note, total = defs["b1.note"], defs["b1.power_total"]
    assert (note.type, note.source, note.writable) == (TagType.STR, Source.MEMORY, True)
    assert (total.source, total.expr, total.unit, total.writable) == (
        Source.COMPUTED,
        "sum(tags('b1.*.power_kw'))",
        "kW",
        False,
    )
    assert note.building == "b1"


def test_lookups(snippet: SiteConfig) -> None:
    assert snippet.device("b1.hm").unit == 1
    assert snippet.channel("b1-bus").port == 5020
    assert snippet.template("valve").points["open"].writable
    assert [d.id for d in snippet.devices_on("b1-bus")] == ["b1.hm", "b1.101.valve"]
    assert snippet.devices_on("nope") == []
    assert snippet.building("b1").name == "Building 1"
    assert [h.id for h in snippet.households()] == ["b1.101"]
    assert snippet.household_building("b1.101") == "b1"
    pts = snippet.points("b1.101.valve")
    assert list(pts) == ["open", "room_c", "setpoint_c"]
    assert (pts["room_c"].address, pts["room_c"].kind, pts["room_c"].scale) == (0, "input", 0.1)
    assert pts["setpoint_c"].word_order == "big" and pts["setpoint_c"].registers == 1
    assert snippet.summary() == {
        "channels": 1,
        "templates": 2,
        "devices": 2,
        "tags": 15,
        "buildings": 1,
        "households": 1,
    }
    for lookup in (
        snippet.device,
        snippet.channel,
        snippet.template,
        snippet.points,
        snippet.building,
    ):
        with pytest.raises(KeyError):
            lookup("missing")


def test_config_is_read_only(snippet: SiteConfig) -> None:
    with pytest.raises(ValidationError):
        snippet.site.id = "other"  # type: ignore[misc]
    assert snippet.tag_defs() is not snippet.tag_defs()  # callers get their own list
    assert snippet.tag_defs() == snippet.tag_defs()


def test_dump_validates_again(snippet: SiteConfig) -> None:
    again = SiteConfig.model_validate(json.loads(snippet.model_dump_json()))
    assert again.tag_defs() == snippet.tag_defs()


TYPES = """\
site: {id: t}
channels:
  - {id: bus, protocol: modbus-tcp, host: localhost, poll_s: 20}
templates:
  m:
    poll_s: 15
    points:
      count:  {address: 0, kind: input, type: uint16}
      energy: {address: 1, kind: input, type: uint32, scale: 0.01}
      offset: {address: 3, kind: input, type: int16, offset: -40}
      flags:  {address: 4, kind: input, type: bit, bit: 3}
      name:   {address: 5, kind: holding, type: str, count: 8, historize: false}
      fast:   {address: 13, kind: holding, type: float64, word_order: little, byte_order: little, poll_s: 1}
devices:
  - {id: a, template: m, channel: bus, unit: 1}
  - {id: b, template: m, channel: bus, unit: 2, poll_s: 5, points: {count: {scale: 2}, extra: {address: 20, kind: coil, type: bool}}}
tags:
  - {name: mode, type: int, initial: 3, min: 0, max: 5}
  - {name: flag, type: bool}
simulate: {speed: 60, seed: 7}
"""


def test_tag_types_poll_periods_and_overrides() -> None:
    cfg = load_site_text(TYPES)
    defs = {t.name: t for t in cfg.tag_defs()}
    assert defs["a.count"].type is TagType.INT
    assert defs["a.energy"].type is TagType.FLOAT  # scaled int
    assert defs["a.offset"].type is TagType.FLOAT
    assert defs["a.flags"].type is TagType.BOOL
    assert defs["a.name"].type is TagType.STR and defs["a.name"].historize is False
    assert defs["a.fast"].type is TagType.FLOAT
    # point > device > template > channel
    assert (defs["a.fast"].poll_s, defs["a.count"].poll_s, defs["b.count"].poll_s) == (
        1.0,
        15.0,
        5.0,
    )
    # device override merged into the template point; extra point added
    assert defs["b.count"].type is TagType.FLOAT and cfg.points("b")["count"].scale == 2
    assert cfg.points("a")["count"].scale == 1
    assert cfg.points("b")["extra"].kind == "coil" and "b.extra" in defs and "a.extra" not in defs
    assert cfg.points("a")["name"].registers == 8 and cfg.points("a")["fast"].registers == 4
    assert (
        defs["mode"].type is TagType.INT
        and defs["mode"].writable
        and (defs["mode"].min, defs["mode"].max) == (0, 5)
    )
    assert cfg.initial_values() == {"mode": 3}
    assert (cfg.simulate.enabled, cfg.simulate.speed, cfg.simulate.seed) == (True, 60.0, 7)


@pytest.mark.parametrize(
    ("text", "enabled"), [("true", True), ("false", False), ("{enabled: false, speed: 2}", False)]
)
def test_simulate_forms(text: str, enabled: bool) -> None:
    cfg = load_site_text(f"site: {{id: s}}\nsimulate: {text}\n")
    assert cfg.simulate.enabled is enabled


def test_price_written_as_a_number_is_exact() -> None:
    cfg = load_site_text(
        "site: {id: s}\nbuildings:\n  - {id: b, heat: {energy_tag: m, price_per_kwh: 0.3}}\ntags:\n  - {name: m}\n"
    )
    assert cfg.buildings[0].heat is not None
    assert cfg.buildings[0].heat.price_per_kwh == Decimal("0.3")


def test_can_channel_and_points() -> None:
    cfg = load_site_text(
        textwrap.dedent(
            """\
            site: {id: c}
            channels:
              - {id: can0, protocol: can, interface: virtual, channel: vcan0, bitrate: 125000}
            templates:
              sensor:
                points:
                  room_c: {can_id: 0x181, start_byte: 1, mux: 2, type: int16, scale: 0.1}
                  open: {can_id: 0x181, start_byte: 3, type: bool, writable: true, write: {can_id: 0x201, start_byte: 0}}
            devices:
              - {id: s1, template: sensor, channel: can0, unit: 5}
            """
        )
    )
    channel = cfg.channel("can0")
    assert isinstance(channel, CanChannel) and channel.silence_timeout_s == 30.0
    pts = cfg.points("s1")
    assert (pts["room_c"].can_id, pts["room_c"].start_byte, pts["room_c"].mux) == (0x181, 1, 2)
    assert pts["open"].write is not None and pts["open"].write.can_id == 0x201
    assert {t.name for t in cfg.tag_defs() if t.writable} == {"s1.open"}


# ---------------------------------------------------------------- includes


def test_include_merges_lists_and_templates_in_order() -> None:
    main = CONFIGS / "include" / "main.yaml"
    cfg = load_site(main)
    assert [d.id for d in cfg.devices] == ["hm", "b1.m", "b2.m", "b2.v"]
    assert set(cfg.templates) == {"meter", "valve"}
    assert [b.id for b in cfg.buildings] == ["b1", "b2"]
    parts = CONFIGS / "include" / "parts"
    assert cfg.source_files() == [
        str(main),
        str(parts / "templates.yaml"),
        str(parts / "b1.yaml"),
        str(parts / "b2.yaml"),
    ]
    assert cfg.include == ["parts/templates.yaml", "parts/b*.yaml"]
    assert cfg.device("b2.v").household == "b2.1"  # inferred from the household's valve_tag


def test_load_site_text_resolves_includes_against_base_dir() -> None:
    text = "site: {id: x}\ninclude: [parts/templates.yaml]\n"
    cfg = load_site_text(text, name="proposed.yaml", base_dir=CONFIGS / "include")
    assert "meter" in cfg.templates


def test_missing_main_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_site(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- generator


ESTATE = """\
site: {id: estate, name: Big Estate}
templates:
  valve:
    points:
      open: {address: 0, kind: coil, type: bool, writable: true}
      room_c: {address: 0, kind: input, type: int16, scale: 0.1}
  em:
    points:
      energy_kwh: {address: 0, kind: input, type: uint32, scale: 0.01}
buildings:
  - id: e1
    generate:
      floors: 25
      units_per_floor: 40
      household_id: "{building}.{floor:02d}{unit:02d}"
      area_m2: 70
      position_factor: {top_floor: 1.2, ground_floor: 1.1, end_unit: 1.05}
      valve_tag: "{household}.valve.open"
      room_tag: "{household}.valve.room_c"
      tags: ["{household}.em.energy_kwh"]
      devices:
        - {id: "{household}.valve", template: valve}
        - {id: "{household}.em", template: em, poll_s: 60}
      channels:
        create: {id: "{building}-bus-{n}", protocol: modbus-tcp, host: 10.0.0.5, port: 6000}
"""


def test_a_thousand_apartments_in_a_few_lines() -> None:
    cfg = load_site_text(ESTATE)
    households = cfg.households()
    assert len(households) == 1000
    assert len(cfg.devices) == 2000
    assert len(cfg.channels) == 9  # ceil(2000 / 247)
    assert [c.port for c in cfg.channels] == list(range(6000, 6009))
    assert cfg.channels[0].id == "e1-bus-1" and cfg.channels[-1].id == "e1-bus-9"
    pairs = {(d.channel, d.unit) for d in cfg.devices}
    assert len(pairs) == 2000 and all(1 <= u <= 247 for _, u in pairs)
    assert len(cfg.devices_on("e1-bus-1")) == 247
    first = cfg.device("e1.0101.valve")
    assert (first.channel, first.unit, first.building, first.household) == (
        "e1-bus-1",
        1,
        "e1",
        "e1.0101",
    )
    assert cfg.device("e1.0101.em").unit == 2 and cfg.device("e1.0101.em").poll_s == 60
    by_id = {h.id: h for h in households}
    assert by_id["e1.0101"].position_factor == pytest.approx(1.1 * 1.05)  # ground floor, end unit
    assert by_id["e1.0102"].position_factor == pytest.approx(1.1)
    assert by_id["e1.2520"].position_factor == pytest.approx(1.2)
    assert by_id["e1.2540"].position_factor == pytest.approx(1.2 * 1.05)
    assert by_id["e1.1220"].position_factor == 1.0 and by_id["e1.1220"].floor == 12
    assert by_id["e1.1220"].tags == ["e1.1220.em.energy_kwh"]
    defs = {t.name: t for t in cfg.tag_defs()}
    assert defs["e1.2540.valve.open"].household == "e1.2540"
    assert len(defs) == 1000 * (2 + 1) + 2000 * 4


def test_generator_with_explicit_units_areas_and_skip() -> None:
    cfg = load_site_text(
        textwrap.dedent(
            """\
            site: {id: g}
            channels:
              - {id: bus, protocol: modbus-rtu, port: /dev/ttyUSB0, baudrate: 2400, parity: E}
            templates:
              valve: {points: {open: {address: 0, kind: coil, type: bool}}}
              meter: {points: {e: {address: 0, kind: input, type: float32}}}
            devices:
              - {id: g1.meter, template: meter, channel: bus, unit: 1}
            buildings:
              - id: g1
                heat: {energy_tag: g1.meter.e}
                households: [{id: g1.shop, area_m2: 200}]
                generate:
                  floors: 2
                  units_per_floor: 3
                  first_floor: 0
                  household_id: "{building}.{index}"
                  area_m2: [80, 60, 80]
                  position_factor: {by_unit: [1.1, 1.0, 1.1]}
                  skip: [g1.2]
                  valve_tag: "{household}.v.open"
                  devices:
                    - {id: "{household}.v", template: valve, channel: bus, unit: "{index}0"}
            """
        )
    )
    assert [h.id for h in cfg.building("g1").households] == [
        "g1.shop",
        "g1.1",
        "g1.3",
        "g1.4",
        "g1.5",
        "g1.6",
    ]
    assert [(d.id, d.unit) for d in cfg.devices[1:]] == [
        ("g1.1.v", 10),
        ("g1.3.v", 30),
        ("g1.4.v", 40),
        ("g1.5.v", 50),
        ("g1.6.v", 60),
    ]
    hh = {h.id: h for h in cfg.households()}
    assert (hh["g1.1"].area_m2, hh["g1.1"].position_factor, hh["g1.1"].floor) == (80, 1.1, 0)
    assert (hh["g1.5"].area_m2, hh["g1.5"].position_factor, hh["g1.5"].floor) == (60, 1.0, 1)


def test_generator_fills_used_channels_around_explicit_devices() -> None:
    cfg = load_site(ROOT / "config" / "demo-site.yaml")
    units = sorted(d.unit for d in cfg.devices_on("b2-bus"))
    assert units == [1, 2, 3, *range(11, 35)]


# ---------------------------------------------------------------- demo site and schema


def test_demo_site() -> None:
    cfg = load_site(ROOT / "config" / "demo-site.yaml")
    assert (cfg.site.id, cfg.site.name, cfg.site.timezone) == (
        "demo",
        "Demo Heating Estate",
        "Asia/Shanghai",
    )
    assert cfg.simulate.enabled
    assert len(cfg.buildings) >= 2 and len(cfg.source_files()) >= 3
    assert len(cfg.building("b2").households) >= 24
    assert {t.role for t in cfg.templates.values()} >= {"heat_meter", "valve", "electricity_meter"}
    # a Modbus device is addressed by its unit, a DL/T 645 / CJ/T 188 / M-Bus meter by its address
    pairs = [(d.channel, d.address or d.unit) for d in cfg.devices]
    assert len(pairs) == len(set(pairs))
    for c in cfg.channels:
        assert c.host == "127.0.0.1" and c.port >= 5020  # type: ignore[union-attr]
        assert isinstance(c, ModbusTcpChannel) or c.protocol.endswith("-tcp")
    valve = cfg.template("valve").points
    assert valve["open"].kind == "coil" and valve["open"].writable
    assert (valve["setpoint_c"].min, valve["setpoint_c"].max, valve["setpoint_c"].writable) == (
        5,
        30,
        True,
    )
    assert valve["fault"].type == "bit"
    assert set(cfg.template("heat-meter").points) == {
        "energy_kwh",
        "power_kw",
        "flow_m3h",
        "supply_c",
        "return_c",
    }
    assert cfg.template("electricity-meter").points["relay"].writable
    sources = {t.source for t in cfg.tag_defs()}
    assert sources == {Source.DEVICE, Source.STATUS, Source.MEMORY, Source.COMPUTED}
    for b in cfg.buildings:
        assert b.heat is not None and any(t.name == f"{b.id}.power_total" for t in cfg.tags)


def test_json_schema() -> None:
    schema = SiteConfig.model_json_schema()
    assert {
        "site",
        "channels",
        "templates",
        "devices",
        "tags",
        "buildings",
        "include",
        "simulate",
    } <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    json.dumps(schema)
