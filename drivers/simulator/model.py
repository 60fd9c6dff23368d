"""The simulated site: physics for every building of a site config, bound to device points.

:class:`SiteModel` builds the physics (:mod:`drivers.simulator.physics`) from a
``SiteConfig`` and records which point of which device shows which model variable (a
:class:`Binding`). Points no binding claims are *generic*: they keep what was written.

How devices find their physics:

- households come from ``buildings[].households``: ``valve_tag``, ``room_tag`` and
  ``setpoint_tag`` name the points that show the household's valve, room temperature and
  setpoint (a household with none of them, such as a shop, is not on the heating loop);
  a valve or thermostat device no household names gets a room of its own;
- a building's heat meter is the device of ``heat.energy_tag`` (and ``power_tag``,
  ``supply_tag``, ``return_tag``, ``flow_tag``); its other points bind by name;
- a substation (``substations[]``, :mod:`drivers.simulator.substation`) is the device of its
  tags (``outdoor_tag``, ``supply_tag`` ...); it feeds its buildings: their heat meters show
  its supply less a small network loss, and its pump drives their flow. A device of role
  ``substation`` no substation names gets one of its own, feeding nothing;
- a device's role is its template's ``role``; without one it is inferred from the tags
  that reference it and then from its point names (see ``_ROLE_HINTS``); an electricity
  meter whose id or template says ``master``/``main`` is its building's master meter;
- within a role, points bind by name (``_NAMES``), e.g. ``energy_kwh``, ``open``,
  ``relay``; anything else is generic.

Time: :meth:`SiteModel.step` advances in fixed quanta of ``substep_s`` (the remainder is
carried), so a run is deterministic for a seed whatever step sizes the caller uses.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from drivers.simulator.physics import (
    ElectricityParams,
    HeatMeters,
    HeatParams,
    PowerMeters,
    RoomParams,
    Rooms,
    Weather,
    WeatherParams,
)
from drivers.simulator.substation import (
    TAG_VARS,
    SubstationParams,
    Substations,
    plan_substations,
)

__all__ = ["Binding", "ModelParams", "SiteModel", "infer_role"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Binding:
    """How one device point shows a model variable.

    ``get()`` returns the engineering value; ``set(value)`` (if any) applies a master's
    write to the model. Masters may write a bound point only if the config marks it
    ``writable``; without ``set`` such a write is overwritten by the model at once.
    ``source`` ``(obj, attr, i)``, when given, says the value is ``getattr(obj, attr)[i]``
    (a model array, re-read each time: the model replaces its arrays as it steps), so the
    history backfill can gather many points with one numpy index per array. ``resume(value)``
    (counters only: energy, volume, valve open time) puts the counter back where a stored
    value says it was, so a restarted simulator never counts backwards.
    """

    get: Callable[[], Any]
    set: Callable[[Any], None] | None = None
    source: tuple[object, str, int] | None = None
    resume: Callable[[float], None] | None = None


def _array_binding(
    obj: object,
    attr: str,
    i: int,
    kind: type = float,
    set_: Callable[[Any], None] | None = None,
    *,
    counter: float | None = None,
) -> Binding:
    """Return the binding of element ``i`` of the model array ``obj.<attr>`` (as ``kind``).

    ``counter``: the array is a counter shown times this factor (``resume`` divides by it).
    """

    def get() -> Any:
        return kind(getattr(obj, attr)[i])

    resume = None
    if counter is not None:
        factor = counter

        def resume(value: float) -> None:
            getattr(obj, attr)[i] = float(value) / factor

    return Binding(get, set_, (obj, attr, i), resume)


def _counter_binding(obj: object, attr: str, i: int, factor: float) -> Binding:
    """Return a counter shown in another unit (``obj.<attr>[i] * factor``), writable."""

    def get() -> Any:
        return float(getattr(obj, attr)[i]) * factor

    def put(value: Any) -> None:
        getattr(obj, attr)[i] = float(value) / factor

    return Binding(get, put, None, put)


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Tunable physics and timing of a simulated site."""

    substep_s: float = 15.0
    valve_override_s: float | None = (
        None  # a remote valve command lasts this long (None: until release)
    )
    orphan_area_m2: float = 80.0  # room of a valve/thermostat no household names
    orphan_households: int = 8  # hidden households behind a heat meter no building names
    weather: WeatherParams = field(default_factory=WeatherParams)
    rooms: RoomParams = field(default_factory=RoomParams)
    heat: HeatParams = field(default_factory=HeatParams)
    electricity: ElectricityParams = field(default_factory=ElectricityParams)
    substation: SubstationParams = field(default_factory=SubstationParams)


# Point names per role and model variable (lower case, compared after stripping).
_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "heat_meter": {
        "energy_kwh": ("energy_kwh", "energy", "heat_kwh", "heat_energy_kwh", "total_kwh"),
        "energy_mwh": ("energy_mwh", "heat_mwh"),
        "energy_gj": ("energy_gj", "heat_gj"),
        "power_kw": ("power_kw", "power", "heat_power_kw", "thermal_power_kw"),
        "flow_m3h": ("flow_m3h", "flow", "flow_rate_m3h", "flow_rate"),
        "supply_c": (
            "supply_c",
            "supply_temp_c",
            "t_supply_c",
            "supply",
            "flow_temp_c",
            "supply_temperature_c",
        ),
        "return_c": ("return_c", "return_temp_c", "t_return_c", "return", "return_temperature_c"),
        "delta_t_k": ("delta_t_k", "dt_k", "delta_t"),
        "volume_m3": ("volume_m3", "volume", "total_volume_m3"),
    },
    "valve": {
        "open": ("open", "valve", "valve_open", "state", "on", "is_open", "opened"),
        "room_c": (
            "room_c",
            "room_temp_c",
            "room",
            "temperature_c",
            "temp_c",
            "t_room_c",
            "indoor_c",
        ),
        "setpoint_c": ("setpoint_c", "setpoint", "sp_c", "set_c", "target_c"),
        "auto": ("auto", "release", "auto_mode"),
        "override": ("override", "remote", "manual"),
        "open_s": ("open_s", "open_time_s", "open_seconds"),
        "open_h": ("open_h", "open_time_h", "open_hours"),
    },
    "electricity_meter": {
        "energy_kwh": (
            "energy_kwh",
            "energy",
            "active_energy_kwh",
            "import_kwh",
            "total_kwh",
            "kwh",
            "forward_kwh",  # DL/T 645 forward active energy (no export: the same counter)
        ),
        "power_kw": ("power_kw", "power", "active_power_kw", "p_kw"),
        "power_w": ("power_w", "active_power_w", "p_w"),
        "voltage_v": ("voltage_v", "voltage", "u_v", "v"),
        "current_a": ("current_a", "current", "i_a"),
        "power_factor": ("power_factor", "pf"),
        "relay": ("relay", "relay_closed", "relay_on", "switch", "power_on", "closed", "supply_on"),
        "trip": ("trip", "relay_open", "tripped", "cut_off"),
        "close": ("close", "restore"),
    },
}
_NAMES["substation"] = {
    "outdoor_c": ("outdoor_c", "outdoor", "outdoor_temp_c", "t_outdoor_c", "outside_c"),
    "primary_supply_c": ("primary_supply_c", "primary_supply", "t_primary_supply_c"),
    "primary_return_c": ("primary_return_c", "primary_return", "t_primary_return_c"),
    "supply_c": ("supply_c", "secondary_supply_c", "supply", "supply_temp_c", "flow_temp_c"),
    "return_c": ("return_c", "secondary_return_c", "return", "return_temp_c"),
    "supply_setpoint_c": ("supply_setpoint_c", "setpoint_c", "supply_sp_c", "setpoint"),
    "pump": ("pump", "pump_on", "pump_running", "circulation_pump"),
    "pump_speed_pct": ("pump_speed_pct", "pump_speed", "speed_pct"),
    "flow_m3h": ("flow_m3h", "flow"),
    "power_kw": ("power_kw", "power", "heat_power_kw"),
    "energy_kwh": ("energy_kwh", "energy", "heat_kwh"),
    "delta_t_k": ("delta_t_k", "dt_k", "delta_t"),
    "curve": ("curve", "auto", "weather_compensated"),
}
_NAMES["thermostat"] = {
    k: _NAMES["valve"][k] for k in ("room_c", "setpoint_c", "open", "auto", "override")
}

# Point names that suggest a role when the template does not say.
_ROLE_HINTS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "electricity_meter",
        frozenset(
            {"relay", "relay_closed", "trip", "voltage_v", "current_a", "voltage", "current"}
        ),
    ),
    (
        "heat_meter",
        frozenset(
            {
                "flow_m3h",
                "supply_c",
                "return_c",
                "volume_m3",
                "heat_kwh",
                "flow",
                "supply",
                "return",
            }
        ),
    ),
    ("valve", frozenset({"open", "valve", "valve_open"})),
    ("thermostat", frozenset({"setpoint_c", "setpoint"})),
)


def _lookup(role: str, point: str) -> str | None:
    """Return the model variable ``point`` shows for a device of ``role``, if any."""
    name = point.lower()
    for var, names in _NAMES.get(role, {}).items():
        if name in names:
            return var
    return None


def infer_role(
    template_role: str | None, point_names: list[str], referenced_as: str | None = None
) -> str:
    """Return a device's role: the template's, else how the buildings reference it, else by point names."""
    if template_role:
        return template_role
    if referenced_as:
        return referenced_as
    names = {p.lower() for p in point_names}
    for role, hints in _ROLE_HINTS:
        if names & hints:
            return role
    return "generic"


def _split_tag(tag: str | None) -> tuple[str, str] | None:
    if not tag or "." not in tag:
        return None
    dev, point = tag.rsplit(".", 1)
    return dev, point


_MASTER = re.compile(r"(^|[._-])(master|main)([._-]|$)", re.IGNORECASE)


class SiteModel:
    """Physics of a whole site plus the bindings ``device id -> point -> Binding``.

    Not thread-safe; the owner (``Simulator``) calls it from the event loop.
    """

    def __init__(
        self, site: Any, *, seed: int = 0, start_ts: float = 0.0, params: ModelParams | None = None
    ) -> None:
        self.params = p = params or ModelParams()
        self.rng = np.random.default_rng(seed)
        self.now_s = float(start_ts)
        self._pending_s = 0.0
        self.version = 0  # bumped whenever the physics advanced
        tz_name = getattr(getattr(site, "site", None), "timezone", None) or "UTC"
        self.tz = ZoneInfo(tz_name)
        self.bindings: dict[str, dict[str, Binding]] = {}
        self.roles: dict[str, str] = {}
        devices = {d.id: d for d in site.devices if getattr(d, "enabled", True)}
        points = {dev_id: dict(site.points(dev_id)) for dev_id in devices}

        # --- who references whom
        referenced: dict[str, str] = {}
        buildings = list(getattr(site, "buildings", None) or [])
        for b in buildings:
            heat = getattr(b, "heat", None)
            if heat is not None:
                for tag in (
                    heat.energy_tag,
                    heat.power_tag,
                    heat.supply_tag,
                    heat.return_tag,
                    heat.flow_tag,
                ):
                    if (ref := _split_tag(tag)) and ref[0] in devices:
                        referenced.setdefault(ref[0], "heat_meter")
            for hh in b.households:
                if (ref := _split_tag(hh.valve_tag)) and ref[0] in devices:
                    referenced.setdefault(ref[0], "valve")
                for tag in (hh.room_tag, hh.setpoint_tag):
                    if (ref := _split_tag(tag)) and ref[0] in devices:
                        referenced.setdefault(ref[0], "thermostat")
        for sub in getattr(site, "substations", None) or ():
            for key in TAG_VARS:
                if (ref := _split_tag(getattr(sub, key, None))) and ref[0] in devices:
                    referenced.setdefault(ref[0], "substation")
        for dev_id, dev in devices.items():
            template = site.template(dev.template)
            self.roles[dev_id] = infer_role(
                getattr(template, "role", None), list(points[dev_id]), referenced.get(dev_id)
            )

        # --- households: listed ones first, then a room per unclaimed valve/thermostat
        areas: list[float] = []
        bld_of: list[int] = []
        hh_points: list[dict[str, tuple[str, str]]] = []  # per household: var -> (device, point)
        claimed: set[str] = set()
        bld_index = {b.id: i for i, b in enumerate(buildings)}
        for bi, b in enumerate(buildings):
            for hh in b.households:
                refs: dict[str, tuple[str, str]] = {}
                for var, tag in (
                    ("open", hh.valve_tag),
                    ("room_c", hh.room_tag),
                    ("setpoint_c", hh.setpoint_tag),
                ):
                    if (ref := _split_tag(tag)) and ref[0] in devices:
                        refs[var] = ref
                if not refs:
                    continue  # a shop without a valve: not on the heating loop
                areas.append(float(hh.area_m2))
                bld_of.append(bi)
                hh_points.append(refs)
                claimed.update(dev for dev, _ in refs.values())
        n_real = len(buildings)
        orphan_rooms: list[tuple[int, str]] = []  # (household index, device) of unclaimed rooms
        for dev_id, role in self.roles.items():
            if role in ("valve", "thermostat") and dev_id not in claimed:
                owner = _building_of(devices[dev_id], bld_index)
                orphan_rooms.append((len(areas), dev_id))
                areas.append(p.orphan_area_m2)
                # n_real: a pseudo building of its own
                bld_of.append(n_real if owner is None else owner)
                hh_points.append({})
        # heat meters: per building, plus pseudo buildings for unclaimed ones
        meter_of_bld: dict[int, str] = {}
        meter_refs: dict[str, dict[str, str]] = {}  # device -> point -> var (from the heat: tags)
        for bi, b in enumerate(buildings):
            heat = getattr(b, "heat", None)
            if heat is None:
                continue
            for var, tag in (
                ("energy_kwh", heat.energy_tag),
                ("power_kw", heat.power_tag),
                ("supply_c", heat.supply_tag),
                ("return_c", heat.return_tag),
                ("flow_m3h", heat.flow_tag),
            ):
                if (ref := _split_tag(tag)) and ref[0] in devices:
                    meter_of_bld.setdefault(bi, ref[0])
                    meter_refs.setdefault(ref[0], {})[ref[1]] = var
        n_bld = n_real + 1
        # a heat meter whose ``building:`` has its meter already is a sub-meter of that loop
        # (a wing, a second meter): it reads the building's heat, not an orphan's
        bld_ids = {getattr(b, "id", None): bi for bi, b in enumerate(buildings)}
        sub_meters: dict[str, int] = {}
        for dev_id, role in self.roles.items():
            if role == "heat_meter" and dev_id not in meter_of_bld.values():
                declared = bld_ids.get(getattr(devices[dev_id], "building", None))
                if declared is not None and declared in meter_of_bld:
                    sub_meters[dev_id] = declared
                    continue
                bi = n_bld
                n_bld += 1
                meter_of_bld[bi] = dev_id
                for _ in range(p.orphan_households):
                    areas.append(p.orphan_area_m2)
                    bld_of.append(bi)
                    hh_points.append({})

        self.weather = Weather(p.weather, self.rng)
        self.rooms = Rooms(np.array(areas, dtype=float), self.rng, p.rooms)
        self.heat = HeatMeters(
            np.array(bld_of, dtype=np.int64),
            n_bld,
            self.rooms.radiator_nom_kw,
            self.rng,
            p.rooms,
            p.heat,
        )
        self.outdoor_c = self.weather.outdoor_c
        self.supply_c = p.rooms.supply_c(self.outdoor_c)
        plan = plan_substations(site, devices, self.roles, bld_index)
        self.subs: Substations | None = None
        if plan.ids:
            self.subs = Substations(plan, self.heat, self.outdoor_c, p.rooms, p.substation)

        # --- electricity meters
        elec = [d for d, r in self.roles.items() if r == "electricity_meter"]
        masters: dict[int | str, int] = {}
        for i, dev_id in enumerate(elec):
            dev = devices[dev_id]
            if _MASTER.search(dev_id) or _MASTER.search(str(dev.template)):
                masters[_elec_group(dev, bld_index)] = i
        parent = np.full(len(elec), -1, dtype=np.int64)
        for i, dev_id in enumerate(elec):
            m = masters.get(_elec_group(devices[dev_id], bld_index))
            if m is not None and m != i:
                parent[i] = m
        self.power = PowerMeters(parent, self.rng, p.electricity)

        # --- bindings
        for hi, refs in enumerate(hh_points):
            for var, (dev_id, point) in refs.items():
                self._bind(dev_id, point, self._room_binding(hi, var))
            # the other points of a household's valve/thermostat bind by name
            for dev_id in {dev for dev, _ in refs.values()}:
                self._bind_room_device(
                    dev_id, points[dev_id], hi, skip=set(self.bindings.get(dev_id, {}))
                )
        for hi, dev_id in orphan_rooms:
            self._bind_room_device(dev_id, points[dev_id], hi)
        for bi, dev_id in [*meter_of_bld.items(), *((b, d) for d, b in sub_meters.items())]:
            explicit = meter_refs.get(dev_id, {})
            for point in points[dev_id]:
                meter_var = explicit.get(point) or _lookup("heat_meter", point)
                if meter_var:
                    self._bind(dev_id, point, self._heat_binding(bi, meter_var))
        for i, dev_id in enumerate(elec):
            for point in points[dev_id]:
                power_var = _lookup("electricity_meter", point)
                if power_var:
                    self._bind(dev_id, point, self._power_binding(i, power_var))
        for dev_id, (si, named) in plan.refs.items():
            for point in points[dev_id]:
                sub_var = named.get(point) or _lookup("substation", point)
                if sub_var:
                    self._bind(dev_id, point, self._substation_binding(si, sub_var))
        self.substation_of = {dev_id: si for dev_id, (si, _) in plan.refs.items()}
        self._advance(0.0)  # settle: valves, radiators, meters show a consistent state at once
        self.household_of: dict[str, int] = {}
        for hi, refs in enumerate(hh_points):
            for dev_id, _ in refs.values():
                self.household_of.setdefault(dev_id, hi)
        for hi, dev_id in orphan_rooms:
            self.household_of[dev_id] = hi
        self.meter_index = {dev_id: i for i, dev_id in enumerate(elec)}
        self.building_of_meter = {dev_id: bi for bi, dev_id in meter_of_bld.items()}
        self.building_of_meter.update(sub_meters)
        log.info(
            "simulated site: %d households, %d heat meters, %d electricity meters, "
            "%d substations, %d devices",
            self.rooms.n, len(meter_of_bld), len(elec), len(plan.ids), len(devices),
        )  # fmt: skip

    # ------------------------------------------------------------------ bindings

    def _bind(self, device_id: str, point: str, binding: Binding | None) -> None:
        if binding is not None:
            self.bindings.setdefault(device_id, {})[point] = binding

    def _bind_room_device(
        self, device_id: str, pts: dict[str, Any], hi: int, skip: set[str] | None = None
    ) -> None:
        role = self.roles.get(device_id, "valve")
        role = role if role in ("valve", "thermostat") else "valve"
        for point in pts:
            if skip and point in skip:
                continue
            var = _lookup(role, point)
            if var:
                self._bind(device_id, point, self._room_binding(hi, var))

    def _room_binding(self, i: int, var: str) -> Binding | None:
        r = self.rooms
        p = self.params
        if var == "open":

            def set_open(v: Any) -> None:
                until = self.now_s + p.valve_override_s if p.valve_override_s else math.inf
                r.command_valve(i, bool(v), until)

            return _array_binding(r, "valve_open", i, bool, set_open)
        if var == "room_c":
            return _array_binding(r, "room_c", i)
        if var == "setpoint_c":

            def set_sp(v: Any) -> None:
                r.setpoint_c[i] = float(v)

            return _array_binding(r, "setpoint_c", i, float, set_sp)
        if var == "auto":
            return Binding(lambda: not bool(r.override[i]), lambda v: r.release(i) if v else None)
        if var == "override":
            return Binding(lambda: bool(r.override[i]), lambda v: None if v else r.release(i))
        if var == "open_s":
            return _array_binding(r, "open_s", i, counter=1.0)
        if var == "open_h":
            return Binding(
                lambda: float(r.open_s[i]) / 3600.0,
                resume=_counter_binding(r, "open_s", i, 1 / 3600.0).resume,
            )
        return None

    def _heat_binding(self, b: int, var: str) -> Binding | None:
        h = self.heat

        def set_energy(factor: float) -> Callable[[Any], None]:
            def set_(v: Any) -> None:
                h.energy_kwh[b] = float(v) / factor

            return set_

        if var == "energy_kwh":
            return _array_binding(h, var, b, float, set_energy(1.0), counter=1.0)
        if var == "volume_m3":
            return _array_binding(h, var, b, counter=1.0)
        if var in ("power_kw", "flow_m3h", "supply_c", "return_c"):
            return _array_binding(h, var, b)
        factors = {"energy_mwh": 1e-3, "energy_gj": 0.0036}
        if var in factors:
            return _counter_binding(h, "energy_kwh", b, factors[var])
        if var == "delta_t_k":
            return Binding(lambda: float(h.supply_c[b] - h.return_c[b]))
        return None

    def _substation_binding(self, i: int, var: str) -> Binding | None:
        s = self.subs
        assert s is not None

        def set_energy(v: Any) -> None:
            s.energy_kwh[i] = float(v)

        def set_curve(v: Any) -> None:
            if v:
                s.follow_curve(i)

        arrays = ("primary_supply_c", "primary_return_c", "supply_c", "return_c", "flow_m3h")
        if var in (*arrays, "pump_speed_pct", "power_kw"):
            return _array_binding(s, var, i)
        table: dict[str, Binding] = {
            "outdoor_c": Binding(lambda: s.outdoor_c),
            "supply_setpoint_c": _array_binding(
                s, "setpoint_c", i, float, lambda v: s.write_setpoint(i, float(v))
            ),
            "pump": _array_binding(s, "pump_on", i, bool, lambda v: s.set_pump(i, bool(v))),
            "energy_kwh": _array_binding(s, "energy_kwh", i, float, set_energy, counter=1.0),
            "delta_t_k": Binding(lambda: float(s.supply_c[i] - s.return_c[i])),
            "curve": Binding(lambda: not bool(s.manual[i]), set_curve),
        }
        return table.get(var)

    def _power_binding(self, i: int, var: str) -> Binding | None:
        m = self.power

        def set_relay(closed: bool) -> None:
            m.relay_closed[i] = closed
            if not closed:  # a tripped meter reads zero at once, not at the next step
                m.power_kw[i] = m.current_a[i] = m.voltage_v[i] = 0.0

        def set_energy(v: Any) -> None:
            m.energy_kwh[i] = float(v)

        table: dict[str, Binding] = {
            "energy_kwh": _array_binding(m, "energy_kwh", i, float, set_energy, counter=1.0),
            "power_kw": _array_binding(m, "power_kw", i),
            "power_w": Binding(lambda: float(m.power_kw[i]) * 1000.0),
            "voltage_v": _array_binding(m, "voltage_v", i),
            "current_a": _array_binding(m, "current_a", i),
            "power_factor": Binding(lambda: m.params.power_factor if m.power_kw[i] > 0 else 1.0),
            "relay": _array_binding(m, "relay_closed", i, bool, lambda v: set_relay(bool(v))),
            "trip": Binding(lambda: not bool(m.relay_closed[i]), lambda v: set_relay(not bool(v))),
            "close": Binding(
                lambda: bool(m.relay_closed[i]), lambda v: set_relay(True) if v else None
            ),
        }
        return table.get(var)

    def meter(self, device_id: str, var: str) -> Binding | None:
        """Return electricity-meter variable ``var`` (``energy_kwh``, ``relay``, ...) of ``device_id``.

        Whatever the device's point names: a protocol server that answers by data
        identifier (DL/T 645) reads the physics through this. ``None`` if the device is no
        electricity meter or ``var`` is unknown.
        """
        i = self.meter_index.get(device_id)
        return None if i is None else self._power_binding(i, var)

    def heat_meter(self, device_id: str, var: str) -> Binding | None:
        """Return heat-meter variable ``var`` (``energy_kwh``, ``volume_m3``, ``supply_c``, ...) of ``device_id``.

        Whatever the device's point names: a protocol server that answers with all records
        of a meter (M-Bus) reads the physics through this. ``None`` if the device is no heat
        meter or ``var`` is unknown.
        """
        b = self.building_of_meter.get(device_id)
        return None if b is None else self._heat_binding(b, var)

    # ------------------------------------------------------------------ time

    def local_hour(self, ts: float | None = None) -> float:
        """Return the site's local time of day in hours (0..24) at ``ts`` (default: now)."""
        dt = datetime.fromtimestamp(self.now_s if ts is None else ts, UTC).astimezone(self.tz)
        return dt.hour + dt.minute / 60.0 + dt.second / 3600.0

    def step(self, dt_s: float) -> int:
        """Advance simulated time by ``dt_s`` seconds; return the number of quanta run.

        Time moves in quanta of ``params.substep_s``; a remainder waits for the next call.
        """
        if dt_s < 0 or not math.isfinite(dt_s):
            raise ValueError(f"step: dt_s must be a finite number >= 0, got {dt_s}")
        q = self.params.substep_s
        self._pending_s += dt_s
        n = int(self._pending_s // q)
        if n <= 0:
            return 0
        self._pending_s -= n * q
        for _ in range(n):
            self._advance(q)
        self.version += 1
        return n

    def _advance(self, dt: float) -> None:
        hour = self.local_hour()
        self.outdoor_c = self.weather.advance(dt, hour)
        self.supply_c = self.params.rooms.supply_c(self.outdoor_c)
        self.now_s += dt
        subs = self.subs
        if subs is None:
            self.rooms.advance(dt, self.now_s, self.outdoor_c, self.supply_c, hour)
            self.heat.advance(dt, self.supply_c, self.rooms.radiator_kw, self.rooms.valve_open)
        else:
            subs.advance(dt, self.outdoor_c)
            target, flowing = subs.building_supply(self.supply_c)
            supply = self.heat.supply_toward(target, flowing, dt)
            room_supply = supply[self.heat.building_of]
            self.rooms.advance(dt, self.now_s, self.outdoor_c, room_supply, hour)
            h = self.heat
            h.advance(dt, supply, self.rooms.radiator_kw, self.rooms.valve_open, flowing)
            subs.collect(dt, h)
        self.power.advance(dt, hour)


def _building_of(device: Any, bld_index: dict[str, int]) -> int | None:
    b = getattr(device, "building", None)
    if b in bld_index:
        return bld_index[b]
    for bid, i in bld_index.items():
        if device.id.startswith(bid + "."):
            return i
    return None


def _elec_group(device: Any, bld_index: dict[str, int]) -> int | str:
    b = _building_of(device, bld_index)
    if b is not None:
        return b
    return device.id.split(".", 1)[0] if "." in device.id else ""
