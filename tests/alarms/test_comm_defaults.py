"""Comm-loss defaults: every enabled device alarms when it stops answering, unless a rule covers it."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms.config import AlarmDefaults
from alarms.model import AlarmState
from scada.config import ConfigError
from scada.runtime import alarm_rules, devices_by_template

from .comm_site import CommSite, load


def test_a_valve_going_offline_raises_a_comm_loss_alarm_by_default(comm_sites) -> None:
    s = comm_sites()
    s.online(["b1.101.valve"], False)
    s.advance(59)
    assert s.active() == []  # the default on-delay is 60 s
    s.advance(2)
    (alarm,) = s.active()
    assert alarm.key == "comm_loss:b1.101.valve"
    assert (alarm.priority, alarm.area, alarm.state) == (3, "b1", AlarmState.UNACKED)
    assert alarm.message == "Valve b1.101.valve (flat b1.101): communication lost"
    assert s.db.read("alarms.b1.active").value == 1
    s.online(["b1.101.valve"], True)
    assert s.state("comm_loss:b1.101.valve") is AlarmState.RTN_UNACKED


def test_messages_name_the_household_or_the_building_in_words(comm_sites) -> None:
    s = comm_sites()
    s.online(["b1.s1.em", "b1.main"], False)
    s.advance(61)
    assert {a.message for a in s.active()} == {
        "Electricity meter b1.s1.em (Bakery): communication lost",
        # no description on its template: the template id names the kind
        "master-meter b1.main (Building 1): communication lost",
    }


def test_switching_the_default_off_removes_the_device_alarms(comm_sites) -> None:
    s = comm_sites("alarm_defaults: {comm_loss: {enabled: false}}\n")
    assert not any(k.startswith("comm_loss:") for k in s.point_keys())
    assert "comm_loss.building:b2" in s.point_keys()  # flood groups stay unless switched off too
    s.online(["b1.101.valve"], False)
    s.advance(3600)
    assert s.active() == []
    off = comm_sites("alarm_defaults: {comm_loss: false}\n")
    assert off.point_keys() == []


def test_an_explicit_rule_wins_over_the_default(comm_sites) -> None:
    s = comm_sites(
        """
alarms:
  - {id: valve_lost, kind: comm_loss, template: valve, priority: 2, on_delay_s: 10}
  - {id: meters_quiet, kind: comm_loss, devices: "b1.*.em", enabled: false}
"""
    )
    keys = s.point_keys("")
    assert "valve_lost:b1.101.valve" in keys and "comm_loss:b1.101.valve" not in keys
    # a disabled rule covers its devices too: the site does not want those alarms
    assert not any(k.endswith(".em") for k in keys)
    assert "comm_loss:b1.hm" in keys
    s.online(["b1.101.valve", "b1.101.em"], False)
    s.advance(61)
    assert [(a.key, a.priority) for a in s.active()] == [("valve_lost:b1.101.valve", 2)]


def test_a_disabled_device_gets_no_default_alarm(tmp_path: Path) -> None:
    text_site = load(tmp_path)
    devices = [
        d.model_copy(update={"enabled": False}) if d.id == "b1.102.valve" else d
        for d in text_site.devices
    ]
    site = text_site.model_copy(update={"devices": devices})
    s = CommSite(tmp_path, site)
    try:
        assert "comm_loss:b1.102.valve" not in s.point_keys()
        assert "comm_loss:b1.101.valve" in s.point_keys()
    finally:
        s.close()


def test_defaults_priority_delay_and_message_are_configurable(comm_sites) -> None:
    s = comm_sites(
        """
alarm_defaults:
  comm_loss: {priority: 4, on_delay_s: 5, message: "{device} silent ({kind})"}
"""
    )
    s.online(["b1.hm"], False)
    s.advance(6)
    (alarm,) = s.active()
    assert (alarm.priority, alarm.message) == (4, "b1.hm silent (Heat meter)")


@pytest.mark.parametrize(
    ("extra", "where", "text"),
    [
        (
            "alarm_defaults:\n  comm_loss: {priorty: 2}\n",
            "alarm_defaults.comm_loss.priorty",
            "unknown key 'priorty' (did you mean 'priority'?)",
        ),
        (
            "alarm_defaults:\n  comm_loss: {message: '{device} {lost}'}\n",
            "alarm_defaults.comm_loss.message",
            "unknown field {lost} in message",
        ),
        (
            "alarm_defaults:\n  comm_loss:\n    flood: {min_share_pct: 0}\n",
            "alarm_defaults.comm_loss.flood.min_share_pct",
            "greater than 0",
        ),
        (
            "alarms:\n  - {id: comm_loss, kind: comm_loss, device: b1.hm}\n",
            "alarms[0].id",
            "rule id 'comm_loss' is reserved for the comm-loss defaults",
        ),
    ],
)
def test_invalid_defaults_name_file_line_and_field(
    tmp_path: Path, extra: str, where: str, text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    (issue,) = info.value.issues
    assert issue.file.endswith("site.yaml") and issue.line > 50
    assert issue.path == where and text in issue.message


def test_a_config_apply_that_switches_the_default_off_closes_its_alarms(comm_sites) -> None:
    s = comm_sites()
    s.online(["b1.101.valve"], False)
    s.advance(61)
    (alarm,) = s.active()
    off = AlarmDefaults.model_validate({"comm_loss": False})
    s.engine.reload(alarm_rules(s.site), devices_by_template(s.site), defaults=off)
    assert s.active() == [] and s.point_keys() == []
    (closed,) = s.journal.occurrences(key=alarm.key)
    assert (closed["id"], closed["close_reason"]) == (alarm.occurrence, "removed")
