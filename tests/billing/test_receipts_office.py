"""The office's day (issue 16 item 1): the payment reference on the entry and the receipt, a
receipts table made before the reference column, the closing report as PDF whose totals are the
ledger's sums, a tenant's receipts.
"""

from __future__ import annotations

import re
import sqlite3
import zlib
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from billing.ledger import EntryKind, Ledger
from billing.receipts import (
    CASH_KINDS,
    Method,
    Receipts,
    cashier_day,
    day_pdf,
    method_note,
    receipt_lines,
)
from billing.service import Billing
from billing.statements import CORE_FONT
from scada.services.audit import AuditLog


@pytest.fixture
def billing(site: Any, ledger: Ledger, audit: AuditLog) -> Billing:
    ledger.open_account("shop-101", "100.00")
    return Billing(site, ledger, commander=None, audit=audit)


def pdf_text(pdf: bytes) -> str:
    """Return the text shown by a PDF of the core font (its content streams inflated)."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            data = zlib.decompress(m.group(1))
        except zlib.error:
            data = m.group(1)
        out += [s.decode("latin-1") for s in re.findall(rb"\((.*?)(?<!\\)\)\s*Tj", data)]
    return "\n".join(out)


async def test_reference_is_kept_with_the_entry_and_on_the_receipt(
    billing: Billing, ledger: Ledger
) -> None:
    receipts = Receipts(ledger)
    note = method_note(Method.BANK_TRANSFER, "TRF-2026-0042")
    paid = await billing.topup("shop-101", "80.00", user="cara", note=note, key="k1")
    assert paid.entry is not None
    r = receipts.issue(paid.entry.seq, Method.BANK_TRANSFER, "cara", " TRF-2026-0042 ")
    assert r.reference == "TRF-2026-0042"
    assert ledger.entry(paid.entry.seq).note == "method=bank_transfer; TRF-2026-0042"  # type: ignore[union-attr]
    assert ("Reference", "TRF-2026-0042") in receipt_lines(r, "now", "CNY")
    assert receipts.get(r.number).reference == "TRF-2026-0042"  # a reprint shows it
    # a receipt without a reference has no such line
    cash = await billing.topup("shop-101", "1.00", user="cara", note=method_note(Method.CASH))
    assert cash.entry is not None
    plain = receipts.issue(cash.entry.seq, Method.CASH, "cara")
    assert plain.reference == "" and "Reference" not in dict(receipt_lines(plain, "t", "CNY"))
    with pytest.raises(ValueError, match="reference"):
        receipts.issue(cash.entry.seq, Method.CASH, "cara", "x" * 200)


async def test_a_receipts_table_without_the_reference_column_gets_it(
    billing: Billing, ledger: Ledger
) -> None:
    paid = await billing.topup("shop-101", "5.00", user="cara", note="method=cash")
    assert paid.entry is not None
    with ledger.transaction() as con:  # the table as the first release made it
        con.execute(
            "CREATE TABLE receipts (number INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT "
            "NULL UNIQUE, ts REAL NOT NULL, method TEXT NOT NULL, cashier TEXT NOT NULL)"
        )
        con.execute(
            "INSERT INTO receipts(seq, ts, method, cashier) VALUES (?, 0, 'cash', 'cara')",
            (paid.entry.seq,),
        )
    receipts = Receipts(ledger)
    old = receipts.by_seq(paid.entry.seq)
    assert old is not None and old.reference == "" and old.cashier == "cara"
    # the column exists now: adding it again fails
    with pytest.raises(sqlite3.OperationalError), ledger.transaction() as con:
        con.execute("ALTER TABLE receipts ADD COLUMN reference TEXT")


async def test_day_pdf_totals_are_the_ledgers_sums(billing: Billing, ledger: Ledger) -> None:
    receipts = Receipts(ledger)
    posted = [
        (await billing.topup("shop-101", "50.00", user="cara", note="method=cash"), Method.CASH),
        (await billing.topup("shop-101", "30.00", user="cara", note="method=card"), Method.CARD),
        (await billing.refund("shop-101", "5.00", user="cara", note="method=cash"), Method.CASH),
        (await billing.topup("shop-101", "12.50", user="bob", note="method=card"), Method.CARD),
    ]
    for result, method in posted:
        assert result.entry is not None
        receipts.issue(result.entry.seq, method, result.entry.user)
    paid = posted[1][0].entry
    assert paid is not None
    back = await billing.reverse("shop-101", paid.seq, user="cara", note="method=card; wrong")
    assert back.entry is not None
    receipts.issue(back.entry.seq, Method.CARD, "cara")
    tz = billing.tz
    today = datetime.now(ZoneInfo(tz)).date()
    # the ledger's own sums, by method of the note, of today's cash-desk entries
    sums: dict[str, dict[str, Decimal]] = {"cara": {}, "*": {}}
    for e in ledger.entries("shop-101"):
        if e.kind not in CASH_KINDS:
            continue
        method = e.note.split(";")[0].removeprefix("method=")
        for who in {"*", e.user} & set(sums):
            sums[who][method] = sums[who].get(method, Decimal("0.00")) + e.amount
    for who, cashier in (("cara", "cara"), ("*", None)):
        d = cashier_day(ledger, today, tz, cashier)
        assert d.totals == sums[who]
        assert d.total == sum(sums[who].values())
        text = pdf_text(day_pdf(d, tz, title="Test site", currency="CNY", font=CORE_FONT))
        assert ("all cashiers" if cashier is None else "cara") in text
        for method, amount in sums[who].items():
            label = {"cash": "cash", "card": "card"}[method]
            assert f"Total {label}\n{amount:,.2f} CNY" in text
        assert f"Total\n{d.total:,.2f} CNY" in text
        assert f"Entries: {len(d.lines)}" in text
        for ln in d.lines:
            assert f"{ln.entry.amount:,.2f}" in text
    desk = cashier_day(ledger, today, tz)
    assert desk.total == Decimal("50.00") - Decimal("5.00") + Decimal("12.50")  # 30 reversed


async def test_receipts_of_accounts_newest_first(billing: Billing, ledger: Ledger) -> None:
    ledger.open_account("shop-102", "0.00")
    receipts = Receipts(ledger)
    numbers = []
    for account, amount in (("shop-101", "1.00"), ("shop-102", "2.00"), ("shop-101", "3.00")):
        posted = ledger.post_cash(
            EntryKind.TOPUP, account, Decimal(amount), user="cara", note="method=cash"
        )
        numbers.append((account, receipts.issue(posted.entry.seq, Method.CASH, "cara").number))
    mine = receipts.of_accounts(["shop-101"])
    assert [r.number for r in mine] == [n for a, n in reversed(numbers) if a == "shop-101"]
    assert all(r.account == "shop-101" and r.kind is EntryKind.TOPUP for r in mine)
    assert receipts.of_accounts([]) == []


async def test_account_statement_balances_are_the_ledgers(billing: Billing, ledger: Ledger) -> None:
    import time

    from billing.account_statement import account_statement, statement_pdf

    start = time.time()
    paid = await billing.topup("shop-101", "25.00", user="cara", note="method=cash")
    assert paid.entry is not None
    number = Receipts(ledger).issue(paid.entry.seq, Method.CASH, "cara").number
    await billing.refund("shop-101", "5.00", user="cara", note="method=cash")
    s = account_statement(ledger, "shop-101", start, start + 86400)
    assert s.opening == Decimal("100.00") and s.closing == ledger.balance("shop-101")
    assert [(e.kind, n) for e, n in s.lines] == [
        (EntryKind.TOPUP, number),
        (EntryKind.REFUND, 0),
    ]
    assert s.totals == {EntryKind.TOPUP: Decimal("25.00"), EntryKind.REFUND: Decimal("-5.00")}
    text = pdf_text(
        statement_pdf(s, title="T", period="2026-12", tz=billing.tz, currency="CNY", font=CORE_FONT)
    )
    assert "Statement of account shop-101: 2026-12" in text
    assert "Balance at the end\n120.00 CNY" in text and "Balance at the start\n100.00 CNY" in text
