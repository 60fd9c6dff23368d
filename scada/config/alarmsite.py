"""What the alarm engine needs of a site's devices: ``DeviceInfo`` records (kind and place in words).

The comm-loss defaults and flood groups (``alarms.commloss``) work per device, building and
channel; ``alarm_devices(site)`` gives them every device with its template, channel, kind
(the template's description), building and household (ids and names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alarms.commloss import DeviceInfo

if TYPE_CHECKING:
    from scada.config.site import SiteConfig

__all__ = ["alarm_devices"]


def _building_of(device_id: str, buildings: set[str]) -> str | None:
    """Return the building whose id prefixes ``device_id`` (``b1.hm`` -> ``b1``), the longest one."""
    parts = device_id.split(".")
    for n in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in buildings:
            return candidate
    return None


def alarm_devices(site: SiteConfig) -> list[DeviceInfo]:
    """Return a ``DeviceInfo`` for every device of ``site`` (disabled ones too), in order.

    A device's building is its own, else its household's, else the building whose id
    prefixes the device id.
    """
    buildings = {b.id: b for b in site.buildings}
    building_ids = set(buildings)
    households = {h.id: h for h in site.households()}
    out: list[DeviceInfo] = []
    for d in site.devices:
        building = d.building
        if building is None and d.household is not None and d.household in households:
            building = site.household_building(d.household)
        if building is None:
            building = _building_of(d.id, building_ids)
        household = households.get(d.household) if d.household is not None else None
        template = site.templates.get(d.template)
        out.append(
            DeviceInfo(
                id=d.id,
                template=d.template,
                channel=d.channel,
                kind=template.description if template is not None else "",
                building=building,
                building_name=buildings[building].name if building in buildings else "",
                household=d.household,
                household_name=household.name if household is not None else "",
                enabled=d.enabled,
            )
        )
    return out
