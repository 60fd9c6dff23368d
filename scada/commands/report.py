"""``scada report KIND CONFIG --period P``: billing and energy reports as CSV or Excel.

KIND: energy, heat, heat_fees, unit, bills, financial, lost-contact, alarms, meter_energy,
room_compliance, meter_readings, heat_meter_days, building_heat, household_statement.
P: ``today``,
``yesterday``, ``this-month``, ``last-month``, ``this-year``, ``last-year``, or 2025 (year),
2025-Q4, 2025-11 (month) or 2025-11-21 (day), local time. Instead of ``--period``,
``--from T --to T`` gives any window (local time unless an offset is given).
``meter_energy`` takes ``--every 1h|1d|1mo`` (default 1d); ``building_heat`` takes
``--base-c`` (degree-day base, default 18) and ``--outdoor TAG``; ``household_statement``
takes ``--household H``. ``--csv F`` / ``--xlsx F`` / ``--pdf F`` (or ``--format
csv|xlsx|pdf --output F``) write a file; without one the report is printed as CSV on stdout. A line on stderr says when the period lies outside the stored history.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from billing.periods import Period

#: Reports computed from the historian (the others read the ledger or the alarm journal).
FROM_HISTORY = ("energy", "heat", "heat_fees", "unit", "bills")
#: Reports that answer an error themselves when the period holds no history.
CHECKED = (
    "meter_energy",
    "room_compliance",
    "meter_readings",
    "heat_meter_days",
    "building_heat",
    "household_statement",
)


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common
    from scada.commands.times import PERIOD_HELP

    parser = sub.add_parser(
        "report",
        help="energy, heat, financial, lost-contact and alarm reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "kind",
        metavar="KIND",
        choices=[
            "energy",
            "heat",
            "heat_fees",
            "unit",
            "bills",
            "financial",
            "lost-contact",
            "alarms",
            *CHECKED,
        ],
        help="energy | heat | heat_fees | unit | bills | financial | lost-contact | alarms"
        " | meter_energy | room_compliance | meter_readings | heat_meter_days | building_heat"
        " | household_statement",
    )
    add_common(parser)
    parser.add_argument("--period", metavar="P", help=PERIOD_HELP)
    parser.add_argument("--from", dest="start", metavar="T", help="start of a window (or --period)")
    parser.add_argument("--to", dest="end", metavar="T", help="end of the window (exclusive)")
    parser.add_argument(
        "--every", metavar="E", help="meter_energy: bucket width 1h, 1d (default) or 1mo"
    )
    parser.add_argument(
        "--base-c",
        type=float,
        metavar="C",
        help="building_heat: degree-day base temperature, degC (default 18)",
    )
    parser.add_argument(
        "--outdoor",
        metavar="TAG",
        help="building_heat: outdoor temperature tag (default: each building's substation's)",
    )
    parser.add_argument("--household", metavar="H", help="household_statement: the household")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--xlsx", metavar="F", help="write an Excel workbook to F")
    out.add_argument("--csv", metavar="F", help="write CSV to F")
    out.add_argument(
        "--pdf", metavar="F", help="write a PDF to F (same as --format pdf --output F)"
    )
    parser.add_argument(
        "--format",
        choices=("csv", "xlsx", "pdf"),
        help="with --output F: write that format to F (csv without --output: stdout)",
    )
    parser.add_argument("--output", "-o", metavar="F", help="the file of --format")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from billing.reports import build_report, write_csv, write_pdf, write_xlsx
    from scada.commands.billing_output import note_outside_history, open_billing

    if args.format is not None:
        if args.xlsx or args.csv or args.pdf:
            print("error: --format goes with --output, not --xlsx/--csv/--pdf", file=sys.stderr)
            return 2
        if args.output is None and args.format != "csv":
            print(f"error: --format {args.format} needs --output F", file=sys.stderr)
            return 2
        if args.output is not None:
            setattr(args, args.format, args.output)
    elif args.output is not None:
        print("error: --output goes with --format csv|xlsx|pdf", file=sys.stderr)
        return 2

    if (args.period is None) == (args.start is None and args.end is None):
        print("error: give --period, or --from and --to", file=sys.stderr)
        return 2
    if args.period is None and (args.start is None or args.end is None):
        print("error: --from and --to go together", file=sys.stderr)
        return 2
    with open_billing(args) as billing:
        try:
            period = _period(args, billing.tz)
            options = (args.every, args.base_c, args.outdoor, args.household)
            if any(x is not None for x in options):
                report = build_report(
                    billing,
                    args.kind,
                    period,
                    every=args.every,
                    base_c=args.base_c,
                    outdoor=args.outdoor,
                    household=args.household,
                )
            else:
                report = billing.report(args.kind, period)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.kind in FROM_HISTORY:
            site = billing.site
            tags = [m.energy for a in site.accounts for m in a.meters]
            tags += [h.valve_tag for h in site.households() if h.valve_tag]
            note_outside_history(billing, period.start, period.end, tags)
        elif args.kind in ("meter_energy", "heat_meter_days", "building_heat"):
            # partly outside: the report itself has data
            from billing.report_energy import meters

            tags = [m.tag for m in meters(billing.site)]
            note_outside_history(billing, period.start, period.end, tags)
        elif args.kind == "room_compliance":
            rooms = [h.room_tag for h in billing.site.households() if h.room_tag]
            note_outside_history(billing, period.start, period.end, rooms)
        if args.xlsx:
            write_xlsx(report, args.xlsx)
            print(f"wrote {args.xlsx}")
        elif args.csv:
            write_csv(report, args.csv)
            print(f"wrote {args.csv}")
        elif args.pdf:
            write_pdf(report, args.pdf, billing.tz)
            print(f"wrote {args.pdf}")
        else:
            write_csv(report, sys.stdout)
    return 0


def _period(args: argparse.Namespace, tz: str) -> Period:
    """Return the ``Period`` of ``--period`` or of ``--from`` / ``--to``; ValueError if bad."""
    from billing.periods import Period
    from scada.commands.times import local_label, parse_period, parse_window

    if args.period is not None:
        return parse_period(args.period, tz)
    start, end = parse_window(args.start, args.end, tz)
    return Period("window", f"{local_label(start, tz)} .. {local_label(end, tz)}", start, end)
