"""Account lifecycle: open (repeat-safe, audited), close with final reading, final charge and
settlement, then every write refused; closing twice; refusals that write nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.charging import charge_consumption
from billing.errors import (
    AccountClosed,
    AccountNotOpen,
    IdempotencyConflict,
    Implausible,
    MissingReading,
)
from billing.ledger import EntryKind, Ledger
from billing.lifecycle import close_account
from billing.service import Billing
from scada.services.audit import AuditLog
from tests.billing.conftest import HOUR, NOV1, free_port, site_text

D = Decimal
METER = "e.102.energy_kwh"
ACCT = "home-102"


def _consume_one_day(site: Any, ledger: Ledger, opening: str) -> float:
    """Open home-102 and charge a day of 0.5 kW readings (12 kWh); return the last slot."""
    ledger.open_account(ACCT, opening, ts=NOV1 - 86400)
    ledger.add_readings([(METER, NOV1 + k * 1800.0, 10.0 + k * 0.25) for k in range(49)])
    for k in range(1, 49):
        charge_consumption(site, ledger, NOV1 + k * 1800.0)
    # 12 kWh in tier 1: 12 x 0.4883 = 5.8596 -> 5.86
    assert ledger.charged(ACCT, EntryKind.CONSUMPTION, "2025-11") == D("5.86")
    return NOV1 + 48 * 1800.0


def _resolved(site: Any, account: str) -> Any:
    from billing.accounts import resolve_accounts

    return next(a for a in resolve_accounts(site) if a.id == account)


def test_open_consume_close_then_every_write_is_refused(site: Any, ledger: Ledger) -> None:
    last = _consume_one_day(site, ledger, "100.00")
    at = last + 1800.0
    closing = close_account(
        site, ledger, _resolved(site, ACCT), at=at, readings={METER: 23.0}, user="ann"
    )
    # final reading 23.0: 13 kWh this month, 13 x 0.4883 = 6.3479 -> 6.35; 0.49 more charged
    (final,) = closing.charges
    assert (final.kind, final.amount, final.ts) == (EntryKind.CONSUMPTION, D("-0.49"), at)
    assert final.energy_kwh == pytest.approx(1.0)
    # 100.00 - 6.35 = 93.65 is paid back: the closing entry is minus the balance
    assert (closing.balance, closing.settlement, closing.amount) == (
        D("93.65"),
        "refund",
        D("93.65"),
    )
    assert closing.entry.kind is EntryKind.CLOSING and closing.entry.amount == D("-93.65")
    assert closing.entry.user == "ann" and closing.readings == {METER: 23.0}
    assert ledger.balance(ACCT) == D("0.00")
    assert (ledger.is_open(ACCT), ledger.is_closed(ACCT)) == (False, True)
    assert ACCT not in ledger.open_accounts([ACCT, "shop-101"])

    n = len(ledger.entries())
    opening = ledger.entries(ACCT, kinds=[EntryKind.OPENING])[0]
    refused = [
        lambda: ledger.post_cash(EntryKind.TOPUP, ACCT, "10.00"),
        lambda: ledger.post_cash(EntryKind.REFUND, ACCT, "1.00"),
        lambda: ledger.post_reversal(ACCT, opening.seq),
        lambda: ledger.post_replacement(ACCT, METER, at + HOUR, 24.0, 0.0),
        lambda: ledger.post_keyed(ACCT, EntryKind.SHARED_LOSS, D("-1.00"), key="k"),
        lambda: ledger.charge(ACCT, EntryKind.CONSUMPTION, D("1.00"), key="c"),
        lambda: ledger.open_account(ACCT, "5.00"),
        lambda: ledger.post_opening(ACCT, "100.00"),
        lambda: ledger.ensure_open(ACCT),
    ]
    for write in refused:
        with pytest.raises(AccountClosed, match=r"account home-102 is closed since .*new account"):
            write()
    # the scheduled charging passes the closed account by (its final charge was the closing's)
    ledger.add_readings([(METER, at + HOUR, 30.0)])
    assert charge_consumption(site, ledger, at + HOUR) == []
    assert len(ledger.entries()) == n and ledger.balance(ACCT) == D("0.00")


def test_closing_in_debt_records_the_debt_and_closing_twice_answers_the_first(
    site: Any, ledger: Ledger
) -> None:
    last = _consume_one_day(site, ledger, "0.00")
    acct = _resolved(site, ACCT)
    first = close_account(site, ledger, acct, at=last + 600.0, readings={METER: 22.0})
    # no consumption after the last slot: no final charge; the 5.86 owed is the debt
    assert first.charges == [] and first.settlement == "debt"
    assert (first.balance, first.amount, first.entry.amount) == (D("-5.86"), D("5.86"), D("5.86"))
    assert ledger.balance(ACCT) == D("0.00")
    n = len(ledger.entries())
    again = close_account(site, ledger, acct, at=last + 7200.0, readings={METER: 99.0})
    assert again.repeated and again.entry == first.entry and again.charges == first.charges
    assert (again.settlement, again.amount, again.readings) == ("debt", D("5.86"), {METER: 22.0})
    assert len(ledger.entries()) == n


def test_closing_refusals_write_nothing(site: Any, ledger: Ledger) -> None:
    acct = _resolved(site, ACCT)
    with pytest.raises(AccountNotOpen):
        close_account(site, ledger, acct, at=NOV1, readings={METER: 1.0})
    last = _consume_one_day(site, ledger, "50.00")
    n, readings = len(ledger.entries()), ledger.query("SELECT count(*) FROM readings")
    cases: list[tuple[type[Exception], str, dict[str, float], float]] = [
        (MissingReading, "no final reading given", {}, last + 600),
        (Implausible, "below its last reading", {METER: 21.0}, last + 600),
        (Implausible, r"above its last reading .* at most", {METER: 500.0}, last + 600),
        (Implausible, "has no meter e.101", {"e.101.energy_kwh": 1.0}, last + 600),
        (Implausible, "before its last entry", {METER: 22.0}, last - 600),
        (Implausible, "lies in the future", {METER: 22.0}, 4_000_000_000.0),
    ]
    for exc, text, given, at in cases:
        with pytest.raises(exc, match=text):
            close_account(site, ledger, acct, at=at, readings=given)
    assert len(ledger.entries()) == n and ledger.is_open(ACCT)
    assert ledger.query("SELECT count(*) FROM readings") == readings


async def test_billing_open_close_are_audited_and_a_closed_account_refuses_payment(
    site: Any, ledger: Ledger, audit: AuditLog
) -> None:
    billing = Billing(site, ledger, None, commander=None, audit=audit)
    r = await billing.open(ACCT, "40.00", user="ann", source="10.0.0.1", note="contract 7")
    assert r.entry is not None and (r.balance, r.repeated) == (D("40.00"), False)
    again = await billing.open(ACCT, "40.00", user="ann")
    assert again.repeated and again.entry == r.entry
    with pytest.raises(IdempotencyConflict, match=r"opened with 40\.00"):
        await billing.open(ACCT, "50.00", user="ann")
    ok, failed = (
        audit.query(action="billing.open_account", result="ok"),
        audit.query(action="billing.open_account", result="failed"),
    )
    assert len(ok) == 1 and ok[0]["after"]["amount"] == "40.00" and len(failed) == 1

    closing = await billing.close_account(
        ACCT, readings={METER: 10.0}, user="bob", note="moved out"
    )
    assert (closing.settlement, closing.amount) == ("refund", D("40.00"))
    (rec,) = audit.query(action="billing.close_account")
    assert (rec["user"], rec["target"], rec["result"]) == ("bob", ACCT, "ok")
    assert rec["before"] == {"balance": "40.00"}
    assert rec["after"]["settlement"] == "refund" and rec["after"]["amount"] == "40.00"
    assert rec["after"]["entry"] == closing.entry.seq and rec["after"]["reason"] == "moved out"
    assert (await billing.close_account(ACCT, user="bob")).repeated  # not audited again
    assert len(audit.query(action="billing.close_account")) == 1

    with pytest.raises(AccountClosed, match="is closed since"):
        await billing.topup(ACCT, "10.00", user="cashier")
    (refused,) = audit.query(action="billing.topup")
    assert refused["result"] == "failed" and "is closed since" in refused["detail"]
    assert ledger.balance(ACCT) == D("0.00")


def test_cli_closes_an_account_and_then_refuses_a_topup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scada.cli import main

    cfg = tmp_path / "site.yaml"
    cfg.write_text(site_text(free_port()), encoding="utf-8")
    common = [str(cfg), "--data-dir", str(tmp_path / "var")]
    assert main(["account", "open", *common, ACCT, "--amount", "30.00"]) == 0
    capsys.readouterr()
    assert main(["account", "close", *common, ACCT]) == 2
    assert "no final reading given" in capsys.readouterr().err
    assert main(["account", "close", *common, ACCT, "--reading", "e.102.energy_kwh"]) == 2
    assert "expected TAG=KWH" in capsys.readouterr().err
    args = ["account", "close", *common, ACCT, "--reading", f"{METER}=12.5", "--note", "moved"]
    assert main(args) == 0
    assert "home-102: closed; entry 2 closing -30.00: refund 30.00" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["repeated"], doc["settlement"], doc["readings"]) == (True, "refund", {METER: 12.5})
    assert main(["account", "topup", *common, ACCT, "5.00"]) == 2
    assert "account home-102 is closed since" in capsys.readouterr().err
    audit = AuditLog.in_data_dir(tmp_path / "var")
    try:
        (rec,) = audit.query(action="billing.close_account", result="ok")
        assert (rec["user"], rec["after"]["reason"], rec["after"]["amount"]) == (
            "cli",
            "moved",
            "30.00",
        )
        assert len(audit.query(action="billing.close_account", result="failed")) == 1
    finally:
        audit.close()
