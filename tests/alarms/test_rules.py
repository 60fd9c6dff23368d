"""Rule kinds against a real TagDatabase with a controllable clock: limits, delays, rate, ..."""

from __future__ import annotations

import pytest

from alarms.model import AlarmState
from alarms.rules import BindingError
from tags.model import Quality, Reason

LIMITS = {
    "id": "supply",
    "kind": "limit",
    "tag": "b1.hm.supply_c",
    "limits": {"hh": 95, "h": 85, "l": 40, "ll": 30},
    "deadband": 2,
    "priorities": {"hh": 1},
    "message": "{tag} {level}: {value:.1f} {unit} (limit {limit})",
}


def test_limit_levels_with_deadband(make_site) -> None:
    site = make_site([LIMITS])
    site.set("b1.hm.supply_c", 70)
    assert site.engine.active() == []
    site.set("b1.hm.supply_c", 85.0)  # at the limit: raised
    h = site.engine.get("supply:b1.hm.supply_c:h")
    assert h.state is AlarmState.UNACKED and h.priority == 3 and h.area == "b1"
    assert h.message == "b1.hm.supply_c H: 85.0 °C (limit 85.0)"
    site.set("b1.hm.supply_c", 83.5)  # inside the deadband: still active
    assert site.engine.get("supply:b1.hm.supply_c:h").active
    site.set("b1.hm.supply_c", 96)
    hh = site.engine.get("supply:b1.hm.supply_c:hh")
    assert hh.state is AlarmState.UNACKED and hh.priority == 1
    site.set("b1.hm.supply_c", 82.9)  # below 85 - 2: both clear
    assert site.state("supply:b1.hm.supply_c:h") == "rtn_unacknowledged"
    assert site.state("supply:b1.hm.supply_c:hh") == "rtn_unacknowledged"
    site.set("b1.hm.supply_c", 29)
    assert {a.level for a in site.engine.active() if a.active} == {"l", "ll"}
    site.set("b1.hm.supply_c", 31.5)  # LL clears above 30 + 2 only
    assert site.engine.get("supply:b1.hm.supply_c:ll").active
    site.set("b1.hm.supply_c", 32.5)
    assert not site.engine.get("supply:b1.hm.supply_c:ll").active


def test_on_and_off_delay(make_site) -> None:
    site = make_site([{**LIMITS, "limits": {"h": 85}, "on_delay_s": 30, "off_delay_s": 60}])
    key = "supply:b1.hm.supply_c:h"
    site.set("b1.hm.supply_c", 90)
    assert site.state(key) == "normal"
    site.advance(29)
    assert site.state(key) == "normal"
    site.set("b1.hm.supply_c", 70)  # drops out before the delay: never raised
    site.advance(10)
    assert site.state(key) == "normal" and site.events == []
    site.set("b1.hm.supply_c", 90)
    site.advance(29.9)
    assert site.state(key) == "normal"
    site.advance(0.2)
    assert site.state(key) == "unacknowledged"
    site.set("b1.hm.supply_c", 70)
    site.advance(59)
    assert site.engine.get(key).active
    site.set("b1.hm.supply_c", 88)  # back within the off-delay: the same occurrence continues
    site.advance(100)
    assert site.kinds() == ["raised"]
    site.set("b1.hm.supply_c", 60)
    site.advance(60)
    assert site.state(key) == "rtn_unacknowledged"


def test_bad_quality_keeps_the_condition(make_site) -> None:
    site = make_site([{**LIMITS, "limits": {"h": 85}}])
    site.set("b1.hm.supply_c", 90)
    site.bad("b1.hm.supply_c")
    assert site.engine.get("supply:b1.hm.supply_c:h").active


def test_state_equals_and_not_equals(make_site) -> None:
    site = make_site(
        [
            {"id": "fault", "kind": "state", "tag": "b1.hm.fault", "equals": True, "priority": 1},
            {
                "id": "mode",
                "kind": "state",
                "tag": "b1.hm.mode",
                "not_equals": "auto",
                "message": "{tag} is {value}",
            },
        ]
    )
    site.set("b1.hm.fault", False)
    site.set("b1.hm.mode", "auto")
    assert site.engine.active() == []
    site.set("b1.hm.fault", True)
    site.set("b1.hm.mode", "manual")
    msgs = {a.key: a.message for a in site.engine.active()}
    assert msgs == {
        "fault:b1.hm.fault": "b1.hm.fault: on",
        "mode:b1.hm.mode": "b1.hm.mode is manual",
    }


def test_rate_of_change_over_window(make_site) -> None:
    site = make_site(
        [
            {
                "id": "rise",
                "kind": "rate",
                "tag": "b1.hm.supply_c",
                "rate_per_min": 5,
                "direction": "rising",
                "window_s": 60,
            }
        ]
    )
    key = "rise:b1.hm.supply_c"
    t = site.clock.t
    site.set("b1.hm.supply_c", 50, ts=t)
    site.clock.advance(30)
    site.set("b1.hm.supply_c", 52, ts=t + 30)  # 4 K/min
    assert site.state(key) == "normal"
    site.clock.advance(30)
    site.set("b1.hm.supply_c", 56, ts=t + 60)  # 6 K/min over the last minute
    assert site.state(key) == "unacknowledged"
    assert "6.00" in site.engine.get(key).message
    site.set("b1.hm.supply_c", 50, ts=t + 61)  # falling: not a rising alarm
    assert site.state(key) == "rtn_unacknowledged"
    # a single jump that then stays still decays without further changes
    site.engine.ack(key, "olga")
    site.set("b1.hm.supply_c", 60, ts=t + 62)
    assert site.engine.get(key).active
    site.advance(200)
    assert not site.engine.get(key).active


def test_deviation_blocked_radiator(make_site) -> None:
    rule = {
        "id": "cold_room",
        "kind": "deviation",
        "template": "thermostat",
        "point": "room_c",
        "setpoint": "{device}.setpoint_c",
        "max_deviation": 3,
        "direction": "below",
        "for_min": 30,
        "condition": "{device}.valve_open",
        "priority": 3,
        "message": "{household}: room {value:.1f} °C, setpoint {setpoint:.1f} although the valve is open",
    }
    site = make_site([rule])
    key = "cold_room:b1.101.th.room_c"
    for room in ("101", "102"):
        site.set(f"b1.{room}.th.setpoint_c", 21)
        site.set(f"b1.{room}.th.valve_open", False)
        site.set(f"b1.{room}.th.room_c", 20.5)
    site.set("b1.101.th.room_c", 16)  # cold, but the valve is closed: not a fault
    site.advance(3600)
    assert site.state(key) == "normal"
    site.set("b1.101.th.valve_open", True)
    site.advance(29 * 60)
    assert site.state(key) == "normal"
    site.advance(61)
    a = site.engine.get(key)
    assert a.state is AlarmState.UNACKED and a.area == "b1"
    assert a.message == "b1.101: room 16.0 °C, setpoint 21.0 although the valve is open"
    assert site.state("cold_room:b1.102.th.room_c") == "normal"
    site.set("b1.101.th.setpoint_c", 17)  # setpoint lowered: within 3 K
    assert not site.engine.get(key).active


def test_comm_loss_and_suppression_by_parent(make_site) -> None:
    site = make_site(
        [
            {"id": "gw_lost", "kind": "comm_loss", "device": "b1.gw", "priority": 2},
            {
                "id": "meter_lost",
                "kind": "comm_loss",
                "template": "meter",
                "parent_device": "b1.gw",
                "priority": 3,
            },
            {
                "id": "hm_quality",
                "kind": "comm_loss",
                "tag": "b1.hm.power_kw",
                "message": "{tag} bad",
            },
        ]
    )
    for dev in ("b1.gw", "b1.m1", "b1.m2"):
        site.set(f"{dev}.online", True)
    site.set("b1.hm.power_kw", 12.0)
    assert site.engine.active() == []
    # the gateway dies: every device behind it goes offline in the same poll
    site.db.update("b1.gw.online", False)
    site.db.update("b1.m1.online", False)
    site.db.update("b1.m2.online", False)
    site.db.flush()
    active = site.engine.active()
    assert [a.key for a in active] == ["gw_lost:b1.gw"]  # one fault, one alarm
    assert active[0].message == "b1.gw: communication lost" and active[0].source == "b1.gw"
    assert site.state("meter_lost:b1.m1") == "suppressed"
    assert "raised" not in [e.kind.value for e in site.events if e.alarm.rule_id == "meter_lost"]
    # the gateway returns but meter 2 stays dead: now it is raised
    site.db.update("b1.gw.online", True)
    site.db.update("b1.m1.online", True)
    site.db.flush()
    assert site.state("meter_lost:b1.m1") == "normal"
    assert site.state("meter_lost:b1.m2") == "unacknowledged"
    # a tag target alarms on bad quality
    site.bad("b1.hm.power_kw")
    assert site.engine.get("hm_quality:b1.hm.power_kw").message == "b1.hm.power_kw bad"


def test_comm_loss_ignores_never_connected(make_site) -> None:
    site = make_site([{"id": "lost", "kind": "comm_loss", "tags": "b1.hm.*_c"}])
    assert site.engine.active() == []  # not connected yet is not a loss
    site.set("b1.hm.supply_c", 80)
    site.bad("b1.hm.supply_c")
    assert [a.key for a in site.engine.active()] == ["lost:b1.hm.supply_c"]


def test_stale_value(make_site) -> None:
    site = make_site(
        [
            {
                "id": "stale",
                "kind": "stale",
                "template": "meter",
                "point": "energy_kwh",
                "max_age_s": 900,
            },
            {"id": "db_stale", "kind": "stale", "tag": "b1.m2.energy_kwh"},
        ]
    )
    site.set("b1.m1.energy_kwh", 100.0)
    site.set("b1.m2.energy_kwh", 5.0)
    for _ in range(10):  # refreshed with the same value: no change events, but not stale
        site.clock.advance(100)
        site.db.update("b1.m1.energy_kwh", 100.0)
        site.engine.tick()
    assert site.state("stale:b1.m1.energy_kwh") == "normal"
    site.advance(901)
    assert site.state("stale:b1.m1.energy_kwh") == "unacknowledged"
    assert "no update for 901 s" in site.engine.get("stale:b1.m1.energy_kwh").message
    site.set("b1.m1.energy_kwh", 101.0)
    assert site.state("stale:b1.m1.energy_kwh") == "rtn_unacknowledged"
    # without max_age_s: the database's own stale marking (3 x poll_s) counts
    site.db.check_stale()
    site.db.flush()
    assert site.state("db_stale:b1.m2.energy_kwh") == "unacknowledged"


def test_expression_rule(make_site) -> None:
    site = make_site(
        [
            {
                "id": "both_open",
                "kind": "expr",
                "expr": "tag('b1.101.th.valve_open') and tag('b1.102.th.valve_open')",
                "area": "b1",
                "priority": 4,
            },
            {
                "id": "warm_all",
                "kind": "expr",
                "expr": "min(tags('b1.*.th.room_c')) > 24",
                "area": "b1",
            },
        ]
    )
    site.set("b1.101.th.valve_open", True)
    site.set("b1.102.th.valve_open", False)
    site.set("b1.102.th.room_c", 20)
    site.set("b1.101.th.room_c", 25)
    assert site.engine.active() == []
    site.set("b1.102.th.valve_open", True)
    assert [a.key for a in site.engine.active()] == ["both_open"]
    site.set("b1.102.th.room_c", 24.5)
    assert {a.key for a in site.engine.active()} == {"both_open", "warm_all"}


def test_template_expression_per_device(make_site) -> None:
    site = make_site(
        [
            {
                "id": "hot_closed",
                "kind": "expr",
                "template": "thermostat",
                "expr": "{device}.room_c > 26 and not {device}.valve_open",
            }
        ]
    )
    site.set("b1.101.th.valve_open", False)
    site.set("b1.101.th.room_c", 27)
    assert [a.key for a in site.engine.active()] == ["hot_closed:b1.101.th"]


def test_unknown_tag_is_a_binding_error_naming_rule_and_tag(make_site) -> None:
    with pytest.raises(BindingError, match=r"'oops'.*'b1.hm.nope'"):
        make_site([{"id": "oops", "kind": "limit", "tag": "b1.hm.nope", "limits": {"h": 1}}])


def test_uncertain_values_still_evaluate(make_site) -> None:
    site = make_site([{**LIMITS, "limits": {"h": 85}}])
    site.set("b1.hm.supply_c", 90, quality=Quality.UNCERTAIN, reason=Reason.STALE)
    assert site.engine.get("supply:b1.hm.supply_c:h").active
