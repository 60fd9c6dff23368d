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
    #: the unit's electricity meter (device id) and its tags, when it has one
    meter: str | None = None
    power_tag: str | None = None
    energy_tag: str | None = None
    relay_tag: str | None = None
    meter_online_tag: str | None = None
    #: the prepaid account of the unit (its ``level`` and ``balance`` tags), when it has one
    account: str | None = None
    level_tag: str | None = None
    balance_tag: str | None = None

    @property
    def kind(self) -> str:
        """``flat`` for a heated dwelling (valve or room), ``shop`` for a unit off the heating loop."""
        return "flat" if (self.valve_tag or self.room_tag or self.setpoint_tag) else "shop"

    @property
    def devices(self) -> tuple[str, ...]:
        """The device ids drawn in this cell (valve/thermostat and electricity meter)."""
        out = [d for d in (_device_of_tag(self.online_tag), self.meter) if d]
        out += [d for d in (_device_of_tag(self.meter_online_tag),) if d and d not in out]
        return tuple(out)

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag drawn in this cell."""
        return tuple(
            t
            for t in (
                self.valve_tag,
                self.room_tag,
                self.setpoint_tag,
                self.fault_tag,
                self.online_tag,
                self.power_tag,
                self.energy_tag,
                self.relay_tag,
                self.meter_online_tag,
                self.level_tag,
                self.balance_tag,
            )
            if t
        )


def _device_of_tag(tag: str | None) -> str | None:
    """Return ``dev`` of a ``dev.online`` tag name."""
    if tag is None or not tag.endswith(".online"):
        return None
    return tag[: -len(".online")]


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
    accounts = {a.household: a for a in site.accounts if a.household}
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
        account = accounts.get(h.id)
        meter = _meter_of(db, [*h.tags, *(m.energy for m in (account.meters if account else ()))])
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
                meter=meter,
                power_tag=tag_or_none(db, f"{meter}.power_kw") if meter else None,
                energy_tag=tag_or_none(db, f"{meter}.energy_kwh") if meter else None,
                relay_tag=tag_or_none(db, f"{meter}.relay") if meter else None,
                meter_online_tag=tag_or_none(db, f"{meter}.online") if meter else None,
                account=account.id if account else None,
                level_tag=tag_or_none(db, f"acct.{account.id}.level") if account else None,
                balance_tag=tag_or_none(db, f"acct.{account.id}.balance") if account else None,
            )
        )
    return cells


def _meter_of(db: TagDatabase, energy_tags: Iterable[str]) -> str | None:
    """Return the device of the first energy tag (``<meter>.energy_kwh``) that the database has."""
    for name in energy_tags:
        dev = device_of(db, name)
        if dev is not None:
            return dev
    return None


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
