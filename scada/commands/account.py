"""``scada account CONFIG ACTION``: prepaid accounts and their append-only ledger.

Actions: ``open ID [--amount A]``, ``topup ID AMOUNT``, ``refund ID AMOUNT``,
``reverse ID ENTRY``, ``show [ID]``, ``replace-meter ID --meter TAG --old-final X
--new-initial Y [--at T]``. Amounts are decimal strings with at most two decimals. A running
``scada run`` picks the change up within a minute (levels, relay close after a top-up).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common

    parser = sub.add_parser(
        "account",
        help="prepaid accounts: open, top-up, refund, reverse, show",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--user", default="cli", help="operator name for the ledger (default: cli)")
    parser.add_argument("--note", default="", help="note stored with the entry")
    parser.add_argument("--json", action="store_true", help="print JSON")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("open", help="open an account")
    p.add_argument("id")
    p.add_argument("--amount", help="opening balance (default: the configured opening_balance)")
    for name, text in (("topup", "credit a top-up"), ("refund", "pay money back")):
        p = actions.add_parser(name, help=text)
        p.add_argument("id")
        p.add_argument("amount")
    p = actions.add_parser("reverse", help="reverse one ledger entry")
    p.add_argument("id")
    p.add_argument("entry", type=int, help="sequence number of the entry to reverse")
    p = actions.add_parser("show", help="show accounts, or one account with its ledger")
    p.add_argument("id", nargs="?")
    p = actions.add_parser("replace-meter", help="record a meter swap (balance carried over)")
    p.add_argument("id")
    p.add_argument("--meter", required=True, help="energy tag of the replaced meter")
    p.add_argument(
        "--old-final", type=float, required=True, help="final reading of the old meter (kWh)"
    )
    p.add_argument(
        "--new-initial", type=float, required=True, help="first reading of the new meter (kWh)"
    )
    p.add_argument("--at", help="time of the swap (default: now)")
    parser.set_defaults(func=run)


def _run(billing: Any, args: argparse.Namespace) -> Any:
    """Run the money operation; return the ledger entry it wrote."""
    who = {"user": args.user, "note": args.note}
    if args.action == "open":
        return asyncio.run(billing.open_account(args.id, args.amount, **who))
    who["source"] = "cli"
    if args.action == "topup":
        return asyncio.run(billing.topup(args.id, args.amount, **who)).entry
    if args.action == "refund":
        return asyncio.run(billing.refund(args.id, args.amount, **who)).entry
    if args.action == "reverse":
        return asyncio.run(billing.reverse(args.id, args.entry, **who)).entry
    if args.action == "replace-meter":
        from billing.periods import parse_time

        at = None if args.at is None else parse_time(args.at, billing.tz)
        return asyncio.run(
            billing.replace_meter(
                args.id, args.meter, args.old_final, args.new_initial, ts=at, **who
            )
        ).entry
    return None


def run(args: argparse.Namespace) -> int:
    from billing.ledger import LedgerError
    from billing.periods import local_label
    from scada.commands.billing_output import open_billing, print_json

    with open_billing(
        args, historian=args.action == "replace-meter", audited=args.action != "show"
    ) as billing:
        try:
            if args.action == "show":
                doc: Any = billing.account(args.id) if args.id else {"accounts": billing.accounts()}
                if args.json:
                    print_json(doc)
                elif args.id:
                    print(
                        f"{doc['id']} ({doc['tenant']}): balance {doc['balance']}, level {doc['level']}"
                    )
                    for e in billing.entries(args.id):
                        print(
                            f"  {e.seq:>6} {local_label(e.ts, billing.tz)} {e.kind.value:<12} "
                            f"{e.amount:>12} {e.note}"
                        )
                else:
                    for a in doc["accounts"]:
                        state = "open" if a["open"] else "not open"
                        print(
                            f"{a['id']:<20} {a['tenant']:<20} {a['balance']:>12} level {a['level']} ({state})"
                        )
                return 0
            entry = _run(billing, args)
        except (LedgerError, KeyError, ValueError) as exc:
            print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 2
        balance = billing.ledger.balance(args.id)
        if args.json:
            print_json({"entry": entry.to_json(), "balance": str(balance)})
        else:
            print(
                f"{args.id}: entry {entry.seq} {entry.kind.value} {entry.amount}; balance {balance}"
            )
    return 0
