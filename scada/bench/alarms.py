"""Alarm engine benchmark: many rules under a high change rate; evaluations/s and change-to-event latency.

``scada bench alarms`` builds ``--rules`` limit rules (one per tag, H and L with deadband),
binds them on a real TagDatabase with a real SQLite journal, then

1. pushes changes as fast as possible (capacity: rule evaluations per second), and
2. paces ``--rate`` changes per second for ``--seconds`` in 10 ms blocks, ``--cross``
   of them crossing a limit, and measures the latency from the database update to the
   alarm event reaching a subscriber (p50 / p99 / max).

Goal (issue 5): 100k rules evaluated under 50k changes/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules", type=int, default=100_000, help="limit rules, one per tag (default 100000)"
    )
    parser.add_argument(
        "--rate", type=float, default=50_000, help="changes per second in the paced run"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument(
        "--cross", type=float, default=0.01, help="share of changes that cross a limit"
    )
    parser.add_argument("--seed", type=int, default=1)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    from alarms.config import AlarmRule
    from alarms.engine import AlarmEngine
    from alarms.journal import AlarmJournal
    from alarms.model import AlarmEvent, EventKind
    from tags.database import TagDatabase
    from tags.model import Source, TagDef, TagType

    n = args.rules
    names = [f"b{i // 1000}.d{i}.temp_c" for i in range(n)]
    defs = [
        TagDef(
            nm,
            TagType.FLOAT,
            unit="°C",
            device=nm.rsplit(".", 1)[0],
            building=nm.split(".", 1)[0],
            source=Source.DEVICE,
        )
        for nm in names
    ]
    t = time.perf_counter()
    rules = TypeAdapter(list[AlarmRule]).validate_python(
        [
            {
                "id": f"r{i}",
                "kind": "limit",
                "tag": nm,
                "limits": {"h": 90.0, "l": 10.0},
                "deadband": 1.0,
            }
            for i, nm in enumerate(names)
        ]
    )
    t_validate = time.perf_counter() - t
    db = TagDatabase(defs)
    ids = db.ids_of(names)
    db.update_many(ids, np.full(n, 50.0))
    db.flush()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        journal = AlarmJournal.open(Path(tmp) / "alarms.sqlite")
        engine = AlarmEngine(db, rules, journal, tick_s=None)
        t = time.perf_counter()
        engine.start()
        t_start = time.perf_counter() - t
        injected = [0.0]
        latencies: list[float] = []
        events = [0]

        def on_event(e: AlarmEvent) -> None:
            events[0] += 1
            if e.kind is EventKind.RAISED:
                latencies.append(time.perf_counter() - injected[0])

        engine.subscribe(on_event)
        perm = rng.permutation(n)

        def block(start: int, size: int, value_base: float) -> tuple[np.ndarray, np.ndarray]:
            sel = ids[perm[np.arange(start, start + size) % n]]
            vals = value_base + rng.normal(0.0, 5.0, size)
            cross = rng.random(size) < args.cross
            vals[cross] = np.where(rng.random(int(cross.sum())) < 0.5, 95.0, 5.0)
            return sel, vals

        # 1. capacity: unpaced
        total, cursor, busy = 0, 0, 0.0
        size = 5_000
        while total < 2 * n:
            sel, vals = block(cursor, size, 50.0)
            cursor += size
            t = time.perf_counter()
            db.update_many(sel, vals)
            db.flush()
            busy += time.perf_counter() - t
            total += size
        capacity = total / busy
        # 2. paced
        step = 0.01
        per_step = max(1, int(args.rate * step))
        steps = int(args.seconds / step)
        latencies.clear()
        events[0] = 0
        busy = 0.0
        late = 0
        t0 = time.perf_counter()
        for k in range(steps):
            due = t0 + k * step
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > step:
                late += 1
            sel, vals = block(cursor, per_step, 50.0)
            cursor += per_step
            t = time.perf_counter()
            injected[0] = t
            db.update_many(sel, vals)
            db.flush()
            busy += time.perf_counter() - t
        wall = time.perf_counter() - t0
        active = len(engine.active())
        journal.close()
    changes = steps * per_step
    print(
        f"rules: {n:,} ({2 * n:,} alarm points, H and L)  validate {t_validate:.2f} s, bind+start {t_start:.2f} s"
    )
    print(
        f"capacity (unpaced): {capacity:,.0f} changes/s evaluated (each change evaluates its rule's 2 points)"
    )
    print(
        f"paced: {changes:,} changes in {wall:.2f} s = {changes / wall:,.0f} changes/s "
        f"(target {args.rate:,.0f}); engine busy {100 * busy / wall:.1f} % of the time; late blocks {late}"
    )
    print(
        f"alarm events: {events[0]:,} ({len(latencies):,} raised), {active:,} alarms in the list at the end"
    )
    print(
        f"change -> alarm event latency: p50 {1e3 * _pct(latencies, 50):.2f} ms, "
        f"p99 {1e3 * _pct(latencies, 99):.2f} ms, max {1e3 * max(latencies, default=float('nan')):.2f} ms"
    )
    return 0
