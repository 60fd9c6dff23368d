"""Alarm messages in words: default phrasing per rule kind, units and decimals, explicit templates.

Every message here comes from the real engine over a TagDatabase (``make_site``); the unit and
time helpers of ``alarms.text`` are checked directly.
"""

from __future__ import annotations

import pytest

from alarms.text import Quantity, local_time_text, unit_symbol, value_decimals
from tags.model import Source, TagDef, TagType

HM = "b9.hm"
EXTRA = [
    TagDef(
        f"{HM}.supply_c",
        TagType.FLOAT,
        unit="degC",
        description="Supply temperature",
        deadband=0.1,
        device=HM,
        building="b9",
        source=Source.DEVICE,
    ),
    TagDef(
        f"{HM}.flow_m3h",
        TagType.FLOAT,
        unit="m3/h",
        description="Flow",
        deadband=0.01,
        device=HM,
        building="b9",
        source=Source.DEVICE,
    ),
    TagDef(f"{HM}.starts", TagType.INT, description="Pump starts", device=HM, building="b9"),
    TagDef(f"{HM}.fault", TagType.BOOL, description="Pump fault", device=HM, building="b9"),
    TagDef(f"{HM}.mode", TagType.STR, description="Control mode", device=HM, building="b9"),
    TagDef("b9.101.room_c", TagType.FLOAT, unit="degC", description="Room temperature"),
    TagDef("b9.101.setpoint_c", TagType.FLOAT, unit="degC", description="Room setpoint"),
    TagDef(f"{HM}.energy_kwh", TagType.FLOAT, unit="kWh", description="Heat energy", poll_s=10),
]
SUPPLY = f"{HM}.supply_c"


def _limit(**over: object) -> dict[str, object]:
    return {"id": "supply", "kind": "limit", "tag": SUPPLY, "limits": {"l": 70.0}, **over}


def test_a_limit_alarm_reads_in_words_with_unit_and_the_tags_decimals(make_site) -> None:
    site = make_site([_limit(limits={"ll": 40, "l": 70.0, "h": 90, "hh": 95})], extra_defs=EXTRA)
    site.set(SUPPLY, 66.006294)
    a = site.engine.get(f"supply:{SUPPLY}:l")
    assert a.message == "Supply temperature low: 66.0 °C (limit 70.0 °C)"
    assert a.value == pytest.approx(66.006294)  # the number itself stays exact
    site.set(SUPPLY, 38.2)
    assert site.engine.get(f"supply:{SUPPLY}:ll").message == (
        "Supply temperature very low: 38.2 °C (limit 40.0 °C)"
    )
    site.set(SUPPLY, 96.04)
    assert site.engine.get(f"supply:{SUPPLY}:h").message == (
        "Supply temperature high: 96.0 °C (limit 90.0 °C)"
    )
    assert site.engine.get(f"supply:{SUPPLY}:hh").message == (
        "Supply temperature very high: 96.0 °C (limit 95.0 °C)"
    )


def test_the_rules_description_comes_first_then_the_tags_then_the_tag_name(make_site) -> None:
    site = make_site(
        [
            _limit(description="Heating supply b9 too cold"),
            {"id": "hot", "kind": "limit", "tag": "b1.hm.power_kw", "limits": {"h": 100}},
        ],
        extra_defs=EXTRA,
    )
    site.set(SUPPLY, 60.0)
    site.set("b1.hm.power_kw", 120.0)
    msgs = {a.rule_id: a.message for a in site.engine.active()}
    assert msgs == {
        "supply": "Heating supply b9 too cold low: 60.0 °C (limit 70.0 °C)",
        "hot": "b1.hm.power_kw high: 120.0 kW (limit 100.0 kW)",  # no description anywhere
    }


def test_decimals_follow_the_deadband_and_integers_have_none(make_site) -> None:
    site = make_site(
        [
            {"id": "flow", "kind": "limit", "tag": f"{HM}.flow_m3h", "limits": {"h": 2.5}},
            {"id": "starts", "kind": "limit", "tag": f"{HM}.starts", "limits": {"h": 10}},
        ],
        extra_defs=EXTRA,
    )
    site.set(f"{HM}.flow_m3h", 2.73456)
    site.set(f"{HM}.starts", 12)
    msgs = {a.rule_id: a.message for a in site.engine.active()}
    assert msgs == {
        "flow": "Flow high: 2.73 m³/h (limit 2.50 m³/h)",
        "starts": "Pump starts high: 12 (limit 10)",  # no unit: no trailing space either
    }


def test_state_alarms_say_the_state_in_words(make_site) -> None:
    site = make_site(
        [
            {"id": "fault", "kind": "state", "tag": f"{HM}.fault", "equals": True},
            {"id": "mode", "kind": "state", "tag": f"{HM}.mode", "not_equals": "auto"},
        ],
        extra_defs=EXTRA,
    )
    site.set(f"{HM}.fault", True)
    site.set(f"{HM}.mode", "manual")
    msgs = {a.rule_id: a.message for a in site.engine.active()}
    assert msgs == {"fault": "Pump fault: on", "mode": "Control mode: manual"}


def test_deviation_rate_stale_and_expr_alarms_read_in_words(make_site) -> None:
    rules = [
        {
            "id": "cold",
            "kind": "deviation",
            "tag": "b9.101.room_c",
            "setpoint": "b9.101.setpoint_c",
            "max_deviation": 3,
        },
        {"id": "rise", "kind": "rate", "tag": SUPPLY, "rate_per_min": 5, "window_s": 60},
        {"id": "stale", "kind": "stale", "tag": f"{HM}.energy_kwh", "max_age_s": 600},
        {"id": "both", "kind": "expr", "expr": "b9.hm.fault and b9.hm.starts > 3"},
        {
            "id": "said",
            "kind": "expr",
            "expr": "b9.hm.starts > 3",
            "description": "Pump restarting too often",
        },
    ]
    site = make_site(rules, extra_defs=EXTRA)
    t = site.clock.t
    site.set(f"{HM}.energy_kwh", 100.0)
    site.set("b9.101.setpoint_c", 21.0)
    site.set("b9.101.room_c", 16.44)
    site.set(SUPPLY, 50.0, ts=t)
    site.clock.advance(60)
    site.set(SUPPLY, 56.0, ts=t + 60)
    site.set(f"{HM}.fault", True)
    site.set(f"{HM}.starts", 5)
    site.advance(601)
    msgs = {a.rule_id: a.message for a in site.engine.active()}
    assert msgs == {
        "cold": "Room temperature away from setpoint: 16.4 °C, setpoint 21.0 °C "
        "(deviation -4.6 °C)",
        "rise": "Supply temperature changing fast: +6.00 °C/min",
        "stale": "Heat energy: no update for 661 s",
        "both": "both: condition true",
        "said": "Pump restarting too often",
    }


def test_explicit_templates_keep_working_with_the_same_number_formatting(make_site) -> None:
    site = make_site(
        [
            _limit(message="{tag} {level}: {value} {unit} (limit {limit})"),
            {
                "id": "spec",
                "kind": "limit",
                "tag": f"{HM}.flow_m3h",
                "limits": {"h": 2.5},
                "message": "flow {value:.3f} {unit}, {value:u} in {building} ({level_text})",
            },
        ],
        extra_defs=EXTRA,
    )
    site.set(SUPPLY, 66.006294)
    site.set(f"{HM}.flow_m3h", 2.73456)
    msgs = {a.rule_id: a.message for a in site.engine.active()}
    assert msgs == {
        "supply": f"{SUPPLY} L: 66.0 °C (limit 70.0)",  # {value} without spec: the tag's decimals
        "spec": "flow 2.735 m³/h, 2.73 m³/h in b9 (high)",  # a spec given is kept
    }


@pytest.mark.parametrize(
    ("unit", "symbol"),
    [
        ("degC", "°C"),
        ("m3/h", "m³/h"),
        ("m3", "m³"),
        ("kWh/m2", "kWh/m²"),
        ("degC/min", "°C/min"),
        ("kW", "kW"),
        ("mm", "mm"),
        ("", ""),
    ],
)
def test_unit_symbols(unit: str, symbol: str) -> None:
    assert unit_symbol(unit) == symbol


def test_quantities_and_decimals() -> None:
    assert value_decimals(TagDef("x", deadband=0.5)) == 1
    assert value_decimals(TagDef("x", deadband=1)) == 0
    assert value_decimals(TagDef("x", deadband=0.001)) == 3
    assert value_decimals(TagDef("x", TagType.STR)) is None
    q = Quantity(-0.04, 1, "degC")
    assert (f"{q}", f"{q:u}", f"{q:+u}", f"{Quantity(None, 1, 'degC'):u}") == (
        "0.0",
        "0.0 °C",
        "+0.0 °C",
        "?",
    )


def test_times_name_their_zone() -> None:
    ts = 1_796_627_381.0  # 2026-12-07 07:09:41 UTC
    assert local_time_text(ts, "Asia/Shanghai") == "2026-12-07 15:09:41 CST"
    assert local_time_text(ts, "Europe/Berlin", date=False) == "08:09:41 CET"
    assert local_time_text(ts, "Asia/Almaty", date=False) == "12:09:41 UTC+05"
    # the time alone unless it falls on another day than now
    assert local_time_text(ts, "UTC", date=False, now=ts + 86400) == "2026-12-07 07:09:41 UTC"
    assert local_time_text(None, "UTC") == "—"
