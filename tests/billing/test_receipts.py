"""Cash-desk receipts: numbering, reprints, a repeated payment, the PDF."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.ledger import EntryKind, Ledger
from billing.receipts import Method, Receipts, UnknownReceipt, method_note, receipt_pdf
from billing.service import Billing
from scada.services.audit import AuditLog


@pytest.fixture
def billing(site: Any, ledger: Ledger, audit: AuditLog) -> Billing:
    ledger.open_account("shop-101", "100.00")
    return Billing(site, ledger, commander=None, audit=audit)


async def test_numbers_increase_and_a_reprint_keeps_the_number(
    billing: Billing, ledger: Ledger
) -> None:
    receipts = Receipts(ledger)
    one = await billing.topup("shop-101", "50.00", user="cara", note=method_note(Method.CASH))
    two = await billing.refund("shop-101", "20.00", user="cara", note=method_note(Method.CARD))
    assert one.entry is not None and two.entry is not None
    r1 = receipts.issue(one.entry.seq, Method.CASH, "cara")
    r2 = receipts.issue(two.entry.seq, Method.CARD, "cara")
    assert r2.number > r1.number
    assert (r1.balance_before, r1.amount, r1.balance_after) == (
        Decimal("100.00"),
        Decimal("50.00"),
        Decimal("150.00"),
    )
    assert (r2.balance_before, r2.amount, r2.balance_after) == (
        Decimal("150.00"),
        Decimal("-20.00"),
        Decimal("130.00"),
    )
    assert r2.kind is EntryKind.REFUND and r2.method is Method.CARD and r2.cashier == "cara"
    # a reprint (by number, or issuing again for the entry) is the same receipt
    assert receipts.get(r1.number) == r1
    assert receipts.issue(one.entry.seq, Method.CARD, "someone else") == r1
    assert Receipts(ledger).get(r2.number) == r2  # stored: a new instance finds it
    assert receipts.numbers([one.entry.seq, two.entry.seq, 999]) == {
        one.entry.seq: r1.number,
        two.entry.seq: r2.number,
    }
    with pytest.raises(UnknownReceipt):
        receipts.get(r2.number + 100)
    with pytest.raises(UnknownReceipt):
        receipts.issue(999, Method.CASH, "cara")


async def test_same_key_posts_once_and_prints_the_same_receipt(
    billing: Billing, ledger: Ledger
) -> None:
    receipts = Receipts(ledger)
    note = method_note(Method.CASH)
    first = await billing.topup("shop-101", "50.00", user="cara", note=note, key="confirm-1")
    again = await billing.topup("shop-101", "50.00", user="cara", note=note, key="confirm-1")
    assert again.repeated and first.entry is not None and again.entry is not None
    assert again.entry.seq == first.entry.seq
    topups = ledger.entries("shop-101", kinds=[EntryKind.TOPUP])
    assert [t.amount for t in topups] == [Decimal("50.00")]
    assert topups[0].note == "method=cash"
    r1 = receipts.issue(first.entry.seq, Method.CASH, "cara")
    r2 = receipts.issue(again.entry.seq, Method.CASH, "cara")
    assert r1 == r2 and r1.balance_before == Decimal("100.00")  # not the repeat's balances
    assert ledger.balance("shop-101") == Decimal("150.00")


async def test_reversal_receipt_and_pdf(billing: Billing, ledger: Ledger) -> None:
    receipts = Receipts(ledger)
    paid = await billing.topup("shop-101", "50.00", user="cara", note="method=cash")
    assert paid.entry is not None
    back = await billing.reverse("shop-101", paid.entry.seq, user="cara", note="wrong flat")
    assert back.entry is not None
    r = receipts.issue(back.entry.seq, Method.CASH, "cara")
    assert r.kind is EntryKind.REVERSAL and r.reverses == paid.entry.seq
    assert (r.balance_before, r.balance_after) == (Decimal("150.00"), Decimal("100.00"))
    pdf = receipt_pdf(r, title="Test site", time_text="2026-12-08 10:00:00 CST", currency="CNY")
    assert pdf.startswith(b"%PDF")


def test_method_note() -> None:
    assert method_note(Method.BANK_TRANSFER) == "method=bank_transfer"
    assert method_note(Method.CARD, " slip 42 ") == "method=card; slip 42"


async def test_cashier_day_totals_match_the_ledger(billing: Billing, ledger: Ledger) -> None:
    import io
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from openpyxl import load_workbook

    from billing.receipts import cashier_day, day_xlsx

    receipts = Receipts(ledger)
    tz = billing.tz
    paid = await billing.topup("shop-101", "50.00", user="cara", note=method_note(Method.CASH))
    card = await billing.topup("shop-101", "30.00", user="cara", note=method_note(Method.CARD))
    back = await billing.refund("shop-101", "5.00", user="cara", note=method_note(Method.CASH))
    other = await billing.topup("shop-101", "7.00", user="olga", note="bank slip")  # no receipt
    for r, m in ((paid, Method.CASH), (card, Method.CARD), (back, Method.CASH)):
        assert r.entry is not None
        receipts.issue(r.entry.seq, m, "cara")
    assert other.entry is not None
    today = datetime.now(ZoneInfo(tz)).date()
    mine = cashier_day(ledger, today, tz, "cara")
    assert mine.totals == {"cash": Decimal("45.00"), "card": Decimal("30.00")}
    assert mine.total == Decimal("75.00") and all(ln.receipt for ln in mine.lines)
    everyone = cashier_day(ledger, today, tz)
    assert everyone.totals["other"] == Decimal("7.00") and everyone.total == Decimal("82.00")
    ledger_sum = sum(
        e.amount for e in ledger.entries("shop-101") if e.kind.value in ("topup", "refund")
    )
    assert everyone.total == ledger_sum
    wb = load_workbook(io.BytesIO(day_xlsx(mine, tz)))
    ws = wb.active
    assert ws is not None
    rows = list(ws.iter_rows(values_only=True))
    assert rows[-1][0] == "Total" and Decimal(str(rows[-1][5])) == Decimal("75.00")
    assert [r[0] for r in rows[3:6]] == [ln.entry.seq for ln in mine.lines]
