"""Read-only views of the site configuration shaped for the screens (no business rules).

``building_layout`` turns a building's households into the floors x units grid of the mimic;
``building_devices`` lists the devices whose ``online`` tag tells the building's comm status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tags.model import Quality, TagValue

if TYPE_CHECKING:
    from scada.config import SiteConfig
    from tags.database import TagDatabase

__all__ = [
    "UnitCell",
    "building_devices",
    "building_layout",
    "comm_summary",
    "device_of",
    "tag_or_none",
]


@dataclass(frozen=True, slots=True)
class UnitCell:
    """One household in the mimic grid: position and the tags that draw it."""

    household: str
    label: str
    floor: int
    position: int
    area_m2: float
    valve_tag: str | None
    room_tag: str | None
    setpoint_tag: str | None
    fault_tag: str | None
    online_tag: str | None
    name: str = ""


def tag_or_none(db: TagDatabase, name: str | None) -> str | None:
    """Return ``name`` when the database knows it, else None."""
    return name if name is not None and name in db else None


def device_of(db: TagDatabase, tag: str | None) -> str | None:
    """Return the device id owning ``tag`` (None for unknown or non-device tags)."""
    if tag is None or tag not in db:
        return None
    return db.definition(tag).device


def building_layout(site: SiteConfig, db: TagDatabase, building_id: str) -> list[UnitCell]:
    """Return the building's households as cells: floor from the config, position by order.

    Households without a floor go on floor 0. Positions count from 0 per floor in
    configuration order.
    """
    building = site.building(building_id)
    cells: list[UnitCell] = []
    per_floor: dict[int, int] = {}
    for h in building.households:
        floor = h.floor if h.floor is not None else 0
        pos = per_floor.get(floor, 0)
        per_floor[floor] = pos + 1
        valve_dev = device_of(db, h.valve_tag) or device_of(db, h.room_tag)
        fault = tag_or_none(db, f"{valve_dev}.fault") if valve_dev else None
        online = tag_or_none(db, f"{valve_dev}.online") if valve_dev else None
        label = h.id[len(building_id) + 1 :] if h.id.startswith(building_id + ".") else h.id
        cells.append(
            UnitCell(
                household=h.id,
                label=label,
                floor=floor,
                position=pos,
                area_m2=h.area_m2,
                valve_tag=tag_or_none(db, h.valve_tag),
                room_tag=tag_or_none(db, h.room_tag),
                setpoint_tag=tag_or_none(db, h.setpoint_tag),
                fault_tag=fault,
                online_tag=online,
                name=h.name,
            )
        )
    return cells


def building_devices(site: SiteConfig, building_id: str) -> list[str]:
    """Return the ids of the enabled devices of a building (by ``building`` or household)."""
    out = []
    households = {h.id for h in site.building(building_id).households}
    for d in site.devices:
        if not d.enabled:
            continue
        if d.building == building_id or d.household in households:
            out.append(d.id)
    return out


def comm_summary(values: Iterable[TagValue]) -> tuple[int, int]:
    """Return ``(online, total)`` for a set of ``<device>.online`` values (bad quality counts offline)."""
    total = online = 0
    for tv in values:
        total += 1
        if tv.value is True and tv.quality is Quality.GOOD:
            online += 1
    return online, total
