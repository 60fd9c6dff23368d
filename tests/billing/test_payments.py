"""Payments from a provider (issue 16 item 4): signatures, notices, posted once per transaction
(threads racing on one SQLite ledger), the provider section of the configuration, reconciliation.

The REST callback (loopback HTTP, audit, relays) is tests/scada/test_server_payments.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from billing.errors import AccountNotOpen
from billing.ledger import EntryKind, Ledger
from billing.payments import (
    BadSignature,
    MalformedPayment,
    NotJson,
    Payment,
    PaymentConflict,
    PaymentProvider,
    PaymentStore,
    sign,
    verify_signature,
)
from billing.periods import parse_period
from billing.reconciliation import StatementError, read_statement, reconcile
from scada.config import ConfigError, load_site_text

SECRET = "s3cret-shared-with-the-provider"
TZ = "Asia/Shanghai"
#: 2026-01-15T10:00+08:00
PAID = 1_768_442_400.0


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    lg = Ledger.in_data_dir(tmp_path)
    lg.open_account("a1", "0.00")
    lg.open_account("a2", "10.00")
    yield lg
    lg.close()


def provider() -> PaymentProvider:
    return PaymentProvider.model_validate({"id": "alipay", "secret": SECRET})


def notice(**fields: object) -> bytes:
    body = {
        "transaction_id": "T-0001",
        "account": "a1",
        "amount": "50.00",
        "paid_at": "2026-01-15T10:00:00+08:00",
        **fields,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def payment(
    txid: str = "T-0001", account: str = "a1", amount: str = "50.00", at: float = PAID
) -> Payment:
    return Payment("alipay", txid, account, Decimal(amount), "CNY", at)


# ---------------------------------------------------------------------- signature and notice


def test_a_signature_is_the_hmac_of_the_raw_body() -> None:
    body = notice()
    header = sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    verify_signature(SECRET, body, header)
    verify_signature(SECRET, body, header.upper().replace("SHA256=", "sha256="))  # hex case
    for bad, why in (
        (None, "no X-Signature header"),
        ("", "no X-Signature header"),
        ("md5=abc", "is not sha256=<64 hex digits>"),
        ("sha256=" + "0" * 63, "is not sha256=<64 hex digits>"),
        (sign("another-secret-of-16+", body), "does not match the body"),
        (sign(SECRET, body + b" "), "does not match the body"),
    ):
        with pytest.raises(BadSignature, match=why):
            verify_signature(SECRET, body, bad)


def test_a_notice_is_parsed_exactly_money_never_a_float() -> None:
    p = Payment.parse(provider(), notice(amount="0.10", paid_at="1768442400"))
    assert (p.amount, p.currency, p.paid_at, p.key) == (
        Decimal("0.10"),
        "CNY",
        PAID,
        "alipay:T-0001",
    )
    assert Payment.parse(provider(), notice(paid_at="2026-01-15T02:00:00Z")).paid_at == PAID
    for body, cls, why in (
        (b"{not json", NotJson, "not JSON"),
        (b"[1]", MalformedPayment, "a JSON object"),
        (notice(amount=50.0), MalformedPayment, "amount: Input should be a valid string"),
        (notice(amount="50.001"), MalformedPayment, "at most two decimals"),
        (notice(amount="-5"), MalformedPayment, "a positive amount"),
        (notice(amount="1E+2"), MalformedPayment, "not an amount"),
        (notice(account=None), MalformedPayment, "account: Field required"),
        (notice(account="a 1"), MalformedPayment, "account: String should match pattern"),
        (notice(paid_at="2026-01-15T10:00"), MalformedPayment, "needs an offset"),
        (notice(currency="USD"), MalformedPayment, "currency: USD is not CNY"),
        (notice(tip="5.00"), MalformedPayment, "tip: Extra inputs are not permitted"),
        (notice(transaction_id="T 1"), MalformedPayment, "transaction_id"),
    ):
        with pytest.raises(cls, match=why):
            Payment.parse(provider(), body)


# ---------------------------------------------------------------------- posted once


def test_a_transaction_posts_once_and_a_repeat_answers_the_first_entry(ledger: Ledger) -> None:
    store = PaymentStore(ledger)
    first = store.record(payment())
    assert not first.repeated and first.entry.kind is EntryKind.TOPUP
    assert (first.entry.user, first.entry.note) == ("payment:alipay", "alipay payment T-0001")
    again = store.record(payment())
    assert again.repeated and again.entry.seq == first.entry.seq
    assert ledger.balance("a1") == Decimal("50.00")
    with pytest.raises(PaymentConflict, match=r"was posted to account a1 with 50\.00"):
        store.record(payment(amount="60.00"))
    with pytest.raises(PaymentConflict, match=r"not to a2 with 50\.00"):
        store.record(payment(account="a2"))
    with pytest.raises(AccountNotOpen):
        store.record(payment("T-0002", account="nobody"))
    assert store.get("alipay", "T-0002") is None  # a refusal leaves no trace
    assert ledger.balance("a1") == Decimal("50.00") and ledger.balance("a2") == Decimal("10.00")
    # a till's idempotency key is not a provider's transaction
    ledger.post_cash(EntryKind.TOPUP, "a2", "5.00", key="alipay:T-0003")
    with pytest.raises(PaymentConflict, match="was used by entry"):
        store.record(payment("T-0003", account="a2", amount="5.00"))


def test_ten_threads_with_one_transaction_post_it_once(tmp_path: Path) -> None:
    """Ten connections to one ledger file (as ten worker threads or processes) race."""
    Ledger.in_data_dir(tmp_path).open_account("a1", "0.00")
    ledgers = [Ledger.in_data_dir(tmp_path) for _ in range(10)]
    start = threading.Barrier(10)
    results: list[bool] = []

    def post(lg: Ledger) -> None:
        start.wait()
        results.append(PaymentStore(lg).record(payment()).repeated)

    threads = [threading.Thread(target=post, args=(lg,)) for lg in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] + [True] * 9
    assert ledgers[0].balance("a1") == Decimal("50.00")
    assert len(ledgers[0].entries("a1", kinds=[EntryKind.TOPUP])) == 1
    for lg in ledgers:
        lg.close()


def test_payments_are_append_only(ledger: Ledger) -> None:
    PaymentStore(ledger).record(payment())
    import sqlite3

    for sql in ("UPDATE payments SET amount = '1.00'", "DELETE FROM payments"):
        with (
            pytest.raises(sqlite3.IntegrityError, match="append-only"),
            ledger.transaction() as con,
        ):
            con.execute(sql)


# ---------------------------------------------------------------------- configuration


def _site(payments: str) -> str:
    return f"site: {{id: pay, timezone: {TZ}}}\npayments:\n{payments}"


def test_the_provider_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAY_SECRET", SECRET)
    site = load_site_text(_site('  providers: [{id: alipay, secret: "${PAY_SECRET}"}]\n'))
    p = site.payments.provider("alipay")
    assert p.secret.get_secret_value() == SECRET and SECRET not in repr(site.payments)
    assert p.currency == "CNY" and site.warnings() == []
    inline = load_site_text(_site(f"  providers: [{{id: alipay, secret: {SECRET}}}]\n"))
    assert "secret written inline" in str(inline.warnings()[0])


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            '  providers: [{id: alipay, secret: "${NOT_SET_ANYWHERE}"}]\n',
            "payments.providers[0].secret: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            "  providers: [{id: alipay, secret: short}]\n",
            "payments.providers[0].secret: the secret must have at least 16 characters",
        ),
        (
            f"  providers: [{{id: a, secret: {SECRET}}}, {{id: a, secret: {SECRET}}}]\n",
            "payment provider 'a' is listed twice",
        ),
    ],
)
def test_provider_mistakes_are_config_errors(yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_site_text(_site(yaml))
    assert any(message in str(i) for i in exc.value.issues), exc.value.issues
    assert SECRET not in str(exc.value)


# ---------------------------------------------------------------------- reconciliation

STATEMENT = """transaction_id,account,amount,paid_at,currency
T-0001,a1,50.00,2026-01-15 10:00,CNY
T-0002,a2,20.00,2026-01-15 11:00,CNY
T-0003,a2,30.00,2026-01-15 12:00,CNY
T-0004,a1,5.00,2026-01-15 13:00,CNY
"""


def test_reconciliation_lists_missing_extra_and_mismatched(ledger: Ledger) -> None:
    store = PaymentStore(ledger)
    store.record(payment("T-0001"))  # agrees
    store.record(payment("T-0002", account="a2", amount="25.00"))  # another amount
    reversed_ = store.record(payment("T-0004", amount="5.00"))  # agrees, but reversed since
    ledger.reverse("a1", reversed_.entry.seq, note="charged back")
    store.record(payment("T-0009", amount="7.00", at=PAID + 3600))  # not in the statement
    store.record(payment("T-0010", amount="8.00", at=PAID + 86400))  # the next day
    lines = read_statement(STATEMENT.encode(), TZ, "CNY")
    day = parse_period("2026-01-15", TZ)
    found = reconcile(store, "alipay", lines, day.start, day.end, TZ)
    assert (found.day, found.lines, found.matched, found.ok) == ("2026-01-15", 4, 1, False)
    assert [(d.transaction_id, d.reason) for d in found.missing] == [
        ("T-0003", "not in the ledger")
    ]
    assert [(d.transaction_id, d.reason) for d in found.extra] == [
        ("T-0009", "not in the statement")
    ]
    assert [(d.transaction_id, d.reason) for d in found.mismatched] == [
        ("T-0002", "amount 20.00 in the statement, 25.00 in the ledger"),
        (
            "T-0004",
            f"the top-up (entry {reversed_.entry.seq}) was reversed by entry "
            f"{reversed_.entry.seq + 1}",
        ),
    ]
    doc = found.to_json()
    assert doc["missing"][0]["statement"]["row"] == 4 and doc["extra"][0]["ledger"]["entry"]


def test_a_statement_names_every_bad_row_and_column() -> None:
    text = (
        "transaction_id,account,amount,paid_at,currency\n"
        "T-1,a1,5.00,2026-01-15 10:00,CNY\n"
        "T-1,a1,5.00,,\n"
        ",a 2,5.001,yesterday,USD\n"
    )
    with pytest.raises(StatementError) as exc:
        read_statement(text.encode(), TZ, "CNY")
    assert exc.value.issues == [
        "row 3, column transaction_id: T-1 is listed on row 2 too",
        "row 4, column transaction_id: not a transaction id: ''",
        "row 4, column account: not an account id: 'a 2'",
        "row 4, column amount: not an amount (digits 0-9, at most two decimals, no sign, exponent "
        "or spaces): '5.001'",
        "row 4, column paid_at: time 'yesterday': expected an ISO date or date-time",
        "row 4, column currency: USD is not the provider's CNY",
    ]
    with pytest.raises(StatementError, match="the header lacks amount"):
        read_statement(b"transaction_id,account\nT-1,a1\n", TZ)
