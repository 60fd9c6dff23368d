"""Expand a building's ``generate:`` block into households, devices and (optionally) channels.

A regular building is ``floors x units_per_floor`` households; each gets the devices listed
in the block. Ids and tags come from Python format patterns over ``building``, ``floor``,
``unit`` (1-based position on the floor), ``index`` (1-based household number) and
``household`` (the generated household id). Devices without an explicit ``channel``/``unit``
are packed onto the block's channels (``use`` or ``create``), at most ``units_per_channel``
per channel, skipping unit ids that explicit devices already hold. Every problem is
reported at the generate block; expansion of a building stops at its first problem.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from billing.config import HouseholdConfig
from drivers.config import ChannelConfig, DeviceConfig
from scada.config.buildings import BuildingConfig, GenerateSpec
from scada.config.errors import did_you_mean
from scada.config.source import PathT

log = logging.getLogger(__name__)

Report = Callable[[PathT, str], None]
_CHANNEL = TypeAdapter(ChannelConfig)


class _Stop(Exception):
    """Expansion of this building stops (the problem has been reported)."""


@dataclass(slots=True)
class Expansion:
    """What one generate block produced; ``devices`` pairs each device with its spec index."""

    households: list[HouseholdConfig] = field(default_factory=list)
    devices: list[tuple[int, DeviceConfig]] = field(default_factory=list)
    channels: list[ChannelConfig] = field(default_factory=list)


def _fmt(pattern: str, values: dict[str, Any], path: PathT, report: Report) -> str:
    try:
        return pattern.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        names = ", ".join(sorted(values))
        report(path, f"bad pattern {pattern!r}: {type(exc).__name__} {exc} (fields: {names})")
        raise _Stop from None


def _slots(
    channel_ids: Iterator[str], first_unit: int, per_channel: int, taken: set[tuple[str, int]]
) -> Iterator[tuple[str, int]]:
    for cid in channel_ids:
        for unit in range(first_unit, first_unit + per_channel):
            if (cid, unit) not in taken:
                yield cid, unit


def expand_building(
    building: BuildingConfig,
    bpath: PathT,
    channels: dict[str, ChannelConfig],
    taken: set[tuple[str, int]],
    report: Report,
) -> Expansion:
    """Expand ``building.generate``; ``taken`` holds (channel, unit) pairs of explicit devices."""
    spec = building.generate
    assert spec is not None
    gpath = (*bpath, "generate")
    out = Expansion()
    try:
        _expand(building, spec, gpath, channels, taken, report, out)
    except _Stop:
        return Expansion()
    return out


def _expand(
    building: BuildingConfig,
    spec: GenerateSpec,
    gpath: PathT,
    channels: dict[str, ChannelConfig],
    taken: set[tuple[str, int]],
    report: Report,
    out: Expansion,
) -> None:
    last_floor = spec.first_floor + spec.floors - 1
    pf = spec.position_factor
    household_rows: list[dict[str, Any]] = []
    index = 0
    for floor in range(spec.first_floor, last_floor + 1):
        for unit in range(1, spec.units_per_floor + 1):
            index += 1
            values: dict[str, Any] = {
                "building": building.id,
                "floor": floor,
                "unit": unit,
                "index": index,
            }
            hid = _fmt(spec.household_id, values, (*gpath, "household_id"), report)
            values["household"] = hid
            household_rows.append(values)
    seen: dict[str, int] = {}
    for values in household_rows:
        hid = values["household"]
        if hid in seen:
            report(
                (*gpath, "household_id"),
                f"pattern {spec.household_id!r} gives {hid!r} twice (households {seen[hid]} and {values['index']})",
            )
            raise _Stop
        seen[hid] = values["index"]
    for k, sid in enumerate(spec.skip):
        if sid not in seen:
            report(
                (*gpath, "skip", k),
                f"the generator makes no household {sid!r}{did_you_mean(sid, seen)}",
            )
            raise _Stop
    skipped = set(spec.skip)
    household_rows = [v for v in household_rows if v["household"] not in skipped]

    auto_specs = [j for j, d in enumerate(spec.devices) if d.channel is None]
    auto_count = len(auto_specs) * len(household_rows)
    slots = _channel_slots(building, spec, gpath, channels, taken, auto_count, report, out)

    # What every household's devices share, made once (only ids, household and place vary).
    tag_patterns = [
        (key, pattern)
        for key in ("valve_tag", "room_tag", "setpoint_tag")
        if (pattern := getattr(spec, key)) is not None
    ]
    device_bases: list[dict[str, Any]] = []
    for dspec in spec.devices:
        base: dict[str, Any] = {
            "template": dspec.template,
            "enabled": dspec.enabled,
            "description": dspec.description,
            "building": building.id,
            "points": {n: p.model_dump(exclude_unset=True) for n, p in dspec.points.items()},
        }
        if dspec.poll_s is not None:
            base["poll_s"] = dspec.poll_s
        device_bases.append(base)
    areas = (
        spec.area_m2 if isinstance(spec.area_m2, list) else [spec.area_m2] * spec.units_per_floor
    )

    for values in household_rows:
        floor, unit = values["floor"], values["unit"]
        factor = pf.default
        if floor == last_floor:
            factor *= pf.top_floor
        if floor == spec.first_floor:
            factor *= pf.ground_floor
        if unit in (1, spec.units_per_floor):
            factor *= pf.end_unit
        if pf.by_unit is not None:
            factor *= pf.by_unit[unit - 1]
        raw_household = {
            "id": values["household"],
            "area_m2": areas[unit - 1],
            "position_factor": round(factor, 6),
            "floor": floor,
            "tags": [_fmt(t, values, (*gpath, "tags", i), report) for i, t in enumerate(spec.tags)],
        }
        for key, pattern in tag_patterns:
            raw_household[key] = _fmt(pattern, values, (*gpath, key), report)
        try:
            out.households.append(HouseholdConfig.model_validate(raw_household))
        except ValidationError as exc:
            first = exc.errors()[0]
            report(gpath, f"generated household {values['household']!r}: {first['msg']}")
            raise _Stop from None
        for j, dspec in enumerate(spec.devices):
            dpath = (*gpath, "devices", j)
            raw_device: dict[str, Any] = {
                "id": _fmt(dspec.id, values, (*dpath, "id"), report),
                **device_bases[j],
                "household": values["household"],
            }
            if dspec.channel is not None:
                raw_device["channel"] = _fmt(dspec.channel, values, (*dpath, "channel"), report)
                unit_text = _fmt(str(dspec.unit), values, (*dpath, "unit"), report)
                try:
                    raw_device["unit"] = int(unit_text)
                except ValueError:
                    report(
                        (*dpath, "unit"),
                        f"pattern {dspec.unit!r} gives {unit_text!r}, not a unit number",
                    )
                    raise _Stop from None
            else:
                raw_device["channel"], raw_device["unit"] = next(slots)
            try:
                out.devices.append((j, DeviceConfig.model_validate(raw_device)))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                report(dpath, f"generated device {raw_device['id']!r}: {where}: {first['msg']}")
                raise _Stop from None


def _channel_slots(
    building: BuildingConfig,
    spec: GenerateSpec,
    gpath: PathT,
    channels: dict[str, ChannelConfig],
    taken: set[tuple[str, int]],
    count: int,
    report: Report,
    out: Expansion,
) -> Iterator[tuple[str, int]]:
    """Return an iterator of (channel id, unit) with at least ``count`` free slots."""
    if count == 0:
        return iter(())
    cspec = spec.channels
    if cspec is None:
        j = next(j for j, d in enumerate(spec.devices) if d.channel is None)
        report(
            (*gpath, "devices", j),
            "a generated device without `channel` and `unit` needs a `channels:` block in generate",
        )
        raise _Stop
    per = cspec.capacity
    cpath = (*gpath, "channels")
    if cspec.use:
        for k, cid in enumerate(cspec.use):
            if cid not in channels:
                report((*cpath, "use", k), f"unknown channel {cid!r}{did_you_mean(cid, channels)}")
                raise _Stop
        free = sum(
            1
            for cid in cspec.use
            for u in range(cspec.first_unit, cspec.first_unit + per)
            if (cid, u) not in taken
        )
        if free < count:
            report(
                cpath,
                f"{count} generated devices need {count} unit ids but the channels in `use` have {free} free "
                f"(units_per_channel {per}); add channels or use `create`",
            )
            raise _Stop
        return _slots(iter(cspec.use), cspec.first_unit, per, taken)
    assert cspec.create is not None
    needed = math.ceil(count / per)
    ids: list[str] = []
    for n in range(1, needed + 1):
        values = {"building": building.id, "n": n}
        raw = {}
        for key, value in cspec.create.items():
            if isinstance(value, str):
                value = _fmt(value, values, (*cpath, "create", key), report)
            elif key == "port" and isinstance(value, int) and not isinstance(value, bool):
                value = value + n - 1
            raw[key] = value
        raw.setdefault("id", f"{building.id}-gen-{n}")
        try:
            channel = _CHANNEL.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            report(
                (*cpath, "create"), f"generated channel {raw.get('id')!r}: {where}: {first['msg']}"
            )
            raise _Stop from None
        out.channels.append(channel)
        ids.append(channel.id)
    return _slots(iter(ids), cspec.first_unit, per, taken)
