"""The append-only ledger: a worked sequence with a reversal and a meter swap, rules, properties."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.charging import charge_consumption
from billing.ledger import EntryKind, Ledger, LedgerError
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.services.audit import AuditLog
from tests.billing.conftest import HOUR, NOV1, write

D = Decimal


async def test_worked_sequence_with_reversal_and_meter_swap(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog
) -> None:
    billing = Billing(site, ledger, historian, commander=None, audit=audit)
    e1 = await billing.open_account("shop-101", "100.00", user="ann")
    e2 = (await billing.topup("shop-101", "200.00", user="ann", note="cash")).entry
    e3 = (await billing.refund("shop-101", "50.00", user="ann")).entry
    assert e2 is not None and e3 is not None
    e4 = (await billing.reverse("shop-101", e2.seq, user="bob", note="wrong account")).entry
    assert e4 is not None
    # 100.00 + 200.00 - 50.00 - 200.00 = 50.00
    assert (e1.amount, e2.amount, e3.amount, e4.amount) == (
        D("100.00"),
        D("200.00"),
        D("-50.00"),
        D("-200.00"),
    )
    assert e4.kind is EntryKind.REVERSAL and e4.reverses == e2.seq
    assert ledger.balance("shop-101") == D("50.00")
    # a day of consumption read from the historian: 1 kW all day, charged at the TOU tariff
    write(historian, "e.101.energy_kwh", [(NOV1 + h * HOUR, 100.0 + h) for h in range(0, 25)])
    run = billing.bill(NOV1, NOV1 + 24 * HOUR, ["shop-101"], shared=False)
    bill = run.account("shop-101")
    assert bill.total == D("19.74")
    ledger.charge("shop-101", EntryKind.CONSUMPTION, bill.total, key="day1", period="2025-11")
    # 50.00 - 19.74 = 30.26
    assert ledger.balance("shop-101") == D("30.26")
    # the meter is swapped just after 12:00: the old one's final reading is 112, the new one
    # starts at 0 (a sample at the swap time belongs to the new meter)
    swap = (
        await billing.replace_meter(
            "shop-101", "e.101.energy_kwh", 112.0, 0.0, ts=NOV1 + 12 * HOUR + 60, user="eve"
        )
    ).entry
    assert swap is not None
    assert swap.amount == 0 and swap.data["balance"] == "30.26"
    assert ledger.balance("shop-101") == D("30.26")  # balance carried over
    # the historian's delta and the bill both span the swap
    write(historian, "e.101.energy_kwh", [(NOV1 + (12 + h) * HOUR, float(h)) for h in range(1, 13)])
    assert historian.delta("e.101.energy_kwh", NOV1, NOV1 + 24 * HOUR) == pytest.approx(24.0)
    again = billing.bill(NOV1, NOV1 + 24 * HOUR, ["shop-101"], shared=False).account("shop-101")
    assert again.energy_kwh == pytest.approx(24.0)
    assert again.total == D("19.74")
    entries = ledger.entries("shop-101")
    assert [e.kind for e in entries] == [
        EntryKind.OPENING,
        EntryKind.TOPUP,
        EntryKind.REFUND,
        EntryKind.REVERSAL,
        EntryKind.CONSUMPTION,
        EntryKind.REPLACEMENT,
    ]
    assert sum((e.amount for e in entries), D("0")) == ledger.balance("shop-101")


def test_ledger_rules(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not open"):
        ledger.topup("a", "10.00")
    ledger.open_account("a", "5.00")
    with pytest.raises(LedgerError, match="already open"):
        ledger.open_account("a")
    with pytest.raises(LedgerError, match="positive"):
        ledger.topup("a", "-1")
    with pytest.raises(LedgerError, match="two decimals"):
        ledger.topup("a", "1.005")
    with pytest.raises(LedgerError, match="exceeds the balance"):
        ledger.refund("a", "5.01")
    t = ledger.topup("a", "10.00")
    ledger.reverse("a", t.seq)
    with pytest.raises(LedgerError, match="already reversed"):
        ledger.reverse("a", t.seq)
    c = ledger.charge("a", EntryKind.CONSUMPTION, D("1.00"), key="k1", period="2025-11")
    assert c is not None
    assert ledger.charge("a", EntryKind.CONSUMPTION, D("1.00"), key="k1", period="2025-11") is None
    with pytest.raises(LedgerError, match="consumption follows the readings"):
        ledger.reverse("a", c.seq)
    with pytest.raises(LedgerError, match="has no entry"):
        ledger.reverse("b", t.seq)


def test_entries_are_append_only(ledger: Ledger, tmp_path: Path) -> None:
    ledger.open_account("a", "5.00")
    con = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE entries SET amount = '1000.00'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM entries")
    con.close()
    assert ledger.balance("a") == D("5.00")


amounts = st.decimals(min_value=D("0.01"), max_value=D("999.99"), places=2)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), amounts),
        st.tuples(st.just("refund"), amounts),
        st.tuples(st.just("charge"), amounts),
        st.tuples(st.just("reverse"), st.integers(0, 30)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_balance_is_the_sum_of_entries(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any]
) -> None:
    lg = Ledger.open(tmp_path_factory.mktemp("lg") / "billing.sqlite")
    try:
        lg.open_account("a", "0.00")
        expected = D("0.00")
        for i, (op, x) in enumerate(ops):
            try:
                if op == "topup":
                    expected += lg.topup("a", x).amount
                elif op == "refund":
                    expected += lg.refund("a", x).amount
                elif op == "charge":
                    expected += lg.charge("a", EntryKind.CONSUMPTION, x, key=f"c{i}").amount  # type: ignore[union-attr]
                else:
                    expected += lg.reverse("a", x).amount
            except LedgerError:
                pass
        entries = lg.entries("a")
        assert lg.balance("a") == expected == sum((e.amount for e in entries), D("0"))
        assert lg.balances()["a"] == expected
    finally:
        lg.close()


def test_consumption_charging_is_month_to_date_and_idempotent(site: Any, ledger: Ledger) -> None:
    ledger.open_account("shop-101", "500.00", ts=NOV1 - 86400)
    ledger.open_account("home-102", "500.00", ts=NOV1 - 86400)
    # 30-minute billing readings, 1 kW on the shop meter, 0.5 kW at home, over two days
    rows = []
    for k in range(0, 97):
        t = NOV1 + k * 1800.0
        rows += [("e.101.energy_kwh", t, 100.0 + k * 0.5), ("e.102.energy_kwh", t, 10.0 + k * 0.25)]
    ledger.add_readings(rows)
    for k in range(1, 97):
        charge_consumption(site, ledger, NOV1 + k * 1800.0)
    n = len(ledger.entries())
    # re-running any reading changes nothing
    for k in (1, 48, 96):
        assert charge_consumption(site, ledger, NOV1 + k * 1800.0) == []
    assert len(ledger.entries()) == n
    # the charges add up to the month-to-date bill of two days at 1 kW, rounded per line:
    # sharp 6 x 1.3782 = 8.2692 -> 8.27; peak 18 x 1.1452 = 20.6136 -> 20.61;
    # flat 8 x 0.7135 = 5.708 -> 5.71; valley 16 x 0.3062 = 4.8992 -> 4.90; total 39.49
    # (not 2 x 19.74: no cent is lost to rounding 30-minute slices)
    assert ledger.charged("shop-101", EntryKind.CONSUMPTION, "2025-11") == D("39.49")
    assert ledger.balance("shop-101") == D("500.00") - D("39.49")
    # home: 24 kWh in tier 1: 24 x 0.4883 = 11.7192 -> 11.72
    assert ledger.charged("home-102", EntryKind.CONSUMPTION, "2025-11") == D("11.72")
    kwh = sum(e.energy_kwh or 0 for e in ledger.entries("home-102", kinds=["consumption"]))
    assert kwh == pytest.approx(24.0)


def test_an_idempotency_key_makes_a_retried_topup_or_refund_post_once(ledger: Ledger) -> None:
    ledger.open_account("shop-101", "10.00")
    first = ledger.topup("shop-101", "50.00", user="till-1", key="receipt-0815")
    again = ledger.topup("shop-101", "50.00", user="till-1", key="receipt-0815")
    assert again.seq == first.seq
    # 10.00 + 50.00, once
    assert ledger.balance("shop-101") == D("60.00")
    with pytest.raises(LedgerError, match="receipt-0815"):
        ledger.topup("shop-101", "5.00", key="receipt-0815")  # same key, another amount
    r1 = ledger.refund("shop-101", "20.00", key="refund-1")
    assert ledger.refund("shop-101", "20.00", key="refund-1").seq == r1.seq
    # keys are scoped per kind and account: the same text is a new top-up on another kind
    ledger.topup("shop-101", "20.00", key="refund-1")
    # 60.00 - 20.00 + 20.00
    assert ledger.balance("shop-101") == D("60.00")
    assert [e.kind for e in ledger.entries("shop-101")].count(EntryKind.TOPUP) == 2


def test_keyed_entries_in_bulk_post_once_and_as_one_would(ledger: Ledger) -> None:
    from billing.errors import AccountClosed
    from billing.ledger import Keyed

    rows = [
        Keyed("h1.heat", EntryKind.HEAT_ADVANCE, Decimal("-100.00"), "adv:h1", period="s", ts=10.0),
        Keyed("h2.heat", EntryKind.HEAT_ADVANCE, Decimal("-80.50"), "adv:h2", period="s", ts=10.0),
        Keyed("h1.heat", EntryKind.HEAT_ADVANCE, Decimal("-100.00"), "adv:h1", period="s", ts=10.0),
    ]
    posted = ledger.post_keyed_many(rows)
    assert [(e.account, e.amount, e.key) for e in posted] == [
        ("h1.heat", Decimal("-100.00"), "adv:h1"),
        ("h2.heat", Decimal("-80.50"), "adv:h2"),
    ]
    assert all(ledger.by_key(e.key or "") == e for e in posted)  # as read back from the file
    assert ledger.is_open("h1.heat") and ledger.balance("h2.heat") == Decimal("-80.50")
    assert ledger.post_keyed_many(rows) == []  # a rerun posts nothing
    ledger.close_account("h2.heat", ts=20.0)
    more = [
        Keyed("h1.heat", EntryKind.HEAT_CHARGE, Decimal("-1.00"), "ch:h1", ts=30.0),
        Keyed("h2.heat", EntryKind.HEAT_CHARGE, Decimal("-1.00"), "ch:h2", ts=30.0),
    ]
    with pytest.raises(AccountClosed):
        ledger.post_keyed_many(more)
    assert ledger.by_key("ch:h1") is None  # nothing of the batch was posted
