"""``scada report CONFIG KIND --period P``: billing and energy reports as CSV or Excel.

KIND: energy, heat, unit, bills, financial, lost-contact, alarms. P: 2025 (year), 2025-Q4,
2025-11 (month) or 2025-11-21 (day), local time. Without ``--csv``/``--xlsx`` the report is
printed as CSV on stdout.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common

    parser = sub.add_parser(
        "report",
        help="energy, heat, financial, lost-contact and alarm reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument(
        "kind",
        metavar="KIND",
        choices=["energy", "heat", "unit", "bills", "financial", "lost-contact", "alarms"],
        help="energy | heat | unit | bills | financial | lost-contact | alarms",
    )
    parser.add_argument(
        "--period", required=True, metavar="P", help="2025, 2025-Q4, 2025-11 or 2025-11-21"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--xlsx", metavar="F", help="write an Excel workbook to F")
    out.add_argument("--csv", metavar="F", help="write CSV to F")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from billing.reports import write_csv, write_xlsx
    from scada.commands.billing_output import open_billing

    with open_billing(args) as billing:
        try:
            report = billing.report(args.kind, args.period)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.xlsx:
            write_xlsx(report, args.xlsx)
            print(f"wrote {args.xlsx}")
        elif args.csv:
            write_csv(report, args.csv)
            print(f"wrote {args.csv}")
        else:
            write_csv(report, sys.stdout)
    return 0
