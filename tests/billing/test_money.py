"""Money operations of ``Billing``: one amount rule, one idempotency check, one audit shape."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from billing.errors import (
    BadAmount,
    IdempotencyConflict,
    InsufficientBalance,
    UnknownAccount,
    UnknownEntry,
    UnknownMeter,
)
from billing.ledger import Ledger
from billing.money import parse_amount
from billing.service import Billing
from billing.tags import Level, account_tag_defs
from scada.services.audit import AuditLog
from scada.services.auth import Role, User
from tags.database import TagDatabase
from tests.billing.conftest import relay_commander

D = Decimal
ANN = User("ann", Role.OPERATOR)


@pytest.fixture
def billing(site: Any, ledger: Ledger, audit: AuditLog) -> Iterator[Billing]:
    """Billing over the real command service, with no drivers: every relay command fails."""
    db = TagDatabase([*site.tag_defs(), *account_tag_defs(site)])
    yield Billing(site, ledger, commander=relay_commander(site, db, audit), audit=audit, db=db)


def _billing_audit(audit: AuditLog) -> list[dict[str, Any]]:
    return audit.query(action="billing.*", oldest_first=True)


def test_the_amount_rule() -> None:
    assert parse_amount("50") == D("50.00") and str(parse_amount("0.5")) == "0.50"
    assert parse_amount(D("12.30")) == D("12.30") and parse_amount(7) == D("7.00")
    assert parse_amount("0", zero_ok=True) == D("0.00")
    for good, money in (("5", "5.00"), ("5.5", "5.50"), ("5.50", "5.50"), ("0.01", "0.01")):
        assert str(parse_amount(good)) == money
    for bad in ("abc", "", "-5.00", "0", "0.00", "1.234", "NaN", "Infinity", "1e12", "1e99"):
        with pytest.raises(BadAmount, match="amount"):
            parse_amount(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "\u0665",  # ARABIC-INDIC DIGIT FIVE: Decimal() reads it as 5
        "\uff15",  # FULLWIDTH DIGIT FIVE
        "\u0665.\u0660\u0660",
        " 5.00",
        "5.00 ",
        " 50 ",
        "5.00\n",
        "+5.00",
        "-0",
        "1E+2",
        "1e2",
        "5.",
        ".5",
        "5,00",
        "5_00",
    ],
)
def test_amounts_are_ascii_digits_only(bad: str) -> None:
    with pytest.raises(BadAmount, match="amount"):
        parse_amount(bad)
    with pytest.raises(BadAmount, match="amount"):
        parse_amount(bad, zero_ok=True)


async def test_a_topup_is_one_audited_operation(billing: Billing, audit: AuditLog) -> None:
    await billing.open_account("shop-101", "10.00")
    r = await billing.topup("shop-101", "5", user=ANN, source="till 1", note="receipt 1")
    assert r.entry is not None and r.entry.amount == D("5.00") and r.entry.user == "ann"
    assert (r.balance_before, r.balance, r.level, r.repeated) == (
        D("10.00"),
        D("15.00"),
        Level.ALARM2,
        False,
    )
    assert r.relays == {"e.101.relay": False}
    (rec,) = _billing_audit(audit)
    assert (rec["action"], rec["user"], rec["role"], rec["source"], rec["target"]) == (
        "billing.topup",
        "ann",
        "operator",
        "till 1",
        "shop-101",
    )
    assert rec["before"] == {"balance": "10.00"}
    assert rec["after"] == {
        "amount": "5.00",
        "reference": "receipt 1",
        "balance": "15.00",
        "entry": r.entry.seq,
        "relay_actions": [],
        "relay_failures": [],
    }


async def test_bad_input_is_not_audited_refusals_are(billing: Billing, audit: AuditLog) -> None:
    await billing.open_account("shop-101", "10.00")
    with pytest.raises(BadAmount):
        await billing.topup("shop-101", "1.005", user=ANN)
    with pytest.raises(UnknownAccount, match="unknown account 'nope'"):
        await billing.topup("nope", "1.00", user=ANN)
    assert _billing_audit(audit) == []
    with pytest.raises(InsufficientBalance, match="exceeds the balance"):
        await billing.refund("shop-101", "10.01", user=ANN)
    with pytest.raises(UnknownEntry, match="has no entry 999"):
        await billing.reverse("shop-101", 999, user=ANN, note="typo")
    with pytest.raises(UnknownMeter, match="has no meter"):
        await billing.replace_meter("shop-101", "e.102.energy_kwh", 1.0, 0.0, user=ANN)
    failed = _billing_audit(audit)
    assert [(e["action"], e["result"]) for e in failed] == [
        ("billing.refund", "failed"),
        ("billing.reverse", "failed"),
        ("billing.replace_meter", "failed"),
    ]
    assert failed[0]["before"] == {"balance": "10.00"}
    assert failed[0]["after"] == {"amount": "10.01", "reference": ""}
    assert "exceeds the balance" in failed[0]["detail"]
    assert D(str(billing.ledger.balance("shop-101"))) == D("10.00")


async def test_a_repeated_key_posts_and_audits_nothing(billing: Billing, audit: AuditLog) -> None:
    await billing.open_account("shop-101", "10.00")
    first = await billing.topup("shop-101", "7.00", user=ANN, key="k-1")
    again = await billing.topup("shop-101", "7.00", user=ANN, key="k-1")
    assert not first.repeated and again.repeated
    assert first.entry is not None and again.entry is not None
    assert again.entry.seq == first.entry.seq
    assert again.balance_before == again.balance == D("17.00") and again.level is None
    with pytest.raises(IdempotencyConflict, match="k-1"):
        await billing.topup("shop-101", "8.00", user=ANN, key="k-1")
    assert [(e["action"], e["result"]) for e in _billing_audit(audit)] == [
        ("billing.topup", "ok"),
        ("billing.topup", "failed"),  # the conflicting amount was refused
    ]


async def test_keep_power_and_restore_prepaid_are_audited_by_billing(
    billing: Billing, audit: AuditLog
) -> None:
    await billing.open_account("shop-101", "0.00")  # arrears: the trip fails (no drivers)
    r = await billing.set_keep_power("shop-101", True, user=ANN, source="hmi", note="medical")
    assert (r.keep_power_before, r.keep_power, r.entry, r.level) == (
        False,
        True,
        None,
        Level.ARREARS,
    )
    r = await billing.restore_prepaid("shop-101", user=ANN, source="hmi")
    assert r.keep_power and r.relay_actions == [] and r.level is Level.ARREARS
    keep, restore = _billing_audit(audit)
    assert (keep["action"], keep["user"], keep["source"]) == ("billing.keep_power", "ann", "hmi")
    assert keep["before"] == {"keep_power": False}
    assert keep["after"] == {"keep_power": True, "reason": "medical", "relay_actions": []}
    assert (restore["action"], restore["target"]) == ("billing.restore_prepaid", "shop-101")
    assert restore["after"]["level"] == int(Level.ARREARS)


async def test_money_operations_need_an_audit_log(site: Any, ledger: Ledger) -> None:
    billing = Billing(site, ledger, commander=None, audit=None)
    await billing.open_account("shop-101", "1.00")
    with pytest.raises(RuntimeError, match="audit"):
        await billing.topup("shop-101", "1.00")
    assert ledger.balance("shop-101") == D("1.00")
