"""Substations in the site configuration: the model, its lookups, located errors, schema, demo."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from scada.commands.check import schema
from scada.config import ConfigError, SiteConfig, SubstationConfig, load_site, load_site_text

ROOT = Path(__file__).resolve().parents[2]

SITE = """\
site: {id: t, name: Test}
channels:
  - {id: bus, protocol: modbus-tcp, host: 127.0.0.1, port: 5020}
templates:
  heat-meter:
    points:
      energy_kwh: {address: 0, kind: holding, type: float32}
  substation:
    role: substation
    points:
      outdoor_c: {address: 0, kind: input, type: int16, scale: 0.1}
      supply_c:  {address: 1, kind: input, type: int16, scale: 0.1}
      return_c:  {address: 2, kind: input, type: int16, scale: 0.1}
      flow_m3h:  {address: 3, kind: input, type: float32}
      supply_setpoint_c: {address: 0, kind: holding, type: int16, scale: 0.1, writable: true}
      pump: {address: 0, kind: coil, type: bool, writable: true}
devices:
  - {id: b1.hm, template: heat-meter, channel: bus, unit: 1}
  - {id: b2.hm, template: heat-meter, channel: bus, unit: 2}
  - {id: b3.hm, template: heat-meter, channel: bus, unit: 3}
  - {id: st1, template: substation, channel: bus, unit: 10}
  - {id: st2, template: substation, channel: bus, unit: 11}
buildings:
  - {id: b1, heat: {energy_tag: b1.hm.energy_kwh}}
  - {id: b2, heat: {energy_tag: b2.hm.energy_kwh}}
  - {id: b3, heat: {energy_tag: b3.hm.energy_kwh}}
substations:
  - id: st1
    name: North substation
    buildings: [b1, b2]
    outdoor_tag: st1.outdoor_c
    supply_tag: st1.supply_c
    return_tag: st1.return_c
    flow_tag: st1.flow_m3h
    supply_setpoint_tag: st1.supply_setpoint_c
    pump_tag: st1.pump
    heating_curve: [[-10, 75], [0, 65], [15, 45]]
  - {id: st2, name: South, buildings: [b3], outdoor_tag: st2.outdoor_c,
     supply_tag: st2.supply_c, return_tag: st2.return_c}
"""


def at(text: str, token: str, nth: int = 1) -> str:
    """Return ``line:col`` (1-based) of the ``nth`` occurrence of ``token`` in ``text``."""
    index = -1
    for _ in range(nth):
        index = text.index(token, index + 1)
    line = text.count("\n", 0, index) + 1
    return f"{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def errors(text: str) -> list[str]:
    """Return the issue lines of an invalid configuration text (named site.yaml)."""
    with pytest.raises(ConfigError) as info:
        load_site_text(text, name="site.yaml")
    return [str(i) for i in info.value.issues]


def edit(old: str, new: str, nth: int = 1) -> str:
    """Return SITE with the ``nth`` occurrence of ``old`` replaced by ``new``."""
    index = -1
    for _ in range(nth):
        index = SITE.index(old, index + 1)
    return SITE[:index] + new + SITE[index + len(old) :]


def test_substations_load_with_their_lookups() -> None:
    site = load_site_text(SITE)
    st1, st2 = site.substations
    assert isinstance(site.substations, tuple) and isinstance(st1, SubstationConfig)
    assert (st1.id, st1.name, st1.buildings) == ("st1", "North substation", ("b1", "b2"))
    assert st1.heating_curve == ((-10.0, 75.0), (0.0, 65.0), (15.0, 45.0))
    assert st2.heating_curve is None and st2.pump_tag is None and st2.description == ""
    assert site.substation_of("b1") is st1 and site.substation_of("b2") is st1
    assert site.substation_of("b3") is st2
    assert site.substation_of("nope") is None
    assert site.substation("st2") is st2
    with pytest.raises(KeyError):
        site.substation("st9")
    assert st1.tags() == {
        "outdoor_tag": "st1.outdoor_c",
        "supply_tag": "st1.supply_c",
        "return_tag": "st1.return_c",
        "supply_setpoint_tag": "st1.supply_setpoint_c",
        "pump_tag": "st1.pump",
        "flow_tag": "st1.flow_m3h",
    }
    assert site.summary()["substations"] == 2
    with pytest.raises(ValidationError):
        st1.name = "x"  # type: ignore[misc]


def test_a_site_without_substations() -> None:
    text = SITE[: SITE.index("substations:")]
    site = load_site_text(text)
    assert site.substations == () and site.substation_of("b1") is None
    assert "substations" not in site.summary()


@pytest.mark.parametrize(
    ("outdoor_c", "supply_c"),
    [(-30, 75), (-10, 75), (-5, 70), (0, 65), (7.5, 55), (15, 45), (30, 45)],
)
def test_curve_setpoint_is_linear_between_points_and_flat_beyond(
    outdoor_c: float, supply_c: float
) -> None:
    st1 = load_site_text(SITE).substations[0]
    assert st1.curve_setpoint_c(outdoor_c) == pytest.approx(supply_c)
    assert load_site_text(SITE).substations[1].curve_setpoint_c(0) is None


def test_unknown_tag_is_located_with_a_hint() -> None:
    text = edit("supply_tag: st1.supply_c", "supply_tag: st1.suply_c")
    assert errors(text) == [
        f"site.yaml:{at(text, 'st1.suply_c')}: substations[0].supply_tag: unknown tag "
        "'st1.suply_c': device 'st1' has no point 'suply_c' (did you mean 'supply_c'?)"
    ]


def test_tag_types_are_checked() -> None:
    text = edit("pump_tag: st1.pump", "pump_tag: st1.flow_m3h")
    text = text.replace("flow_tag: st1.flow_m3h", "flow_tag: st1.pump")
    assert errors(text) == [
        f"site.yaml:{at(text, 'st1.pump', 1)}: substations[0].flow_tag: "
        "tag 'st1.pump' is bool; expected a numeric tag",
        f"site.yaml:{at(text, 'st1.flow_m3h')}: substations[0].pump_tag: "
        "tag 'st1.flow_m3h' is float; expected a bool tag",
    ]


def test_unknown_building_and_a_building_in_two_substations() -> None:
    text = edit("buildings: [b3]", "buildings: [b2, b4]")
    assert errors(text) == [
        f"site.yaml:{at(text, 'b2, b4')}: substations[1].buildings[0]: building 'b2' is "
        f"already fed by substation 'st1' (site.yaml:{at(text, 'b1, b2').split(':')[0]}); "
        "a building belongs to one substation at most",
        f"site.yaml:{at(text, 'b4]')}: substations[1].buildings[1]: unknown building 'b4'",
    ]


def test_duplicate_substation_id() -> None:
    text = edit("{id: st2, name: South, buildings: [b3]", "{id: st1, name: South, buildings: [b3]")
    assert errors(text) == [
        f"site.yaml:{at(text, 'st1, name: South')}: substations[1].id: duplicate substation "
        f"id 'st1' (first at site.yaml:{at(text, '- id: st1').split(':')[0]})"
    ]


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        ("[[0, 65]]", "a heating curve needs at least 2 points [outdoor_c, supply_c]"),
        (
            "[[0, 65], [-10, 75]]",
            "heating curve points must be sorted by outdoor temperature, "
            "each above the one before (-10 after 0)",
        ),
        ("[[0, 65], [0, 60]]", "heating curve points must be sorted"),
    ],
)
def test_heating_curve_is_sorted_with_two_points_at_least(curve: str, message: str) -> None:
    text = edit("[[-10, 75], [0, 65], [15, 45]]", curve)
    [line] = errors(text)
    assert line.startswith(f"site.yaml:{at(text, curve)}: substations[0].heating_curve: {message}")


def test_structure_errors_are_located() -> None:
    text = edit("    buildings: [b1, b2]\n", "    buildings: []\n    pumps: 2\n")
    lines = errors(text)
    assert f"site.yaml:{at(text, '[]')}: substations[0].buildings: " in lines[0]
    assert lines[1] == (
        f"site.yaml:{at(text, 'pumps')}: substations[0].pumps: unknown key 'pumps' "
        "(did you mean 'pump_tag'?)"
    )
    text = SITE.replace("  - {id: st2, name: South,", "  - {id: st2,")
    assert errors(text) == [
        f"site.yaml:{at(text, '{id: st2', 2)}: substations[1].name: missing required key 'name'"
    ]


def test_substations_from_an_included_file(tmp_path: Path) -> None:
    head, tail = SITE.split("substations:\n")
    (tmp_path / "subs.yaml").write_text("substations:\n" + tail, encoding="utf-8")
    main = tmp_path / "site.yaml"
    main.write_text("include: [subs.yaml]\n" + head, encoding="utf-8")
    site = load_site(main)
    assert [s.id for s in site.substations] == ["st1", "st2"]
    bad = tail.replace("outdoor_tag: st2.outdoor_c", "outdoor_tag: st2.outdoor")
    (tmp_path / "subs.yaml").write_text("substations:\n" + bad, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(main)
    [issue] = info.value.issues
    assert issue.file.endswith("subs.yaml") and issue.path == "substations[1].outdoor_tag"


def test_a_changed_substation_restarts_the_simulated_plant() -> None:
    """The simulator builds its substations from the config: a change restarts it on apply."""
    from scada.services.config_versions import compare_sites

    old = load_site_text(SITE)
    assert not compare_sites(old, load_site_text(SITE)).restart_drivers
    new = load_site_text(SITE.replace("outdoor_tag: st2.outdoor_c", "outdoor_tag: st1.outdoor_c"))
    plan = compare_sites(old, new)
    assert plan.substations_changed and plan.restart_drivers
    assert plan.to_json()["substations_changed"] is True
    assert not plan.devices_changed and not plan.channels_changed  # substations alone


def test_json_schema_has_substations() -> None:
    doc = schema()
    assert doc["properties"]["substations"]["items"]["$ref"] == "#/$defs/SubstationConfig"
    sub = doc["$defs"]["SubstationConfig"]
    assert set(sub["required"]) == {
        "id",
        "name",
        "buildings",
        "outdoor_tag",
        "supply_tag",
        "return_tag",
    }
    assert sub["additionalProperties"] is False
    assert "heating_curve" in sub["properties"] and "pump_tag" in sub["properties"]


def test_the_demo_estate_has_a_substation_feeding_every_building() -> None:
    site = load_site(ROOT / "config" / "demo-site.yaml")
    [sub] = site.substations
    assert sub.heating_curve is not None and len(sub.heating_curve) >= 2
    assert set(sub.buildings) == {b.id for b in site.buildings}
    assert all(site.substation_of(b.id) is sub for b in site.buildings)
    assert site.template("substation").role == "substation"
    names = {t.name for t in site.tag_defs()}
    assert set(sub.tags().values()) <= names
    assert site.points(sub.supply_setpoint_tag.rsplit(".", 1)[0])["supply_setpoint_c"].writable  # type: ignore[union-attr]
    assert {r.id for r in site.alarms} >= {"substation_supply_low", "substation_pump_stopped"}


def test_model_validate_alone_checks_the_structure() -> None:
    site = SiteConfig.model_validate(
        {
            "site": {"id": "x"},
            "substations": [
                {
                    "id": "s",
                    "name": "S",
                    "buildings": ["b1"],
                    "outdoor_tag": "s.o",
                    "supply_tag": "s.s",
                    "return_tag": "s.r",
                }
            ],
        }
    )
    assert site.substation_of("b1") is site.substations[0]
