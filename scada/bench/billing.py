"""Billing: heat allocation over a heating season, monthly bills of many meters.

Allocation: ``--households`` (default 10,000) in buildings of ``--per-building`` households,
valves opening and closing ``--events`` times a day over ``--days`` (default 120, a heating
season), stored in a real SQLite historian; the figure is ``allocate_heat`` over the whole
season (goal: <= 1 s). The historian file is kept in ``--data-dir`` and reused when the
parameters match (building it is the slow part).

Bills: ``--meters`` (default 10,000) meters with 15-minute readings for a month, half on a
time-of-use tariff and half on monthly tiers, priced from in-memory curves (the pricing
engine alone) and, for ``--hist-meters`` of them, from the SQLite historian (per-meter cost).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scada.config import SiteConfig

DAY = 86400.0
SEASON_START = 1_763_136_000.0  # 2025-11-15T00:00 Asia/Shanghai
MONTH_START = 1_764_518_400.0  # 2025-12-01T00:00 Asia/Shanghai

_TARIFFS = [
    {
        "id": "tou",
        "bands": [
            {"name": "sharp", "price": "1.3782", "hours": ["10:00-11:00", "19:00-21:00"]},
            {
                "name": "peak",
                "price": "1.1452",
                "hours": ["08:00-10:00", "11:00-15:00", "18:00-19:00", "21:00-23:00"],
            },
            {"name": "flat", "price": "0.7135", "hours": ["07:00-08:00", "15:00-18:00"]},
            {"name": "valley", "price": "0.3062", "hours": ["23:00-07:00"]},
        ],
    },
    {
        "id": "tier",
        "tiers": [
            {"up_to_kwh": 240, "price": "0.4883"},
            {"up_to_kwh": 400, "price": "0.5383"},
            {"price": "0.7883"},
        ],
    },
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--households", type=int, default=10_000)
    parser.add_argument("--per-building", type=int, default=100)
    parser.add_argument("--days", type=int, default=120, help="heating season length")
    parser.add_argument("--events", type=int, default=2, help="valve opens per day")
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--hist-meters", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default="var/bench-billing")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def _heat_site(n: int, per: int) -> Any:
    from scada.config import SiteConfig

    rng = np.random.default_rng(1)
    buildings = []
    for b in range(-(-n // per)):
        hh = [
            {
                "id": f"b{b}.h{i}",
                "area_m2": float(rng.choice([62.5, 86.0, 92.0, 120.0])),
                "position_factor": float(rng.choice([1.0, 1.05, 1.1])),
                "valve_tag": f"b{b}.h{i}.valve.open",
            }
            for i in range(min(per, n - b * per))
        ]
        buildings.append(
            {
                "id": f"b{b}",
                "households": hh,
                "heat": {
                    "energy_tag": f"b{b}.hm.energy_kwh",
                    "basic_share": 0.3,
                    "price_per_kwh": "0.30",
                },
            }
        )
    return SiteConfig.model_validate(
        {"site": {"id": "bench", "timezone": "Asia/Shanghai"}, "buildings": buildings}
    )


def _fill_heat(path: Path, site: SiteConfig, days: int, events: int) -> int:
    from historian.base import Sample
    from historian.sqlite import SqliteHistorian
    from tags.model import Quality

    rng = np.random.default_rng(2)
    h = SqliteHistorian(path)
    count = 0
    try:
        valves = [
            hh.valve_tag for b in site.buildings for hh in b.households if hh.valve_tag is not None
        ]
        end = SEASON_START + days * DAY
        for c in range(0, len(valves), 500):
            batch: list[Sample] = []
            for tag in valves[c : c + 500]:
                k = days * events
                opens = SEASON_START + (np.arange(k) + rng.uniform(0.0, 0.5, k)) * (DAY / events)
                closes = opens + rng.uniform(0.1, 0.45, k) * (DAY / events)
                batch.append(Sample(tag, SEASON_START - 60.0, False))
                batch += [Sample(tag, float(t), True) for t in opens.tolist()]
                batch += [Sample(tag, float(t), False) for t in closes.tolist()]
                if rng.random() < 0.01:  # a few valves lose contact for a day
                    t0 = SEASON_START + float(rng.integers(1, days - 1)) * DAY + 7200.0
                    batch.append(Sample(tag, t0, False, Quality.BAD))
            h.write(batch)
            count += len(batch)
        meters = []
        for b in site.buildings:
            if b.heat is None:  # every generated building has a heat meter
                continue
            ts = SEASON_START - 60.0 + np.arange(0.0, days * DAY + 3600.0, 3600.0)
            e = 1000.0 + np.cumsum(rng.uniform(50.0, 150.0, len(ts)))
            meters += [
                Sample(b.heat.energy_tag, float(t), float(v)) for t, v in zip(ts, e, strict=True)
            ]
        h.write(meters)
        count += len(meters)
        assert end > SEASON_START
    finally:
        h.close()
    return count


def _bench_allocation(args: argparse.Namespace) -> dict[str, Any]:
    from billing.heat import allocate_heat
    from historian.sqlite import SqliteHistorian

    site = _heat_site(args.households, args.per_building)
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    key = f"heat-{args.households}-{args.per_building}-{args.days}-{args.events}"
    path = data / f"{key}.sqlite"
    built_s = None
    if not path.exists():
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
        n = _fill_heat(tmp, site, args.days, args.events)
        tmp.rename(path)
        built_s = time.perf_counter() - t
        print(f"built {path}: {n} samples in {built_s:.1f} s")
    h = SqliteHistorian(path)
    try:
        start, end = SEASON_START, SEASON_START + args.days * DAY
        times = []
        alloc = None
        for _ in range(args.repeat):
            t = time.perf_counter()
            alloc = allocate_heat(site, h, start, end)
            times.append(time.perf_counter() - t)
        assert alloc is not None
        estimated = sum(hh.estimated for b in alloc.buildings for hh in b.households)
        q = sum(b.heat_kwh for b in alloc.buildings)
        alloc_q = sum(hh.heat_kwh for b in alloc.buildings for hh in b.households)
    finally:
        h.close()
    return {
        "households": args.households,
        "buildings": len(site.buildings),
        "days": args.days,
        "valve_events": args.households * args.days * args.events * 2,
        "allocation_s": round(min(times), 3),
        "allocation_s_runs": [round(x, 3) for x in times],
        "goal_s": 1.0,
        "estimated_households": estimated,
        "heat_kwh": round(q, 3),
        "reconciles": abs(q - alloc_q) < 1e-6 * max(1.0, q),
        "historian_built_s": None if built_s is None else round(built_s, 1),
    }


def _bill_site(n: int) -> Any:
    from scada.config import SiteConfig

    return SiteConfig.model_validate(
        {
            "site": {"id": "bench", "timezone": "Asia/Shanghai"},
            "channels": [
                {"id": "bus", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": 5020}
            ],
            "templates": {
                "em": {
                    "points": {
                        "energy_kwh": {
                            "address": 0,
                            "kind": "input",
                            "type": "uint32",
                            "scale": 0.01,
                        }
                    }
                }
            },
            "devices": [
                {"id": f"m{i}", "template": "em", "channel": "bus", "unit": 1 + i % 247}
                for i in range(n)
            ],
            "tariffs": _TARIFFS,
            "accounts": [
                {
                    "id": f"a{i}",
                    "tariff": "tou" if i % 2 == 0 else "tier",
                    "meters": [f"m{i}.energy_kwh"],
                }
                for i in range(n)
            ],
        }
    )


class _Memory:
    """A reading source over in-memory 15-minute readings (the pricing engine alone)."""

    def __init__(self, n: int, start: float, end: float) -> None:
        rng = np.random.default_rng(3)
        self.ts = np.arange(start - 900.0, end + 901.0, 900.0)
        self.cum = {
            f"m{i}.energy_kwh": np.cumsum(rng.uniform(0.0, 0.5, len(self.ts))) for i in range(n)
        }

    def curve(self, tag: str, start: float, end: float) -> Any:
        from billing.readings import Curve

        return Curve(self.ts, self.cum[tag])


def _bench_bills(args: argparse.Namespace) -> dict[str, Any]:
    from billing.bills import bill_accounts
    from billing.readings import HistorianReadings
    from historian.base import Sample
    from historian.sqlite import SqliteHistorian

    site = _bill_site(args.meters)
    start, end = MONTH_START, MONTH_START + 31 * DAY
    mem = _Memory(args.meters, start, end)
    t = time.perf_counter()
    run = bill_accounts(site, mem, start, end, shared=False)
    engine_s = time.perf_counter() - t
    total = sum((a.total for a in run.accounts), start=run.accounts[0].total * 0)
    # historian-backed: a subset of meters through real SQLite
    k = min(args.hist_meters, args.meters)
    data = Path(args.data_dir)
    path = data / f"bills-{k}.sqlite"
    if not path.exists():
        h = SqliteHistorian(path)
        try:
            for i in range(k):
                tag = f"m{i}.energy_kwh"
                c = mem.cum[tag]
                h.write([Sample(tag, float(a), float(v)) for a, v in zip(mem.ts, c, strict=True)])
        finally:
            h.close()
    h = SqliteHistorian(path)
    try:
        ids = [f"a{i}" for i in range(k)]
        t = time.perf_counter()
        hrun = bill_accounts(site, HistorianReadings(h), start, end, accounts=ids, shared=False)
        hist_s = time.perf_counter() - t
        same = all(hrun.account(a).total == run.account(a).total for a in ids)
    finally:
        h.close()
    return {
        "meters": args.meters,
        "readings_per_meter": len(mem.ts),
        "bills_engine_s": round(engine_s, 3),
        "bills_total": str(total),
        "historian_meters": k,
        "bills_historian_s": round(hist_s, 3),
        "historian_ms_per_meter": round(1000 * hist_s / max(k, 1), 2),
        "historian_equals_engine": same,
    }


def run(args: argparse.Namespace) -> int:
    figures = {"allocation": _bench_allocation(args), "bills": _bench_bills(args)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    a, b = figures["allocation"], figures["bills"]
    print(
        f"heat allocation: {a['households']} households in {a['buildings']} buildings, "
        f"{a['days']} days, {a['valve_events']} valve events: {a['allocation_s']:.3f} s "
        f"(goal {a['goal_s']} s; runs {a['allocation_s_runs']}), {a['estimated_households']} estimated, "
        f"reconciles: {a['reconciles']}"
    )
    print(
        f"monthly bills: {b['meters']} meters x {b['readings_per_meter']} readings: "
        f"{b['bills_engine_s']:.3f} s pricing; from the SQLite historian "
        f"{b['historian_ms_per_meter']} ms per meter ({b['historian_meters']} meters, "
        f"same totals: {b['historian_equals_engine']})"
    )
    return 0
