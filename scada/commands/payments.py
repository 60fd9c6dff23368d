"""``scada payments reconcile CONFIG STATEMENT.csv --provider P --date D``: a provider's statement.

Compares a payment provider's statement of one day (CSV: a header naming ``transaction_id``,
``account``, ``amount`` and optionally ``paid_at`` and ``currency``, then a row per payment)
with the payments its callbacks posted to the ledger under ``--data-dir``, and prints the
``missing`` (in the statement, not in the ledger), ``extra`` (in the ledger, paid that day, not
in the statement) and ``mismatched`` ones (another amount or account, or reversed since).
Exit 0 when every payment agrees, 1 when some do not, 2 for a statement that cannot be read.
Read-only: safe beside a running ``scada run``; run it daily (cron) with ``--date yesterday``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common
    from scada.commands.times import PERIOD_HELP

    parser = sub.add_parser(
        "payments",
        help="payments from providers: reconcile a statement with the ledger",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("reconcile", help="a provider's statement (CSV) against the ledger")
    add_common(p)
    p.add_argument("statement", metavar="STATEMENT", help="the provider's statement (.csv)")
    p.add_argument("--provider", required=True, help="the provider's id (payments.providers)")
    p.add_argument("--date", required=True, metavar="D", help=f"the statement's day: {PERIOD_HELP}")
    p.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from billing.ledger import Ledger
    from billing.payments import PaymentStore, UnknownProvider
    from billing.reconciliation import StatementError, read_statement, reconcile
    from scada.commands.billing_output import print_json
    from scada.commands.roster import load_site_or_exit
    from scada.commands.times import TimeError, parse_period

    site = load_site_or_exit(args.config)
    tz = site.site.timezone
    try:
        provider = site.payments.provider(args.provider)
        day = parse_period(args.date, tz)
        data = Path(args.statement).read_bytes()
        lines = read_statement(data, tz, provider.currency)
    except (UnknownProvider, TimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.statement}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except StatementError as exc:
        for issue in exc.issues:
            print(f"error: {args.statement}: {issue}", file=sys.stderr)
        return 2
    ledger = Ledger.in_data_dir(args.data_dir)
    try:
        found = reconcile(PaymentStore(ledger), provider.id, lines, day.start, day.end, tz)
    finally:
        ledger.close()
    if args.json:
        print_json(found.to_json())
        return 0 if found.ok else 1
    print(
        f"{provider.id} {found.day}: {found.lines} in the statement, {found.matched} matched, "
        f"{len(found.missing)} missing, {len(found.extra)} extra, "
        f"{len(found.mismatched)} mismatched"
    )
    for kind, items in (
        ("missing", found.missing),
        ("extra", found.extra),
        ("mismatched", found.mismatched),
    ):
        for d in items:
            line, posted = d.line, d.posted
            account = line.account if line is not None else posted.account if posted else ""
            amount = line.amount if line is not None else posted.amount if posted else ""
            where = (
                f"row {line.row}" if line is not None else f"entry {posted.seq}" if posted else ""
            )
            print(
                f"  {kind:<10} {d.transaction_id:<24} {account:<16} {amount!s:>12} {where}: {d.reason}"
            )
    return 0 if found.ok else 1
