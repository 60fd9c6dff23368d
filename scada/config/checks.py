"""Cross-reference checks of a site configuration, run on items that are valid themselves.

Checks: duplicate ids and tag names, template / channel / device / building / household /
tag references, unit ids per protocol and per channel, overlapping registers, points that
do not fit their channel's protocol, computed-tag expressions (syntax, names, globs,
cycles). Also expands ``generate:`` blocks and fills in the building / household of devices
whose tags a building or household names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from billing.config import HouseholdConfig
from drivers.codec import BIT_KINDS
from drivers.config import (
    CJT188_PROTOCOLS,
    DLT645_PROTOCOLS,
    MBUS_PROTOCOLS,
    MODBUS_PROTOCOLS,
    STATUS_POINTS,
    ChannelConfig,
    DeviceConfig,
    PointConfig,
    TemplateConfig,
)
from drivers.mbus import unit_factor
from scada.config.billingcheck import BillingChecks
from scada.config.buildings import BuildingConfig
from scada.config.errors import did_you_mean
from scada.config.exprcheck import ExpressionChecks
from scada.config.generate import expand_building
from scada.config.site import merge_points
from scada.config.source import PathT, SourceMap
from scada.config.substationcheck import SubstationChecks
from tags.model import TagType

log = logging.getLogger(__name__)

Report = Callable[..., None]
Validate = Callable[[TypeAdapter[Any], Any, PathT, Any], Any]
_POINT = TypeAdapter(PointConfig)


def overlaps(points: dict[str, PointConfig]) -> list[tuple[str, str, str]]:
    """Return ``(point, earlier point, message)`` for Modbus points overlapping an earlier one of the same kind.

    Several ``bit`` points on distinct bits of one register do not overlap.
    """
    found: list[tuple[str, str, str]] = []
    seen: dict[str, list[tuple[str, PointConfig]]] = {}
    for name, p in points.items():
        if p.kind is None or p.address is None:
            continue
        start, end = p.address, p.address + p.registers - 1
        for other_name, q in seen.setdefault(p.kind, []):
            assert q.address is not None
            q_start, q_end = q.address, q.address + q.registers - 1
            if start > q_end or q_start > end:
                continue
            if p.type == "bit" and q.type == "bit":
                if p.bit != q.bit:
                    continue
                found.append(
                    (
                        name,
                        other_name,
                        f"bit {p.bit} of {p.kind} {start} is also point {other_name!r}",
                    )
                )
            else:
                unit = "bit" if p.kind in BIT_KINDS else "register"
                found.append(
                    (
                        name,
                        other_name,
                        f"{p.kind} {_span(unit, start, end)} point {other_name!r} ({p.kind} {q_start}"
                        f"{'' if q_start == q_end else f'..{q_end}'})",
                    )
                )
            break
        seen[p.kind].append((name, p))
    return found


def _span(unit: str, a: int, b: int) -> str:
    return f"{unit} {a} overlaps" if a == b else f"{unit}s {a}..{b} overlap"


@dataclass(frozen=True, slots=True)
class _TagNames:
    """A device's tags relative to its id (``.open``...), their types and its point names.

    Devices of one template without overrides share one (40,000 devices, 4 templates).
    """

    suffixes: list[str]
    types: list[TagType]
    #: the point names and status tags, for "did you mean" hints
    points: list[str]


_STATUS_TYPES = (TagType.BOOL, TagType.FLOAT, TagType.INT, TagType.FLOAT)


def _tag_names(points: dict[str, Any]) -> _TagNames:
    """Return the tags of a device with ``points`` (PointConfig, or None where invalid)."""
    types = [p.tag_type if isinstance(p, PointConfig) else TagType.FLOAT for p in points.values()]
    names = [*points, *STATUS_POINTS]
    return _TagNames([f".{n}" for n in names], [*types, *_STATUS_TYPES], names)


class Checker(ExpressionChecks, BillingChecks, SubstationChecks):
    """Run every cross-reference check; ``run()`` returns the SiteConfig fields to set."""

    def __init__(
        self,
        smap: SourceMap,
        report: Report,
        items: dict[str, list[tuple[int, Any]]],
        templates: dict[str, TemplateConfig],
        data: dict[str, Any],
        validate: Validate,
        incomplete: bool = False,
    ) -> None:
        """``incomplete``: a file could not be read, so references may point into it."""
        self.smap = smap
        self.incomplete = incomplete
        self.report = report
        self.items = items
        self.templates = templates
        self.data = data
        self.validate = validate
        self._once: set[tuple[Any, ...]] = set()
        #: Some item failed its own validation (or a generator stopped): the set of tags is
        #: incomplete, so "matches no tag" / unknown-household errors would only be noise.
        self.partial = (
            any(
                self._raw_len(name) != len(items[name])
                for name in ("devices", "tags", "buildings", "channels")
            )
            or len(self._raw_templates()) != len(templates)
            or incomplete
        )
        #: Ids of devices (and names of tags) that exist but could not be validated.
        self.unsure_names: set[str] = set()
        #: Device id -> its point names (valid devices only), for "did you mean" hints.
        self.device_points: dict[str, list[str]] = {}

    def unsure(self, tag: str) -> bool:
        """Return True if ``tag`` may exist but belongs to an item that failed validation."""
        if self.incomplete:
            return True
        if not self.unsure_names:
            return False
        return tag in self.unsure_names or tag.rsplit(".", 1)[0] in self.unsure_names

    def where(self, path: PathT) -> str:
        m = self.smap.mark(self.smap.resolve(path))
        return f"{m.file}:{m.line}"

    def once(self, path: PathT, message: str, *what: Any, key: bool = False) -> None:
        """Report at ``path`` unless an issue about ``what`` was already reported at the same place.

        Generated items all locate at their generate block: one line per problem is enough.
        """
        token = (self.smap.resolve(path), *what)
        if token not in self._once:
            self._once.add(token)
            self.report(path, message, key=key)

    def _raw_len(self, section: str) -> int:
        value = self.data.get(section)
        return len(value) if isinstance(value, list) else 0

    # ------------------------------------------------------------------ run

    def run(self) -> dict[str, Any]:
        channels: list[tuple[PathT, ChannelConfig]] = [
            (("channels", i), c) for i, c in self.items["channels"]
        ]
        devices: list[tuple[PathT, DeviceConfig]] = [
            (("devices", i), d) for i, d in self.items["devices"]
        ]
        buildings: list[tuple[PathT, BuildingConfig]] = [
            (("buildings", i), b) for i, b in self.items["buildings"]
        ]
        self.check_templates()
        channels, devices, buildings = self.expand(channels, devices, buildings)
        channel_map = self.unique(channels, "channel", lambda c: c.id)
        device_map = self.check_devices(devices, channel_map)
        valid_ids = {d.id for _, d in devices if d.template in self.templates}
        self.unsure_names = (
            (self._raw_ids("devices") | {d.id for _, d in devices}) - valid_ids
        ) | (self._raw_ids("tags", "name") - {t.name for _, t in self.items["tags"]})
        tag_types = self.tag_names(devices, device_map)
        households = self.check_buildings(buildings, tag_types)
        self.check_substations(buildings, tag_types)
        self.check_device_places(devices, buildings, households)
        self.check_expressions(tag_types)
        self.check_billing(buildings, households, tag_types)
        self.check_alarms(devices, tag_types)
        devices_out = self.infer_places(devices, buildings, tag_types)
        return {
            "channels": [c for _, c in channels],
            "templates": self.templates,
            "devices": devices_out,
            "tags": [t for _, t in self.items["tags"]],
            "buildings": [b for _, b in buildings],
            "substations": tuple(s for _, s in self.items["substations"]),
            **{
                name: [x for _, x in self.items[name]]
                for name in ("alarms", "tariffs", "accounts", "users")
            },
        }

    def check_alarms(
        self, devices: list[tuple[PathT, DeviceConfig]], types: dict[str, TagType]
    ) -> None:
        """Report alarm rules naming unknown tags, templates or devices, and notification mistakes."""
        from alarms.config import check_notifications, check_references
        from historian.status import status_tag_defs
        from scada.health import health_tag_defs

        rules = [r for _, r in self.items["alarms"]]
        index = [i for i, _ in self.items["alarms"]]
        if rules and not self.incomplete:  # no rules: spare making the set of 300,000 names
            names = set(types) | {d.name for d in (*status_tag_defs(), *health_tag_defs())}
            by_template: dict[str, list[str]] = {}
            for _, d in devices:
                by_template.setdefault(d.template, []).append(d.id)
            for path, message in check_references(rules, names, set(self.templates), by_template):
                # check_references counts rules in the list it got: map back to the file's index.
                if len(path) > 1 and path[0] == "alarms" and isinstance(path[1], int):
                    path = ("alarms", index[path[1]], *path[2:])
                self.report(path, message)
        notifications = self.data.get("notifications")
        if isinstance(notifications, dict):
            from alarms.config import NotificationsConfig

            try:
                cfg = NotificationsConfig.model_validate(notifications)
            except ValueError:
                return  # structural errors are reported by SiteConfig's own validation
            for path, message in check_notifications(cfg):
                self.report(path, message)

    def unique(
        self, pairs: Iterable[tuple[PathT, Any]], what: str, key: Callable[[Any], str]
    ) -> dict[str, Any]:
        """Report duplicate ids; return id -> item (the first of each id)."""
        first: dict[str, PathT] = {}
        out: dict[str, Any] = {}
        for path, item in pairs:
            ident = key(item)
            if ident in first:
                self.report(
                    (*path, "id"),
                    f"duplicate {what} id {ident!r} (first at {self.where(first[ident])})",
                )
                continue
            first[ident] = path
            out[ident] = item
        return out

    # ------------------------------------------------------------------ templates

    def check_templates(self) -> None:
        for tid, t in self.templates.items():
            for name in t.points:
                if name in STATUS_POINTS:
                    self.report(
                        ("templates", tid, "points", name),
                        f"point name {name!r} is reserved for the device status tag <device>.{name}",
                        key=True,
                    )
            for name, _, message in overlaps(t.points):
                self.report(("templates", tid, "points", name), message, key=True)

    # ------------------------------------------------------------------ generators

    def expand(
        self,
        channels: list[tuple[PathT, ChannelConfig]],
        devices: list[tuple[PathT, DeviceConfig]],
        buildings: list[tuple[PathT, BuildingConfig]],
    ) -> tuple[list[Any], list[Any], list[Any]]:
        channel_map: dict[str, ChannelConfig] = {}
        for _, c in channels:
            channel_map.setdefault(c.id, c)
        taken = {(d.channel, d.unit) for _, d in devices}
        next_channel = self._raw_len("channels")
        next_device = self._raw_len("devices")
        out_buildings: list[tuple[PathT, BuildingConfig]] = []
        for bpath, b in buildings:
            if b.generate is None:
                out_buildings.append((bpath, b))
                continue
            gpath = (*bpath, "generate")
            result = expand_building(b, bpath, channel_map, taken, lambda p, m: self.report(p, m))
            if not result.households:
                self.partial = True
            for c in result.channels:
                path = ("channels", next_channel)
                next_channel += 1
                self.smap.aliases[path] = (*gpath, "channels", "create")
                channels.append((path, c))
                channel_map.setdefault(c.id, c)
            for j, d in result.devices:
                path = ("devices", next_device)
                next_device += 1
                self.smap.aliases[path] = (*gpath, "devices", j)
                devices.append((path, d))
                taken.add((d.channel, d.unit))
            start = len(b.households)
            for k in range(len(result.households)):
                self.smap.aliases[(*bpath, "households", start + k)] = gpath
            out_buildings.append(
                (bpath, b.model_copy(update={"households": [*b.households, *result.households]}))
            )
        return channels, devices, out_buildings

    # ------------------------------------------------------------------ devices

    def check_devices(
        self, devices: list[tuple[PathT, DeviceConfig]], channels: dict[str, ChannelConfig]
    ) -> dict[str, DeviceConfig]:
        device_map = self.unique(devices, "device", lambda d: d.id)
        used: dict[tuple[str, int | str | None], tuple[PathT, str]] = {}
        #: (template, protocol) of devices without overrides whose points were checked:
        #: the next such device has the same points, and its problems are reported once.
        protocol_checked: set[tuple[str, str]] = set()
        for path, d in devices:
            t = self.templates.get(d.template)
            if t is None and d.template not in self._raw_templates() and not self.incomplete:
                self.once(
                    (*path, "template"),
                    f"unknown template {d.template!r}{did_you_mean(d.template, self._raw_templates())}",
                    "template",
                    d.template,
                )
            c = channels.get(d.channel)
            if c is None:
                if d.channel not in self._raw_ids("channels") and not self.incomplete:
                    self.once(
                        (*path, "channel"),
                        f"unknown channel {d.channel!r}{did_you_mean(d.channel, channels)}",
                        "channel",
                        d.channel,
                    )
            else:
                if c.protocol in MODBUS_PROTOCOLS and not 1 <= d.unit <= 247:
                    self.report((*path, "unit"), f"Modbus unit id must be 1..247, not {d.unit}")
                dlt645 = c.protocol in DLT645_PROTOCOLS
                if dlt645 and d.address is None:
                    self.report(
                        path, f"device {d.id!r} on DL/T 645 channel {c.id!r} needs `address`"
                    )
                elif dlt645 and len(d.address or "") != 12:
                    self.report((*path, "address"), "a DL/T 645 address has 12 digits")
                cjt188 = c.protocol in CJT188_PROTOCOLS
                if cjt188 and d.address is None:
                    self.report(
                        path, f"device {d.id!r} on CJ/T 188 channel {c.id!r} needs `address`"
                    )
                elif cjt188 and len(d.address or "") != 14:
                    self.report((*path, "address"), "a CJ/T 188 address has 14 digits")
                dlt645 = dlt645 or cjt188  # both: one meter per address on the channel
                mbus = c.protocol in MBUS_PROTOCOLS
                mbus_ok = mbus and self.check_mbus_address(path, d, c)
                slot: tuple[str, int | str | None] = (
                    (d.channel, d.address)
                    if dlt645
                    else (d.channel, d.secondary or d.address)
                    if mbus
                    else (d.channel, d.unit)
                )
                if (dlt645 and d.address is None) or (mbus and not mbus_ok):
                    pass  # reported above
                elif slot in used:
                    other_path, other = used[slot]
                    what = (
                        f"address {d.address}"
                        if dlt645 or (mbus and d.secondary is None)
                        else f"secondary {d.secondary}"
                        if mbus
                        else f"unit {d.unit}"
                    )
                    self.report(
                        (
                            *path,
                            ("secondary" if d.secondary else "address")
                            if mbus
                            else "address"
                            if dlt645
                            else "unit",
                        ),
                        f"{what} on channel {d.channel!r} is already used by device {other!r} "
                        f"({self.where(other_path)})",
                    )
                else:
                    used[slot] = (path, d.id)
            if t is None:
                continue
            if d.points:
                points = self.merged_points(path, d, t)
                if c is not None and points is not None:
                    self.check_protocol(path, d, c, points)
            elif c is not None:
                key = (d.template, str(c.protocol))
                if key not in protocol_checked:
                    protocol_checked.add(key)
                    self.check_protocol(path, d, c, t.points)
        return device_map

    def _raw_templates(self) -> set[str]:
        raw = self.data.get("templates")
        return {k for k in raw if isinstance(k, str)} if isinstance(raw, dict) else set()

    def _raw_ids(self, section: str, key: str = "id") -> set[str]:
        raw = self.data.get(section)
        if not isinstance(raw, list):
            return set()
        return {x[key] for x in raw if isinstance(x, dict) and isinstance(x.get(key), str)}

    def merged_points(
        self, path: PathT, d: DeviceConfig, t: TemplateConfig
    ) -> dict[str, PointConfig] | None:
        """Return the device's merged points, reporting bad overrides; None if any is bad."""
        if not d.points:
            return dict(t.points)
        merged = merge_points(t, d)
        points: dict[str, PointConfig] = dict(t.points)
        ok = True
        for name in d.points:
            if name in STATUS_POINTS:
                self.report(
                    (*path, "points", name),
                    f"point name {name!r} is reserved for the device status tag",
                    key=True,
                )
                ok = False
                continue
            point = self.validate(_POINT, merged[name], (*path, "points", name), PointConfig)
            if point is None:
                ok = False
            else:
                points[name] = point
        if not ok:
            return None
        for name, other, message in overlaps(points):
            if name in d.points or other in d.points:
                where = name if name in d.points else other
                self.report((*path, "points", where), message, key=True)
        return points

    def check_mbus_address(self, path: PathT, d: DeviceConfig, c: ChannelConfig) -> bool:
        """Report an M-Bus device without exactly one of `address` (1..250) and `secondary`."""
        if (d.address is None) == (d.secondary is None):
            self.report(
                path,
                f"device {d.id!r} on M-Bus channel {c.id!r} needs `address` (1..250) "
                "or `secondary` (8 digits), not both",
            )
            return False
        if d.address is not None and not 1 <= int(d.address) <= 250:
            self.report(
                (*path, "address"), f"M-Bus primary address must be 1..250, not {d.address}"
            )
            return False
        return True

    def check_protocol(
        self, path: PathT, d: DeviceConfig, c: ChannelConfig, points: dict[str, PointConfig]
    ) -> None:
        modbus = c.protocol in MODBUS_PROTOCOLS
        dlt645 = c.protocol in DLT645_PROTOCOLS
        mbus = c.protocol in MBUS_PROTOCOLS
        cjt188 = c.protocol in CJT188_PROTOCOLS
        for name, p in points.items():
            if modbus and (p.kind is None or p.address is None):
                problem = f"has no address/kind, but device {d.id!r} is on Modbus channel {c.id!r}"
            elif mbus:
                if p.record is None:
                    problem = f"has no record, but device {d.id!r} is on M-Bus channel {c.id!r}"
                else:
                    try:
                        unit_factor(p.record, None, p.unit)
                        continue
                    except ValueError as exc:
                        problem = f"on M-Bus channel {c.id!r}: {exc}"
            elif cjt188:
                if p.item is not None:
                    continue
                problem = f"has no item, but device {d.id!r} is on CJ/T 188 channel {c.id!r}"
            elif dlt645:
                if p.di is not None or p.relay:
                    continue
                problem = (
                    f"has no di (nor relay), but device {d.id!r} is on DL/T 645 channel {c.id!r}"
                )
            elif not modbus and p.can_id is None:
                problem = f"has no can_id, but device {d.id!r} is on CAN channel {c.id!r}"
            else:
                continue
            if name in d.points:
                self.once((*path, "points", name), f"point {name!r} {problem}", "protocol", name)
            else:
                self.once(
                    ("templates", d.template, "points", name),
                    f"point {name!r} {problem}",
                    "protocol",
                    c.protocol in MODBUS_PROTOCOLS,
                    key=True,
                )

    # ------------------------------------------------------------------ tags

    def tag_names(
        self, devices: list[tuple[PathT, DeviceConfig]], device_map: dict[str, DeviceConfig]
    ) -> dict[str, TagType]:
        """Return every tag name with its type; report memory/computed tags that collide."""
        types: dict[str, TagType] = {}
        device_paths: dict[str, PathT] = {}
        by_template: dict[str, _TagNames] = {}  # devices without point overrides share these
        for path, d in devices:
            if device_map.get(d.id) is not d or d.template not in self.templates:
                continue
            if d.points:
                names = _tag_names(self._points_for_names(d))
            elif d.template in by_template:
                names = by_template[d.template]
            else:
                names = by_template[d.template] = _tag_names(self.templates[d.template].points)
            self.device_points[d.id] = names.points
            device_paths[d.id] = path
            types.update(
                zip([d.id + suffix for suffix in names.suffixes], names.types, strict=True)
            )
        origin: dict[str, PathT] = {}  # memory and computed tags
        for i, t in self.items["tags"]:
            path = ("tags", i)
            if t.name in types:
                if t.name in origin:
                    first_path, what = origin[t.name], "a tag"
                else:  # a device's tag: point names have no dots, so the device is the rest
                    device, _, point = t.name.rpartition(".")
                    first_path = device_paths[device]
                    what = (
                        f"a status tag of device {device!r}"
                        if point in STATUS_POINTS
                        else f"point {point!r} of device {device!r}"
                    )
                self.report(
                    (*path, "name"),
                    f"duplicate tag name {t.name!r}: already {what} ({self.where(first_path)})",
                )
                continue
            types[t.name] = TagType(t.type)
            origin[t.name] = path
        return types

    def _points_for_names(self, d: DeviceConfig) -> dict[str, Any]:
        t = self.templates[d.template]
        if not d.points:
            return t.points
        names: dict[str, Any] = dict(t.points)
        for name in d.points:
            if name not in names:
                try:
                    names[name] = PointConfig.model_validate(merge_points(t, d)[name])
                except ValueError:
                    names[name] = None
        return names

    # ------------------------------------------------------------------ buildings

    def tag_ref(
        self, path: PathT, name: str, types: dict[str, TagType], expect: str | None = None
    ) -> None:
        typ = types.get(name)
        if typ is None:
            if not self.unsure(name):
                self.once(path, self.unknown_tag(name, types), "tag")
        elif expect == "bool" and typ is not TagType.BOOL:
            self.once(path, f"tag {name!r} is {typ.value}; expected a bool tag", "type")
        elif expect == "number" and typ in (TagType.STR, TagType.BOOL):
            self.once(path, f"tag {name!r} is {typ.value}; expected a numeric tag", "type")

    def unknown_tag(self, name: str, types: dict[str, TagType]) -> str:
        """Return the message for a reference to a tag that does not exist, naming the device if known."""
        device, _, point = name.rpartition(".")
        if device in self.device_points:
            points = self.device_points[device]
            return f"unknown tag {name!r}: device {device!r} has no point {point!r}{did_you_mean(point, points)}"
        if device and device not in types:
            near = did_you_mean(device, self.device_points)
            if near:
                return f"unknown tag {name!r}: no device {device!r}{near}"
        return f"unknown tag {name!r}{did_you_mean(name, types)}"

    def check_buildings(
        self, buildings: list[tuple[PathT, BuildingConfig]], types: dict[str, TagType]
    ) -> dict[str, tuple[PathT, str]]:
        """Check building and household references; return household id -> (path, building id)."""
        self.unique(buildings, "building", lambda b: b.id)
        households: dict[str, tuple[PathT, str]] = {}
        for bpath, b in buildings:
            if b.heat is not None:
                hp = (*bpath, "heat")
                self.tag_ref((*hp, "energy_tag"), b.heat.energy_tag, types, "number")
                for key in ("power_tag", "supply_tag", "return_tag", "flow_tag"):
                    name = getattr(b.heat, key)
                    if name is not None:
                        self.tag_ref((*hp, key), name, types, "number")
                cold = None if b.heat.arrears is None else b.heat.arrears.cold_weather_tag
                if cold is not None:
                    self.tag_ref((*hp, "arrears", "cold_weather_tag"), cold, types, "number")
            for k, h in enumerate(b.households):
                path = (*bpath, "households", k)
                if h.id in households:
                    first = households[h.id][0]
                    self.report(
                        (*path, "id"),
                        f"duplicate household id {h.id!r} (first at {self.where(first)})",
                    )
                else:
                    households[h.id] = (path, b.id)
                self.check_household(path, h, types)
        return households

    def check_household(self, path: PathT, h: HouseholdConfig, types: dict[str, TagType]) -> None:
        if h.valve_tag is not None:
            self.tag_ref((*path, "valve_tag"), h.valve_tag, types, "bool")
        for key in ("room_tag", "setpoint_tag"):
            name = getattr(h, key)
            if name is not None:
                self.tag_ref((*path, key), name, types, "number")
        for i, name in enumerate(h.tags):
            self.tag_ref((*path, "tags", i), name, types)

    def check_device_places(
        self,
        devices: list[tuple[PathT, DeviceConfig]],
        buildings: list[tuple[PathT, BuildingConfig]],
        households: dict[str, tuple[PathT, str]],
    ) -> None:
        building_ids = {b.id for _, b in buildings}
        known_buildings = building_ids | self._raw_ids("buildings")
        for path, d in devices:
            if d.building is not None and d.building not in known_buildings and not self.incomplete:
                self.report(
                    (*path, "building"),
                    f"unknown building {d.building!r}{did_you_mean(d.building, building_ids)}",
                )
            if d.household is None:
                continue
            if d.household not in households:
                if not self.partial:
                    self.report(
                        (*path, "household"),
                        f"unknown household {d.household!r}{did_you_mean(d.household, households)}",
                    )
            elif d.building is not None and households[d.household][1] != d.building:
                self.report(
                    (*path, "household"),
                    f"household {d.household!r} is in building {households[d.household][1]!r}, "
                    f"not {d.building!r}",
                )

    def infer_places(
        self,
        devices: list[tuple[PathT, DeviceConfig]],
        buildings: list[tuple[PathT, BuildingConfig]],
        types: dict[str, TagType],
    ) -> list[DeviceConfig]:
        """Fill in building/household of devices whose tags a household or building heat names."""
        owner_building: dict[str, str] = {}
        owner_household: dict[str, tuple[str, str]] = {}

        def device_of(tag: str | None) -> str | None:
            if tag is None or "." not in tag:
                return None
            return tag.rsplit(".", 1)[0]

        for _, b in buildings:
            if b.heat is not None:
                for key in ("energy_tag", "power_tag", "supply_tag", "return_tag", "flow_tag"):
                    dev = device_of(getattr(b.heat, key))
                    if dev is not None:
                        owner_building.setdefault(dev, b.id)
            for h in b.households:
                for tag in (h.valve_tag, h.room_tag, h.setpoint_tag, *h.tags):
                    dev = device_of(tag)
                    if dev is not None:
                        owner_household.setdefault(dev, (b.id, h.id))
        out: list[DeviceConfig] = []
        for _, d in devices:
            update: dict[str, str] = {}
            if d.household is None and d.id in owner_household:
                b_id, h_id = owner_household[d.id]
                if d.building in (None, b_id):
                    update = {"household": h_id, "building": b_id}
            elif d.household is not None and d.building is None:
                for _, b in buildings:
                    if any(h.id == d.household for h in b.households):
                        update = {"building": b.id}
                        break
            if not update and d.building is None and d.id in owner_building:
                update = {"building": owner_building[d.id]}
            out.append(d.model_copy(update=update) if update else d)
        return out
