"""Rule and notification models: validation messages and cross-reference checks."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from alarms.config import (
    AlarmRule,
    NotificationsConfig,
    check_notifications,
    check_references,
    substitute_expr,
)

from .conftest import TEMPLATES, parse_rules, site_defs

ONE = TypeAdapter(AlarmRule)


@pytest.mark.parametrize(
    ("rule", "loc", "text"),
    [
        (
            {"id": "x", "kind": "limit", "tag": "t", "limits": {}},
            ("limit", "limits"),
            "at least one",
        ),
        (
            {"id": "x", "kind": "limit", "tag": "t", "limits": {"h": 5, "hh": 4}},
            ("limit", "limits"),
            "out of order",
        ),
        ({"id": "x", "kind": "limit", "limits": {"h": 5}}, ("limit",), "no target"),
        (
            {"id": "x", "kind": "limit", "tag": "t", "tags": "t*", "limits": {"h": 5}},
            ("limit",),
            "exactly one target",
        ),
        (
            {"id": "x", "kind": "limit", "template": "m", "limits": {"h": 5}},
            ("limit",),
            "needs 'point'",
        ),
        (
            {"id": "x", "kind": "limit", "device": "d", "limits": {"h": 5}},
            ("limit", "device"),
            "Extra inputs",
        ),
        ({"id": "x", "kind": "state", "tag": "t"}, ("state",), "exactly one of 'equals'"),
        (
            {"id": "x", "kind": "state", "tag": "t", "equals": 1, "priority": 5},
            ("state", "priority"),
            "less than or equal",
        ),
        ({"id": "x", "kind": "expr", "expr": "a +"}, ("expr", "expr"), "invalid expression"),
        (
            {"id": "x", "kind": "expr", "expr": "a", "message": "{nope}"},
            ("expr", "message"),
            "unknown field {nope}",
        ),
        (
            {"id": "x", "kind": "rate", "tag": "t", "rate_per_min": 0},
            ("rate", "rate_per_min"),
            "greater than 0",
        ),
        ({"id": "x", "kind": "bogus", "tag": "t"}, (), "does not match any of the expected tags"),
        ({"id": "has space", "kind": "stale", "tag": "t"}, ("stale", "id"), "pattern"),
    ],
)
def test_rule_validation_errors(rule, loc, text) -> None:
    with pytest.raises(ValidationError) as info:
        ONE.validate_python(rule)
    err = info.value.errors()[0]
    assert tuple(err["loc"]) == loc
    assert text in err["msg"]


def test_placeholders_in_expressions_become_tag_references() -> None:
    vals = {"device": "b1.101.th", "building": "b1", "household": None, "tag": None, "point": None}
    assert substitute_expr("{device}.room_c < 18 and {device}.valve_open", vals) == (
        "tag('b1.101.th.room_c') < 18 and tag('b1.101.th.valve_open')"
    )
    assert (
        substitute_expr("sum(tags('{building}.*.power_kw')) > 5", vals)
        == "sum(tags('b1.*.power_kw')) > 5"
    )
    with pytest.raises(KeyError, match="household"):
        substitute_expr("{household}.x", vals)


def test_check_references_locates_every_problem() -> None:
    names = {d.name for d in site_defs()}
    rules = parse_rules(
        [
            {"id": "a", "kind": "limit", "tag": "b1.hm.supply_cc", "limits": {"h": 1}},
            {"id": "a", "kind": "stale", "tags": "zz.*"},
            {"id": "c", "kind": "limit", "template": "meterr", "point": "x", "limits": {"h": 1}},
            {"id": "d", "kind": "limit", "template": "meter", "point": "nope", "limits": {"h": 1}},
            {"id": "e", "kind": "comm_loss", "device": "b1.gx"},
            {
                "id": "f",
                "kind": "deviation",
                "template": "thermostat",
                "point": "room_c",
                "setpoint": "{device}.sp",
                "max_deviation": 2,
            },
            {"id": "g", "kind": "comm_loss", "template": "meter", "parent_device": "b1.gateway"},
            {"id": "h", "kind": "expr", "expr": "tag('b1.hm.fault') and tags_ok", "area": "b1"},
            {
                "id": "ok",
                "kind": "deviation",
                "template": "thermostat",
                "point": "room_c",
                "setpoint": "{device}.setpoint_c",
                "max_deviation": 2,
                "condition": "{device}.valve_open",
            },
        ]
    )
    issues = check_references(rules, names, set(TEMPLATES), TEMPLATES)
    got = {(p, m.split(" (")[0]) for p, m in issues}
    assert got == {
        (("alarms", 0, "tag"), "unknown tag 'b1.hm.supply_cc'"),
        (("alarms", 1, "id"), "duplicate rule id 'a'"),
        (("alarms", 1, "tags"), "pattern 'zz.*' matches no tag"),
        (("alarms", 2, "template"), "unknown template 'meterr'"),
        (("alarms", 3, "point"), "template 'meter' has no point 'nope'"),
        (("alarms", 4, "device"), "unknown device 'b1.gx'"),
        (("alarms", 5, "setpoint"), "unknown tag 'b1.101.th.sp'"),
        (("alarms", 6, "parent_device"), "unknown device 'b1.gateway'"),
        (("alarms", 7, "expr"), "unknown tag 'tags_ok'"),
    }
    assert "did you mean 'b1.hm.supply_c'" in issues[0][1]


def test_notifications_model_and_references() -> None:
    cfg = NotificationsConfig.model_validate(
        {
            "timezone": "Europe/Moscow",
            "notifiers": [
                {"name": "mail", "type": "email", "host": "localhost", "sender": "scada@x"},
                {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"},
            ],
            "recipients": [
                {"name": "ivan", "email": "ivan@x", "phone": "+79990001122"},
                {"name": "ops", "webhook": "hooks"},
                {"name": "nobody"},
            ],
            "roster": [
                {
                    "name": "day",
                    "areas": ["b1"],
                    "windows": [{"days": ["mon", "tue"], "start": "08:00", "end": "18:00"}],
                    "levels": [["ivan"], ["olga"]],
                }
            ],
        }
    )
    issues = {(p, m) for p, m in check_notifications(cfg)}
    assert issues == {
        (("notifications", "recipients", 0, "phone"), "no notifier of type sms is configured"),
        (("notifications", "recipients", 1, "webhook"), "unknown webhook notifier 'hooks'"),
        (("notifications", "recipients", 2), "recipient 'nobody' has no email, phone or webhook"),
        (("notifications", "roster", 0, "levels", 1, 0), "unknown recipient 'olga'"),
    }
    with pytest.raises(ValidationError, match="unknown time zone"):
        NotificationsConfig.model_validate({"timezone": "Mars/Base"})
    with pytest.raises(ValidationError, match="pattern"):
        NotificationsConfig.model_validate(
            {"roster": [{"name": "x", "levels": [["a"]], "windows": [{"start": "25:00"}]}]}
        )
