"""``scada roster ACTION CONFIG ...``: the office's roster of households, accounts and tenants.

Actions: ``import CONFIG FILE [--dry-run]`` reads a roster (``.xlsx`` or ``.csv``; columns in
docs/billing.md, "Roster import and export"), checks every row against the site and the ledger
and prints what changes; without ``--dry-run`` it writes the configuration files, stores them as
a new configuration version under ``--data-dir`` (audited ``config.apply``) and opens the new
accounts with their opening balance (once). A roster with one bad row imports nothing: every
bad row and column is printed (exit 2). ``export CONFIG [--format xlsx|csv] [-o FILE]`` writes
the roster of the site (CSV on stdout by default).

The CLI imports only where no ``scada run`` uses the data dir (it would not see the change):
while one runs, import with ``POST /api/roster/import``, which applies at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common

    parser = sub.add_parser(
        "roster",
        help="import or export the roster of households, accounts and tenants",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("import", help="import a roster (.xlsx or .csv)")
    add_common(p)
    p.add_argument("file", metavar="FILE", help="the roster: .xlsx or .csv")
    p.add_argument("--dry-run", action="store_true", help="print what would change, apply nothing")
    p.add_argument("--diff", action="store_true", help="also print the files' unified diff")
    p.add_argument("--user", default="cli", help="who imports (audit; default: cli)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = actions.add_parser("export", help="write the roster of the site")
    add_common(p)
    p.add_argument("--format", choices=("xlsx", "csv"), help="default: from -o, else csv")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    parser.set_defaults(func=run)


def load_site_or_exit(config: str) -> Any:
    from scada.config import ConfigError, load_site

    try:
        return load_site(config)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(1) from None


def _format_of(path: str, data: bytes) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".xlsx", ".csv"):
        return suffix[1:]
    return "xlsx" if data.startswith(b"PK\x03\x04") else "csv"


def print_summary(result: dict[str, Any], name: str) -> None:
    """Print a roster import's result as text (``scada roster import``)."""
    s = result["summary"]
    hh, acct = s["households"], s["accounts"]
    print(
        f"{name}: {s['rows']} rows: households +{len(hh['added'])} ~{len(hh['changed'])} "
        f"({hh['unchanged']} unchanged), accounts +{len(acct['added'])} "
        f"~{len(acct['changed'])} ({acct['unchanged']} unchanged)"
    )
    for what, part in (("household", hh), ("account", acct)):
        for sign, key in (("+", "added"), ("~", "changed")):
            for c in part[key]:
                before = c.get("before") or {}
                fields = ", ".join(
                    f"{k} {before[k]!r} -> {v!r}" if k in before else f"{k} {v!r}"
                    for k, v in c["set"].items()
                )
                print(f"  {sign} {what} {c['id']} (row {c['row']}): {fields}")
    for o in s["openings"]:
        entry = f" (entry {o['entry']})" if o.get("entry") else ""
        print(f"  opening {o['account']} {o['amount']}: {o['state']}{entry}")


def _import(args: argparse.Namespace) -> int:
    from billing.ledger import Ledger
    from billing.roster import RosterError
    from scada.backup import is_running
    from scada.commands.billing_output import print_json
    from scada.services.audit import AuditLog
    from scada.services.auth import Role, User
    from scada.services.config_versions import ConfigManager
    from scada.services.plant import Plant
    from scada.services.roster import OfflineApplier, RosterService
    from tags.database import TagDatabase

    data_dir = Path(args.data_dir)
    if not args.dry_run and is_running(data_dir):
        print(
            f"error: scada run is running on {data_dir}: import with POST /api/roster/import "
            "(it applies at once), or use --dry-run",
            file=sys.stderr,
        )
        return 2
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    site = load_site_or_exit(args.config)
    name = Path(args.file).name
    ledger = Ledger.in_data_dir(data_dir)
    audit = AuditLog.in_data_dir(data_dir)
    try:
        plant = Plant(site, TagDatabase())
        applier = OfflineApplier(plant, ledger, args.user, f"roster import {name}")
        config = ConfigManager(plant, applier, audit, data_dir)
        if config.main is None:
            print("error: the configuration was not read from files", file=sys.stderr)
            return 2
        if not args.dry_run:
            config.ensure_baseline()  # the files before the import are a version to roll back to
        service = RosterService(config, lambda: ledger)
        user = User(args.user, Role.ADMIN)  # whoever may write the data dir and the files
        try:
            result = asyncio.run(
                service.import_roster(
                    user,
                    data,
                    _format_of(args.file, data),
                    dry_run=args.dry_run,
                    name=name,
                    source="cli",
                )
            )
        except RosterError as exc:
            for issue in exc.issues:
                print(f"error: {issue}", file=sys.stderr)
            print(f"{name}: nothing imported ({len(exc.issues)} problem(s))", file=sys.stderr)
            return 2
    finally:
        audit.close()
        ledger.close()
    if args.json:
        print_json(result)
    else:
        print_summary(result, name)
        if args.diff:
            for diff in result["diff"].values():
                sys.stdout.write(diff)
    if not result["valid"]:
        for e in result["errors"]:
            print(
                f"error: {e['file']}:{e['line']}:{e['col']}: {e['path']}: {e['message']}",
                file=sys.stderr,
            )
        print(f"{name}: the result is not a valid configuration: nothing applied", file=sys.stderr)
        return 1
    if not args.json:
        if args.dry_run:
            print("dry run: nothing applied")
        elif result["diff"]:
            print(f"applied as configuration version {result['version']}")
        else:
            print("the configuration holds this roster already: nothing to apply")
    return 0


def _export(args: argparse.Namespace) -> int:
    from billing.ledger import Ledger
    from billing.roster import export_rows, write_roster

    fmt = args.format or ("xlsx" if (args.output or "").lower().endswith(".xlsx") else "csv")
    site = load_site_or_exit(args.config)
    ledger = Ledger.in_data_dir(args.data_dir)
    try:
        data = write_roster(export_rows(site, ledger), fmt)
    finally:
        ledger.close()
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    return _import(args) if args.action == "import" else _export(args)
