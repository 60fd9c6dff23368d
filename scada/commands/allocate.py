"""``scada allocate heat CONFIG --from T --to T``: heat allocation by the on-off time area method.

Prints a table, or with ``--json`` the document
``{"buildings": [{"id", "heat_kwh", "basic_kwh", "households": [{"id", "area_m2", "on_hours",
"share", "heat_kwh", "cost", "estimated"}]}]}`` (cost as a string); ``--xlsx F`` writes the
report. Times are ``now``, ``today``, ``this-month``, ``last-month``, an offset such as
``-7d``, or ISO dates and times (local, the site's time zone, unless they carry an offset):
``--from this-month --to now``. A line on stderr says when the period lies outside the stored
history or every household came out estimated (no valve data).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common, add_window

    parser = sub.add_parser(
        "allocate",
        help="allocate building heat to households",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_subparsers(dest="what", metavar="WHAT")
    what.required = True
    heat = what.add_parser("heat", help="heat by area x valve-open time x position factor")
    add_common(heat)
    add_window(heat)
    heat.add_argument("--building", action="append", help="only this building (repeatable)")
    out = heat.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the allocation as JSON")
    out.add_argument("--xlsx", metavar="F", help="write an Excel report to F")
    heat.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scada.commands.billing_output import emit, note_outside_history, open_billing, window

    with open_billing(args) as billing:
        try:
            start, end = window(args, billing.tz)
            alloc = billing.allocate_heat(start, end, args.building)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        valves = [h.valve_tag for h in billing.site.households() if h.valve_tag]
        noted = note_outside_history(billing, start, end, valves)
        households = [h for b in alloc.buildings for h in b.households]
        if not noted and households and all(h.estimated for h in households):
            print(
                "note: every household is estimated: no valve data in the period",
                file=sys.stderr,
            )
        if emit(args, billing, "heat", start, end, alloc):
            return 0
        for b in alloc.buildings:
            print(f"{b.id}: {b.heat_kwh:.3f} kWh (basic {b.basic_kwh:.3f}), cost {b.cost}")
            for h in b.households:
                flag = " estimated" if h.estimated else ""
                print(
                    f"  {h.id:<16} {h.area_m2:>8.1f} m2 {h.on_s / 3600:>9.2f} h "
                    f"{h.share:>8.4f} {h.heat_kwh:>12.3f} kWh {h.cost}{flag}"
                )
    return 0
