"""A generated city (``scada.bench.city``) loads into the same devices, households and tags as
the same estate written out by hand, and the fast paths of loading give what the plain ones do.

Issue 22: a 200-building estate is loaded through per-template caches (tag definitions, tag
names, protocol checks), libyaml, a paused garbage collector and column checks in the
TagDatabase. These tests pin the results, not the timings (those are ``scada bench``'s).
"""

from __future__ import annotations

import gc
import math
from typing import Any

import numpy as np
import pytest
import yaml

import scada.config.source as source
from alarms.commloss import bind_comm_defaults
from alarms.config import AlarmDefaults
from configbase.bulk import paused_gc
from scada.bench.city import (
    DEVICES_PER_BUILDING,
    FLATS_PER_BUILDING,
    TAGS_PER_BUILDING,
    building_id,
    city_yaml,
    load_times,
)
from scada.config import ConfigError, ModbusTcpChannel, SiteConfig, load_site_text
from scada.config.alarmsite import alarm_devices
from scada.config.source import parse_yaml
from tags.database import TagDatabase, _checked_columns, _checked_one_by_one
from tags.model import Source, TagDef, TagType

STATUS = ("online", "last_ok", "errors", "latency_ms")


def load(text: str) -> SiteConfig:
    return load_site_text(text, name="city.yaml")


@pytest.fixture(scope="module")
def city() -> SiteConfig:
    return load(city_yaml(3, base_port=21000))


# ---------------------------------------------------------------- the generated city


def test_city_has_the_documented_size(city: SiteConfig) -> None:
    assert [b.id for b in city.buildings] == ["b0001", "b0002", "b0003"]
    assert len(city.channels) == 3
    assert len(city.devices) == 3 * DEVICES_PER_BUILDING == 606
    assert len(city.households()) == 3 * FLATS_PER_BUILDING
    assert len(city.tag_defs()) == 3 * TAGS_PER_BUILDING == 4845
    assert city.summary() == {
        "channels": 3,
        "templates": 4,
        "devices": 606,
        "tags": 4845,
        "buildings": 3,
        "households": 300,
    }


def test_every_building_has_its_own_channel_and_port(city: SiteConfig) -> None:
    for b, building in enumerate(city.buildings):
        channel = city.channel(f"c{building.id}")
        assert isinstance(channel, ModbusTcpChannel)
        assert channel.port == 21000 + b
        devices = city.devices_on(channel.id)
        assert len(devices) == DEVICES_PER_BUILDING
        assert {d.building for d in devices} == {building.id}
        # heat meter and master meter first, then each flat's valve and meter in turn
        assert [(d.id, d.unit) for d in devices[:4]] == [
            (f"{building.id}.hm", 1),
            (f"{building.id}.mm", 2),
            (f"{building.id}.101.valve", 3),
            (f"{building.id}.101.em", 4),
        ]
        assert sorted(d.unit for d in devices) == list(range(1, DEVICES_PER_BUILDING + 1))


def test_city_yaml_checks_its_arguments() -> None:
    assert building_id(0) == "b0001"
    with pytest.raises(ValueError, match="at least one building"):
        city_yaml(0)
    with pytest.raises(ValueError, match="not all valid"):
        city_yaml(10, base_port=65530)


def test_load_times_names_each_stage() -> None:
    times = load_times(1)
    assert list(times) == ["load", "tag_defs", "tag_database"]
    assert all(t >= 0 for t in times.values())


def explicit_city(buildings: int) -> str:
    """Return ``city_yaml(buildings)`` with every generate block written out by hand."""
    data: dict[str, Any] = yaml.safe_load(city_yaml(buildings))
    for b in data["buildings"]:
        spec = b.pop("generate")
        assert spec["floors"] * spec["units_per_floor"] == FLATS_PER_BUILDING
        households, unit = [], 3  # units 1 and 2 are the heat and master meters
        for floor in range(1, 11):
            for position in range(1, 11):
                flat = f"{b['id']}.{floor}{position:02d}"
                factor = (
                    (1.1 if floor == 1 else 1.0)
                    * (1.2 if floor == 10 else 1.0)
                    * (1.05 if position in (1, 10) else 1.0)
                )
                households.append(
                    {
                        "id": flat,
                        "area_m2": 70,
                        "position_factor": round(factor, 6),
                        "floor": floor,
                        "valve_tag": f"{flat}.valve.open",
                        "room_tag": f"{flat}.valve.room_c",
                        "setpoint_tag": f"{flat}.valve.setpoint_c",
                        "tags": [f"{flat}.em.energy_kwh"],
                    }
                )
                for suffix, template, extra in (
                    ("valve", "valve", {}),
                    ("em", "electricity-meter", {"poll_s": 60}),
                ):
                    data["devices"].append(
                        {
                            "id": f"{flat}.{suffix}",
                            "template": template,
                            "channel": f"c{b['id']}",
                            "unit": unit,
                            "building": b["id"],
                            "household": flat,
                            **extra,
                        }
                    )
                    unit += 1
        b["households"] = households
    return yaml.safe_dump(data, sort_keys=False)


def test_generated_city_equals_the_city_written_out() -> None:
    generated = load(city_yaml(2))
    written = load(explicit_city(2))
    assert generated.channels == written.channels
    assert generated.devices == written.devices
    assert generated.households() == written.households()
    assert generated.tag_defs() == written.tag_defs()
    for d in generated.devices:
        assert generated.points(d.id) == written.points(d.id)


# ---------------------------------------------------------------- tag definitions


def reference_tag_defs(site: SiteConfig) -> list[TagDef]:
    """The device tags as the loader made them before the per-template rows (by keyword)."""
    status = {
        "online": (TagType.BOOL, "", "device answers"),
        "last_ok": (TagType.FLOAT, "s", "time of the last good poll (epoch seconds)"),
        "errors": (TagType.INT, "", "failed requests since start"),
        "latency_ms": (TagType.FLOAT, "ms", "reply time of the last request"),
    }
    defs: list[TagDef] = []
    for d in site.devices:
        template = site.template(d.template)
        device_poll = d.poll_s or template.poll_s or site.channel(d.channel).poll_s
        building = d.building
        if building is None and d.household is not None:
            building = site.household_building(d.household)
        for name, p in site.points(d.id).items():
            defs.append(
                TagDef(
                    name=f"{d.id}.{name}",
                    type=p.tag_type,
                    unit=p.unit,
                    description=p.description,
                    source=Source.DEVICE,
                    deadband=p.deadband,
                    writable=p.writable,
                    min=p.min,
                    max=p.max,
                    min_interval_s=p.min_interval_s,
                    max_step=p.max_step,
                    poll_s=p.poll_s or device_poll,
                    historize=p.historize,
                    device=d.id,
                    building=building,
                    household=d.household,
                )
            )
        for suffix in STATUS:
            typ, unit, text = status[suffix]
            defs.append(
                TagDef(
                    name=f"{d.id}.{suffix}",
                    type=typ,
                    unit=unit,
                    description=text,
                    source=Source.STATUS,
                    poll_s=device_poll,
                    historize=suffix == "online",
                    device=d.id,
                    building=building,
                    household=d.household,
                )
            )
    return defs


OVERRIDES = """\
site: {id: t, name: Overrides}
channels:
  - {id: bus, protocol: modbus-tcp, host: 127.0.0.1, port: 5020, poll_s: 7}
templates:
  meter:
    poll_s: 20
    points:
      energy_kwh: {address: 0, kind: input, type: uint32, scale: 0.01, unit: kWh, deadband: 0.5}
      power_kw: {address: 2, kind: input, type: float32, unit: kW, poll_s: 3, historize: false}
      relay: {address: 0, kind: coil, type: bool, writable: true, min_interval_s: 60}
  plain:
    points:
      v: {address: 0, kind: holding, type: int16, writable: true, min: 0, max: 9, max_step: 2}
devices:
  - {id: m1, template: meter, channel: bus, unit: 1, household: h1}
  - {id: m2, template: meter, channel: bus, unit: 2, poll_s: 5, building: b2}
  - id: m3
    template: meter
    channel: bus
    unit: 3
    points:
      energy_kwh: {deadband: 2, description: overridden}
      extra_c: {address: 10, kind: input, type: int16, scale: 0.1, unit: degC}
  - {id: p1, template: plain, channel: bus, unit: 4}
  - {id: p2, template: plain, channel: bus, unit: 5, enabled: false}
tags:
  - {name: b1.note, type: str}
buildings:
  - id: b1
    households:
      - {id: h1, area_m2: 50}
  - {id: b2}
"""


@pytest.mark.parametrize("text", [OVERRIDES, city_yaml(2)], ids=["overrides", "city"])
def test_device_tags_equal_the_keyword_built_ones(text: str) -> None:
    site = load(text)
    defs = site.tag_defs()
    devices = [t for t in defs if t.source in (Source.DEVICE, Source.STATUS)]
    assert devices == reference_tag_defs(site)
    assert [t.name for t in defs[len(devices) :]] == [t.name for t in site.tags]


def test_overrides_and_poll_periods_reach_the_tags() -> None:
    site = load(OVERRIDES)
    by_name = {t.name: t for t in site.tag_defs()}
    assert by_name["m1.energy_kwh"].poll_s == 20  # the template's
    assert by_name["m1.power_kw"].poll_s == 3  # the point's own
    assert by_name["m2.energy_kwh"].poll_s == 5  # the device's
    assert by_name["m2.online"].poll_s == 5
    assert by_name["p1.v"].poll_s == 7  # the channel's
    assert by_name["m1.energy_kwh"].building == "b1"  # through its household
    assert by_name["m1.energy_kwh"].household == "h1"
    assert by_name["m3.energy_kwh"].deadband == 2
    assert by_name["m3.energy_kwh"].description == "overridden"
    assert by_name["m2.energy_kwh"].deadband == 0.5  # the other devices keep the template's
    assert by_name["m3.extra_c"].type is TagType.FLOAT
    assert by_name["m1.relay"].type is TagType.BOOL
    assert by_name["m1.relay"].min_interval_s == 60
    assert not by_name["m1.power_kw"].historize


# ---------------------------------------------------------------- located errors still located


def test_a_bad_generated_tag_is_reported_once_per_building() -> None:
    text = city_yaml(2).replace('"{household}.valve.room_c"', '"{household}.valve.room"')
    with pytest.raises(ConfigError) as info:
        load(text)
    lines = text.splitlines()
    value = '"{household}.valve.room"'
    places = [(n + 1, line.index(value) + 1) for n, line in enumerate(lines) if value in line]
    assert [str(i) for i in info.value.issues] == [
        f"city.yaml:{line}:{col}: buildings[{b}].generate.room_tag: unknown tag "
        f"'{building_id(b)}.101.valve.room': device '{building_id(b)}.101.valve' has no point "
        "'room' (did you mean 'room_c'?)"
        for b, (line, col) in enumerate(places)
    ]


def test_a_template_point_without_address_is_reported_once_for_all_its_devices() -> None:
    text = city_yaml(2).replace(
        "      fault:      {address: 1, kind: input, type: bit, bit: 0, description: Valve fault}",
        "      fault:      {type: bool, description: Valve fault}",
    )
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [(i.path, i.message) for i in info.value.issues] == [
        (
            "templates.valve.points.fault",
            "point 'fault' has no address/kind, but device 'b0001.101.valve' is on Modbus "
            "channel 'cb0001'",
        )
    ]


def test_a_duplicate_tag_names_the_generated_device() -> None:
    tags = "tags:\n  - {name: b0001.205.em.online}\n  - {name: b0001.205.em.relay}\n"
    text = city_yaml(1).replace("buildings:\n", tags + "buildings:\n", 1)
    text = text.replace("floors: 10", "floors: 2")
    with pytest.raises(ConfigError) as info:
        load(text)
    spec = [n + 1 for n, line in enumerate(text.splitlines()) if '"{household}.em"' in line]
    assert [i.message for i in info.value.issues] == [
        "duplicate tag name 'b0001.205.em.online': already a status tag of device "
        f"'b0001.205.em' (city.yaml:{spec[0]})",
        "duplicate tag name 'b0001.205.em.relay': already point 'relay' of device "
        f"'b0001.205.em' (city.yaml:{spec[0]})",
    ]


# ---------------------------------------------------------------- YAML: libyaml and PyYAML agree


@pytest.mark.parametrize(
    "text",
    [
        city_yaml(1),
        OVERRIDES,
        "a:\nb: ~\nc: |\n  block\nd: 'q'\ne: \"dq\"\nf: &x {k: [1, 2,\n  3]}\ng:\n  <<: *x\n  z: 2\n",
        "a: 1\na: 2\n",
        "a: {b: 1: c}\n",
        "a: [1, 2\nb: 3\n",
        "a: 1\n---\nb: 2\n",
        "",
    ],
)
def test_libyaml_and_pyyaml_give_the_same_data_and_places(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if source._FAST_LOADER is None:
        pytest.skip("PyYAML without libyaml")
    results = []
    for fast in (source._FAST_LOADER, None):
        monkeypatch.setattr(source, "_FAST_LOADER", fast)
        issues: list[Any] = []
        parsed = parse_yaml(text, "x.yaml", issues)
        places = None if parsed is None else (parsed[0], parsed[1].values, parsed[1].keys)
        results.append((places, [str(i) for i in issues]))
    assert results[0] == results[1]


# ---------------------------------------------------------------- the tag database of a city


def test_tag_database_of_a_city_has_every_tag_with_its_deadband_and_staleness(
    city: SiteConfig,
) -> None:
    defs = city.tag_defs()
    db = TagDatabase(defs)
    assert len(db) == len(defs)
    assert db.names == [d.name for d in defs]
    ids = db.ids_of([d.name for d in defs])
    assert ids.tolist() == list(range(len(defs)))
    assert np.array_equal(db._deadband[ids], [d.deadband for d in defs])
    assert np.array_equal(
        db._stale_after[ids], [3.0 * d.poll_s if d.poll_s else math.inf for d in defs]
    )


def test_column_checks_agree_with_the_one_by_one_checks(city: SiteConfig) -> None:
    defs = [*city.tag_defs()[:500], TagDef("x", poll_s=None), TagDef("y", deadband=3)]
    fast = _checked_columns(defs)
    assert fast is not None
    assert fast.defs == _checked_one_by_one(defs)
    assert fast.kinds == TagDatabase(defs).catalog.kinds.tolist()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (TagDef("b0001.hm.energy_kwh"), "duplicate tag name 'b0001.hm.energy_kwh'"),
        (TagDef("a\u00a0b"), "invalid tag name 'a\\xa0b': empty or contains whitespace"),
        (TagDef(""), "invalid tag name '': empty or contains whitespace"),
        (TagDef("z", deadband=math.nan), "tag 'z': deadband must be a finite number >= 0"),
        (TagDef("z", poll_s=0.0), "tag 'z': poll_s must be > 0"),
    ],
)
def test_the_first_bad_definition_of_many_is_named(
    city: SiteConfig, bad: TagDef, message: str
) -> None:
    defs = city.tag_defs()
    with pytest.raises(ValueError) as info:
        TagDatabase([*defs[:1000], bad, *defs[1000:2000], TagDef("q q")])
    assert str(info.value) == message
    with pytest.raises(TypeError, match="expected TagDef, got str"):
        TagDatabase([*defs[:10], "nope"])  # type: ignore[list-item]


def test_reloading_a_city_keeps_ids_and_adds_the_new_building() -> None:
    small, large = load(city_yaml(1)), load(city_yaml(2))
    db = TagDatabase(small.tag_defs())
    db.update("b0001.hm.energy_kwh", 5.0)
    summary = db.replace_defs(large.tag_defs())
    assert len(summary.added) == TAGS_PER_BUILDING
    assert len(summary.kept) == TAGS_PER_BUILDING
    assert db.read("b0001.hm.energy_kwh").value == 5.0
    assert db.id_of("b0002.hm.energy_kwh") == TAGS_PER_BUILDING
    assert db.definition("b0002.hm.energy_kwh").deadband == 0.1


# ---------------------------------------------------------------- alarms of a city


def test_every_city_device_gets_a_comm_loss_point_and_every_building_a_flood_group(
    city: SiteConfig,
) -> None:
    devices = alarm_devices(city)
    assert len(devices) == len(city.devices)
    flat = {d.id: d for d in devices}["b0001.101.em"]
    assert (flat.building, flat.household, flat.kind) == (
        "b0001",
        "b0001.101",
        "Tenant electricity meter with relay (prepaid)",
    )
    db = TagDatabase(city.tag_defs())
    specs = bind_comm_defaults(AlarmDefaults().comm_loss, devices, [], db, {})
    keys = [s.key for s in specs]
    assert keys[: len(devices)] == [f"comm_loss:{d.id}" for d in city.devices]
    assert keys[len(devices) :] == [f"comm_loss.building:{b}" for b in ("b0001", "b0002", "b0003")]
    flat_point = {s.key: s for s in specs}["comm_loss:b0001.101.em"]
    assert flat_point.message == "{kind} {device} ({place}): communication lost"
    assert flat_point.area == "b0001"


# ---------------------------------------------------------------- the paused collector


def test_paused_gc_nests_and_restores_even_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one leaves it to the outer one
        raise RuntimeError
    assert gc.isenabled()
