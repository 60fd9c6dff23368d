"""Backfill of a large estate stays quick: coarser grids for long spans and households' values."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.simulator import Simulator
from drivers.simulator.backfill import _Column, _select_banded, backfill
from historian.base import Sample
from tags.model import Source, TagDef, TagType
from tests.drivers.simulator_fixtures import SITE_YAML, START_TS, free_port, load_site_text

DAY_S = 86400.0
EXTRA = """
tags:
  - {name: b1.power_total, type: float, unit: kW, expr: "sum(tags('b1.1*.em.power_kw'))"}
  - {name: b1.loss_kw, type: float, unit: kW, expr: "b1.master.em.power_kw - b1.power_total"}
  - {name: b1.room_avg, type: float, unit: degC, expr: "avg(tags('b1.*.valve.room_c'))"}
"""


def _site(tmp_path: Path) -> Any:
    return load_site_text(SITE_YAML.format(port=free_port(), port2=free_port()) + EXTRA, tmp_path)


def _run(site: Any, span_s: float, **kw: Any) -> tuple[dict[str, list[Sample]], Any, Simulator]:
    sim = Simulator(site, seed=4, start_ts=START_TS, tick_s=None)
    out: list[Sample] = []
    result = backfill(sim, site.tag_defs(), out.extend, end_ts=START_TS + span_s, **kw)
    series: dict[str, list[Sample]] = {}
    for s in sorted(out, key=lambda s: s.ts):
        series.setdefault(s.tag, []).append(s)
    return series, result, sim


def _on_grid(samples: list[Sample], step_s: float) -> bool:
    return all((s.ts - START_TS) % step_s == 0 for s in samples)


def test_a_small_site_keeps_the_minute_grid(tmp_path: Path) -> None:
    _, result, _ = _run(_site(tmp_path), DAY_S)
    assert (result.steps, result.sample_s, result.bulk_sample_s) == (1440, 60.0, 60.0)


def test_a_long_span_is_sampled_coarser_and_the_live_quantum_comes_back(tmp_path: Path) -> None:
    series, result, sim = _run(_site(tmp_path), DAY_S, max_steps=288, bulk_cells=None)
    assert (result.steps, result.sample_s, result.bulk_sample_s) == (288, 300.0, 300.0)
    energy = series["b1.hm.energy_kwh"]
    assert _on_grid(energy, 300.0) and len(energy) > 200
    values = [s.value for s in energy]
    assert values == sorted(values)
    assert sim.model.params.substep_s == 15.0 and sim.now == START_TS + DAY_S


def test_households_numeric_values_go_on_the_bulk_grid(tmp_path: Path) -> None:
    site = _site(tmp_path)
    series, result, _ = _run(site, DAY_S, bulk_cells=2_000)
    households = [
        d for d in site.tag_defs() if d.household and d.type in ("int", "float") and d.historize
    ]
    every = math.ceil(len(households) * 1440 / 2_000)
    assert result.sample_s == 60.0 and result.bulk_sample_s == 60.0 * every > 60.0
    for d in households:  # room temperatures, flat meters
        assert _on_grid(series.get(d.name, []), result.bulk_sample_s), d.name
    room = series["b1.101.valve.room_c"]
    assert len(room) > 50
    # building points, bools and computed tags that need them stay on the minute grid
    assert not _on_grid(series["b1.hm.supply_c"], result.bulk_sample_s)
    opened = series["b1.101.valve.open"]
    assert all(a.value != b.value for a, b in itertools.pairwise(opened))
    assert not _on_grid(series["b1.loss_kw"], result.bulk_sample_s)
    assert not _on_grid(series["b1.power_total"], result.bulk_sample_s)  # b1.loss_kw needs it
    # a computed tag over households' values only is evaluated on the bulk grid, exactly
    avg = series["b1.room_avg"]
    assert _on_grid(avg, result.bulk_sample_s) and len(avg) > 10
    first = [series[f"{n}.valve.room_c"][0] for n in ("b1.101", "b1.102")]
    assert all(s.ts == START_TS for s in first)
    assert avg[0].ts == START_TS and avg[0].value == pytest.approx(sum(s.value for s in first) / 2)


def test_banded_selection_is_the_recorders_filter() -> None:
    """The vectorised filter stores exactly what the per-column filter stores."""
    rng = np.random.default_rng(11)
    ts = START_TS + 60.0 * np.arange(500)
    block = np.cumsum(rng.normal(0, 0.05, (500, 6)), axis=0)

    def columns() -> list[_Column]:
        return [
            _Column(
                TagDef(
                    name=f"t{j}",
                    type=TagType.FLOAT,
                    source=Source.DEVICE,
                    deadband=band,
                    device="d",
                ),
                None,
                gap,
            )
            for j, (band, gap) in enumerate(
                [(0.1, 900.0), (0.1, None), (0.02, 300.0), (0.5, 900.0), (0.3, 60.0), (1e-9, None)]
            )
        ]

    one, many = columns(), columns()
    for c in one:
        c.last, c.last_ts = 0.0, START_TS - 600  # state carried over from an earlier chunk
    for c in many:
        c.last, c.last_ts = 0.0, START_TS - 600
    for half in (slice(0, 250), slice(250, 500)):
        mask = _select_banded(many, block[half], ts[half])
        for j, c in enumerate(one):
            assert np.flatnonzero(mask[:, j]).tolist() == c.select(block[half, j], ts[half])
    assert [(c.last, c.last_ts) for c in one] == [(c.last, c.last_ts) for c in many]


@pytest.mark.parametrize("kw", [{"max_steps": 0}, {"bulk_cells": 0}])
def test_limits_are_validated(tmp_path: Path, kw: dict[str, Any]) -> None:
    site = _site(tmp_path)
    sim = Simulator(site, seed=1, start_ts=START_TS, tick_s=None)
    with pytest.raises(ValueError, match=next(iter(kw))):
        backfill(sim, site.tag_defs(), lambda b: None, end_ts=START_TS + 600, **kw)
