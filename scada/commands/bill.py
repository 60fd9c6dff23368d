"""``scada bill CONFIG --from T --to T``: electricity bills per account from the historian.

Per account and meter the energy by band and tier, the shared loss and the cost. ``--json``
prints ``{"accounts": [{"id", "energy_kwh", "lines": [{"name", "kwh", "price", "amount"}],
"shared_kwh", "total"}]}`` with money as strings; ``--xlsx F`` writes the report. Times as
in ``scada allocate`` (``--from last-month --to this-month``, ``-7d``, ISO dates); a line on
stderr says when the period lies outside the stored history.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common, add_window

    parser = sub.add_parser(
        "bill",
        help="electricity bills per account (TOU, tiers, shared loss)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    add_window(parser)
    parser.add_argument("--account", action="append", help="only this account (repeatable)")
    parser.add_argument(
        "--source",
        choices=["historian", "billing"],
        default="historian",
        help="readings: every historian sample (default) or the 30-min billing readings",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the bills as JSON")
    out.add_argument("--xlsx", metavar="F", help="write an Excel report to F")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scada.commands.billing_output import emit, note_outside_history, open_billing, window

    with open_billing(args) as billing:
        try:
            start, end = window(args, billing.tz)
            bills = billing.bill(start, end, args.account, source=args.source)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.source == "historian":
            meters = [m.energy for a in billing.site.accounts for m in a.meters]
            note_outside_history(billing, start, end, meters)
        if emit(args, billing, "bills", start, end, bills):
            return 0
        for a in bills.accounts:
            print(f"{a.id}: {a.energy_kwh:.3f} kWh, shared {a.shared_kwh:.3f} kWh, total {a.total}")
            for m, detail in a.meters.items():
                print(f"  meter {m}: {detail['total']:.3f} kWh")
            for ln in a.lines:
                print(f"  {ln.name:<24} {ln.kwh:>12.3f} kWh x {ln.price:>8} = {ln.amount:>10}")
    return 0
