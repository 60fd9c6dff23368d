"""A restarted simulator continues its counters from the history (issue 18 item 9).

Before, a restart began every meter again from the simulator's random defaults: the historian
read each drop as a counter reset and the day's heat allocation and the consumption charges
counted whole registers again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from drivers.simulator import Simulator
from historian.sqlite import SqliteHistorian
from scada.runtime import Runtime
from tests.drivers.simulator_fixtures import SITE_YAML, START_TS, free_port, load_site_text


def _site(tmp_path: Path, days: float) -> Any:
    extra = f"simulate: {{enabled: true, backfill_days: {days}}}\n"
    return load_site_text(SITE_YAML.format(port=free_port(), port2=free_port()) + extra, tmp_path)


def test_resume_counters_sets_every_counter_point(tmp_path: Path) -> None:
    sim = Simulator(_site(tmp_path, 0), seed=1, start_ts=START_TS, tick_s=None)
    counters = sim.counter_tags()
    assert "b1.hm.energy_kwh" in counters
    assert any(t.endswith(".em.energy_kwh") for t in counters)
    assert "b1.hm.power_kw" not in counters  # not a counter
    stored = {t: 1234.5 + i for i, t in enumerate(counters)}
    stored["b1.hm.power_kw"] = 99.0  # ignored
    assert sim.resume_counters({**stored, counters[0]: float("nan")}) == len(counters) - 1
    for tag in counters[1:]:
        device, point = tag.rsplit(".", 1)
        assert sim.value(device, point) == stored[tag]
    sim.step(3600.0)
    for tag in counters[1:]:
        device, point = tag.rsplit(".", 1)
        assert sim.value(device, point) >= stored[tag]  # and they count on from there


async def test_a_restarted_runtime_never_counts_backwards(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = Runtime(_site(tmp_path, 0.05), var)
    await first.start()
    try:
        assert first.backfill_result is not None and first.simulator is not None
        counters = [t for t in first.simulator.counter_tags() if t in first.db]
    finally:
        await first.stop()
    history = SqliteHistorian(var / "history.sqlite")
    try:
        before = {t: s.numeric or 0.0 for t, s in history.last(counters).items()}
    finally:
        history.close()
    assert len(before) == len(counters) > 5
    # same data dir: the history is recent, so no backfill; the simulator resumes instead
    second = Runtime(_site(tmp_path, 0.05), var)
    await second.start()
    try:
        assert second.backfill_result is None
        sim = second.simulator
        assert sim is not None
        for tag, value in before.items():
            device, point = tag.rsplit(".", 1)
            assert sim.value(device, point) >= value - 1e-6, tag
    finally:
        await second.stop()
    history = SqliteHistorian(var / "history.sqlite")
    try:
        for tag in ("b1.hm.energy_kwh", counters[-1]):
            values = [s.numeric or 0.0 for s in history.query_raw(tag, 0, time.time() + 60)]
            assert values == sorted(values), tag  # no step back across the restart
    finally:
        history.close()


async def test_an_applied_config_restarts_the_simulator_without_counting_back(
    tmp_path: Path,
) -> None:
    port, port2 = free_port(), free_port()
    extra = "simulate: {enabled: true, backfill_days: 0}\n"
    text = SITE_YAML.format(port=port, port2=port2) + extra
    runtime = Runtime(load_site_text(text, tmp_path), tmp_path / "var")
    await runtime.start()
    try:
        old = runtime.simulator
        assert old is not None
        old.step(6 * 3600.0)  # the counters are well past their start
        before = old.counter_values()
        changed = load_site_text(text.replace("timeout_s: 0.5", "timeout_s: 0.7"), tmp_path)
        plan = await runtime.apply(changed)
        assert plan.restart_drivers
        new = runtime.simulator
        assert new is not None and new is not old
        after = new.counter_values()
        assert after.keys() == before.keys()
        assert all(after[t] >= before[t] for t in before), [
            (t, before[t], after[t]) for t in before if after[t] < before[t]
        ]
    finally:
        await runtime.stop()
