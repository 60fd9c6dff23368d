"""``scada account ACTION CONFIG ...``: prepaid accounts and their append-only ledger.

Actions: ``open CONFIG ID [--amount A]``, ``topup CONFIG ID AMOUNT``, ``refund CONFIG ID
AMOUNT``, ``reverse CONFIG ID ENTRY``, ``show CONFIG [ID]``, ``replace-meter CONFIG ID --meter
TAG --old-final X --new-initial Y [--at T]``, ``holds CONFIG [ID]`` (consumption charges held
for review as implausible), ``release CONFIG ID HOLD`` (charge it) and ``discard CONFIG ID
HOLD`` (charge nothing; correct the readings first) and ``keep-heat CONFIG ID on|off --note WHY``
(a household's heat account: never lock its valve for arrears; audited) and ``close CONFIG ID
--reading TAG=KWH ... [--at T]`` (final reading of each meter, final charge, settlement to
0.00: refund or debt; then the account takes no entry; audited, closing again shows the first
closing), ``tenant-change CONFIG ID --at T --tenant NAME [--phone P] [--email E] [--new-id ID]
[--reading TAG=KWH ...] [--key K]`` (close the account at T and open the new tenant's on the
same meters; a reading left out is read from the history at T; the configuration gets
``moved_out`` / ``moved_in``), ``vacant CONFIG HOUSEHOLD --from DAY --ratio R [--owner O]
[--until DAY]`` (the flat is vacant: the owner pays area fee x R of heat basic) and ``let
CONFIG HOUSEHOLD --from DAY`` (let again); each takes ``--user``,
``--note``, ``--json`` and ``--data-dir``. A heat account (``<household>.heat``) takes
``topup``, ``refund``, ``reverse`` and ``show`` like an account. Amounts are decimal strings with at most two decimals; ``--at`` is a time as
everywhere (``-2h``, ``today``, ISO, local time). A running ``scada run`` picks the change up
within a minute (levels, relay close after a top-up).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common
    from scada.commands.times import TIME_HELP

    parser = sub.add_parser(
        "account",
        help="prepaid accounts: open, top-up, refund, reverse, close, show",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=text)
        add_common(p)
        p.add_argument("--user", default="cli", help="operator name for the ledger (default: cli)")
        p.add_argument("--note", default="", help="note stored with the entry")
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    p = action("open", "open an account")
    p.add_argument("id")
    p.add_argument("--amount", help="opening balance (default: the configured opening_balance)")
    for name, text in (("topup", "credit a top-up"), ("refund", "pay money back")):
        p = action(name, text)
        p.add_argument("id")
        p.add_argument("amount")
    p = action("reverse", "reverse one ledger entry")
    p.add_argument("id")
    p.add_argument("entry", type=int, help="sequence number of the entry to reverse")
    p = action("show", "show accounts, or one account with its ledger")
    p.add_argument("id", nargs="?")
    p = action("replace-meter", "record a meter swap (balance carried over)")
    p.add_argument("id")
    p.add_argument("--meter", required=True, help="energy tag of the replaced meter")
    p.add_argument(
        "--old-final", type=float, required=True, help="final reading of the old meter (kWh)"
    )
    p.add_argument(
        "--new-initial", type=float, required=True, help="first reading of the new meter (kWh)"
    )
    p.add_argument("--at", help=f"time of the swap (default: now): {TIME_HELP}")
    p = action("holds", "consumption charges held for review (implausible for the meter)")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true", help="reviewed ones too")
    for name, text in (
        ("release", "charge a held consumption charge (the consumption is real)"),
        ("discard", "drop a held charge (after correcting the readings, e.g. replace-meter)"),
    ):
        p = action(name, text)
        p.add_argument("id")
        p.add_argument("hold", type=int, help="number of the held charge (see `holds`)")
    p = action("close", "close an account: final readings, final charge, settlement to 0.00")
    p.add_argument("id")
    p.add_argument(
        "--reading",
        action="append",
        default=[],
        metavar="TAG=KWH",
        help="final reading of a meter (energy tag); one per meter of the account",
    )
    p.add_argument("--at", help=f"time of the closing (default: now): {TIME_HELP}")
    p = action("tenant-change", "close the account at a time and open the new tenant's")
    p.add_argument("id")
    p.add_argument("--at", required=True, help=f"time of the change: {TIME_HELP}")
    p.add_argument("--tenant", required=True, help="the new tenant's name")
    p.add_argument("--phone", help="the new tenant's phone")
    p.add_argument("--email", help="the new tenant's e-mail")
    p.add_argument("--new-id", help="the new account's id (default: <id>-<YYYYMMDD of --at>)")
    p.add_argument(
        "--reading",
        action="append",
        default=[],
        metavar="TAG=KWH",
        help="reading of a meter at --at (default: from the history)",
    )
    p.add_argument("--key", help="idempotency key (default: tenant-change:<id>:<time>)")
    p = action("vacant", "mark a flat vacant from a day (the owner pays a reduced heat basic)")
    p.add_argument("household")
    p.add_argument("--from", dest="since", required=True, help="first vacant day, YYYY-MM-DD")
    p.add_argument("--until", help="last vacant day, YYYY-MM-DD (default: open)")
    p.add_argument("--ratio", required=True, help="heat basic ratio of the area fee, 0..1")
    p.add_argument("--owner", default="owner", help="who pays (owner / property account)")
    p = action("let", "let a vacant flat again from a day")
    p.add_argument("household")
    p.add_argument("--from", dest="since", required=True, help="first let day, YYYY-MM-DD")
    p = action("keep-heat", "never lock a heat account's valve for arrears (on), or again (off)")
    p.add_argument("id", help="heat account (<household>.heat) or household id")
    p.add_argument("keep", choices=("on", "off"))
    parser.set_defaults(func=run)


def _keep_heat(billing: Any, args: argparse.Namespace) -> int:
    """Set keep-heat (audited); the running server opens or locks the valve at its next check."""
    from scada.commands.billing_output import print_json

    if not args.note:
        print("error: keep-heat needs --note (the reason is audited)", file=sys.stderr)
        return 2
    r = asyncio.run(
        billing.set_keep_heat(
            args.id, args.keep == "on", user=args.user, source="cli", note=args.note
        )
    )
    if args.json:
        print_json(
            {"account": r.account, "keep_heat": r.keep_power, "previous": r.keep_power_before}
        )
    else:
        print(
            f"{r.account}: keep-heat {'on' if r.keep_power else 'off'} (was {'on' if r.keep_power_before else 'off'})"
        )
    return 0


def _readings(texts: list[str]) -> dict[str, float] | None:
    """Parse ``TAG=KWH`` options; None (after printing why) when one is bad."""
    readings: dict[str, float] = {}
    for text in texts:
        tag, sep, value = text.partition("=")
        try:
            readings[tag.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not tag.strip():
            print(f"error: --reading {text!r}: expected TAG=KWH", file=sys.stderr)
            return None
    return readings


def _tenancy(billing: Any, args: argparse.Namespace) -> int:
    """Tenant change, vacant, let: through the configuration files (``scada.services.tenancy``)."""
    from datetime import date
    from decimal import Decimal, InvalidOperation

    from scada.backup import is_running
    from scada.commands.billing_output import print_json
    from scada.commands.times import parse_time
    from scada.services.auth import Role, User
    from scada.services.config_versions import ConfigManager
    from scada.services.plant import Plant
    from scada.services.roster import OfflineApplier
    from scada.services.tenancy import TenancyService, TenantInfo
    from tags.database import TagDatabase

    if is_running(billing.data_dir):
        print(
            f"error: scada run is running on {billing.data_dir}: use the REST API "
            "(POST /api/accounts/ID/tenant-change, /api/households/ID/vacant or /let)",
            file=sys.stderr,
        )
        return 2
    plant = Plant(billing.site, TagDatabase())
    applier = OfflineApplier(plant, billing.ledger, args.user, args.action)
    config = ConfigManager(plant, applier, billing.audit, billing.data_dir)
    if config.main is None:
        print("error: the configuration was not read from files", file=sys.stderr)
        return 2
    config.ensure_baseline()
    service = TenancyService(config, lambda: billing, billing.audit)
    user = User(args.user, Role.ADMIN)
    try:
        if args.action == "tenant-change":
            readings = _readings(args.reading)
            if readings is None:
                return 2
            at = parse_time(args.at, billing.tz, what="--at")
            change = asyncio.run(
                service.change_tenant(
                    user,
                    args.id,
                    at=at,
                    tenant=TenantInfo(args.tenant, args.phone, args.email),
                    key=args.key or f"tenant-change:{args.id}:{at!r}",
                    new_account=args.new_id,
                    readings=readings,
                    source="cli",
                    note=args.note,
                )
            )
            if args.json:
                print_json(change.to_json())
            else:
                c = change.closing
                again = " (done before)" if change.repeated else ""
                print(
                    f"{change.account}: closed at {args.at}{again}: {c.settlement} {c.amount}; "
                    f"{change.new_account} opened for {args.tenant} (entry {change.opening.seq})"
                )
            return 0
        since = date.fromisoformat(args.since)
        if args.action == "vacant":
            until = None if args.until is None else date.fromisoformat(args.until)
            try:
                ratio = Decimal(args.ratio)
            except InvalidOperation:
                print(f"error: --ratio {args.ratio!r}: not a number", file=sys.stderr)
                return 2
            value = asyncio.run(
                service.set_vacant(
                    user,
                    args.household,
                    since=since,
                    heat_basic_ratio=ratio,
                    owner=args.owner,
                    until=until,
                    source="cli",
                )
            )
        else:
            value = asyncio.run(service.set_let(user, args.household, since=since, source="cli"))
    except ValueError as exc:  # (a bad date; ledger errors are ValueErrors too)
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json({"household": args.household, "vacant": value})
    else:
        print(f"{args.household}: vacant {value}")
    return 0


def _close(billing: Any, args: argparse.Namespace) -> int:
    """Close the account (audited); print the final charges and the settlement."""
    from scada.commands.billing_output import print_json
    from scada.commands.times import parse_time

    readings = _readings(args.reading)
    if readings is None:
        return 2
    at = None if args.at is None else parse_time(args.at, billing.tz, what="--at")
    c = asyncio.run(
        billing.close_account(
            args.id, at=at, readings=readings, user=args.user, source="cli", note=args.note
        )
    )
    if args.json:
        print_json(c.to_json())
        return 0
    for e in c.charges:
        print(f"  final charge: entry {e.seq} {e.amount} ({e.energy_kwh:.3f} kWh)")
    again = " (closed before)" if c.repeated else ""
    print(
        f"{c.account}: closed{again}; entry {c.entry.seq} closing {c.entry.amount}: "
        f"{c.settlement} {c.amount}; balance 0.00"
    )
    return 0


def _holds(billing: Any, args: argparse.Namespace) -> int:
    """Print the held charges (or review one); return the exit code."""
    from scada.commands.billing_output import print_json

    if args.action == "holds":
        holds = billing.holds(args.id, None if args.all else "held")
        if args.json:
            print_json({"holds": [h.to_json() for h in holds]})
        elif not holds:
            print("no charge held for review")
        for h in [] if args.json else holds:
            print(
                f"{h.id:>5} {h.account:<16} {h.period} {h.state.value:<9} {h.amount:>12} "
                f"{h.month_kwh:.3f} kWh this month: {h.reason}"
            )
        return 0
    hold, posted = asyncio.run(
        billing.review_hold(
            args.id,
            args.hold,
            args.action == "release",
            user=args.user,
            source="cli",
            note=args.note,
        )
    )
    if args.json:
        print_json({"hold": hold.to_json(), "entries": [e.to_json() for e in posted]})
    else:
        charged = "; ".join(f"entry {e.seq} {e.amount}" for e in posted) or "nothing charged"
        print(f"{args.id}: held charge {hold.id} {hold.state.value} ({charged})")
    return 0


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
        from scada.commands.times import parse_time

        at = None if args.at is None else parse_time(args.at, billing.tz, what="--at")
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

    audited = args.action not in ("show", "holds")
    historian = args.action in ("replace-meter", "tenant-change")
    with open_billing(args, historian=historian, audited=audited) as billing:
        try:
            if args.action in ("holds", "release", "discard"):
                return _holds(billing, args)
            if args.action == "keep-heat":
                return _keep_heat(billing, args)
            if args.action == "close":
                return _close(billing, args)
            if args.action in ("tenant-change", "vacant", "let"):
                return _tenancy(billing, args)
            if args.action == "show":
                doc: Any = billing.account(args.id) if args.id else {"accounts": billing.accounts()}
                if args.json:
                    print_json(
                        doc if args.id else {**doc, "heat_accounts": billing.heat_accounts()}
                    )
                elif args.id:
                    who = doc.get("tenant", doc.get("household"))
                    print(
                        f"{args.id} ({who}): balance {doc['balance']}, level {doc['level']}"
                        + (
                            f", unpaid since {doc['unpaid_since']}"
                            if doc.get("unpaid_since")
                            else ""
                        )
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
                    for h in billing.heat_accounts():
                        state = "overdue" if h["overdue"] else "open" if h["open"] else "not open"
                        print(
                            f"{h['account']:<20} {'heat':<20} {h['balance']:>12} level {h['level']} ({state})"
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
