"""Simulated history: the backfill writes what the recorder would have, then the live run continues."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.codec import PointSpec
from drivers.simulator import Simulator
from drivers.simulator.backfill import backfill, newest_sample_ts, quantize
from drivers.simulator.image import DeviceImage
from historian.base import Sample
from historian.sqlite import SqliteHistorian
from scada.config import ConfigError, load_site
from scada.runtime import Runtime
from tags.model import Quality
from tests.demo import demo_site_copy
from tests.drivers.simulator_fixtures import (
    SITE_YAML,
    START_TS,
    free_port,
    load_site_text,
    site_fixture,
)

__all__ = ["site_fixture"]

DAY_S = 86400.0
COMPUTED = """
tags:
  - {name: b1.power_total, type: float, unit: kW, expr: "sum(tags('b1.1*.em.power_kw'))"}
  - {name: b1.loss_kw, type: float, unit: kW, expr: "b1.master.em.power_kw - b1.power_total"}
"""


def _site(tmp_path: Path, extra: str = "") -> Any:
    return load_site_text(SITE_YAML.format(port=free_port(), port2=free_port()) + extra, tmp_path)


def _collect(sim: Simulator, site: Any, end_ts: float, **kw: Any) -> tuple[list[Sample], Any]:
    batches: list[list[Sample]] = []
    result = backfill(sim, site.tag_defs(), lambda b: batches.append(list(b)), end_ts=end_ts, **kw)
    return [s for b in batches for s in b], result


def _series(samples: list[Sample], tag: str) -> list[Sample]:
    return sorted((s for s in samples if s.tag == tag), key=lambda s: s.ts)


def test_quantize_matches_the_register_image(site: Any) -> None:
    """The vectorised rounding equals encoding into and decoding from registers, point by point."""
    rng = np.random.default_rng(3)
    checked = 0
    for device in site.devices:
        points = {
            n: PointSpec.of(p, name=n)
            for n, p in site.points(device.id).items()
            if str(p.type) != "str"
        }
        image = DeviceImage(device.id, points)
        for name, spec in points.items():
            values = np.concatenate(
                [rng.normal(0, 300, 40), [0.0, 0.05, 0.15, -0.05, 1e12, -1e12, 2.5, 3.5]]
            )
            got = quantize(spec, values)
            for v, q in zip(values.tolist(), got.tolist(), strict=True):
                image.put(name, v)
                assert float(image.get(name)) == q, (device.id, name, v)
                checked += 1
    assert checked > 1000


def test_backfill_writes_a_day_as_the_recorder_would(tmp_path: Path) -> None:
    site = _site(tmp_path, COMPUTED)
    sim = Simulator(site, seed=7, start_ts=START_TS, tick_s=None)
    samples, result = _collect(sim, site, START_TS + DAY_S, batch_size=1000)
    assert result.start_ts == START_TS and result.end_ts == START_TS + DAY_S
    assert result.steps == 1440 and result.samples == len(samples)
    assert all(START_TS <= s.ts <= START_TS + DAY_S and s.quality is Quality.GOOD for s in samples)
    # a counter: sampled every minute, never decreasing, its last sample the model's value now
    energy = _series(samples, "b1.hm.energy_kwh")
    values = [s.value for s in energy]
    assert values == sorted(values) and values[-1] > values[0]
    assert energy[-1].value == sim.value("b1.hm", "energy_kwh")
    assert max(b.ts - a.ts for a, b in itertools.pairwise(energy)) <= 15 * 60
    # scaled integer registers read back on their grid, as a poll would
    room = _series(samples, "b1.101.valve.room_c")
    assert room and all(round(s.value * 10) == pytest.approx(s.value * 10) for s in room)
    # valves open and close during the day: bools are stored on change only
    valve = [s.value for s in _series(samples, "b1.101.valve.open")]
    assert True in valve and False in valve
    assert all(a != b for a, b in itertools.pairwise(valve))
    # constant points and the device status are stored once, at the start
    for tag, value in (("b1.io.mode", 0), ("b1.io.serial", ""), ("b1.hm.online", True)):
        assert [(s.ts, s.value) for s in _series(samples, tag)] == [(START_TS, value)]
    # computed tags are evaluated over the sampled values
    power = {s.tag: s for s in samples if s.tag.endswith(".em.power_kw") and s.ts == START_TS}
    first_total = _series(samples, "b1.power_total")[0]
    assert first_total.ts == START_TS
    assert first_total.value == pytest.approx(
        power["b1.101.em.power_kw"].value + power["b1.102.em.power_kw"].value
    )
    assert len(_series(samples, "b1.loss_kw")) > 100


def test_backfill_is_deterministic_and_ends_where_the_simulator_goes_on(tmp_path: Path) -> None:
    site = _site(tmp_path)
    a, _ = _collect(Simulator(site, seed=3, start_ts=START_TS, tick_s=None), site, START_TS + 7200)
    sim = Simulator(site, seed=3, start_ts=START_TS, tick_s=None)
    b, result = _collect(sim, site, START_TS + 7200 + 100)  # ends off the sampling grid
    assert a == [s for s in b if s.ts <= START_TS + 7200]
    assert sim.now == pytest.approx(result.end_ts) and sim.now > START_TS + 7200
    assert sim.model.params.substep_s == 15.0  # the live quantum is back
    before = sim.value("b1.hm", "energy_kwh")
    sim.step(600)
    assert sim.value("b1.hm", "energy_kwh") >= before >= _series(b, "b1.hm.energy_kwh")[-1].value


def test_backfill_rejects_a_bad_sample_period(site: Any) -> None:
    sim = Simulator(site, seed=1, start_ts=START_TS, tick_s=None)
    with pytest.raises(ValueError, match="sample_s"):
        backfill(sim, site.tag_defs(), lambda b: None, end_ts=START_TS + 60, sample_s=0)


@pytest.mark.parametrize("days", ["-1", "401"])
def test_backfill_days_is_validated(tmp_path: Path, days: str) -> None:
    text = SITE_YAML.format(port=free_port(), port2=free_port())
    path = tmp_path / "site.yaml"
    path.write_text(text + f"simulate: {{enabled: true, backfill_days: {days}}}\n")
    with pytest.raises(ConfigError, match="backfill_days"):
        load_site(path)


async def _first_good(db: Any, tag: str) -> float:
    """Return the first good value ``tag`` gets (event-driven)."""
    got: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def check(_batch: Any = None) -> None:
        tv = db.read(tag)
        if tv.quality is Quality.GOOD and not got.done():
            got.set_result(float(tv.value))

    unsubscribe = db.subscribe([tag], check)
    try:
        check()
        return await asyncio.wait_for(got, 20.0)
    finally:
        unsubscribe()


async def test_demo_runtime_starts_with_history(tmp_path: Path) -> None:
    """A fresh data dir: history from the backfill, polling continues it, billing finds it."""
    main = demo_site_copy(tmp_path / "config")
    main.write_text(main.read_text().replace("backfill_days: 7", "backfill_days: 1"))
    site = load_site(main)
    assert site.simulate.backfill_days == 1
    runtime = Runtime(site, tmp_path / "var")
    t0 = time.time()
    await runtime.start()
    try:
        result = runtime.backfill_result
        assert result is not None and result.samples > 10_000
        assert result.start_ts == pytest.approx(t0 - DAY_S, abs=5.0)
        assert result.start_ts < result.end_ts <= time.time()
        backfilled = runtime.historian.value_at("b1.hm.energy_kwh", result.end_ts)
        assert backfilled is not None and backfilled.ts > result.end_ts - 120
        polled = await _first_good(runtime.db, "b1.hm.energy_kwh")
        assert polled >= backfilled.value
        # billing: the start-up catch-up took half-hourly readings from the backfilled history
        await runtime.billing_scheduler.catch_up_task
        meter = runtime.billing_scheduler.meters[0]
        ts, _ = runtime.ledger.readings_around(meter, t0 - DAY_S + 3600, t0)
        assert len(ts) >= 40
        # and the heat of the past day is shared out among the households
        allocation = await asyncio.to_thread(runtime.billing.allocate_heat, t0 - DAY_S, t0)
        for building in allocation.buildings:
            assert building.heat_kwh > 0
            assert sum(h.share for h in building.households) == pytest.approx(1.0)
    finally:
        await runtime.stop()
    history = SqliteHistorian(tmp_path / "var" / "history.sqlite")
    try:
        energy = history.query_raw("b1.hm.energy_kwh", t0 - 2 * DAY_S, time.time() + 60)
        values = [s.value for s in energy]
        assert values == sorted(values)  # no step back across the backfill/poll boundary
        assert energy[-1].ts > result.end_ts and energy[0].ts < t0 - DAY_S + 120
    finally:
        history.close()


def _small_runtime_site(tmp_path: Path, days: float) -> Any:
    extra = f"simulate: {{enabled: true, backfill_days: {days}}}\n"
    return _site(tmp_path, extra)


@pytest.mark.parametrize(("age_days", "runs"), [(0.0, False), (0.5, True)])
async def test_existing_history_is_never_backfilled_over(
    tmp_path: Path, age_days: float, runs: bool
) -> None:
    """History newer than the backfill start stops the backfill; older history does not."""
    site = _small_runtime_site(tmp_path, 0.1)
    var = tmp_path / "var"
    var.mkdir()
    seeded = time.time() - age_days * DAY_S - 60
    history = SqliteHistorian(var / "history.sqlite")
    history.write([Sample("b1.hm.energy_kwh", seeded, 123.0)])
    history.close()
    runtime = Runtime(site, var)
    await runtime.start()
    try:
        assert (runtime.backfill_result is not None) is runs
        samples = runtime.historian.query_raw("b1.hm.energy_kwh", seeded - DAY_S, time.time())
        assert samples[0].ts == seeded and samples[0].value == 123.0
        backfilled = [s for s in samples if s.ts > seeded and s.ts <= time.time() - 30]
        assert (len(backfilled) > 100) is runs
        assert newest_sample_ts(runtime.historian, ["b1.hm.energy_kwh", "nope"]) is not None
    finally:
        await runtime.stop()
