"""``scada bench NAME``: benchmarks that print figures (tests never assert wall-clock times).

Each benchmark is a module with ``add_arguments(parser)`` and ``run(args) -> int``; name it
in ``BENCHES``.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES: dict[str, str] = {
    "tags": "scada.bench.tags",
    "poll": "scada.bench.poll",
    "historian": "scada.bench.historian",
    "alarms": "scada.bench.alarms",
    "scaleout": "scada.bench.scaleout",
    "ws": "scada.bench.ws",
    "billing": "scada.bench.billing",
    "heatfees": "scada.bench.heatfees",
    "hmi": "scada.bench.hmi",
    "backfill": "scada.bench.backfill",
    "estate": "scada.bench.estate",
    "reports": "scada.bench.reports",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark and print its figures")
    benches = parser.add_subparsers(dest="bench", metavar="NAME")
    benches.required = True
    for name, module_name in BENCHES.items():
        module = importlib.import_module(module_name)
        p = benches.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.run)
