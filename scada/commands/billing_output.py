"""Helpers shared by the billing CLI commands (``allocate``, ``bill``, ``account``, ``report``).

Argument parsing, loading the site with its ledger and historian, and printing: the CLI's
side of billing (``billing.service.Billing`` does the work).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "add_common",
    "add_window",
    "emit",
    "note_outside_history",
    "open_billing",
    "print_heat_fees",
    "print_json",
    "window",
]


def add_common(parser: argparse.ArgumentParser) -> None:
    """Add the ``CONFIG`` argument and ``--data-dir``."""
    from scada.cli import add_data_dir

    parser.add_argument("config", metavar="CONFIG", help="site configuration file")
    add_data_dir(parser)


def add_window(parser: argparse.ArgumentParser) -> None:
    """Add ``--from`` / ``--to`` (``scada.commands.times``: -7d, today, ISO; local time)."""
    from scada.commands.times import TIME_HELP

    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="T",
        help=f"start: {TIME_HELP} (local time unless an offset is given)",
    )
    parser.add_argument(
        "--to", dest="end", required=True, metavar="T", help="end (exclusive), e.g. now"
    )


def window(args: argparse.Namespace, tz: str) -> tuple[float, float]:
    """Return ``(start, end)`` epoch seconds of ``--from`` / ``--to``; ValueError if bad."""
    from scada.commands.times import parse_window

    return parse_window(args.start, args.end, tz)


def note_outside_history(billing: Any, start: float, end: float, tags: list[str]) -> bool:
    """Say on stderr when ``[start, end)`` lies outside the stored history of ``tags``.

    Return True when a note was printed.
    """
    from scada.commands.times import history_note

    if billing.historian is None:
        return False
    note = history_note(billing.historian, tags, start, end, billing.tz)
    if note is not None:
        print(note, file=sys.stderr)
    return note is not None


@contextmanager
def open_billing(
    args: argparse.Namespace, *, historian: bool = True, audited: bool = False
) -> Iterator[Any]:
    """Load the site and open the ledger (and historian) under ``--data-dir``; yield ``Billing``.

    ``audited``: open the audit log there too, for money operations (they are audited as in
    the server; the CLI switches no relay: a running ``scada run`` does at its next check).
    Configuration errors are printed (``file:line:col: path: message``) and exit with 1.
    """
    from billing.ledger import Ledger
    from billing.service import Billing
    from scada.config import ConfigError, load_site

    try:
        site = load_site(args.config)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(1) from None
    data_dir = Path(args.data_dir)
    ledger = Ledger.in_data_dir(data_dir)
    hist = None
    audit = None
    try:
        if historian:
            from historian.factory import open_historian

            hist = open_historian(site.historian, data_dir)
        if audited:
            from scada.services.audit import AuditLog

            audit = AuditLog.in_data_dir(data_dir)
        yield Billing(site, ledger, hist, commander=None, audit=audit, data_dir=data_dir)
    finally:
        if audit is not None:
            audit.close()
        if hist is not None:
            hist.close()
        ledger.close()


def print_json(doc: Any) -> None:
    """Print ``doc`` as indented JSON on stdout."""
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def emit(args: Any, billing: Any, kind: str, start: float, end: float, document: Any) -> bool:
    """Print ``document`` as JSON (``--json``) or write report ``kind`` (``--xlsx F``).

    Return True when done; False leaves the caller to print its text form.
    """
    if args.json:
        print_json(document.to_json())
        return True
    if args.xlsx:
        from billing.periods import Period, local_label
        from billing.reports import build_report, write_xlsx

        label = f"{local_label(start, billing.tz)} .. {local_label(end, billing.tz)}"
        write_xlsx(build_report(billing, kind, Period("window", label, start, end)), args.xlsx)
        print(f"wrote {args.xlsx}")
        return True
    return False


def print_heat_fees(fees: list[Any]) -> None:
    """Print heat fees (``billing.heat_fees.HeatFee``) as a table, one block per building."""
    from decimal import Decimal

    by_building: dict[str, list[Any]] = {}
    for f in fees:
        by_building.setdefault(f.building, []).append(f)
    zero = Decimal("0.00")
    for building, rows in by_building.items():
        total = sum((f.total for f in rows), zero)
        advance = sum((f.advance for f in rows), zero)
        print(
            f"{building}: {len(rows)} households, advance {advance}, total {total}, "
            f"settlement {advance - total}"
        )
        print(
            f"  {'household':<16} {'area m2':>8} {'heat kWh':>12} {'advance':>10} {'basic':>10} "
            f"{'metered':>10} {'total':>10} {'paid':>10} {'settlement':>10}"
        )
        for f in rows:
            flags = [] if f.limit is None else [f.limit]
            if f.suspended:
                flags.append(f"suspended {f.suspended_days}/{f.window_days} d")
            paid = "-" if f.paid is None else str(f.paid)
            print(
                f"  {f.household:<16} {f.area_m2:>8.1f} {f.heat_kwh:>12.3f} {f.advance:>10} "
                f"{f.basic:>10} {f.metered:>10} {f.total:>10} {paid:>10} {f.settlement:>10}"
                + (f"  {', '.join(flags)}" if flags else "")
            )
