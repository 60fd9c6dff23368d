"""Physics of the simulated buildings: weather, rooms with valves, heat meters, power meters.

Everything is plain numpy over arrays (one entry per household, building or meter) so a
1,000-apartment estate costs a handful of vector operations per time step. The caller
(``drivers.simulator.model.SiteModel``) advances the models in fixed quanta, which keeps a
run deterministic for a given seed whatever step sizes the caller uses.

Units: temperatures degC, power kW, energy kWh, flow m3/h, volume m3, time s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RHO_WATER_KG_M3 = 985.0
"""Density of heating water at about 55 degC."""
CP_WATER_KJ_KG_K = 4.19
"""Specific heat capacity of water."""


def water_power_kw(
    flow_m3h: np.ndarray | float, delta_t_k: np.ndarray | float
) -> np.ndarray | float:
    """Return the heat carried by a water flow: P = rho * c * V_dot * dT (kW)."""
    return (
        RHO_WATER_KG_M3 * CP_WATER_KJ_KG_K * np.asarray(flow_m3h) / 3600.0 * np.asarray(delta_t_k)
    )


def _ou_step(
    x: np.ndarray, dt_s: float, tau_s: float, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Advance an Ornstein-Uhlenbeck process (mean 0, std ``sigma``, time constant ``tau_s``)."""
    a = math.exp(-dt_s / tau_s)
    return x * a + sigma * math.sqrt(1.0 - a * a) * rng.standard_normal(x.shape)


# --------------------------------------------------------------------------- weather


@dataclass(frozen=True, slots=True)
class WeatherParams:
    """Outdoor temperature: a daily cosine plus a slow random deviation."""

    mean_c: float = -2.0
    amplitude_c: float = 5.0
    warmest_hour: float = 15.0  # local time of the daily maximum
    noise_k: float = 1.0  # standard deviation of the random deviation
    noise_tau_s: float = 6 * 3600.0


class Weather:
    """Outdoor temperature of the site (one value for every building)."""

    def __init__(self, params: WeatherParams, rng: np.random.Generator) -> None:
        self.params = params
        self._rng = rng
        self._dev = np.zeros(1)
        self.outdoor_c = params.mean_c

    def advance(self, dt_s: float, local_hour: float) -> float:
        """Advance by ``dt_s`` and return the outdoor temperature at local hour ``local_hour``."""
        p = self.params
        self._dev = _ou_step(self._dev, dt_s, p.noise_tau_s, p.noise_k, self._rng)
        daily = p.amplitude_c * math.cos(2 * math.pi * (local_hour - p.warmest_hour) / 24.0)
        self.outdoor_c = float(p.mean_c + daily + self._dev[0])
        return self.outdoor_c


# --------------------------------------------------------------------------- rooms


@dataclass(frozen=True, slots=True)
class RoomParams:
    """Per-m2 sizing of a household's first-order thermal model and its radiator loop."""

    capacity_kwh_per_m2k: float = 0.03  # effective heat capacity (air, furniture, inner walls)
    loss_kw_per_m2k: float = 0.0012  # envelope loss to outdoors
    radiator_kw_per_m2: float = (
        0.06  # radiator output at the design supply temperature, room 20 degC
    )
    gains_kw_per_m2: float = 0.004  # internal gains (people, appliances), daily average
    hysteresis_k: float = 0.5  # thermostat opens below setpoint - h, closes above setpoint + h
    design_supply_c: float = 75.0
    design_outdoor_c: float = -10.0
    design_delta_t_k: float = 20.0  # radiator supply - return at design conditions
    radiator_exponent: float = 1.3
    spread: float = 0.15  # +/- relative spread of loss and capacity between households

    def supply_c(self, outdoor_c: float) -> float:
        """Return the supply temperature of the heating curve for an outdoor temperature."""
        load = (20.0 - outdoor_c) / (20.0 - self.design_outdoor_c)
        load = min(max(load, 0.0), 1.3)
        return 20.0 + (self.design_supply_c - 20.0) * load ** (1.0 / self.radiator_exponent)


class Rooms:
    """Households' room temperatures, thermostats and on/off radiator valves.

    ``room_c += (P_radiator * valve + gains - UA * (room_c - outdoor_c)) * dt / C``.
    The thermostat (hysteresis around ``setpoint_c``) drives each valve unless a remote
    command set ``override``; an override lasts until ``release`` or ``override_until``.
    """

    def __init__(
        self,
        area_m2: np.ndarray,
        rng: np.random.Generator,
        params: RoomParams | None = None,
    ) -> None:
        p = params or RoomParams()
        self.params = p
        n = len(area_m2)
        self.n = n
        self.area_m2 = np.asarray(area_m2, dtype=float)
        self.capacity_kwh_k = (
            self.area_m2 * p.capacity_kwh_per_m2k * rng.uniform(1 - p.spread, 1 + p.spread, n)
        )
        self.ua_kw_k = self.area_m2 * p.loss_kw_per_m2k * rng.uniform(1 - p.spread, 1 + p.spread, n)
        self.radiator_nom_kw = self.area_m2 * p.radiator_kw_per_m2
        self.gains_nom_kw = self.area_m2 * p.gains_kw_per_m2 * rng.uniform(0.6, 1.4, n)
        self.gains_phase_h = rng.uniform(-2.0, 2.0, n)
        self.setpoint_c = rng.choice(np.array([19.0, 20.0, 20.0, 21.0, 22.0]), n)
        self.room_c = self.setpoint_c + rng.uniform(-1.5, 1.0, n)
        self.thermostat_open = self.room_c < self.setpoint_c
        self.override = np.zeros(n, dtype=bool)
        self.override_open = np.zeros(n, dtype=bool)
        self.override_until = np.full(n, np.inf)
        self.valve_open = self.thermostat_open.copy()
        self.radiator_kw = np.zeros(n)
        self.open_s = np.zeros(n)

    def command_valve(self, i: int, open_: bool, until_s: float = math.inf) -> None:
        """Override household ``i``'s thermostat: keep its valve ``open_`` until ``until_s`` or release."""
        self.override[i] = True
        self.override_open[i] = bool(open_)
        self.override_until[i] = until_s
        self.valve_open[i] = bool(open_)

    def release(self, i: int) -> None:
        """Hand household ``i``'s valve back to its thermostat."""
        self.override[i] = False
        self.override_until[i] = math.inf
        self.valve_open[i] = self.thermostat_open[i]

    def advance(
        self,
        dt_s: float,
        now_s: float,
        outdoor_c: float,
        supply_c: float | np.ndarray,
        local_hour: float,
    ) -> None:
        """Advance every room by ``dt_s`` (small against the thermal time constants).

        ``supply_c``: the radiators' supply temperature, one for all or one per household.
        """
        p = self.params
        h = p.hysteresis_k
        room = self.room_c
        self.thermostat_open = np.where(
            room < self.setpoint_c - h,
            True,
            np.where(room > self.setpoint_c + h, False, self.thermostat_open),
        )
        expired = self.override & (now_s >= self.override_until)
        if expired.any():
            self.override[expired] = False
            self.override_until[expired] = np.inf
        self.valve_open = np.where(self.override, self.override_open, self.thermostat_open)
        design_excess = p.design_supply_c - p.design_delta_t_k / 2.0 - 20.0
        excess = np.maximum(supply_c - p.design_delta_t_k / 2.0 - room, 0.0)
        self.radiator_kw = (
            self.radiator_nom_kw * (excess / design_excess) ** p.radiator_exponent * self.valve_open
        )
        occupancy = 0.75 + 0.25 * np.cos(
            2 * np.pi * (local_hour - 20.0 - self.gains_phase_h) / 24.0
        )
        gains = self.gains_nom_kw * occupancy
        loss = self.ua_kw_k * (room - outdoor_c)
        self.room_c = (
            room + (self.radiator_kw + gains - loss) * (dt_s / 3600.0) / self.capacity_kwh_k
        )
        self.open_s += dt_s * self.valve_open


# --------------------------------------------------------------------------- heat meters


@dataclass(frozen=True, slots=True)
class HeatParams:
    """Building heating loop: bypass flow and pipe losses."""

    bypass_fraction: float = 0.1  # flow that circulates with every valve closed, of the design flow
    pipe_loss_fraction: float = 0.03  # pipe losses at design supply temperature, of the design load
    pipe_ambient_c: float = 15.0  # temperature around the risers
    standstill_tau_s: float = 3600.0  # water standing in the pipes (no flow) cools this fast


class HeatMeters:
    """One heat meter per building: energy, volume, power, flow, supply and return.

    The building's heat is the sum of its radiators' output plus pipe losses; the flow is
    the bypass plus the nominal flow of every open valve; the return temperature follows
    from P = rho * c * V_dot * (supply - return), so the served values are consistent.
    The supply is the site's (one number) or one per building (a substation's, see
    ``drivers.simulator.substation``); a building whose water does not flow (its substation's
    pump stopped) reads no flow and no power, and its supply and return cool towards
    ``pipe_ambient_c`` (``supply_toward``).
    """

    def __init__(
        self,
        building_of: np.ndarray,
        n_buildings: int,
        radiator_nom_kw: np.ndarray,
        rng: np.random.Generator,
        room_params: RoomParams,
        params: HeatParams | None = None,
    ) -> None:
        p = params or HeatParams()
        self.params = p
        self.room_params = room_params
        self.n = n_buildings
        self.building_of = np.asarray(building_of, dtype=np.int64)
        nominal_flow = water_power_kw(1.0, room_params.design_delta_t_k)  # kW per m3/h
        self.valve_flow_m3h = np.asarray(radiator_nom_kw) / nominal_flow
        design_flow = np.bincount(self.building_of, self.valve_flow_m3h, minlength=n_buildings)
        design_flow = np.where(design_flow > 0, design_flow, 1.0)  # a building with no households
        design_kw = design_flow * nominal_flow
        self.design_flow_m3h = design_flow * (1.0 + p.bypass_fraction)
        self.bypass_m3h = design_flow * p.bypass_fraction
        self.pipe_loss_kw_k = (
            design_kw * p.pipe_loss_fraction / (room_params.design_supply_c - p.pipe_ambient_c)
        )
        self.energy_kwh = np.round(rng.uniform(5_000.0, 50_000.0, n_buildings), 1)
        self.volume_m3 = np.round(rng.uniform(500.0, 5_000.0, n_buildings), 1)
        self.power_kw = np.zeros(n_buildings)
        self.flow_m3h = self.bypass_m3h.copy()
        self.supply_c = np.full(
            n_buildings, room_params.supply_c(room_params.design_outdoor_c + 10)
        )
        self.return_c = self.supply_c.copy()

    def supply_toward(self, supply_c: np.ndarray, flowing: np.ndarray, dt_s: float) -> np.ndarray:
        """Return each building's supply for the next step: ``supply_c`` where water flows,
        else the standing water's, cooled for ``dt_s`` towards the pipe ambient."""
        p = self.params
        cooled = self.supply_c + (p.pipe_ambient_c - self.supply_c) * (
            1.0 - math.exp(-dt_s / p.standstill_tau_s)
        )
        return np.where(flowing, supply_c, cooled)

    def advance(
        self,
        dt_s: float,
        supply_c: float | np.ndarray,
        radiator_kw: np.ndarray,
        valve_open: np.ndarray,
        flowing: np.ndarray | None = None,
    ) -> None:
        """Integrate the buildings' heat over ``dt_s`` from the rooms' current state.

        ``supply_c``: one supply for every building, or one per building; ``flowing`` (per
        building, default all): False where no water circulates.
        """
        p = self.params
        rad = np.bincount(self.building_of, radiator_kw, minlength=self.n)
        flow = self.bypass_m3h + np.bincount(
            self.building_of, self.valve_flow_m3h * valve_open, minlength=self.n
        )
        above: float | np.ndarray
        if isinstance(supply_c, np.ndarray):
            above = np.maximum(supply_c - p.pipe_ambient_c, 0.0)
        else:
            above = max(supply_c - p.pipe_ambient_c, 0.0)
        power = rad + self.pipe_loss_kw_k * above
        delta_t = power / water_power_kw(flow, 1.0)
        # the water cannot come back colder than the building around it
        max_delta = above
        if (delta_t > max_delta).any():
            delta_t = np.minimum(delta_t, max_delta)
            power = np.asarray(water_power_kw(flow, delta_t))
        ret = supply_c - delta_t
        if flowing is not None and not flowing.all():
            cool = 1.0 - math.exp(-dt_s / p.standstill_tau_s)
            standing = self.return_c + (p.pipe_ambient_c - self.return_c) * cool
            ret = np.where(flowing, ret, np.minimum(standing, supply_c))
            flow = np.where(flowing, flow, 0.0)
            power = np.where(flowing, power, 0.0)
        self.power_kw = np.asarray(power, dtype=float)
        self.flow_m3h = flow
        if isinstance(supply_c, np.ndarray):
            self.supply_c = supply_c.astype(float, copy=True)
        else:
            self.supply_c = np.full(self.n, supply_c)
        self.return_c = ret
        self.energy_kwh = self.energy_kwh + power * (dt_s / 3600.0)
        self.volume_m3 = self.volume_m3 + flow * (dt_s / 3600.0)


# --------------------------------------------------------------------------- electricity

# Hourly load shapes (fraction of a tenant's peak), local time 00..23.
_RESIDENTIAL = np.array(
    [0.25, 0.2, 0.18, 0.17, 0.17, 0.2, 0.35, 0.6, 0.55, 0.4, 0.35, 0.4,
     0.5, 0.4, 0.35, 0.35, 0.4, 0.6, 0.85, 1.0, 0.95, 0.8, 0.6, 0.4],
)  # fmt: skip
_OFFICE = np.array(
    [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.4, 0.8, 1.0, 1.0, 0.95,
     0.8, 0.95, 1.0, 1.0, 0.95, 0.8, 0.5, 0.25, 0.15, 0.12, 0.1, 0.1],
)  # fmt: skip
LOAD_SHAPES = np.stack([_RESIDENTIAL, _OFFICE])


def load_shape(kind: np.ndarray, local_hour: float) -> np.ndarray:
    """Return each tenant's load fraction at ``local_hour`` (linear between hours)."""
    h0 = math.floor(local_hour) % 24
    frac = local_hour - math.floor(local_hour)
    shapes = LOAD_SHAPES[:, h0] * (1 - frac) + LOAD_SHAPES[:, (h0 + 1) % 24] * frac
    return shapes[kind]


@dataclass(frozen=True, slots=True)
class ElectricityParams:
    """Tenant load sizes and the master meters' losses."""

    peak_kw_min: float = 1.5
    peak_kw_max: float = 6.0
    office_share: float = 0.2  # fraction of tenants with an office profile
    noise: float = 0.15  # relative standard deviation of the load noise
    noise_tau_s: float = 900.0
    line_loss: float = 0.03  # master meter: losses, of the sub-meters' sum
    common_kw: float = 1.0  # master meter: common-area load (lifts, stairs, pumps)
    nominal_v: float = 230.0
    power_factor: float = 0.95


class PowerMeters:
    """Electricity meters: tenants' load profiles, relays, energy registers, master meters.

    A sub-meter's ``parent`` is the index of its master meter or -1. A master meter reads
    its sub-meters' load times (1 + line loss) plus a common-area load. Energy does not
    advance while a meter's relay (or its master's) is open.
    """

    def __init__(
        self, parent: np.ndarray, rng: np.random.Generator, params: ElectricityParams | None = None
    ) -> None:
        p = params or ElectricityParams()
        self.params = p
        self._rng = rng
        self.parent = np.asarray(parent, dtype=np.int64)
        n = len(self.parent)
        self.n = n
        self.is_master = np.zeros(n, dtype=bool)
        self.is_master[self.parent[self.parent >= 0]] = True
        self.kind = (rng.uniform(0, 1, n) < p.office_share).astype(np.int64)
        self.peak_kw = rng.uniform(p.peak_kw_min, p.peak_kw_max, n)
        self.relay_closed = np.ones(n, dtype=bool)
        self.energy_kwh = np.round(rng.uniform(100.0, 8_000.0, n), 2)
        self.energy_kwh[self.is_master] *= 20.0
        self.power_kw = np.zeros(n)
        self.voltage_v = np.full(n, p.nominal_v)
        self.current_a = np.zeros(n)
        self._noise = np.zeros(n)
        self._vnoise = np.zeros(n)

    def powered(self) -> np.ndarray:
        """Return which meters have supply: own relay closed and, for a sub-meter, its master's."""
        master_ok = np.ones(self.n, dtype=bool)
        has_parent = self.parent >= 0
        master_ok[has_parent] = self.relay_closed[self.parent[has_parent]]
        return self.relay_closed & master_ok

    def advance(self, dt_s: float, local_hour: float) -> None:
        """Advance the load noise, recompute every meter's power and integrate energy."""
        p = self.params
        self._noise = _ou_step(self._noise, dt_s, p.noise_tau_s, p.noise, self._rng)
        self._vnoise = _ou_step(self._vnoise, dt_s, 120.0, 2.0, self._rng)
        load = (
            self.peak_kw * load_shape(self.kind, local_hour) * np.maximum(1.0 + self._noise, 0.05)
        )
        powered = self.powered()
        power = np.where(powered & ~self.is_master, load, 0.0)
        if self.is_master.any():
            subs = np.bincount(
                self.parent[self.parent >= 0], power[self.parent >= 0], minlength=self.n
            )
            master_power = subs * (1.0 + p.line_loss) + p.common_kw * (
                0.5 + 0.5 * load_shape(self.kind, local_hour)
            )
            power = np.where(self.is_master, np.where(powered, master_power, 0.0), power)
        self.power_kw = power
        self.voltage_v = np.where(powered, p.nominal_v + self._vnoise, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.current_a = np.where(
                powered, power * 1000.0 / (self.voltage_v * p.power_factor), 0.0
            )
        self.energy_kwh = self.energy_kwh + power * (dt_s / 3600.0)
