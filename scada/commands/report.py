"""``scada report KIND CONFIG --period P``: billing and energy reports as CSV or Excel.

KIND: energy, heat, heat_fees, unit, bills, financial, lost-contact, alarms. P: ``today``,
``yesterday``, ``this-month``, ``last-month``, ``this-year``, ``last-year``, or 2025 (year),
2025-Q4, 2025-11 (month) or 2025-11-21 (day), local time. Without ``--csv``/``--xlsx`` the report is printed as
CSV on stdout. A line on stderr says when the period lies outside the stored history.
"""

from __future__ import annotations

import argparse
import sys

#: Reports computed from the historian (the others read the ledger or the alarm journal).
FROM_HISTORY = ("energy", "heat", "heat_fees", "unit", "bills")


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
        ],
        help="energy | heat | heat_fees | unit | bills | financial | lost-contact | alarms",
    )
    add_common(parser)
    parser.add_argument("--period", required=True, metavar="P", help=PERIOD_HELP)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--xlsx", metavar="F", help="write an Excel workbook to F")
    out.add_argument("--csv", metavar="F", help="write CSV to F")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from billing.reports import write_csv, write_xlsx
    from scada.commands.billing_output import note_outside_history, open_billing
    from scada.commands.times import parse_period

    with open_billing(args) as billing:
        try:
            period = parse_period(args.period, billing.tz)
            report = billing.report(args.kind, period)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.kind in FROM_HISTORY:
            site = billing.site
            tags = [m.energy for a in site.accounts for m in a.meters]
            tags += [h.valve_tag for h in site.households() if h.valve_tag]
            note_outside_history(billing, period.start, period.end, tags)
        if args.xlsx:
            write_xlsx(report, args.xlsx)
            print(f"wrote {args.xlsx}")
        elif args.csv:
            write_csv(report, args.csv)
            print(f"wrote {args.csv}")
        else:
            write_csv(report, sys.stdout)
    return 0
