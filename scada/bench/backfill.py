"""Simulated history backfill: time to write N days of the demo site into a fresh SQLite historian.

Builds the simulator of ``--config`` (default the demo site) starting ``--days`` ago, runs
:func:`drivers.simulator.backfill.backfill` into a new SQLite file in a temporary directory
(what ``scada run`` does on a fresh data dir) and prints the run time split into model and
historian time, the samples written and the rate. Target: 7 days of the demo in < 15 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser``."""
    parser.add_argument("--config", default=str(ROOT / "config" / "demo-site.yaml"))
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures; return the exit code."""
    from drivers.simulator import Simulator
    from drivers.simulator.backfill import backfill
    from historian.base import Sample
    from historian.sqlite import SqliteHistorian
    from scada.config import load_site

    site = load_site(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        history = SqliteHistorian(Path(tmp) / "history.sqlite")
        write_s = 0.0

        def write(batch: Sequence[Sample]) -> None:
            nonlocal write_s
            t = time.perf_counter()
            history.write(batch)
            write_s += time.perf_counter() - t

        try:
            t0 = time.perf_counter()
            sim = Simulator(site, seed=args.seed, start_ts=time.time() - args.days * 86400.0)
            result = backfill(sim, site.tag_defs(), write)
            total_s = time.perf_counter() - t0
        finally:
            history.close()
    figures: dict[str, Any] = {
        "days": args.days,
        "tags": result.tags,
        "samples": result.samples,
        "total_s": round(total_s, 2),
        "model_and_sampling_s": round(total_s - write_s, 2),
        "historian_write_s": round(write_s, 2),
        "samples_per_s": round(result.samples / total_s) if total_s > 0 else None,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"backfill of {args.days:g} days: {result.samples} samples of {result.tags} tags "
            f"in {total_s:.2f} s (model+sampling {total_s - write_s:.2f} s, "
            f"historian {write_s:.2f} s, {figures['samples_per_s']} samples/s)"
        )
    return 0
