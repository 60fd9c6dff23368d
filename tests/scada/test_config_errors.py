"""Every listed configuration mistake gives its located error ``file:line:col: path: message``.

Expected positions come from ``at(text, token)``: the line and column where ``token`` is
written, so each test states *what* the error must point at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.config import ConfigError, load_site, load_site_text

CONFIGS = Path(__file__).parent / "configs"

BASE = """\
site: {id: t, name: Test}
channels:
  - {id: bus, protocol: modbus-tcp, host: 127.0.0.1, port: 5020}
templates:
  valve:
    points:
      open: {address: 0, kind: coil, type: bool, writable: true}
      room_c: {address: 0, kind: input, type: int16, scale: 0.1}
      setpoint_c: {address: 1, kind: holding, type: int16, scale: 0.1, writable: true, min: 5, max: 30}
devices:
  - {id: v1, template: valve, channel: bus, unit: 1}
  - {id: v2, template: valve, channel: bus, unit: 2}
tags:
  - {name: note, type: str}
buildings:
  - id: b1
    households:
      - {id: h1, area_m2: 50, valve_tag: v1.open}
"""


def at(text: str, token: str, nth: int = 1) -> str:
    """Return ``line:col`` (1-based) of the ``nth`` occurrence of ``token`` in ``text``."""
    index = -1
    for _ in range(nth):
        index = text.index(token, index + 1)
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{line}:{col}"


def errors(text: str, name: str = "site.yaml") -> list[str]:
    """Return the issue lines of an invalid configuration text."""
    with pytest.raises(ConfigError) as info:
        load_site_text(text, name=name)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return [str(i) for i in info.value.issues]


def edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def test_base_is_valid() -> None:
    cfg = load_site_text(BASE)
    assert [d.id for d in cfg.devices] == ["v1", "v2"]


def test_at_helper() -> None:
    assert at(BASE, "site") == "1:1"
    assert at(BASE, "v2") == "12:10"


# ---------------------------------------------------------------- unknown keys, wrong types


def test_unknown_key_in_a_device_with_hint() -> None:
    text = edit("unit: 2}", "unit: 2, chanel: x}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'chanel')}: devices[1].chanel: unknown key 'chanel' (did you mean 'channel'?)"
    ]
    assert at(text, "chanel").startswith("12:")


def test_unknown_key_in_a_template_point() -> None:
    text = edit("type: bool, writable: true}", "type: bool, writeable: true}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'writeable')}: templates.valve.points.open.writeable: "
        "unknown key 'writeable' (did you mean 'writable'?)"
    ]


def test_unknown_top_level_section() -> None:
    text = BASE + "devises: []\n"
    assert errors(text) == [
        "site.yaml:19:1: devises: unknown key 'devises' (did you mean 'devices'?)"
    ]


def test_wrong_type() -> None:
    text = edit("port: 5020}", "port: fast}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'fast')}: channels[0].port: input should be a valid integer, "
        "unable to parse string as an integer (got 'fast')"
    ]


def test_wrong_literal_with_hint() -> None:
    text = edit("kind: input, type: int16", "kind: inptu, type: int16")
    assert errors(text) == [
        f"site.yaml:{at(text, 'inptu')}: templates.valve.points.room_c.kind: "
        "'inptu' is not one of coil, discrete, input, holding (did you mean 'input'?)"
    ]


def test_unknown_protocol() -> None:
    text = edit("protocol: modbus-tcp", "protocol: modbus-tpc")
    assert errors(text) == [
        f"site.yaml:{at(text, 'modbus-tpc')}: channels[0].protocol: unknown protocol 'modbus-tpc'; expected one of "
        "modbus-tcp, modbus-rtu, modbus-rtu-over-tcp, can, dlt645, dlt645-tcp, mbus, mbus-tcp, cjt188, cjt188-tcp (did you mean 'modbus-tcp'?)"
    ]


def test_missing_required_key_locates_the_mapping() -> None:
    text = edit("host: 127.0.0.1, port: 5020}", "port: 5020}")
    assert errors(text) == [
        f"site.yaml:{at(text, '{id: bus')}: channels[0].host: missing required key 'host'"
    ]


def test_section_of_wrong_shape() -> None:
    text = BASE.replace("tags:\n  - {name: note, type: str}\n", "tags: {name: note}\n")
    assert errors(text) == [
        f"site.yaml:{at(text, '{name: note}')}: tags: expected a list (got dict)"
    ]


def test_duplicate_key_in_one_mapping() -> None:
    text = edit("unit: 2}", "unit: 2, unit: 3}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'unit: 3')}: devices[1].unit: duplicate key 'unit' (first at line 12)"
    ]


# ---------------------------------------------------------------- references


def test_unknown_template_with_hint() -> None:
    text = edit("{id: v2, template: valve", "{id: v2, template: valv")
    assert errors(text) == [
        f"site.yaml:{at(text, 'valv,')}: devices[1].template: unknown template 'valv' (did you mean 'valve'?)"
    ]
    assert at(text, "valv,") == "12:24"


def test_unknown_channel() -> None:
    text = edit("channel: bus, unit: 2", "channel: bsu, unit: 2")
    assert errors(text) == [
        f"site.yaml:{at(text, 'bsu')}: devices[1].channel: unknown channel 'bsu' (did you mean 'bus'?)"
    ]


def test_unknown_device_in_a_tag_reference() -> None:
    text = edit("valve_tag: v1.open}", "valve_tag: v1x.open}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v1x.open')}: buildings[0].households[0].valve_tag: "
        "unknown tag 'v1x.open': no device 'v1x' (did you mean 'v1'?)"
    ]


def test_unknown_point_in_valve_tag() -> None:
    text = edit("valve_tag: v1.open}", "valve_tag: v1.opn}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v1.opn')}: buildings[0].households[0].valve_tag: unknown tag 'v1.opn': "
        "device 'v1' has no point 'opn' (did you mean 'open'?)"
    ]


def test_valve_tag_must_be_bool() -> None:
    text = edit("valve_tag: v1.open}", "valve_tag: v1.room_c}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v1.room_c')}: buildings[0].households[0].valve_tag: "
        "tag 'v1.room_c' is float; expected a bool tag"
    ]


def test_unknown_energy_tag_and_household_tags() -> None:
    text = edit(
        "  - id: b1\n", '  - id: b1\n    heat: {energy_tag: v1.energy_kwh, price_per_kwh: "0.3"}\n'
    )
    text = text.replace("valve_tag: v1.open}", "valve_tag: v1.open, tags: [v2.open, nothing]}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v1.energy_kwh')}: buildings[0].heat.energy_tag: "
        "unknown tag 'v1.energy_kwh': device 'v1' has no point 'energy_kwh'",
        f"site.yaml:{at(text, 'nothing')}: buildings[0].households[0].tags[1]: unknown tag 'nothing'",
    ]


def test_unknown_household_and_building_of_a_device() -> None:
    text = edit("unit: 2}", "unit: 2, building: b1x, household: h1x}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'b1x')}: devices[1].building: unknown building 'b1x' (did you mean 'b1'?)",
        f"site.yaml:{at(text, 'h1x')}: devices[1].household: unknown household 'h1x' (did you mean 'h1'?)",
    ]


# ---------------------------------------------------------------- duplicates


def test_duplicate_device_id() -> None:
    text = edit("{id: v2, template", "{id: v1, template")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v1', 2)}: devices[1].id: duplicate device id 'v1' (first at site.yaml:11)"
    ]


def test_duplicate_channel_unit_pair() -> None:
    text = edit("unit: 2}", "unit: 1}")
    assert errors(text) == [
        "site.yaml:12:51: devices[1].unit: unit 1 on channel 'bus' is already used by device 'v1' (site.yaml:11)"
    ]
    assert at(text, "unit: 1}", 2) == "12:45"


def test_modbus_unit_range() -> None:
    text = edit("unit: 2}", "unit: 248}")
    assert errors(text) == [
        f"site.yaml:{at(text, '248')}: devices[1].unit: Modbus unit id must be 1..247, not 248"
    ]


def test_memory_tag_colliding_with_a_device_point() -> None:
    text = edit("{name: note, type: str}", "{name: v2.room_c, type: float}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v2.room_c')}: tags[0].name: duplicate tag name 'v2.room_c': "
        "already point 'room_c' of device 'v2' (site.yaml:12)"
    ]


def test_memory_tag_colliding_with_a_status_tag() -> None:
    text = edit("{name: note, type: str}", "{name: v2.online, type: bool}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'v2.online')}: tags[0].name: duplicate tag name 'v2.online': "
        "already a status tag of device 'v2' (site.yaml:12)"
    ]


def test_duplicate_tags_channels_buildings_and_households() -> None:
    text = BASE + "  - id: b1\n    households: [{id: h1, area_m2: 20}]\n"
    text = text.replace(
        "  - {name: note, type: str}\n", "  - {name: note, type: str}\n  - {name: note}\n"
    )
    text = text.replace(
        "port: 5020}\n", "port: 5020}\n  - {id: bus, protocol: modbus-tcp, host: h2}\n"
    )
    assert at(text, "{id: bus", 2) == "4:5"
    assert errors(text) == [
        "site.yaml:4:10: channels[1].id: duplicate channel id 'bus' (first at site.yaml:3)",
        f"site.yaml:{at(text, 'note', 2)}: tags[1].name: duplicate tag name 'note': already a tag (site.yaml:15)",
        f"site.yaml:{at(text, 'b1', 2)}: buildings[1].id: duplicate building id 'b1' (first at site.yaml:18)",
        f"site.yaml:{at(text, 'h1', 2)}: buildings[1].households[0].id: duplicate household id 'h1' (first at site.yaml:20)",
    ]


def test_point_name_reserved_for_status_tags() -> None:
    text = edit("      room_c: {", "      online: {")
    assert errors(text) == [
        f"site.yaml:{at(text, 'online')}: templates.valve.points.online: "
        "point name 'online' is reserved for the device status tag <device>.online"
    ]


# ---------------------------------------------------------------- points and registers


def test_overlapping_registers_in_a_template() -> None:
    text = edit(
        "      setpoint_c:",
        "      total: {address: 2, kind: holding, type: float32}\n"
        "      flow: {address: 3, kind: holding, type: uint16}\n"
        "      setpoint_c:",
    )
    assert errors(text) == [
        f"site.yaml:{at(text, 'flow')}: templates.valve.points.flow: "
        "holding register 3 overlaps point 'total' (holding 2..3)"
    ]


def test_bits_of_one_register_do_not_overlap_but_the_same_bit_does() -> None:
    ok = edit(
        "      setpoint_c:",
        "      fault: {address: 5, kind: input, type: bit, bit: 0}\n"
        "      alarm: {address: 5, kind: input, type: bit, bit: 1}\n"
        "      setpoint_c:",
    )
    load_site_text(ok)
    same_bit = ok.replace("type: bit, bit: 1}", "type: bit, bit: 0}")
    assert errors(same_bit) == [
        f"site.yaml:{at(ok, 'alarm')}: templates.valve.points.alarm: bit 0 of input 5 is also point 'fault'"
    ]
    word = ok.replace(
        "alarm: {address: 5, kind: input, type: bit, bit: 1}",
        "alarm: {address: 4, kind: input, type: int32}",
    )
    assert errors(word) == [
        f"site.yaml:{at(ok, 'alarm')}: templates.valve.points.alarm: input registers 4..5 overlap point 'fault' (input 5)"
    ]


def test_device_override_that_overlaps() -> None:
    text = edit("unit: 2}", "unit: 2, points: {room_c: {kind: holding, address: 1}}}")
    assert errors(text) == [
        f"site.yaml:{at(text, 'room_c: {kind')}: devices[1].points.room_c: "
        "holding register 1 overlaps point 'room_c' (holding 1)"
    ]


def test_bad_device_override() -> None:
    text = edit("unit: 2}", "unit: 2, points: {open: {type: int16}, extra: {address: 9}}}")
    assert errors(text) == [
        f"site.yaml:{at(text, '{type: int16}')}: devices[1].points.open: a coil point must have type bool, not int16",
        f"site.yaml:{at(text, '{address: 9}')}: devices[1].points.extra.type: missing required key 'type'",
    ]


def test_point_rules() -> None:
    text = edit(
        "open: {address: 0, kind: coil, type: bool, writable: true}",
        "open: {address: 0, kind: coil, type: int16}",
    )
    text = text.replace(
        "room_c: {address: 0, kind: input, type: int16, scale: 0.1}",
        "room_c: {address: 0, kind: input, type: str, writable: true}",
    )
    assert errors(text) == [
        f"site.yaml:{at(text, '{address: 0, kind: coil')}: templates.valve.points.open: a coil point must have type bool, not int16",
        f"site.yaml:{at(text, '{address: 0, kind: input')}: templates.valve.points.room_c: type str needs `count` (registers); "
        "only coil and holding points (or CAN points with a `write` frame) can be writable",
    ]


def test_can_point_on_a_modbus_device() -> None:
    text = edit(
        "room_c: {address: 0, kind: input, type: int16, scale: 0.1}",
        "room_c: {can_id: 0x181, type: int16}",
    )
    assert errors(text) == [
        f"site.yaml:{at(text, 'room_c')}: templates.valve.points.room_c: point 'room_c' has no address/kind, "
        "but device 'v1' is on Modbus channel 'bus'"
    ]


def test_modbus_point_on_a_can_device() -> None:
    text = BASE.replace(
        "port: 5020}\n",
        "port: 5020}\n  - {id: can0, protocol: can, interface: virtual, channel: c0}\n",
    ).replace("channel: bus, unit: 2}", "channel: can0, unit: 2}")
    assert errors(text) == [
        f"site.yaml:{at(text, name)}: templates.valve.points.{name}: point {name!r} has no can_id, "
        "but device 'v2' is on CAN channel 'can0'"
        for name in ("open", "room_c", "setpoint_c")
    ]


# ---------------------------------------------------------------- expressions


def test_bad_expression_points_at_the_column() -> None:
    text = edit("{name: note, type: str}", '{name: total, expr: "v1.room_c + * 2"}')
    [line] = errors(text)
    assert line.startswith(f"site.yaml:{at(text, '* 2')}: tags[0].expr: bad expression: ")


def test_unsafe_expression_is_rejected() -> None:
    text = edit("{name: note, type: str}", "{name: total, expr: \"__import__('os')\"}")
    [line] = errors(text)
    assert line.startswith(
        f"site.yaml:{at(text, '__import__')}: tags[0].expr: bad expression: function '__import__' is not allowed"
    )


def test_unknown_tag_and_empty_glob_in_expression() -> None:
    text = edit(
        "{name: note, type: str}", "{name: total, expr: \"v1.room_x + sum(tags('v*.power_kw'))\"}"
    )
    assert errors(text) == [
        f"site.yaml:{at(text, 'v1.room_x')}: tags[0].expr: in expression: unknown tag 'v1.room_x': "
        "device 'v1' has no point 'room_x' (did you mean 'room_c'?)",
        f"site.yaml:{at(text, 'v*.power_kw')}: tags[0].expr: tags('v*.power_kw') matches no tag",
    ]


def test_computed_tags_in_a_cycle() -> None:
    text = edit("{name: note, type: str}", '{name: a, expr: "b + 1"}\n  - {name: b, expr: "a * 2"}')
    where = at(text, '"b + 1"')
    assert errors(text) == [
        f"site.yaml:{where}: tags[0].expr: computed tags depend on each other: a -> b -> a"
    ]


# ---------------------------------------------------------------- files


def test_yaml_syntax_error() -> None:
    path = CONFIGS / "syntax.yaml"
    with pytest.raises(ConfigError) as info:
        load_site(path)
    [issue] = info.value.issues
    assert (issue.file, issue.line, issue.col, issue.path) == (str(path), 4, 8, "(yaml)")
    assert (
        str(issue)
        == f"{path}:4:8: (yaml): YAML syntax error: while parsing a flow mapping expected ',' or '}}', but got ':'"
    )


def test_include_cycle() -> None:
    a, b = CONFIGS / "cycle" / "a.yaml", CONFIGS / "cycle" / "b.yaml"
    with pytest.raises(ConfigError) as info:
        load_site(a)
    [issue] = info.value.issues
    assert (issue.file, issue.line, issue.col, issue.path) == (str(b), 3, 5, "include[0]")
    assert issue.message == f"include cycle: {a} -> {b} -> {a}"


def test_missing_include_file() -> None:
    main = CONFIGS / "missing" / "main.yaml"
    with pytest.raises(ConfigError) as info:
        load_site(main)
    assert [str(i) for i in info.value.issues] == [
        f"{main}:4:5: include[1]: included file not found: {CONFIGS / 'missing' / 'parts' / 'not-here.yaml'}"
    ]


def test_include_glob_matching_nothing(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text("site: {id: x}\ninclude: [buildings/*.yaml]\n")
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path / "main.yaml")
    assert [str(i) for i in info.value.issues] == [
        f"{tmp_path / 'main.yaml'}:2:11: include[0]: no file matches 'buildings/*.yaml' "
        f"(looked for {tmp_path / 'buildings' / '*.yaml'})"
    ]


def test_duplicate_template_across_includes() -> None:
    main, more = CONFIGS / "dup-template" / "main.yaml", CONFIGS / "dup-template" / "more.yaml"
    with pytest.raises(ConfigError) as info:
        load_site(main)
    assert [str(i) for i in info.value.issues] == [
        f"{more}:5:3: templates.meter: duplicate template 'meter' (first defined at {main}:4)"
    ]


def test_section_defined_twice_across_includes(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text("site: {id: x}\ninclude: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("# other site\nsite: {id: y}\n")
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path / "main.yaml")
    assert [str(i) for i in info.value.issues] == [
        f"{tmp_path / 'b.yaml'}:2:1: site: section 'site' is already defined at {tmp_path / 'main.yaml'}:1"
    ]


def test_errors_in_included_files_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(
        "site: {id: x}\ninclude: [b.yaml]\ndevices:\n  - {id: a, template: nope, channel: bus, unit: 1}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "channels:\n  - {id: bus, protocol: modbus-tcp, host: h}\ndevices:\n  - {id: d, template: nope, channel: bus, unit: 2, x: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path / "main.yaml")
    assert [str(i) for i in info.value.issues] == [
        f"{tmp_path / 'b.yaml'}:4:52: devices[1].x: unknown key 'x'",
        f"{tmp_path / 'main.yaml'}:4:23: devices[0].template: unknown template 'nope'",
    ]


def test_every_error_is_reported_at_once() -> None:
    text = (
        edit("unit: 2}", "unit: 2, colour: red}")
        .replace("port: 5020}", "port: fast}")
        .replace("valve_tag: v1.open}", "valve_tag: v1.shut}")
        .replace("{name: note, type: str}", '{name: note, type: str, expr: "1 +"}')
    )
    found = errors(text)
    assert [line.split(":")[1] for line in found] == ["3", "12", "14", "18"]


# ---------------------------------------------------------------- generator


GENERATED = """\
  - id: b2
    generate:
      floors: 2
      units_per_floor: 2
      area_m2: 50
      valve_tag: "{household}.valve.opn"
      devices:
        - {id: "{household}.valve", template: valve}
      channels: {use: [bus], first_unit: 10}
"""


def test_generated_items_locate_at_the_generate_block() -> None:
    text = BASE + GENERATED
    where = at(text, '"{household}.valve.opn"')
    assert errors(text) == [
        f"site.yaml:{where}: buildings[1].generate.valve_tag: "
        "unknown tag 'b2.101.valve.opn': device 'b2.101.valve' has no point 'opn' (did you mean 'open'?)"
    ]


def test_generated_device_with_unknown_template() -> None:
    text = BASE + GENERATED.replace("valve.opn", "valve.open").replace(
        "template: valve}", "template: valvo}"
    )
    assert errors(text) == [
        f"site.yaml:{at(text, 'valvo')}: buildings[1].generate.devices[0].template: "
        "unknown template 'valvo' (did you mean 'valve'?)"
    ]


def test_generated_device_clashing_with_an_explicit_one() -> None:
    text = BASE.replace("{id: v2,", "{id: b2.102.valve,") + GENERATED.replace(
        "valve.opn", "valve.open"
    ).replace("first_unit: 10", "first_unit: 1")
    where = at(text, '"{household}.valve"')
    assert errors(text) == [
        f"site.yaml:{where}: buildings[1].generate.devices[0].id: "
        "duplicate device id 'b2.102.valve' (first at site.yaml:12)"
    ]


def test_generator_pattern_error() -> None:
    text = (
        BASE
        + '  - id: b2\n    generate: {floors: 1, units_per_floor: 2, area_m2: 40, household_id: "{building}.{flor}"}\n'
    )
    where = at(text, '"{building}.{flor}"')
    assert errors(text) == [
        f"site.yaml:{where}: buildings[1].generate.household_id: "
        "bad pattern '{building}.{flor}': KeyError 'flor' (fields: building, floor, index, unit)"
    ]


def test_generator_runs_out_of_unit_ids() -> None:
    text = BASE + GENERATED.replace("floors: 2", "floors: 10").replace(
        "units_per_floor: 2", "units_per_floor: 30"
    ).replace("first_unit: 10", "first_unit: 1").replace("valve.opn", "valve.open")
    assert errors(text) == [
        f"site.yaml:{at(text, '{use: [bus]')}: buildings[1].generate.channels: 300 generated devices need 300 "
        "unit ids but the channels in `use` have 245 free (units_per_channel 247); add channels or use `create`"
    ]


def test_generator_area_list_of_wrong_length() -> None:
    text = BASE + GENERATED.replace("area_m2: 50", "area_m2: [50, 60, 70]")
    assert errors(text) == [
        f"site.yaml:{at(text, 'floors: 2')}: buildings[1].generate: area_m2 lists 3 areas for 2 units per floor"
    ]


def test_errors_inside_unions_and_small_sections() -> None:
    text = """\
site: {id: x, timezone: Mars/Base}
simulate: {enable: true}
channels:
  - {id: c, protocol: can, interface: virtual, channel: c0, bitrat: 5}
  - {id: q, host: h}
tags:
  - {name: a, type: int, initial: abc}
  - {name: c, expr: "1", unti: kW}
"""
    assert errors(text) == [
        f"site.yaml:{at(text, 'Mars/Base')}: site.timezone: unknown time zone 'Mars/Base' (use an IANA name like Asia/Shanghai)",
        f"site.yaml:{at(text, 'enable')}: simulate.enable: unknown key 'enable' (did you mean 'enabled'?)",
        f"site.yaml:{at(text, 'bitrat')}: channels[0].bitrat: unknown key 'bitrat' (did you mean 'bitrate'?)",
        f"site.yaml:{at(text, '{id: q')}: channels[1]: missing required key 'protocol'",
        f"site.yaml:{at(text, '{name: a')}: tags[0]: initial value does not fit type int: expected int, got string 'abc'",
        f"site.yaml:{at(text, 'unti')}: tags[1].unti: unknown key 'unti' (did you mean 'unit'?)",
    ]


def test_document_that_is_not_a_mapping() -> None:
    assert errors("- a\n- b\n") == [
        "site.yaml:1:1: (root): a site configuration must be a mapping of sections (site:, channels:, ...)"
    ]
    assert errors("") == ["site.yaml:1:1: site: missing required key 'site'"]


def test_household_of_another_building_and_unreadable_include(tmp_path: Path) -> None:
    text = BASE + "  - {id: b2, households: [{id: h2, area_m2: 10}]}\n"
    mismatch = text.replace("unit: 2}", "unit: 2, building: b1, household: h2}")
    assert errors(mismatch) == [
        f"site.yaml:{at(mismatch, 'h2}')}: devices[1].household: household 'h2' is in building 'b2', not 'b1'"
    ]
    # A file that cannot be read is reported; references into it are not reported again.
    (tmp_path / "main.yaml").write_text(
        "site: {id: x}\ninclude: [parts.yaml]\ndevices:\n  - {id: d, template: t, channel: c, unit: 1, household: h}\n"
    )
    (tmp_path / "parts.yaml").write_text("templates: {t: [\n")
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path / "main.yaml")
    assert [(i.file, i.path) for i in info.value.issues] == [
        (str(tmp_path / "parts.yaml"), "(yaml)")
    ]
