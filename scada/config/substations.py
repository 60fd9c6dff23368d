"""Pydantic model of a heating substation: the heat exchanger, pump and controller of buildings.

A substation takes heat from the district network (primary side) and feeds the heating loop of
its buildings (secondary side). Its tags name the device points that show it; the reference
checks (tags exist and are numeric, the pump is a bool, buildings exist and belong to one
substation at most) run in ``scada.config.checks``.
"""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator

from configbase.model import ConfigModel, Id
from i18n import MultiText, _

__all__ = ["SubstationConfig"]

#: The substation's numeric tags (degC, %, m3/h, kW, kWh), in the order they are documented.
NUMBER_TAGS = (
    "outdoor_tag",
    "primary_supply_tag",
    "primary_return_tag",
    "supply_tag",
    "return_tag",
    "supply_setpoint_tag",
    "pump_speed_tag",
    "flow_tag",
    "power_tag",
    "energy_tag",
)
#: The substation's bool tags.
BOOL_TAGS = ("pump_tag",)


class SubstationConfig(ConfigModel):
    """A heating substation serving ``buildings``; every ``*_tag`` names a device point.

    ``heating_curve`` lists ``(outdoor_c, supply_c)`` points sorted by outdoor temperature: the
    supply-temperature setpoint the controller follows (linear between points, flat beyond the
    ends; see ``curve_setpoint_c``). Without a curve the setpoint is whatever the device shows.
    """

    id: Id
    name: MultiText = Field(description="a text, or one per language: {en: ..., zh: ..., ru: ...}")
    description: MultiText = ""
    buildings: tuple[Id, ...] = Field(min_length=1, description="ids of the buildings it feeds")
    outdoor_tag: str = Field(description="outdoor temperature, degC")
    primary_supply_tag: str | None = Field(None, description="district network supply, degC")
    primary_return_tag: str | None = Field(None, description="district network return, degC")
    supply_tag: str = Field(description="secondary (building loop) supply temperature, degC")
    return_tag: str = Field(description="secondary return temperature, degC")
    supply_setpoint_tag: str | None = Field(
        None, description="secondary supply setpoint, degC (writable: overrides the curve)"
    )
    pump_tag: str | None = Field(
        None, description="bool: circulation pump running (writable: start/stop)"
    )
    pump_speed_tag: str | None = Field(None, description="circulation pump speed, %")
    flow_tag: str | None = Field(None, description="secondary flow, m3/h")
    power_tag: str | None = Field(None, description="heat power, kW")
    energy_tag: str | None = Field(None, description="heat energy, total, kWh")
    heating_curve: tuple[tuple[float, float], ...] | None = Field(
        None,
        description="[[outdoor_c, supply_c], ...] sorted by outdoor temperature, at least 2 points",
    )

    @field_validator("heating_curve")
    @classmethod
    def _curve(
        cls, v: tuple[tuple[float, float], ...] | None
    ) -> tuple[tuple[float, float], ...] | None:
        if v is None:
            return v
        if len(v) < 2:
            raise ValueError(_("a heating curve needs at least 2 points [outdoor_c, supply_c]"))
        outdoor = [p[0] for p in v]
        for a, b in itertools.pairwise(outdoor):
            if not b > a:
                raise ValueError(
                    _(
                        "heating curve points must be sorted by outdoor temperature, "
                        "each above the one before ({later:g} after {earlier:g})",
                        later=b,
                        earlier=a,
                    )
                )
        return v

    def tags(self) -> dict[str, str]:
        """Return ``{field: tag}`` for every tag the substation names (``outdoor_tag`` ...)."""
        out: dict[str, str] = {}
        for key in (*NUMBER_TAGS, *BOOL_TAGS):
            tag = getattr(self, key)
            if tag is not None:
                out[key] = tag
        return out

    def curve_setpoint_c(self, outdoor_c: float) -> float | None:
        """Return the heating curve's supply setpoint at ``outdoor_c`` (degC); None without a curve.

        Linear between the curve's points, the end value beyond either end.
        """
        curve = self.heating_curve
        if curve is None:
            return None
        if outdoor_c <= curve[0][0]:
            return float(curve[0][1])
        for (x0, y0), (x1, y1) in itertools.pairwise(curve):
            if outdoor_c <= x1:
                return float(y0 + (y1 - y0) * (outdoor_c - x0) / (x1 - x0))
        return float(curve[-1][1])
