"""Heat fees: the season fees of many households (allocation + fees) from a SQLite historian.

``--households`` (default 10,000) in buildings of ``--per-building``, valves switching
``--events`` times a day over ``--days`` (default 120, a heating season), as in ``scada bench
billing`` (the same historian file under ``--data-dir`` is reused). One household in 50 is
suspended for the last month. The figure is the season's heat allocation plus the fees of every
household with the tariff ``TARIFF``, plus the season-end settlement posted to every heat
account of a fresh ledger (``ledger_step``: one keyed entry each, its advance posted first as
at the season's start, untimed): goal <= 2 s for the three. A second settlement run posts
nothing (counted: ``reposted``).
"""

from __future__ import annotations

import argparse
import json
import time
import zoneinfo
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scada.bench.billing import DAY, SEASON_START, _fill_heat

if TYPE_CHECKING:
    from billing.heat import HeatAllocation
    from billing.heat_fees import HeatFee
    from billing.site import BillingSite
    from historian.base import Historian

#: The bench's tariff. The generated valves give every household 28 .. 36 kWh/m2 in the season:
#: the floor and the cap are set close (0.95 .. 1.05 of the area fee) so some households meet
#: each of them.
TARIFF = {
    "area_price_per_m2": "8.00",
    "basic_ratio": "0.3",
    "energy_price_per_gj": "48.00",
    "min_ratio": "0.95",
    "max_ratio": "1.05",
    "suspended_ratio": "0.2",
}
GOAL_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--households", type=int, default=10_000)
    parser.add_argument("--per-building", type=int, default=100)
    parser.add_argument("--days", type=int, default=120, help="heating season length")
    parser.add_argument("--events", type=int, default=2, help="valve opens per day")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default="var/bench-billing")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def fees_site(n: int, per: int, days: int) -> Any:
    """Return a site of ``n`` households with valves, a site-wide tariff and a few suspended."""
    from scada.config import SiteConfig

    rng = np.random.default_rng(1)  # the areas and factors of ``scada bench billing``
    zone = zoneinfo.ZoneInfo("Asia/Shanghai")
    last_month = datetime.fromtimestamp(SEASON_START + (days - 30) * DAY, zone).date()
    buildings = []
    for b in range(-(-n // per)):
        hh: list[dict[str, Any]] = [
            {
                "id": f"b{b}.h{i}",
                "area_m2": float(rng.choice([62.5, 86.0, 92.0, 120.0])),
                "position_factor": float(rng.choice([1.0, 1.05, 1.1])),
                "valve_tag": f"b{b}.h{i}.valve.open",
            }
            for i in range(min(per, n - b * per))
        ]
        for i in range(0, len(hh), 50):
            hh[i] = {**hh[i], "suspended": True, "suspended_from": last_month.isoformat()}
        buildings.append(
            {
                "id": f"b{b}",
                "households": hh,
                "heat": {"energy_tag": f"b{b}.hm.energy_kwh", "basic_share": 0.3},
            }
        )
    return SiteConfig.model_validate(
        {
            "site": {"id": "bench", "timezone": "Asia/Shanghai"},
            "heat_tariff": TARIFF,
            "buildings": buildings,
        }
    )


def allocation_step(
    site: BillingSite, historian: Historian, start: float, end: float
) -> tuple[HeatAllocation, float]:
    """Allocate the season's heat; return it and the seconds it took."""
    from billing.heat import allocate_heat

    t = time.perf_counter()
    alloc = allocate_heat(site, historian, start, end)
    return alloc, time.perf_counter() - t


def fee_step(
    site: BillingSite, alloc: HeatAllocation, start: float, end: float
) -> tuple[list[HeatFee], float]:
    """Price every allocated household; return the fees and the seconds it took."""
    from billing.heat_fees import heat_fees

    t = time.perf_counter()
    fees = heat_fees(site, alloc, start, end)
    return fees, time.perf_counter() - t


def ledger_step(
    site: BillingSite, fees: list[HeatFee], data_dir: Path, end: float
) -> tuple[float, int, int]:
    """Post the season's advance (untimed) then its settlement to a fresh ledger in ``data_dir``.

    Return the seconds the settlement took, the entries it posted and what a second run
    posted (nothing: the entries are keyed).
    """
    from billing.heat_accounts import (
        heat_households,
        last_season,
        post_season_advance,
        post_settlement,
    )
    from billing.ledger import Ledger

    path = data_dir / "heat-ledger.sqlite"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    households = heat_households(site)
    season = last_season(households[0].tariff, end, site.site.timezone)
    ledger = Ledger.open(path)
    try:
        post_season_advance(ledger, households, season, ts=season.start)
        t = time.perf_counter()
        posted = post_settlement(ledger, fees, season, ts=season.end)
        took = time.perf_counter() - t
        again = post_settlement(ledger, fees, season, ts=season.end)
    finally:
        ledger.close()
    return took, len(posted), len(again)


def _historian(args: argparse.Namespace, site: Any) -> tuple[Path, float | None]:
    """Return the historian file of the parameters (built unless there), and the build time."""
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    key = f"heat-{args.households}-{args.per_building}-{args.days}-{args.events}"
    path = data / f"{key}.sqlite"
    if path.exists():
        return path, None
    t = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    n = _fill_heat(tmp, site, args.days, args.events)
    tmp.rename(path)
    built = time.perf_counter() - t
    print(f"built {path}: {n} samples in {built:.1f} s")
    return path, built


def figures(args: argparse.Namespace) -> dict[str, Any]:
    """Run the bench; return its figures."""
    from historian.sqlite import SqliteHistorian

    site = fees_site(args.households, args.per_building, args.days)
    path, built_s = _historian(args, site)
    start, end = SEASON_START, SEASON_START + args.days * DAY
    h = SqliteHistorian(path)
    runs: list[tuple[float, float, float]] = []
    fees: list[HeatFee] = []
    posted = reposted = 0
    try:
        for _ in range(max(1, args.repeat)):
            alloc, alloc_s = allocation_step(site, h, start, end)
            fees, fee_s = fee_step(site, alloc, start, end)
            ledger_s, posted, reposted = ledger_step(site, fees, path.parent, end)
            runs.append((alloc_s, fee_s, ledger_s))
    finally:
        h.close()
    best = min(runs, key=sum)
    zero = Decimal("0.00")
    return {
        "households": len(fees),
        "buildings": len(site.buildings),
        "days": args.days,
        "allocation_s": round(best[0], 3),
        "fees_s": round(best[1], 3),
        "ledger_s": round(best[2], 3),
        "settlements_posted": posted,
        "reposted": reposted,
        "total_s": round(sum(best), 3),
        "total_s_runs": [round(sum(r), 3) for r in runs],
        "goal_s": GOAL_S,
        "suspended": sum(f.suspended for f in fees),
        "at_floor": sum(f.limit == "floor" for f in fees),
        "at_cap": sum(f.limit == "cap" for f in fees),
        "advance": str(sum((f.advance for f in fees), zero)),
        "total": str(sum((f.total for f in fees), zero)),
        "settlement": str(sum((f.settlement for f in fees), zero)),
        "historian_built_s": None if built_s is None else round(built_s, 1),
    }


def run(args: argparse.Namespace) -> int:
    f = figures(args)
    if args.json:
        print(json.dumps(f, indent=2))
        return 0
    print(
        f"heat fees: {f['households']} households in {f['buildings']} buildings, {f['days']} "
        f"days: {f['total_s']:.3f} s (allocation {f['allocation_s']:.3f} s + fees "
        f"{f['fees_s']:.3f} s + settlement of {f['settlements_posted']} heat accounts "
        f"{f['ledger_s']:.3f} s, {f['reposted']} posted again; goal {f['goal_s']} s; "
        f"runs {f['total_s_runs']})"
    )
    print(
        f"  {f['suspended']} suspended, {f['at_floor']} at the floor, {f['at_cap']} at the cap; "
        f"advance {f['advance']}, total {f['total']}, settlement {f['settlement']}"
    )
    return 0
