"""Benchmark the TagDatabase: bulk updates with deadband, fan-out to glob subscribers.

Runs the same workload through ``TagDatabase`` + ``LocalBus`` and through a naive per-tag
dict implementation (per-tag deadband check, per-subscriber per-change callback) and
prints updates/s ingested, changes/s delivered and the ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tags.bus import ChangeBatch
from tags.catalog import compile_glob
from tags.database import TagDatabase
from tags.model import Quality, TagDef

_POINTS = ("energy_kwh", "power_kw", "flow_m3h", "supply_c", "return_c")
_BUILDINGS = 20
_DEADBAND = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--tags", type=int, default=100_000, help="number of tags (default 100000)")
    parser.add_argument(
        "--subscribers", type=int, default=20, help="number of subscribers (default 20)"
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="update rounds over all tags (default 20)"
    )
    parser.add_argument(
        "--change-fraction",
        type=float,
        default=0.1,
        help="fraction of values moving past the deadband per round (default 0.1)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def tag_names(count: int) -> list[str]:
    """Return ``count`` names like ``b07.0123.power_kw`` (20 buildings, 5 points per unit)."""
    units = max(1, math.ceil(count / (_BUILDINGS * len(_POINTS))))
    names = [
        f"b{b:02d}.{u:04d}.{p}" for b in range(_BUILDINGS) for u in range(units) for p in _POINTS
    ]
    return names[:count]


def subscriber_patterns(count: int) -> list[str]:
    """Return ``count`` patterns covering various slices (all, per point, per building...)."""
    base = ["*", "*.power_kw", "*.energy_kwh", "b0?.*", "b1?.*.supply_c", "b*.00[0-4]?.*"]
    per_building = [f"b{b:02d}.*" for b in range(_BUILDINGS)]
    per_unit = [f"b{b:02d}.{u:04d}.*" for b in range(_BUILDINGS) for u in range(3)]
    patterns = base + per_building + per_unit
    while len(patterns) < count:
        patterns += patterns
    return patterns[:count]


def make_rounds(
    count: int, rounds: int, fraction: float, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return the initial values and one value array per round (``fraction`` past deadband)."""
    rng = np.random.default_rng(seed)
    published = rng.uniform(0.0, 100.0, count)
    initial = published.copy()
    out = []
    n_change = round(count * fraction)
    for _ in range(rounds):
        values = published + rng.uniform(-0.4 * _DEADBAND, 0.4 * _DEADBAND, count)
        moved = rng.choice(count, n_change, replace=False)
        values[moved] = published[moved] + rng.choice([-2.0, 2.0], n_change) * _DEADBAND
        published[moved] = values[moved]
        out.append(values)
    return initial, out


@dataclass
class Result:
    """Figures of one implementation."""

    updates: int
    changes: int
    delivered: int
    ingest_s: float
    total_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "changes": self.changes,
            "delivered": self.delivered,
            "ingest_updates_per_s": self.updates / self.ingest_s,
            "end_to_end_updates_per_s": self.updates / self.total_s,
            "delivered_changes_per_s": self.delivered / self.total_s,
        }


def run_vectorised(
    names: list[str], patterns: list[str], initial: np.ndarray, rounds: list[np.ndarray]
) -> Result:
    """Run the workload through TagDatabase + LocalBus."""
    db = TagDatabase(TagDef(n, deadband=_DEADBAND) for n in names)
    ids = db.ids_of(names)
    delivered = [0]

    def on_batch(batch: ChangeBatch) -> None:
        delivered[0] += len(batch)

    for p in patterns:
        db.subscribe(p, on_batch)
    db.update_many(ids, initial)
    db.flush()
    delivered[0] = 0
    changes = 0
    ingest = total = 0.0
    clock = time.perf_counter
    for values in rounds:
        t0 = clock()
        changes += db.update_many(ids, values, Quality.GOOD)
        t1 = clock()
        db.flush()
        t2 = clock()
        ingest += t1 - t0
        total += t2 - t0
    return Result(len(names) * len(rounds), changes, delivered[0], ingest, total)


class _NaiveTag:
    __slots__ = ("deadband", "quality", "ts", "value")

    def __init__(self, deadband: float) -> None:
        self.value: float | None = None
        self.quality = Quality.BAD
        self.ts = 0.0
        self.deadband = deadband


def run_naive(
    names: list[str], patterns: list[str], initial: np.ndarray, rounds: list[np.ndarray]
) -> Result:
    """Run the workload through a dict of per-tag objects with per-change callbacks."""
    tags = {n: _NaiveTag(_DEADBAND) for n in names}
    delivered = [0]

    def on_change(name: str, tag: _NaiveTag) -> None:
        delivered[0] += 1

    # listeners resolved per tag at subscribe time (the best a dict design can do)
    listeners: dict[str, list[Any]] = {n: [] for n in names}
    for p in patterns:
        rx = compile_glob(p)
        for n in names:
            if rx.fullmatch(n):
                listeners[n].append(on_change)

    def update(name: str, value: float, quality: Quality, ts: float) -> bool:
        tag = tags[name]
        if (
            tag.value is not None
            and abs(value - tag.value) <= tag.deadband
            and tag.quality == quality
        ):
            return False
        tag.value, tag.quality, tag.ts = value, quality, ts
        for cb in listeners[name]:
            cb(name, tag)
        return True

    now = time.time()
    for n, v in zip(names, initial.tolist(), strict=True):
        update(n, v, Quality.GOOD, now)
    delivered[0] = 0
    changes = 0
    total = 0.0
    clock = time.perf_counter
    for values in rounds:
        vals = values.tolist()
        t0 = clock()
        now = time.time()
        for n, v in zip(names, vals, strict=True):
            changes += update(n, v, Quality.GOOD, now)
        total += clock() - t0
    return Result(len(names) * len(rounds), changes, delivered[0], total, total)


def run(args: argparse.Namespace) -> int:
    """Run both implementations and print the figures; return 0 (1 if they disagree)."""
    names = tag_names(args.tags)
    patterns = subscriber_patterns(args.subscribers)
    initial, rounds = make_rounds(len(names), args.rounds, args.change_fraction, args.seed)
    fast = run_vectorised(names, patterns, initial, rounds)
    naive = run_naive(names, patterns, initial, rounds)
    agree = fast.changes == naive.changes and fast.delivered == naive.delivered
    figures = {
        "tags": len(names),
        "subscribers": len(patterns),
        "rounds": len(rounds),
        "change_fraction": args.change_fraction,
        "tag_database": fast.as_dict(),
        "naive_dict": naive.as_dict(),
        "ingest_ratio": (fast.updates / fast.ingest_s) / (naive.updates / naive.ingest_s),
        "end_to_end_ratio": (fast.updates / fast.total_s) / (naive.updates / naive.total_s),
        "results_agree": agree,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0 if agree else 1
    print(
        f"{len(names)} tags, {len(patterns)} subscribers, {len(rounds)} rounds, "
        f"{args.change_fraction:.0%} changing past deadband"
    )
    for label, r in (("TagDatabase (numpy)", fast), ("naive per-tag dict", naive)):
        d = r.as_dict()
        print(
            f"  {label:<20} ingest {d['ingest_updates_per_s']:>13,.0f} updates/s   "
            f"end-to-end {d['end_to_end_updates_per_s']:>13,.0f} updates/s   "
            f"delivered {d['delivered_changes_per_s']:>12,.0f} changes/s   "
            f"({r.changes:,} changes, {r.delivered:,} deliveries)"
        )
    print(
        f"  ratio: ingest x{figures['ingest_ratio']:.1f}, end-to-end x{figures['end_to_end_ratio']:.1f}"
    )
    if not agree:
        print("  WARNING: the two implementations disagree on changes or deliveries")
        return 1
    return 0
