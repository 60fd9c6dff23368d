"""The alarm rules proposed for the demo site bind against its real tag definitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from alarms.config import AlarmRule, check_references
from alarms.engine import AlarmEngine
from alarms.journal import AlarmJournal
from alarms.points import count_tag_defs
from tags.database import TagDatabase

from .conftest import Clock

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo-site.yaml"

#: what config/demo-site.yaml can carry under ``alarms:``
DEMO_RULES = [
    {
        "id": "blocked_radiator",
        "kind": "deviation",
        "template": "valve",
        "point": "room_c",
        "setpoint": "{device}.setpoint_c",
        "max_deviation": 3,
        "direction": "below",
        "for_min": 30,
        "condition": "{device}.open",
        "priority": 3,
        "message": "{household}: room {value:.1f} °C, setpoint {setpoint:.1f} °C although the valve is open",
    },
    {
        "id": "valve_fault",
        "kind": "state",
        "template": "valve",
        "point": "fault",
        "equals": True,
        "priority": 2,
        "message": "{device}: valve fault",
    },
    {
        "id": "meter_lost",
        "kind": "comm_loss",
        "template": "electricity-meter",
        "on_delay_s": 60,
        "priority": 3,
    },
    {
        "id": "heat_meter_lost",
        "kind": "comm_loss",
        "template": "heat-meter",
        "on_delay_s": 60,
        "priority": 2,
    },
    {
        "id": "supply_temp",
        "kind": "limit",
        "template": "heat-meter",
        "point": "supply_c",
        "limits": {"hh": 95, "h": 90, "l": 45},
        "deadband": 2,
        "on_delay_s": 30,
        "priorities": {"hh": 1},
    },
    {
        "id": "energy_stale",
        "kind": "stale",
        "template": "heat-meter",
        "point": "energy_kwh",
        "max_age_s": 900,
    },
    {
        "id": "line_loss",
        "kind": "expr",
        "expr": "b1.loss_kw > 0.2 * b1.main.power_kw and b1.main.power_kw > 5",
        "area": "b1",
        "priority": 4,
        "on_delay_s": 900,
        "message": "b1: line losses above 20 % for 15 min",
    },
]


@pytest.fixture(scope="module")
def site():
    if not DEMO.exists():
        pytest.skip("no demo site configuration")
    from scada.config import load_site

    return load_site(DEMO)


def test_demo_rules_have_no_reference_problems(site) -> None:
    rules = TypeAdapter(list[AlarmRule]).validate_python(DEMO_RULES)
    names = {d.name for d in site.tag_defs()}
    by_template: dict[str, list[str]] = {}
    for d in site.devices:
        by_template.setdefault(d.template, []).append(d.id)
    assert check_references(rules, names, set(site.templates), by_template) == []


def test_demo_blocked_radiator_and_lost_meter(site, tmp_path) -> None:
    clock = Clock()
    rules = TypeAdapter(list[AlarmRule]).validate_python(DEMO_RULES)
    by_template: dict[str, list[str]] = {}
    for d in site.devices:
        by_template.setdefault(d.template, []).append(d.id)
    db = TagDatabase([*site.tag_defs(), *count_tag_defs(b.id for b in site.buildings)], clock=clock)
    journal = AlarmJournal.open(tmp_path / "alarms.sqlite")
    engine = AlarmEngine(
        db, rules, journal, devices_by_template=by_template, clock=clock, tick_s=None
    )
    engine.start()
    for dev in by_template["valve"]:
        db.update(f"{dev}.online", True)
        db.update(f"{dev}.setpoint_c", 21.0)
        db.update(f"{dev}.open", False)
        db.update(f"{dev}.room_c", 21.0)
    for dev in by_template["electricity-meter"]:
        db.update(f"{dev}.online", True)
    db.flush()
    # b1.201's radiator is blocked: the valve is open but the room cools down
    db.update("b1.201.valve.open", True)
    db.update("b1.201.valve.room_c", 16.4)
    db.update("b1.102.em.online", False)  # and a tenant meter stops answering
    db.flush()
    clock.advance(31 * 60)
    engine.tick()
    db.flush()
    msgs = {a.rule_id: a.message for a in engine.active()}
    assert msgs == {
        "blocked_radiator": "b1.201: room 16.4 °C, setpoint 21.0 °C although the valve is open",
        "meter_lost": "b1.102.em: communication lost",
    }
    assert db.read("alarms.b1.unacked").value == 2
    engine.ack(engine.get("meter_lost:b1.102.em").occurrence, "duty", "electrician informed")
    assert [a.state.value for a in engine.active()] == ["unacknowledged", "acknowledged"]
    journal.close()
