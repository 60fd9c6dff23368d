"""Reconcile a payment provider's daily statement (CSV) with the payments the ledger posted.

:func:`read_statement` reads the statement: a header row naming ``transaction_id``,
``account``, ``amount`` and optionally ``paid_at`` and ``currency``, then a row per payment;
every bad row and column is named (``StatementError``). :func:`reconcile` compares it with the
provider's posted payments (:class:`billing.payments.PaymentStore`) of one local day:

* ``missing``: in the statement, never posted (a callback that never came, or was refused);
* ``extra``: posted with the provider's ``paid_at`` inside the day, not in the statement;
* ``mismatched``: posted with another amount or to another account, or reversed since.

Each statement line is looked up by its transaction id whenever it was paid, so a payment made
at 23:59 and posted after midnight still matches. Read-only: nothing is posted.

The daily run (:func:`reconcile_day`, the billing scheduler's ``payments.reconcile`` job when a
provider has a ``statement_dir``): the provider's statement file of a day
(:func:`statement_file`: ``<provider>-YYYY-MM-DD.csv``, else ``YYYY-MM-DD.csv``) against the
ledger; the result is written as JSON beside the reports (``<data-dir>/reports/reconciliation``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing.errors import BadAmount
from billing.money import parse_amount
from billing.payments import TRANSACTION_ID, PaymentStore, StoredPayment
from billing.periods import local_label, parse_time
from configbase.model import ID_PATTERN
from tags.model import iso

__all__ = [
    "Difference",
    "Reconciliation",
    "StatementError",
    "StatementLine",
    "read_statement",
    "reconcile",
    "reconcile_day",
    "statement_file",
]


class StatementError(ValueError):
    """A provider statement could not be read: ``issues`` names each bad row and column."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__(
            "; ".join(issues[:5]) + (f" (and {len(issues) - 5} more)" if len(issues) > 5 else "")
        )
        self.issues = issues


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One payment of a provider's statement (``row``: its line in the file, 1-based)."""

    row: int
    transaction_id: str
    account: str
    amount: Decimal
    paid_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "transaction_id": self.transaction_id,
            "account": self.account,
            "amount": str(self.amount),
            "paid_at": None if self.paid_at is None else iso(self.paid_at),
        }


STATEMENT_COLUMNS = ("transaction_id", "account", "amount")
_OPTIONAL_COLUMNS = ("paid_at", "currency")
MAX_STATEMENT_LINES = 100_000


def read_statement(data: bytes, tz: str, currency: str | None = None) -> list[StatementLine]:
    """Return the lines of a statement CSV; ``StatementError`` naming every bad row and column.

    A header row names the columns (any order, any case): ``transaction_id``, ``account``,
    ``amount`` and optionally ``paid_at`` (ISO; site time ``tz`` unless it has an offset) and
    ``currency`` (when given, it must be ``currency``). Amounts are money (``parse_amount``).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StatementError([f"the statement is not UTF-8 text: {exc}"]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise StatementError(["the statement is empty: a header row and a row per payment"])
    names = [h.strip().lower().replace(" ", "_") for h in header]
    missing = [c for c in STATEMENT_COLUMNS if c not in names]
    if missing:
        raise StatementError(
            [
                f"row 1: the header lacks {', '.join(missing)} (columns: "
                f"{', '.join(STATEMENT_COLUMNS + _OPTIONAL_COLUMNS)})"
            ]
        )
    col = {n: i for i, n in reversed(list(enumerate(names)))}
    issues: list[str] = []
    lines: list[StatementLine] = []
    first_row: dict[str, int] = {}
    for n, cells in enumerate(reader, 2):
        if not any(c.strip() for c in cells):
            continue
        if len(lines) >= MAX_STATEMENT_LINES:
            issues.append(f"more than {MAX_STATEMENT_LINES} lines")
            break

        def cell(name: str, cells: list[str] = cells) -> str:
            i = col.get(name)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        bad = len(issues)
        txid = cell("transaction_id")
        if not re.fullmatch(TRANSACTION_ID, txid):
            issues.append(f"row {n}, column transaction_id: not a transaction id: {txid!r}")
        elif txid in first_row:
            issues.append(
                f"row {n}, column transaction_id: {txid} is listed on row {first_row[txid]} too"
            )
        account = cell("account")
        if not re.fullmatch(ID_PATTERN, account):
            issues.append(f"row {n}, column account: not an account id: {account!r}")
        amount = Decimal(0)
        try:
            amount = parse_amount(cell("amount"), "amount")
        except BadAmount as exc:
            issues.append(f"row {n}, column amount: {str(exc).removeprefix('amount: ')}")
        paid_at = None
        if cell("paid_at"):
            try:
                paid_at = parse_time(cell("paid_at"), tz)
            except ValueError as exc:
                issues.append(f"row {n}, column paid_at: {exc}")
        cur = cell("currency")
        if cur and currency is not None and cur != currency:
            issues.append(f"row {n}, column currency: {cur} is not the provider's {currency}")
        if len(issues) == bad:
            first_row[txid] = n
            lines.append(StatementLine(n, txid, account, amount, paid_at))
    if issues:
        raise StatementError(issues)
    return lines


@dataclass(frozen=True, slots=True)
class Difference:
    """A payment that does not agree: in the statement (``line``) and/or the ledger (``posted``)."""

    transaction_id: str
    reason: str
    line: StatementLine | None = None
    posted: StoredPayment | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "reason": self.reason,
            "statement": None if self.line is None else self.line.to_json(),
            "ledger": None if self.posted is None else self.posted.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """A provider's statement of one day against the posted payments."""

    provider: str
    day: str
    start: float
    end: float
    lines: int
    matched: int
    missing: list[Difference]
    extra: list[Difference]
    mismatched: list[Difference]

    @property
    def ok(self) -> bool:
        """True when every payment agrees."""
        return not (self.missing or self.extra or self.mismatched)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "date": self.day,
            "start": iso(self.start),
            "end": iso(self.end),
            "statement_lines": self.lines,
            "matched": self.matched,
            "ok": self.ok,
            "missing": [d.to_json() for d in self.missing],
            "extra": [d.to_json() for d in self.extra],
            "mismatched": [d.to_json() for d in self.mismatched],
        }


def reconcile(
    store: PaymentStore,
    provider: str,
    lines: list[StatementLine],
    start: float,
    end: float,
    tz: str,
) -> Reconciliation:
    """Compare a statement of ``provider``'s day ``[start, end)`` with the posted payments.

    Each statement line is looked up by its transaction id (whenever it was paid): not posted
    is ``missing``; posted with another amount or account, or reversed since, ``mismatched``.
    Payments posted with ``paid_at`` inside the day and not in the statement are ``extra``.
    """
    missing: list[Difference] = []
    mismatched: list[Difference] = []
    matched = 0
    for line in lines:
        posted = store.get(provider, line.transaction_id)
        if posted is None:
            missing.append(Difference(line.transaction_id, "not in the ledger", line))
            continue
        reasons = []
        if posted.amount != line.amount:
            reasons.append(f"amount {line.amount} in the statement, {posted.amount} in the ledger")
        if posted.account != line.account:
            reasons.append(
                f"account {line.account} in the statement, {posted.account} in the ledger"
            )
        if posted.reversed_by is not None:
            reasons.append(
                f"the top-up (entry {posted.seq}) was reversed by entry {posted.reversed_by}"
            )
        if reasons:
            mismatched.append(Difference(line.transaction_id, "; ".join(reasons), line, posted))
        else:
            matched += 1
    listed = {line.transaction_id for line in lines}
    extra = [
        Difference(p.transaction_id, "not in the statement", None, p)
        for p in store.paid_between(provider, start, end)
        if p.transaction_id not in listed
    ]
    day = local_label(start, tz, "%Y-%m-%d")
    return Reconciliation(
        provider, day, start, end, len(lines), matched, missing, extra, mismatched
    )


def statement_file(directory: Path, provider: str, day: str) -> Path | None:
    """Return the statement of ``provider``'s ``day`` (YYYY-MM-DD) in ``directory``, or None."""
    for name in (f"{provider}-{day}.csv", f"{day}.csv"):
        path = directory / name
        if path.is_file():
            return path
    return None


def reconcile_day(
    store: PaymentStore,
    provider: str,
    statement: Path,
    start: float,
    end: float,
    tz: str,
    currency: str | None,
    out_dir: Path,
) -> tuple[Reconciliation, Path]:
    """Reconcile the statement file of one day; write the result as JSON into ``out_dir``.

    Returns the reconciliation and the file written (``<provider>-<day>.json``). Raises
    ``StatementError`` for a statement that cannot be read, ``OSError`` for the files. Blocking.
    """
    lines = read_statement(statement.read_bytes(), tz, currency)
    found = reconcile(store, provider, lines, start, end, tz)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{provider}-{found.day}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({**found.to_json(), "statement": str(statement)}, indent=1), encoding="utf-8"
    )
    tmp.replace(path)
    return found, path
