"""Physics of heating substations: weather-compensated supply, circulation pump, metering.

A substation takes heat from the district network (primary side) through a heat exchanger
and feeds its buildings' heating loop (secondary side). Per substation:

- the supply setpoint follows its heating curve of the outdoor temperature (the site's
  default curve, ``RoomParams.supply_c``, without one) unless a master wrote it;
- with the pump running, the secondary supply follows the setpoint as a first-order lag
  (``supply_tau_s``), limited by the primary supply less the exchanger's approach; a building
  sees it ``network_loss_k`` colder at its heat meter;
- the flow is the sum of its buildings' flows, the return the flow-weighted mix of their
  returns, power ``rho * c * flow * (supply - return)`` (so it includes the network losses)
  and energy its integral; pump speed follows the flow against the design flow;
- a stopped pump stops every flow: the buildings' heat meters read no flow and no power and
  the water standing in the pipes cools towards the pipe ambient (``HeatParams.standstill_tau_s``,
  done by ``HeatMeters``), and so does the secondary supply at the substation.

No random numbers: a site without substations draws exactly what it drew before.
Units: degC, kW, kWh, m3/h, %, s. Not thread-safe (the model's owner calls it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.simulator.physics import HeatMeters, RoomParams, water_power_kw

__all__ = ["SubstationParams", "SubstationPlan", "Substations", "plan_substations"]

#: Model variable -> the SubstationConfig field whose tag shows it.
TAG_VARS: dict[str, str] = {
    "outdoor_tag": "outdoor_c",
    "primary_supply_tag": "primary_supply_c",
    "primary_return_tag": "primary_return_c",
    "supply_tag": "supply_c",
    "return_tag": "return_c",
    "supply_setpoint_tag": "supply_setpoint_c",
    "pump_tag": "pump",
    "pump_speed_tag": "pump_speed_pct",
    "flow_tag": "flow_m3h",
    "power_tag": "power_kw",
    "energy_tag": "energy_kwh",
}


@dataclass(frozen=True, slots=True)
class SubstationParams:
    """Dynamics of a substation and its district network side."""

    supply_tau_s: float = 600.0  # secondary supply follows its setpoint
    network_loss_k: float = 1.0  # supply lost between the substation and a building's meter
    approach_k: float = 3.0  # exchanger: secondary supply <= primary supply - approach
    # district network supply against outdoor temperature (flat beyond the ends)
    primary_curve: tuple[tuple[float, float], ...] = ((-20.0, 110.0), (10.0, 75.0))
    min_speed_pct: float = 30.0  # a running pump's lowest speed


@dataclass(slots=True)
class SubstationPlan:
    """Which substation feeds which building and which device points show it.

    ``curves[s]`` is an ``(n, 2)`` array of ``(outdoor_c, supply_c)`` or None; ``building_sub``
    maps a building index to its substation; ``refs[device]`` is ``(substation, {point: var})``
    for points the configuration's tags name.
    """

    ids: list[str] = field(default_factory=list)
    curves: list[np.ndarray | None] = field(default_factory=list)
    building_sub: dict[int, int] = field(default_factory=dict)
    refs: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)

    def add(self, sub_id: str, curve: Any) -> int:
        """Append a substation; return its index."""
        self.ids.append(sub_id)
        self.curves.append(None if curve is None else np.asarray(curve, dtype=float))
        return len(self.ids) - 1


def plan_substations(
    site: Any, devices: dict[str, Any], roles: dict[str, str], bld_index: dict[str, int]
) -> SubstationPlan:
    """Return the substations of ``site``: configured ones, then one per unclaimed substation device.

    Buildings and tags that are not there (a collector's part of a site) are left out.
    """
    plan = SubstationPlan()
    claimed: set[str] = set()
    for s in getattr(site, "substations", None) or ():
        i = plan.add(s.id, s.heating_curve)
        for b in s.buildings:
            if b in bld_index:
                plan.building_sub.setdefault(bld_index[b], i)
        for key, var in TAG_VARS.items():
            tag = getattr(s, key, None)
            if not tag or "." not in tag:
                continue
            dev, point = tag.rsplit(".", 1)
            if dev in devices:
                sub, refs = plan.refs.setdefault(dev, (i, {}))
                if sub == i:
                    refs[point] = var
                claimed.add(dev)
    for dev_id, role in roles.items():
        if role == "substation" and dev_id not in claimed:
            plan.refs[dev_id] = (plan.add(dev_id, None), {})
    return plan


class Substations:
    """Every substation of a site as arrays (one entry per substation).

    Call ``advance`` first in a time step (setpoints, secondary supply), hand
    ``building_supply`` to the rooms and heat meters, then ``collect`` their flows and returns.
    """

    def __init__(
        self,
        plan: SubstationPlan,
        heat: HeatMeters,
        outdoor_c: float,
        room_params: RoomParams,
        params: SubstationParams | None = None,
    ) -> None:
        p = params or SubstationParams()
        self.params = p
        self.room_params = room_params
        self.ambient_c = heat.params.pipe_ambient_c
        self.standstill_tau_s = heat.params.standstill_tau_s
        self.curves = plan.curves
        n = len(plan.curves)
        self.n = n
        self.sub_of = np.full(heat.n, -1, dtype=np.int64)
        for b, s in plan.building_sub.items():
            self.sub_of[b] = s
        fed = self.sub_of >= 0
        self._fed = fed
        self.design_flow_m3h = np.bincount(self.sub_of[fed], heat.design_flow_m3h[fed], minlength=n)
        self.outdoor_c = float(outdoor_c)
        self.manual = np.zeros(n, dtype=bool)
        self.setpoint_c = self.curve_c(self.outdoor_c)
        self.supply_c = self.setpoint_c.copy()
        self.pump_on = np.ones(n, dtype=bool)
        self.primary_supply_c = np.full(n, self._primary_c(self.outdoor_c))
        self.flow_m3h = np.zeros(n)
        self.return_c = self.supply_c - room_params.design_delta_t_k / 2.0
        self.primary_return_c = self.return_c + p.approach_k
        self.power_kw = np.zeros(n)
        self.pump_speed_pct = np.where(self.pump_on, p.min_speed_pct, 0.0)
        # the substation's meter has counted its buildings' heat plus some network losses
        self.energy_kwh = np.round(
            np.bincount(self.sub_of[fed], heat.energy_kwh[fed], minlength=n) * 1.05, 1
        )

    # ------------------------------------------------------------------ commands

    def write_setpoint(self, i: int, value_c: float) -> None:
        """Hold substation ``i``'s supply setpoint at ``value_c`` instead of its curve's."""
        self.manual[i] = True
        self.setpoint_c[i] = float(value_c)

    def follow_curve(self, i: int) -> None:
        """Hand substation ``i``'s setpoint back to its heating curve."""
        self.manual[i] = False
        self.setpoint_c[i] = self.curve_c(self.outdoor_c)[i]

    def set_pump(self, i: int, running: bool) -> None:
        """Start or stop substation ``i``'s circulation pump.

        A stopped pump reads no speed, flow and power at once; its buildings' meters follow
        with the next step.
        """
        self.pump_on[i] = bool(running)
        if not running:
            self.pump_speed_pct[i] = self.flow_m3h[i] = self.power_kw[i] = 0.0

    # ------------------------------------------------------------------ physics

    def curve_c(self, outdoor_c: float) -> np.ndarray:
        """Return each substation's heating-curve setpoint at ``outdoor_c``."""
        out = np.empty(self.n)
        default = self.room_params.supply_c(outdoor_c)
        for i, curve in enumerate(self.curves):
            out[i] = default if curve is None else np.interp(outdoor_c, curve[:, 0], curve[:, 1])
        return out

    def _primary_c(self, outdoor_c: float) -> float:
        curve = np.asarray(self.params.primary_curve, dtype=float)
        return float(np.interp(outdoor_c, curve[:, 0], curve[:, 1]))

    def advance(self, dt_s: float, outdoor_c: float) -> None:
        """Move setpoints with the weather and the secondary supply towards them (or cool it).

        A step of 0 s (the model settling at its start) puts a running supply at its target.
        """
        p = self.params
        self.outdoor_c = float(outdoor_c)
        self.setpoint_c = np.where(self.manual, self.setpoint_c, self.curve_c(outdoor_c))
        self.primary_supply_c = np.full(self.n, self._primary_c(outdoor_c))
        target = np.minimum(self.setpoint_c, self.primary_supply_c - p.approach_k)
        if dt_s == 0:  # the model's start: a controller that has been running for a while
            self.supply_c = np.where(self.pump_on, target, self.supply_c)
            return
        follow = 1.0 - math.exp(-dt_s / p.supply_tau_s)
        cool = 1.0 - math.exp(-dt_s / self.standstill_tau_s)
        self.supply_c = np.where(
            self.pump_on,
            self.supply_c + (target - self.supply_c) * follow,
            self.supply_c + (self.ambient_c - self.supply_c) * cool,
        )

    def building_supply(self, default_c: float) -> tuple[np.ndarray, np.ndarray]:
        """Return per building the supply at its meter and whether water flows there.

        Buildings no substation feeds get ``default_c`` (the site's curve) and always flow.
        """
        fed = self._fed
        supply = np.full(len(self.sub_of), float(default_c))
        flowing = np.ones(len(self.sub_of), dtype=bool)
        subs = self.sub_of[fed]
        supply[fed] = self.supply_c[subs] - self.params.network_loss_k
        flowing[fed] = self.pump_on[subs]
        return supply, flowing

    def collect(self, dt_s: float, heat: HeatMeters) -> None:
        """Sum the buildings' flows and mix their returns; integrate power into energy."""
        p = self.params
        fed = self._fed
        subs = self.sub_of[fed]
        flow_b = heat.flow_m3h[fed]
        flow = np.bincount(subs, flow_b, minlength=self.n).astype(float)
        mixed = np.bincount(subs, flow_b * heat.return_c[fed], minlength=self.n)
        count = np.bincount(subs, minlength=self.n)
        mean = np.bincount(subs, heat.return_c[fed], minlength=self.n)
        with np.errstate(divide="ignore", invalid="ignore"):
            ret = np.where(flow > 0, mixed / flow, mean / np.maximum(count, 1))
        cool = 1.0 - math.exp(-dt_s / self.standstill_tau_s)
        # a substation that feeds no building shows its own water cooling
        idle = count == 0
        ret = np.where(idle, self.return_c + (self.ambient_c - self.return_c) * cool, ret)
        self.flow_m3h = flow
        self.return_c = np.asarray(ret, dtype=float)
        self.power_kw = np.maximum(np.asarray(water_power_kw(flow, self.supply_c - ret)), 0.0)
        self.energy_kwh = self.energy_kwh + self.power_kw * (dt_s / 3600.0)
        design = np.where(self.design_flow_m3h > 0, self.design_flow_m3h, 1.0)
        speed = np.clip(100.0 * flow / design, p.min_speed_pct, 100.0)
        self.pump_speed_pct = np.where(self.pump_on, speed, 0.0)
        standing = self.primary_return_c + (self.ambient_c - self.primary_return_c) * cool
        self.primary_return_c = np.where(flow > 0, ret + p.approach_k, standing)
