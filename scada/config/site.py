"""The whole site configuration (``SiteConfig``) and the lookups derived from it."""

from __future__ import annotations

import dataclasses
import zoneinfo
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from alarms.config import AlarmDefaults, AlarmRule, NotificationsConfig
from billing.config import AccountConfig, HeatTariff, HouseholdConfig, TariffConfig
from billing.payments import PaymentsConfig
from configbase.bulk import paused_gc
from configbase.model import ConfigModel, Id
from drivers.config import (
    STATUS_POINTS,
    ChannelConfig,
    DeviceConfig,
    PointConfig,
    TemplateConfig,
)
from historian.config import HistorianConfig
from i18n import DEFAULT_LANGUAGE, LANGUAGES, MultiText
from scada.config.buildings import BuildingConfig
from scada.config.errors import ConfigIssue
from scada.config.substations import SubstationConfig
from tags.config import ComputedTagConfig, MemoryTagConfig, TagConfig
from tags.model import Source, TagDef, TagType


class SiteInfo(ConfigModel):
    """Who the site is: ``id`` (short, used in names), display ``name``, IANA ``timezone``.

    ``language`` is the site's default language (``en``, ``zh_CN``, ``ru``); ``energy_unit`` the
    unit heat energy is shown in (``kWh``, ``GJ``, ``Gcal``; stored values stay kWh).
    """

    id: Id
    name: MultiText = ""
    timezone: str = "UTC"
    description: MultiText = ""
    language: str = Field(
        DEFAULT_LANGUAGE,
        description="default language of screens and messages: en, zh_CN or ru "
        "(a user's own choice and a request's Accept-Language win over it)",
    )
    energy_unit: Literal["kWh", "GJ", "Gcal"] = Field(
        "kWh", description="unit of heat energy shown to people: kWh, GJ or Gcal (issue 20)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Asia/Shanghai)"
            ) from None
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"unknown language {v!r} (use one of {', '.join(LANGUAGES)})")
        return v


class SimulateConfig(ConfigModel):
    """Run the built-in device simulator (``simulate: true`` is short for ``{enabled: true}``)."""

    enabled: bool = True
    speed: float = Field(1.0, gt=0, description="simulated seconds per wall-clock second")
    seed: int = 0
    backfill_days: float = Field(
        0,
        ge=0,
        le=400,
        description="at start-up, simulate this many past days into an empty historian (0: off)",
    )


class BackupConfig(ConfigModel):
    """Daily backup of the data dir (``scada run``): into ``dir`` at local time ``at``.

    ``dir`` is relative to the working directory (like ``--data-dir``) and must lie
    outside the data dir; backups older than ``keep_days`` are deleted after each run.
    """

    dir: str = "backups"
    keep_days: int = Field(7, ge=1)
    at: str = Field("03:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, site time")
    enabled: bool = True


class HealthConfig(ConfigModel):
    """Thresholds of the server's own health tags (``system.*``, docs/alarms.md#system-health).

    ``system.disk_low`` is true while the data dir's filesystem has less than
    ``disk_min_free_mb`` or less than ``disk_min_free_pct`` percent free (either one).
    The audit log's hash chain is checked at start, after each scheduled backup and at least
    every ``audit_check_h`` hours.
    """

    disk_min_free_mb: float = Field(1024, ge=0, description="disk_low below this many MB free")
    disk_min_free_pct: float = Field(
        5, ge=0, le=100, description="disk_low below this percentage free"
    )
    audit_check_h: float = Field(
        24, gt=0, description="hours between two checks of the audit log's hash chain"
    )


def merge_points(template: TemplateConfig, device: DeviceConfig) -> dict[str, dict[str, Any]]:
    """Return the raw point dicts of ``device``: template points updated by the device's overrides."""
    merged: dict[str, dict[str, Any]] = {
        name: point.model_dump(exclude_unset=True) for name, point in template.points.items()
    }
    for name, override in device.points.items():
        merged.setdefault(name, {}).update(override.model_dump(exclude_unset=True))
    return merged


@dataclass(slots=True)
class _Index:
    channels: dict[str, Any]
    devices: dict[str, DeviceConfig]
    points: dict[str, dict[str, PointConfig]]
    on_channel: dict[str, list[DeviceConfig]]
    buildings: dict[str, BuildingConfig]
    substation_of: dict[str, SubstationConfig]
    households: dict[str, HouseholdConfig]
    household_building: dict[str, str]
    tag_defs: list[TagDef]


class SiteConfig(ConfigModel):
    """A validated site configuration. Load it with ``scada.config.load_site``.

    Constructing it directly validates the structure only; ``load_site``/``load_site_text``
    also check references, duplicates, registers and expressions, expand generators and
    locate every error. Read-only; the lookups (``device()``, ``tag_defs()``...) are built
    once, on first use.
    """

    include: list[str] = Field(
        default_factory=list, description="files merged into this one (relative paths)"
    )
    site: SiteInfo
    historian: HistorianConfig = Field(default_factory=HistorianConfig)
    simulate: SimulateConfig = Field(default_factory=lambda: SimulateConfig(enabled=False))
    backup: BackupConfig | None = Field(
        None, description="scheduled daily backup (docs: docker/README.md)"
    )
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="system health thresholds (docs/alarms.md)"
    )
    channels: list[ChannelConfig] = Field(default_factory=list)
    templates: dict[Id, TemplateConfig] = Field(default_factory=dict)
    devices: list[DeviceConfig] = Field(default_factory=list)
    tags: list[TagConfig] = Field(default_factory=list)
    buildings: list[BuildingConfig] = Field(default_factory=list)
    substations: tuple[SubstationConfig, ...] = Field(
        default_factory=tuple, description="heating substations feeding the buildings"
    )
    alarms: list[AlarmRule] = Field(
        default_factory=list, description="alarm rules (docs/alarms.md)"
    )
    alarm_defaults: AlarmDefaults = Field(
        default_factory=AlarmDefaults,
        description="comm-loss alarm of every device, flood suppression (docs/alarms.md)",
    )
    notifications: NotificationsConfig = Field(
        default_factory=NotificationsConfig, description="notifiers, on-call roster, escalation"
    )
    tariffs: list[TariffConfig] = Field(default_factory=list, description="tariffs (issue 8)")
    heat_tariff: HeatTariff | None = Field(
        None, description="site-wide heat fees; a building's `heat.tariff` overrides it"
    )
    accounts: list[AccountConfig] = Field(
        default_factory=list, description="prepaid accounts (issue 8)"
    )
    payments: PaymentsConfig = Field(
        default_factory=PaymentsConfig,
        description="payment providers whose signed callbacks post top-ups (billing/payments.py)",
    )
    users: list[dict[str, Any]] = Field(
        default_factory=list, description="users and roles (issue 6)"
    )

    _index: _Index | None = PrivateAttr(None)
    _files: list[str] = PrivateAttr(default_factory=list)
    _warnings: list[ConfigIssue] = PrivateAttr(default_factory=list)

    @field_validator("simulate", mode="before")
    @classmethod
    def _simulate_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return {"enabled": v}
        return v

    def __repr__(self) -> str:
        """Return a one-line summary: the full model of a large site is megabytes of text.

        (Libraries format reprs eagerly, e.g. Bokeh's server pretty-prints its route table,
        whose handlers hold the services and so the site.)
        """
        return (
            f"SiteConfig(site={self.site.id!r}, channels={len(self.channels)}, "
            f"devices={len(self.devices)}, buildings={len(self.buildings)}, "
            f"substations={len(self.substations)}, files={len(self._files)})"
        )

    __str__ = __repr__

    # ------------------------------------------------------------------ lookups

    def warnings(self) -> list[ConfigIssue]:
        """Return the loader's warnings (secrets written inline), located like errors."""
        return list(self._warnings)

    def source_files(self) -> list[str]:
        """Return the files this configuration was read from (main file first), for reloads."""
        return list(self._files)

    def _idx(self) -> _Index:
        # Read the private attribute from its dict: ``self._index`` goes through pydantic's
        # ``__getattr__`` (7 us), and the lookups run per device (40,000 at start-up).
        private = self.__pydantic_private__
        index = private.get("_index") if private is not None else None
        if index is None:
            index = self._index = self._build_index()
        return index

    def _build_index(self) -> _Index:
        with paused_gc():
            return self._build_index_now()

    def _build_index_now(self) -> _Index:
        templates = self.templates
        points: dict[str, dict[str, PointConfig]] = {}
        on_channel: dict[str, list[DeviceConfig]] = {c.id: [] for c in self.channels}
        for d in self.devices:
            t = templates[d.template]
            if d.points:
                points[d.id] = {
                    n: PointConfig.model_validate(p) for n, p in merge_points(t, d).items()
                }
            else:
                points[d.id] = dict(t.points)
            on_channel.setdefault(d.channel, []).append(d)
        households: dict[str, HouseholdConfig] = {}
        household_building: dict[str, str] = {}
        for b in self.buildings:
            for h in b.households:
                households[h.id] = h
                household_building[h.id] = b.id
        index = _Index(
            channels={c.id: c for c in self.channels},
            devices={d.id: d for d in self.devices},
            points=points,
            on_channel=on_channel,
            buildings={b.id: b for b in self.buildings},
            substation_of=_substation_of(self.substations),
            households=households,
            household_building=household_building,
            tag_defs=[],
        )
        index.tag_defs = _tag_defs(self, index)
        return index

    def channel(self, channel_id: str) -> ChannelConfig:
        """Return the channel ``channel_id``; raise KeyError if there is none."""
        return self._idx().channels[channel_id]

    def template(self, template_id: str) -> TemplateConfig:
        """Return the template ``template_id``; raise KeyError if there is none."""
        return self.templates[template_id]

    def device(self, device_id: str) -> DeviceConfig:
        """Return the device ``device_id``; raise KeyError if there is none."""
        return self._idx().devices[device_id]

    def points(self, device_id: str) -> dict[str, PointConfig]:
        """Return the device's points: its template's, with the device's overrides and extra points."""
        return self._idx().points[device_id]

    def devices_on(self, channel_id: str) -> list[DeviceConfig]:
        """Return the devices on channel ``channel_id`` in configuration order (disabled ones too)."""
        return list(self._idx().on_channel.get(channel_id, ()))

    def building(self, building_id: str) -> BuildingConfig:
        """Return the building ``building_id`` (generated households included); KeyError if none."""
        return self._idx().buildings[building_id]

    def substation(self, substation_id: str) -> SubstationConfig:
        """Return the substation ``substation_id``; raise KeyError if there is none."""
        for s in self.substations:
            if s.id == substation_id:
                return s
        raise KeyError(substation_id)

    def substation_of(self, building_id: str) -> SubstationConfig | None:
        """Return the substation that feeds building ``building_id``, or None if none does."""
        return self._idx().substation_of.get(building_id)

    def households(self) -> list[HouseholdConfig]:
        """Return every household of every building, in configuration order."""
        return list(self._idx().households.values())

    def household_building(self, household_id: str) -> str:
        """Return the id of the building that holds household ``household_id``."""
        return self._idx().household_building[household_id]

    def tag_defs(self) -> list[TagDef]:
        """Return every tag: device points, device status tags, memory and computed tags."""
        return list(self._idx().tag_defs)

    def initial_values(self) -> dict[str, Any]:
        """Return ``{tag: value}`` for memory tags with an ``initial`` value (coerced to the tag type)."""
        return {
            t.name: TagType(t.type).coerce(t.initial)
            for t in self.tags
            if isinstance(t, MemoryTagConfig) and t.initial is not None
        }

    def summary(self) -> dict[str, int]:
        """Return the counts ``scada check`` prints (``substations`` only when there are some)."""
        counts = {
            "channels": len(self.channels),
            "templates": len(self.templates),
            "devices": len(self.devices),
            "tags": len(self._idx().tag_defs),
            "buildings": len(self.buildings),
            "households": len(self._idx().households),
        }
        if self.substations:
            counts["substations"] = len(self.substations)
        return counts


def _substation_of(substations: tuple[SubstationConfig, ...]) -> dict[str, SubstationConfig]:
    """Return building id -> the (first) substation that lists it."""
    out: dict[str, SubstationConfig] = {}
    for s in substations:
        for b in s.buildings:
            out.setdefault(b, s)
    return out


def _building_of(name: str, buildings: dict[str, BuildingConfig]) -> str | None:
    """Return the building whose id prefixes ``name`` (``b1.note`` -> ``b1``), the longest one."""
    parts = name.split(".")
    for n in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in buildings:
            return candidate
    return None


#: TagDef's fields in order: device tags are built positionally from a row per template
#: point (a third faster than keywords; 323,000 tags at 200 buildings).
_TAGDEF_FIELDS = tuple(f.name for f in dataclasses.fields(TagDef))
_NAME, _DEVICE, _BUILDING, _HOUSEHOLD, _POLL = (
    _TAGDEF_FIELDS.index(n) for n in ("name", "device", "building", "household", "poll_s")
)
#: The status tags every device gets: type, unit, description.
_STATUS_TAGS: dict[str, tuple[TagType, str, str]] = {
    "online": (TagType.BOOL, "", "device answers"),
    "last_ok": (TagType.FLOAT, "s", "time of the last good poll (epoch seconds)"),
    "errors": (TagType.INT, "", "failed requests since start"),
    "latency_ms": (TagType.FLOAT, "ms", "reply time of the last request"),
}

#: A device tag's TagDef fields in order (the per-device ones still unset) and the point's
#: own poll period: one per template point, the same for every device of the template.
_Row = tuple[str, list[Any], float | None]


def _fields(proto: TagDef) -> list[Any]:
    return [getattr(proto, name) for name in _TAGDEF_FIELDS]


def _point_rows(points: dict[str, PointConfig]) -> list[_Row]:
    """Return a row per point: ``.name``, the TagDef fields, the point's ``poll_s``."""
    return [
        (
            f".{name}",
            _fields(
                TagDef(
                    name=name,
                    type=p.tag_type,
                    unit=p.unit,
                    description=p.description,
                    source=Source.DEVICE,
                    deadband=p.deadband,
                    writable=p.writable,
                    min=p.min,
                    max=p.max,
                    min_interval_s=p.min_interval_s,
                    max_step=p.max_step,
                    historize=p.historize,
                )
            ),
            p.poll_s,
        )
        for name, p in points.items()
    ]


def _status_rows() -> list[_Row]:
    """Return a row per status tag (``STATUS_POINTS`` order); they poll with their device."""
    rows: list[_Row] = []
    for suffix in STATUS_POINTS:
        typ, unit, text = _STATUS_TAGS[suffix]
        proto = TagDef(
            name=suffix,
            type=typ,
            unit=unit,
            description=text,
            source=Source.STATUS,
            historize=suffix == "online",
        )
        rows.append((f".{suffix}", _fields(proto), None))
    return rows


_STATUS_ROWS = _status_rows()


def _device_tag(
    fields: list[Any], name: str, d: DeviceConfig, building: str | None, poll_s: float | None
) -> TagDef:
    row = fields.copy()
    row[_NAME] = name
    row[_DEVICE] = d.id
    row[_BUILDING] = building
    row[_HOUSEHOLD] = d.household
    row[_POLL] = poll_s
    return TagDef(*row)


def _tag_defs(cfg: SiteConfig, index: _Index) -> list[TagDef]:
    defs: list[TagDef] = []
    append = defs.append
    by_template: dict[str, list[_Row]] = {}
    for d in cfg.devices:
        template = cfg.templates[d.template]
        channel = index.channels[d.channel]
        device_poll = d.poll_s or template.poll_s or channel.poll_s
        building = d.building
        if building is None and d.household is not None:
            building = index.household_building.get(d.household)
        if d.points:  # overrides or extra points: this device's own rows
            rows = _point_rows(index.points[d.id])
        elif d.template in by_template:
            rows = by_template[d.template]
        else:
            rows = by_template[d.template] = _point_rows(template.points)
        for suffix, fields, point_poll in rows:
            append(_device_tag(fields, d.id + suffix, d, building, point_poll or device_poll))
        for suffix, fields, _ in _STATUS_ROWS:
            append(_device_tag(fields, d.id + suffix, d, building, device_poll))
    for t in cfg.tags:
        building = _building_of(t.name, index.buildings)
        if isinstance(t, MemoryTagConfig):
            defs.append(
                TagDef(
                    name=t.name,
                    type=TagType(t.type),
                    unit=t.unit,
                    description=t.description,
                    source=Source.MEMORY,
                    deadband=t.deadband,
                    writable=t.writable,
                    min=t.min,
                    max=t.max,
                    min_interval_s=t.min_interval_s,
                    max_step=t.max_step,
                    historize=t.historize,
                    building=building,
                )
            )
        else:
            assert isinstance(t, ComputedTagConfig)
            defs.append(
                TagDef(
                    name=t.name,
                    type=TagType(t.type),
                    unit=t.unit,
                    description=t.description,
                    source=Source.COMPUTED,
                    deadband=t.deadband,
                    expr=t.expr,
                    historize=t.historize,
                    building=building,
                )
            )
    return defs
