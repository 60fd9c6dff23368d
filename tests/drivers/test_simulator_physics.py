"""Physics of the building simulator, driven with simulated time only (no network)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.simulator import ModelParams, Simulator, SiteModel
from drivers.simulator.physics import (
    CP_WATER_KJ_KG_K,
    RHO_WATER_KG_M3,
    Weather,
    WeatherParams,
    water_power_kw,
)
from tests.drivers.simulator_fixtures import SITE_YAML, START_TS, load_site_text, site_fixture  # noqa: F401

Q = ModelParams().substep_s


def _model(site: Any, seed: int = 7, **params: Any) -> SiteModel:
    return SiteModel(site, seed=seed, start_ts=START_TS, params=ModelParams(**params))


def _sim(site: Any, seed: int = 7, **params: Any) -> Simulator:
    return Simulator(site, seed=seed, start_ts=START_TS, tick_s=None, params=ModelParams(**params))


def test_water_power_formula() -> None:
    # 1 m3/h at 20 K: 985 kg/m3 * 4.19 kJ/(kg K) / 3600 s * 20 K
    assert water_power_kw(1.0, 20.0) == pytest.approx(
        RHO_WATER_KG_M3 * CP_WATER_KJ_KG_K / 3600 * 20
    )
    assert water_power_kw(1.0, 20.0) == pytest.approx(22.93, abs=0.01)


def test_outdoor_temperature_follows_a_daily_cycle() -> None:
    w = Weather(
        WeatherParams(mean_c=0.0, amplitude_c=5.0, warmest_hour=15.0, noise_k=0.0),
        np.random.default_rng(1),
    )
    assert w.advance(1.0, 15.0) == pytest.approx(5.0)
    assert w.advance(1.0, 3.0) == pytest.approx(-5.0)
    assert w.advance(1.0, 9.0) == pytest.approx(0.0, abs=1e-9)


def test_model_runs_in_site_local_time(site: Any) -> None:
    m = _model(site)
    assert m.local_hour() == pytest.approx(8.0)  # START_TS is midnight UTC, Asia/Shanghai is UTC+8
    m.step(3600)
    assert m.local_hour() == pytest.approx(9.0)


def test_roles_are_taken_from_templates_references_and_point_names(site: Any) -> None:
    m = _model(site)
    assert m.roles == {
        "b1.hm": "heat_meter",
        "b1.101.valve": "valve",  # no template role: referenced by a household's valve_tag
        "b1.102.valve": "valve",
        "b1.101.em": "electricity_meter",
        "b1.102.em": "electricity_meter",
        "b1.master.em": "electricity_meter",
        "b1.io": "generic",
    }
    assert set(m.bindings["b1.101.valve"]) == {"open", "auto", "room_c", "open_s", "setpoint_c"}
    assert "b1.io" not in m.bindings
    assert "balance" not in m.bindings["b1.101.em"]  # prepaid balance is not physics: generic


def test_room_warms_with_valve_open_and_cools_with_it_closed(site: Any) -> None:
    sim = _sim(site)
    sim.set_value("b1.101.valve", "open", True)
    before = sim.value("b1.101.valve", "room_c")
    sim.step(2 * 3600)
    warmed = sim.value("b1.101.valve", "room_c")
    assert (
        sim.value("b1.101.valve", "open") is True
    )  # the remote command holds against the thermostat
    assert warmed > before + 0.5
    sim.set_value("b1.101.valve", "open", False)
    sim.step(2 * 3600)
    cooled = sim.value("b1.101.valve", "room_c")
    assert sim.value("b1.101.valve", "open") is False
    assert cooled < warmed - 0.5


def test_thermostat_keeps_room_within_hysteresis_band(site: Any) -> None:
    m = _model(site)
    h = m.params.rooms.hysteresis_k
    i = m.household_of["b1.101.valve"]
    rooms = m.rooms
    rooms.room_c[i] = rooms.setpoint_c[i] - 2.0  # start cold: the thermostat must open
    switches = 0
    prev_open = bool(rooms.valve_open[i])
    for _ in range(int(24 * 3600 / Q)):
        room_before = float(rooms.room_c[i])
        sp = float(rooms.setpoint_c[i])
        m.step(Q)
        now_open = bool(rooms.valve_open[i])
        if now_open and not prev_open:
            assert room_before < sp - h
            switches += 1
        if prev_open and not now_open:
            assert room_before > sp + h
            switches += 1
        if now_open == prev_open and sp - h <= room_before <= sp + h:
            pass  # inside the band the valve keeps its state: checked by the two ifs above
        prev_open = now_open
    assert switches >= 4, "the thermostat should cycle several times a day"
    # once in the band, the room stays near it
    assert abs(float(rooms.room_c[i]) - float(rooms.setpoint_c[i])) < h + 0.3


def test_valve_override_expires_after_configured_time(site: Any) -> None:
    sim = _sim(site, valve_override_s=600.0)
    i = sim.model.household_of["b1.101.valve"]
    sim.model.rooms.room_c[i] = sim.model.rooms.setpoint_c[i] - 3  # thermostat wants it open
    sim.set_value("b1.101.valve", "open", False)
    sim.step(300)
    assert sim.value("b1.101.valve", "open") is False
    assert sim.value("b1.101.valve", "auto") is False
    sim.step(600)
    assert sim.value("b1.101.valve", "auto") is True
    assert sim.value("b1.101.valve", "open") is True


def test_release_hands_valve_back_to_thermostat(site: Any) -> None:
    sim = _sim(site)
    i = sim.model.household_of["b1.102.valve"]
    sim.model.rooms.room_c[i] = sim.model.rooms.setpoint_c[i] + 3  # thermostat wants it closed
    sim.set_value("b1.102.valve", "open", True)
    sim.step(3600)
    assert sim.value("b1.102.valve", "open") is True
    sim.set_value("b1.102.valve", "auto", True)
    sim.step(Q)
    assert sim.value("b1.102.valve", "open") is False


def test_heat_meter_energy_is_integrated_power_and_monotonic(site: Any) -> None:
    m = _model(site)
    b = m.building_of_meter["b1.hm"]
    energy = [float(m.heat.energy_kwh[b])]
    integral = 0.0
    for _ in range(int(6 * 3600 / Q)):
        m.step(Q)
        integral += float(m.heat.power_kw[b]) * Q / 3600.0
        energy.append(float(m.heat.energy_kwh[b]))
    assert all(b2 >= a for a, b2 in itertools.pairwise(energy))
    assert energy[-1] - energy[0] == pytest.approx(integral, rel=1e-9)
    assert energy[-1] - energy[0] > 1.0  # a cold morning: a few kWh at least


def test_heat_meter_flow_and_temperatures_are_consistent(site: Any) -> None:
    m = _model(site)
    b = m.building_of_meter["b1.hm"]
    hh = [m.household_of["b1.101.valve"], m.household_of["b1.102.valve"]]
    seen_open = seen_closed = False
    for _ in range(int(12 * 3600 / 300)):
        m.step(300)
        h = m.heat
        delta = float(h.supply_c[b] - h.return_c[b])
        assert delta > 0
        assert float(h.power_kw[b]) == pytest.approx(
            RHO_WATER_KG_M3 * CP_WATER_KJ_KG_K * float(h.flow_m3h[b]) / 3600.0 * delta, rel=1e-9
        )
        radiators = float(sum(m.rooms.radiator_kw[i] for i in hh))
        assert float(h.power_kw[b]) > radiators  # radiators plus pipe losses
        open_now = any(m.rooms.valve_open[i] for i in hh)
        seen_open |= open_now
        seen_closed |= not open_now
    assert seen_open


def test_electricity_relay_open_stops_energy(site: Any) -> None:
    sim = _sim(site)
    sim.step(3600)
    e0 = sim.value("b1.101.em", "energy_kwh")
    sim.step(3600)
    e1 = sim.value("b1.101.em", "energy_kwh")
    assert e1 > e0
    sim.set_value("b1.101.em", "relay", False)
    assert sim.value("b1.101.em", "power_kw") == 0.0
    assert sim.value("b1.101.em", "trip") is True
    sim.step(3600)
    assert sim.value("b1.101.em", "energy_kwh") == e1
    assert sim.value("b1.101.em", "voltage_v") == 0.0
    sim.set_value("b1.101.em", "trip", False)  # a close command through the other coil
    assert sim.value("b1.101.em", "relay") is True
    sim.step(3600)
    assert sim.value("b1.101.em", "energy_kwh") > e1


def test_master_meter_reads_submeters_plus_losses(site: Any) -> None:
    sim = _sim(site)
    for _ in range(10):
        sim.step(600)
        subs = sim.value("b1.101.em", "power_kw") + sim.value("b1.102.em", "power_kw")
        assert sim.value("b1.master.em", "power_kw") > subs * 1.01
    sim.set_value("b1.master.em", "relay", False)  # the whole building is cut off
    sim.step(600)
    assert sim.value("b1.101.em", "power_kw") == 0.0
    assert sim.value("b1.master.em", "power_kw") == 0.0


def _snapshot(sim: Simulator) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dev, bindings in sim.model.bindings.items():
        for point in bindings:
            out[f"{dev}.{point}"] = sim.value(dev, point)
    return out


def test_same_seed_same_values_whatever_the_step_sizes(site: Any) -> None:
    a, b, c = _sim(site, seed=3), _sim(site, seed=3), _sim(site, seed=4)
    for dt in (100.0, 3600.0, 7.0, 1793.0):
        a.step(dt)
    b.step(5500.0)
    c.step(5500.0)
    assert a.now == b.now
    assert _snapshot(a) == _snapshot(b)
    assert _snapshot(a) != _snapshot(c)


def test_step_rejects_negative_time(site: Any) -> None:
    with pytest.raises(ValueError, match="dt_s"):
        _sim(site).step(-1.0)


def test_unclaimed_valve_and_heat_meter_get_a_room_and_a_building(tmp_path: Path) -> None:
    text = SITE_YAML.format(port=15020, port2=15021)
    text = text.replace(
        "      - {id: b1.102, area_m2: 64.0, position_factor: 1.1, valve_tag: b1.102.valve.open}\n",
        "",
    )
    text = text.replace(
        "  - {id: b1.io,",
        "  - {id: b2.hm, template: heat-meter, channel: b1-bus, unit: 2}\n  - {id: b1.io,",
    )
    s = load_site_text(text, tmp_path)
    m = _model(s)
    assert "b1.102.valve" in m.household_of  # a room of its own
    assert "b2.hm" in m.building_of_meter
    m.step(6 * 3600)
    assert m.heat.energy_kwh[m.building_of_meter["b2.hm"]] > 0
    assert math.isfinite(float(m.rooms.room_c[m.household_of["b1.102.valve"]]))


DEMO = Path(__file__).resolve().parents[2] / "config" / "demo-site.yaml"


@pytest.mark.skipif(not DEMO.exists(), reason="the demo site config is not there yet")
def test_demo_site_is_fully_simulated() -> None:
    from scada.config import load_site

    demo = load_site(DEMO)
    sim = Simulator(demo, seed=1, start_ts=START_TS, tick_s=None)
    m = sim.model
    valves = [d.id for d in demo.devices if m.roles[d.id] == "valve"]
    with_valve = [h for b in demo.buildings for h in b.households if h.valve_tag]
    assert m.rooms.n == len(with_valve) == len(valves)  # shops without a valve have no room
    meters = {b.heat.energy_tag.rsplit(".", 1)[0] for b in demo.buildings if b.heat}
    assert meters <= set(m.building_of_meter)
    energy = {d: sim.value(d, "energy_kwh") for d in meters}
    sim.step(3600)
    for d in meters:
        assert sim.value(d, "energy_kwh") > energy[d]
    for b in demo.buildings:
        main = f"{b.id}.main"
        if main in m.meter_index:
            subs = [
                d.id for d in demo.devices if d.id.startswith(b.id + ".") and d.id.endswith(".em")
            ]
            assert sim.value(main, "power_kw") > sum(sim.value(s, "power_kw") for s in subs)
