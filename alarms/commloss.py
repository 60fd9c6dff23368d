"""Comm-loss defaults and flood suppression: a comm-loss point per device, one per lost group.

``bind_comm_defaults`` adds to the points of the configured rules (``alarm_defaults.comm_loss``):

* a comm-loss point for every enabled device that no ``comm_loss`` rule covers (rule id
  ``comm_loss``, key ``comm_loss:<device>``), unless the defaults are switched off;
* with flood suppression on, a group point per building (``comm_loss.building:<building>``)
  and per channel whose devices are not exactly one building's (``comm_loss.channel:<channel>``).
  Its ``FloodCondition`` is true while the group is lost: a building when at least
  ``min_devices`` and ``min_share_pct`` percent of its devices are offline, a channel when all
  of them are. Devices of a lost channel do not count for their building, so a dead channel
  raises one alarm, not two.

``flood_links`` names the comm-loss points (configured rules' and defaults') each group
suppresses by design while its condition holds; the engine applies it. What the alarms know
of the devices comes in as ``DeviceInfo`` records, which the site builds
(``scada.config.alarmsite``). Loop-thread only, like the TagDatabase the conditions read.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alarms.conditions import CommLossCondition, Condition, EvalContext, RowValue
from alarms.config import AlarmRule, CommLossDefaults, CommLossRule
from alarms.rules import DEFAULT_AREA, BindingError, PointSpec, TagLookup, bound_devices
from i18n import _, ngettext

__all__ = [
    "DeviceInfo",
    "DeviceLossCondition",
    "FloodCondition",
    "bind_comm_defaults",
    "flood_links",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the alarms know of one device: where it is and what it is, in words."""

    id: str
    template: str
    channel: str
    #: the device kind in words (its template's description); the template id if empty
    kind: str = ""
    building: str | None = None
    building_name: str = ""
    household: str | None = None
    household_name: str = ""
    enabled: bool = True

    @property
    def kind_words(self) -> str:
        """The device kind as shown in messages."""
        return self.kind or self.template

    @property
    def place_words(self) -> str:
        """The household, else the building, in words; empty when neither is known."""
        if self.household:
            return self.household_name or _("flat {household}", household=self.household)
        if self.building:
            return building_words(self.building, self.building_name)
        return ""


def building_words(building: str, name: str = "") -> str:
    """Return a building in words: its name, else ``Building <id>``."""
    return name or _("Building {building}", building=building)


class DeviceLossCondition(CommLossCondition):
    """A device offline (``.online`` false), with the device kind and place as message fields."""

    __slots__ = ("kind", "place")

    def __init__(self, device: DeviceInfo) -> None:
        super().__init__(f"{device.id}.online", online=True)
        self.kind = device.kind_words
        self.place = device.place_words

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        return {"kind": self.kind, "place": self.place}


class FloodCondition(Condition):
    """A building or channel lost: enough of its devices offline at once.

    ``members`` are device ids. A building's ``channel_groups`` (device ids of the channel
    groups that share devices with it) are left out of its count while all their devices are
    offline: that channel's own alarm explains them. Offline means ``.online`` false with good
    quality; a device never heard from yet does not count as lost.
    """

    __slots__ = (
        "channel_groups",
        "channels",
        "inputs",
        "label",
        "members",
        "min_devices",
        "min_share_pct",
        "online",
        "scope",
    )

    def __init__(
        self,
        scope: Literal["building", "channel"],
        label: str,
        members: Sequence[str],
        *,
        min_devices: int,
        min_share_pct: float,
        channel_groups: Sequence[Sequence[str]] = (),
        channels: str = "",
    ) -> None:
        self.scope = scope
        self.label = label
        self.members = tuple(members)
        self.online = tuple(f"{d}.online" for d in self.members)
        self.channel_groups = tuple(tuple(f"{d}.online" for d in g) for g in channel_groups)
        self.min_devices = min_devices
        self.min_share_pct = min_share_pct
        self.channels = channels
        others = (n for g in self.channel_groups for n in g)
        self.inputs = tuple(dict.fromkeys([*self.online, *others]))

    def lost(self, ctx: EvalContext) -> int:
        """Return how many members are offline and not explained by a lost channel."""
        offline = ctx.offline(self.online)
        explained: set[str] = set()
        for group in self.channel_groups:
            if bool(ctx.offline(group).all()):
                explained.update(group)
        if not explained:
            return int(offline.sum())
        return sum(
            1
            for n, off in zip(self.online, offline.tolist(), strict=True)
            if off and n not in explained
        )

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        lost, total = self.lost(ctx), len(self.online)
        if self.scope == "channel":
            return lost == total
        return lost >= self.min_devices and lost * 100.0 >= self.min_share_pct * total

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        return {
            "group": self.label,
            "lost": self.lost(ctx),
            "total": len(self.online),
            "channels": self.channels,
        }


# --------------------------------------------------------------------------- binding


def bind_comm_defaults(
    defaults: CommLossDefaults,
    devices: Sequence[DeviceInfo],
    rules: Sequence[AlarmRule],
    lookup: TagLookup,
    devices_by_template: Mapping[str, Sequence[str]],
    taken: Collection[str] = (),
) -> list[PointSpec]:
    """Return the default device comm-loss points, then the flood group points.

    Devices that are disabled or have no ``<device>.online`` tag in ``lookup`` get nothing;
    ``taken`` are the keys of the configured rules' points (a clash is logged and skipped).
    """
    present = [d for d in devices if d.enabled and f"{d.id}.online" in lookup]
    specs: list[PointSpec] = []
    if defaults.enabled:
        covered = _covered(rules, lookup, devices_by_template)
        messages = _device_messages(defaults)
        specs += [
            _device_spec(defaults, d, len(rules), messages) for d in present if d.id not in covered
        ]
    if defaults.flood.enabled:
        specs += _group_specs(defaults, present, len(rules))
    out = []
    for s in specs:
        if s.key in taken:
            log.error("alarm defaults: point %s is configured by a rule already; skipped", s.key)
            continue
        out.append(s)
    return out


def _covered(
    rules: Sequence[AlarmRule], lookup: TagLookup, devices_by_template: Mapping[str, Sequence[str]]
) -> set[str]:
    """Return the devices a ``comm_loss`` rule binds to, enabled or not."""
    out: set[str] = set()
    for rule in rules:
        if not isinstance(rule, CommLossRule):
            continue
        try:
            out.update(bound_devices(rule, lookup, devices_by_template))
        except BindingError:
            continue  # reported when the rule itself is bound
    return out


def _device_messages(defaults: CommLossDefaults) -> tuple[str, str]:
    """Return the message of a device's comm-loss point with a place and without one.

    Translated once per binding, not once per device (a city has 40,000 devices).
    """
    if defaults.message is not None:
        return defaults.message, defaults.message
    return (
        _("{kind} {device} ({place}): communication lost"),
        _("{kind} {device}: communication lost"),
    )


def _device_spec(
    defaults: CommLossDefaults, d: DeviceInfo, index: int, messages: tuple[str, str]
) -> PointSpec:
    """Return the comm-loss point of device ``d``; ``messages`` from :func:`_device_messages`."""
    cond = DeviceLossCondition(d)
    message = messages[0] if cond.place else messages[1]
    return PointSpec(
        key=f"comm_loss:{d.id}",
        rule_id="comm_loss",
        rule_index=index,
        kind="comm_loss",
        source=d.id,
        level=None,
        priority=defaults.priority,
        area=d.building or DEFAULT_AREA,
        message=message,
        condition=cond,
        on_delay_s=defaults.on_delay_s,
        off_delay_s=defaults.off_delay_s,
        tag=f"{d.id}.online",
        device=d.id,
        building=d.building,
        household=d.household,
        description=d.kind_words,
    )


def _group_specs(
    defaults: CommLossDefaults, devices: Sequence[DeviceInfo], index: int
) -> list[PointSpec]:
    flood = defaults.flood
    by_building: dict[str, list[DeviceInfo]] = {}
    by_channel: dict[str, list[DeviceInfo]] = {}
    for d in devices:
        if d.building:
            by_building.setdefault(d.building, []).append(d)
        by_channel.setdefault(d.channel, []).append(d)
    building_sets = {frozenset(d.id for d in devs) for devs in by_building.values()}
    channel_groups = {
        ch: devs
        for ch, devs in by_channel.items()
        if flood.channels
        and len(devs) >= flood.min_devices
        and frozenset(d.id for d in devs) not in building_sets
    }
    specs = [_channel_spec(defaults, ch, devs, index) for ch, devs in channel_groups.items()]
    for b, devs in by_building.items():
        if len(devs) < flood.min_devices:
            continue
        # a channel group holds every device of its channel: it shares devices with this
        # building exactly when one of the building's devices is on it
        channels = {d.channel for d in devs}
        overlapping = [
            [d.id for d in cdevs] for ch, cdevs in channel_groups.items() if ch in channels
        ]
        specs.append(_building_spec(defaults, b, devs, overlapping, index))
    return specs


def _building_spec(
    defaults: CommLossDefaults,
    building: str,
    devs: Sequence[DeviceInfo],
    channel_groups: Sequence[Sequence[str]],
    index: int,
) -> PointSpec:
    channels = list(dict.fromkeys(d.channel for d in devs))
    cond = FloodCondition(
        "building",
        building_words(building, devs[0].building_name),
        [d.id for d in devs],
        min_devices=defaults.flood.min_devices,
        min_share_pct=defaults.flood.min_share_pct,
        channel_groups=channel_groups,
        channels=ngettext(
            "channel {names}", "channels {names}", len(channels), names=", ".join(channels)
        ),
    )
    message = defaults.flood.message or _(
        "{group}: communication lost with {lost} of {total} devices ({channels})"
    )
    return _group_spec(defaults, "building", building, building, cond, message, index)


def _channel_spec(
    defaults: CommLossDefaults, channel: str, devs: Sequence[DeviceInfo], index: int
) -> PointSpec:
    buildings = {d.building for d in devs}
    building = next(iter(buildings)) if len(buildings) == 1 else None
    if building is not None:
        label = _(
            "Channel {channel} ({building})",
            channel=channel,
            building=building_words(building, devs[0].building_name),
        )
    else:
        label = _("Channel {channel}", channel=channel)
    cond = FloodCondition(
        "channel",
        label,
        [d.id for d in devs],
        min_devices=defaults.flood.min_devices,
        min_share_pct=100.0,
        channels=ngettext("channel {names}", "channels {names}", 1, names=channel),
    )
    message = defaults.flood.message or _("{group}: communication lost with all {total} devices")
    return _group_spec(defaults, "channel", channel, building, cond, message, index)


def _group_spec(
    defaults: CommLossDefaults,
    scope: str,
    source: str,
    building: str | None,
    cond: FloodCondition,
    message: str,
    index: int,
) -> PointSpec:
    return PointSpec(
        key=f"comm_loss.{scope}:{source}",
        rule_id=f"comm_loss.{scope}",
        rule_index=index,
        kind="comm_loss",
        source=source,
        level=None,
        priority=defaults.flood_priority,
        area=building or DEFAULT_AREA,
        message=message,
        condition=cond,
        on_delay_s=defaults.flood_on_delay_s,
        off_delay_s=defaults.flood.off_delay_s,
        building=building,
        description=cond.label,
    )


def flood_links(specs: Sequence[PointSpec]) -> dict[str, list[str]]:
    """Return ``{group point key: [keys of the comm-loss points it suppresses]}``.

    A group suppresses every comm-loss point bound to one of its devices: the defaults' and
    the configured rules' (device and tag targets alike).
    """
    by_device: dict[str, list[str]] = {}
    groups: list[PointSpec] = []
    for s in specs:
        if isinstance(s.condition, FloodCondition):
            groups.append(s)
        elif s.kind == "comm_loss" and s.device is not None:
            by_device.setdefault(s.device, []).append(s.key)
    out: dict[str, list[str]] = {}
    for g in groups:
        assert isinstance(g.condition, FloodCondition)
        out[g.key] = [k for dev in g.condition.members for k in by_device.get(dev, ())]
    return out
