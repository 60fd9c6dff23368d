"""Pydantic models of buildings and the generator of regular buildings.

A building composes the packages' models: its ``heat``, ``electricity`` and ``households``
are billing's (``billing.config``), the generated devices' point overrides the drivers'
(``drivers.config``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from billing.config import ElectricityConfig, HeatConfig, HouseholdConfig
from configbase.model import ConfigModel, Id
from drivers.config import PointOverride
from i18n import MultiText


class PositionFactors(ConfigModel):
    """Position factors of generated households; the factors that apply are multiplied.

    ``default`` applies to all, ``top_floor``/``ground_floor`` to the highest/lowest floor,
    ``end_unit`` to the first and last unit of a floor, ``by_unit[i]`` to unit position i+1.
    """

    default: float = Field(1.0, gt=0)
    top_floor: float = Field(1.0, gt=0)
    ground_floor: float = Field(1.0, gt=0)
    end_unit: float = Field(1.0, gt=0)
    by_unit: list[float] | None = None

    @field_validator("by_unit")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(x <= 0 for x in v):
            raise ValueError("factors must be greater than 0")
        return v


class GenerateDevice(ConfigModel):
    """A device of every generated household; ``id`` (and ``channel``/``unit`` if given) are patterns.

    Without ``channel`` and ``unit`` the device gets the next free unit id of the generator's
    ``channels``.
    """

    id: str = Field(description='pattern, e.g. "{household}.valve"')
    template: str
    channel: str | None = Field(None, description="pattern; give it together with unit")
    unit: int | str | None = Field(
        None, description='pattern, e.g. "{unit}"; give it together with channel'
    )
    poll_s: float | None = Field(None, gt=0)
    points: dict[str, PointOverride] = Field(default_factory=dict)
    enabled: bool = True
    description: str = ""

    @model_validator(mode="after")
    def _both(self) -> GenerateDevice:
        if (self.channel is None) != (self.unit is None):
            raise ValueError("give both `channel` and `unit`, or neither (automatic assignment)")
        return self


class GenerateChannels(ConfigModel):
    """Where generated devices without explicit channel/unit go.

    ``use`` lists existing channels, filled in order; ``create`` is a channel item whose
    string values may use ``{building}`` and ``{n}`` (1-based channel number) and whose
    integer ``port`` grows by one per extra channel. Each channel takes at most
    ``units_per_channel`` devices, with unit ids from ``first_unit``.
    """

    use: list[str] = Field(default_factory=list)
    create: dict[str, Any] | None = None
    units_per_channel: int | None = Field(
        None, ge=1, le=247, description="default: all of first_unit..247"
    )
    first_unit: int = Field(1, ge=1, le=247)

    @model_validator(mode="after")
    def _one(self) -> GenerateChannels:
        if bool(self.use) == (self.create is not None):
            raise ValueError(
                "give exactly one of `use` (channel ids) or `create` (a channel pattern)"
            )
        if self.first_unit + self.capacity - 1 > 247:
            raise ValueError("first_unit + units_per_channel - 1 must not exceed 247")
        return self

    @property
    def capacity(self) -> int:
        """Unit ids per channel: ``units_per_channel``, or all of ``first_unit``..247."""
        return (
            self.units_per_channel if self.units_per_channel is not None else 248 - self.first_unit
        )


class GenerateSpec(ConfigModel):
    """Households (floors x units_per_floor) and their devices, expanded at load time.

    Patterns are Python format strings over ``building``, ``floor``, ``unit`` (position on
    the floor, 1-based), ``index`` (1-based household number in the building) and, after the
    household id, ``household``.
    """

    floors: int = Field(ge=1, le=500)
    units_per_floor: int = Field(ge=1, le=500)
    first_floor: int = 1
    household_id: str = "{building}.{floor}{unit:02d}"
    area_m2: float | list[float] = Field(description="one area, or one per unit position")
    position_factor: PositionFactors = Field(default_factory=PositionFactors)
    valve_tag: str | None = None
    room_tag: str | None = None
    setpoint_tag: str | None = None
    tags: list[str] = Field(default_factory=list)
    skip: list[str] = Field(
        default_factory=list, description="generated household ids to leave out"
    )
    devices: list[GenerateDevice] = Field(default_factory=list)
    channels: GenerateChannels | None = None

    @model_validator(mode="after")
    def _sizes(self) -> GenerateSpec:
        if isinstance(self.area_m2, list):
            if len(self.area_m2) != self.units_per_floor:
                raise ValueError(
                    f"area_m2 lists {len(self.area_m2)} areas for {self.units_per_floor} units per floor"
                )
            if any(a <= 0 for a in self.area_m2):
                raise ValueError("areas must be greater than 0")
        elif self.area_m2 <= 0:
            raise ValueError("area_m2 must be greater than 0")
        by_unit = self.position_factor.by_unit
        if by_unit is not None and len(by_unit) != self.units_per_floor:
            raise ValueError(
                f"position_factor.by_unit lists {len(by_unit)} factors for {self.units_per_floor} units"
            )
        return self


class BuildingConfig(ConfigModel):
    """A building: its heat metering and households (listed, generated, or both).

    ``name`` and ``description`` may be given per language (shown with ``i18n.pick``).
    """

    id: Id
    name: MultiText = Field(
        "", description="a text, or one per language: {en: ..., zh: ..., ru: ...}"
    )
    description: MultiText = ""
    heat: HeatConfig | None = None
    electricity: ElectricityConfig | None = Field(
        None, description="master meter and shared-loss allocation (issue 8)"
    )
    households: list[HouseholdConfig] = Field(default_factory=list)
    generate: GenerateSpec | None = None
