"""Flood suppression: one alarm for a building or channel that loses its devices, not one per device."""

from __future__ import annotations

from alarms.model import AlarmState
from alarms.notifications import NotificationsConfig
from alarms.notify.base import Message
from alarms.notify.router import Router

from .comm_site import CommSite, devices_of

HEAT_METER_RULE = """
alarms:
  - {id: heat_meter_lost, kind: comm_loss, template: heat-meter, on_delay_s: 60, priority: 2}
"""

B1_BUS = ["b1.hm", "b1.101.valve", "b1.102.valve", "b1.103.valve"]
B1_METERS = ["b1.101.em", "b1.102.em", "b1.s1.em", "b1.main"]


class Outbox:
    """A notifier that keeps what the router sends."""

    name = "mail"
    kind = "email"

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, address: str, message: Message) -> None:
        self.sent.append(message)

    async def close(self) -> None:
        pass


def routed(s: CommSite) -> tuple[Router, Outbox]:
    """A real notification router with one on-call recipient for every alarm."""
    config = NotificationsConfig.model_validate(
        {
            "notifiers": [{"name": "mail", "type": "email", "host": "localhost", "sender": "s@x"}],
            "recipients": [{"name": "duty", "email": "duty@x"}],
            "roster": [{"name": "all", "levels": [["duty"]]}],
            "consolidate_s": 0,
        }
    )
    outbox = Outbox()
    router = Router(config, {"mail": outbox}, journal=s.journal, clock=s.clock)
    s.engine.subscribe(router.handle)
    return router, outbox


async def test_a_building_losing_25_of_26_devices_raises_one_alarm(comm_sites) -> None:
    s = comm_sites(HEAT_METER_RULE)
    router, outbox = routed(s)
    b2 = devices_of(s.site, "b2")
    assert len(b2) == 26
    lost = [d for d in b2 if d != "b2.main"]
    s.online(lost[:10], False)  # a dying bus: devices drop out over a few polls
    s.advance(20)
    s.online(lost[10:], False)
    s.advance(61)
    (alarm,) = s.active()
    assert (alarm.key, alarm.priority, alarm.area) == ("comm_loss.building:b2", 2, "b2")
    assert alarm.message == "Building 2: communication lost with 25 of 26 devices (channel b2-bus)"
    assert s.raised() == ["comm_loss.building:b2"]
    # the device alarms are suppressed by design: not active, not counted, not notified
    assert s.state("comm_loss:b2.101.valve") is AlarmState.SUPPRESSED
    assert s.state("heat_meter_lost:b2.hm") is AlarmState.SUPPRESSED  # a configured rule too
    counts = s.engine.counts()
    assert (counts["active"], counts["b2.active"], counts["suppressed"]) == (1, 1, 26)
    assert s.db.read("alarms.active").value == 1
    await router.run_due()
    assert [m.alarms[0]["key"] for m in outbox.sent] == ["comm_loss.building:b2"]
    assert all(len(m.alarms) == 1 for m in outbox.sent)

    # the bus comes back but one valve stays lost: the group clears, the valve alarms alone
    still_lost = "b2.304.valve"
    s.online([d for d in lost if d != still_lost], True)
    assert s.state("comm_loss.building:b2") is AlarmState.RTN_UNACKED
    assert s.state("comm_loss:b2.101.valve") is AlarmState.NORMAL
    s.advance(59)
    assert s.raised() == ["comm_loss.building:b2"]  # released: the on-delay runs again
    s.advance(2)
    assert s.raised() == ["comm_loss.building:b2", f"comm_loss:{still_lost}"]
    assert [a.key for a in s.active() if a.active] == [f"comm_loss:{still_lost}"]


def test_a_device_alarm_already_raised_is_hidden_by_the_flood_and_returns_after(comm_sites) -> None:
    s = comm_sites()
    s.online(["b2.101.valve"], False)
    s.advance(61)
    (first,) = s.active()
    assert first.key == "comm_loss:b2.101.valve"
    s.online([d for d in devices_of(s.site, "b2") if d != "b2.hm"], False)
    assert s.state("comm_loss:b2.101.valve") is AlarmState.SUPPRESSED
    s.online([d for d in devices_of(s.site, "b2") if d != "b2.101.valve"], True)
    s.advance(61)
    (again,) = [a for a in s.active() if a.active]
    assert again.key == "comm_loss:b2.101.valve" and again.occurrence != first.occurrence


def test_a_few_lost_devices_alarm_one_by_one(comm_sites) -> None:
    s = comm_sites()
    s.online(["b2.101.valve", "b2.102.valve"], False)  # 2 of 26: no flood
    s.advance(61)
    assert sorted(a.key for a in s.active()) == [
        "comm_loss:b2.101.valve",
        "comm_loss:b2.102.valve",
    ]


def test_a_lost_channel_raises_one_channel_alarm_not_a_building_alarm(comm_sites) -> None:
    s = comm_sites()
    s.online(B1_METERS, False)  # 4 of building 1's 8 devices: its whole meter channel
    s.advance(61)
    (alarm,) = s.active()
    assert (alarm.key, alarm.priority, alarm.area) == ("comm_loss.channel:b1-meters", 2, "b1")
    assert alarm.message == (
        "Channel b1-meters (Building 1): communication lost with all 4 devices"
    )
    assert s.state("comm_loss.building:b1") is AlarmState.NORMAL
    assert all(s.state(f"comm_loss:{d}") is AlarmState.SUPPRESSED for d in B1_METERS)
    assert s.state("comm_loss:b1.hm") is AlarmState.NORMAL  # the other channel is not touched


def test_half_a_building_across_its_channels_is_a_building_flood(comm_sites) -> None:
    s = comm_sites()
    s.online([*B1_BUS[1:], "b1.101.em"], False)  # 4 of 8, neither channel all lost
    s.advance(61)
    (alarm,) = s.active()
    assert alarm.key == "comm_loss.building:b1"
    assert alarm.message == (
        "Building 1: communication lost with 4 of 8 devices (channels b1-bus, b1-meters)"
    )


def test_thresholds_priority_and_switch_are_configurable(comm_sites) -> None:
    s = comm_sites(
        """
alarm_defaults:
  comm_loss:
    flood: {min_share_pct: 5, min_devices: 2, priority: 1, on_delay_s: 10, channels: false}
"""
    )
    assert "comm_loss.channel:b1-meters" not in s.point_keys()
    s.online(["b2.101.valve", "b2.102.valve"], False)  # 2 of 26 >= 5 %
    s.advance(11)
    (alarm,) = s.active()
    assert (alarm.key, alarm.priority) == ("comm_loss.building:b2", 1)

    off = comm_sites("alarm_defaults: {comm_loss: {flood: false}}\n")
    assert not any(k.startswith("comm_loss.") for k in off.point_keys())
    lost = devices_of(off.site, "b2")
    off.online(lost, False)
    off.advance(61)
    assert len(off.active()) == 26
