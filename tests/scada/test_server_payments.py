"""Payments from a provider over the real server (issue 16 items 4, 6 and 7): a signed callback
lands as a top-up exactly once however often (and however many at once) the provider sends it;
unsigned, wrongly signed or malformed callbacks and payments to unknown or closed accounts are
refused with the reason, audited, never posted; the daily statement is reconciled over REST.

The server test site with two prepaid accounts (a101 in arrears, a102 with 100.00) and a
provider whose secret comes from the environment; loopback HTTP, real SQLite ledger and audit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.payments import sign
from scada.server.roster_schemas import PaymentOut, ReconcileOut
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML

SECRET = "provider-shared-secret-0123456789"
PAYMENTS_YAML = """
payments:
  providers:
    - {id: alipay, name: Alipay, secret: "${SCADA_TEST_PAY_SECRET}"}
"""
RELAY = "b1.101.em.relay"
CALLBACK = "/api/payments/callback/alipay"


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("SCADA_TEST_PAY_SECRET", SECRET)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    (tmp_path / "config" / "payments.yaml").write_text(PAYMENTS_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml, payments.yaml]\n")
    try:
        await s.wait_good([RELAY, "b1.102.em.relay", "b1.101.em.energy_kwh"])
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def notice(txid: str, account: str, amount: str, **extra: Any) -> bytes:
    body = {
        "transaction_id": txid,
        "account": account,
        "amount": amount,
        "paid_at": "2026-01-15T10:00:00Z",
        **extra,
    }
    return json.dumps(body).encode()


async def pay(
    site: Served,
    body: bytes,
    *,
    signature: str | None = "good",
    path: str = CALLBACK,
) -> tuple[int, Any, Any]:
    """Send a callback as the provider does: no user, the body signed (or not)."""
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers["X-Signature"] = sign(SECRET, body)
    elif signature is not None:
        headers["X-Signature"] = signature
    return await site.api("POST", path, role=None, raw=body, headers=headers)


async def _balance(site: Served, account: str) -> Decimal:
    st, body, _ = await site.api("GET", f"/api/accounts/{account}")
    assert st == 200, body
    return Decimal(body["balance"])


def _audit(site: Served, action: str) -> list[dict[str, Any]]:
    return site.server.ctx.audit.query(action=action, limit=1000)


async def test_a_signed_payment_lands_as_a_topup_and_closes_the_relay(site: Served) -> None:
    await site.runtime.billing.prepaid.evaluate("a101")  # opened at 0.00: in arrears, tripped
    await site.wait_for(lambda: site.db.read(RELAY).value is False, RELAY)

    st, body, _ = await pay(site, notice("2026011500001", "a101", "30.00", currency="CNY"))
    assert st == 200, body
    out = PaymentOut.model_validate(body)
    assert (out.repeated, out.balance_before, out.balance) == (False, "0.00", "30.00")
    assert (out.entry.kind, out.entry.amount, out.entry.user) == (
        "topup",
        "30.00",
        "payment:alipay",
    )
    assert out.entry.note == "alipay payment 2026011500001"
    assert out.payment.transaction_id == "2026011500001" and out.payment.currency == "CNY"
    assert out.payment.paid_at.startswith("2026-01-15T10:00:00")
    assert out.relay_actions == [f"{RELAY} closed"]
    await site.wait_for(lambda: site.db.read(RELAY).value is True, RELAY)  # power is back

    (rec,) = _audit(site, "billing.topup")
    assert (rec["user"], rec["target"], rec["result"]) == ("payment:alipay", "a101", "ok")
    assert rec["after"]["transaction_id"] == "2026011500001" and rec["after"]["amount"] == "30.00"
    assert rec["source"] == "127.0.0.1"
    assert _audit(site, "payments.callback") == []


async def test_ten_callbacks_of_one_transaction_at_once_post_once_and_audit_once(
    site: Served,
) -> None:
    """Item 7: the same transaction id from 10 clients at once: posted once, 9 `repeated`."""
    before = await _balance(site, "a102")
    body = notice("2026011500042", "a102", "12.34")
    answers = await asyncio.gather(*(pay(site, body) for _ in range(10)))
    assert [st for st, _, _ in answers] == [200] * 10, answers
    outs = [PaymentOut.model_validate(out) for _, out, _ in answers]
    assert sorted(o.repeated for o in outs) == [False] + [True] * 9
    assert len({o.entry.seq for o in outs}) == 1  # every answer names the one entry
    assert await _balance(site, "a102") == before + Decimal("12.34")
    (rec,) = _audit(site, "billing.topup")
    assert rec["result"] == "ok" and rec["after"]["entry"] == outs[0].entry.seq

    # the provider retries a day later: still the one entry, nothing posted, nothing audited
    st, again, _ = await pay(site, body)
    assert st == 200 and again["repeated"] is True and again["entry"]["seq"] == outs[0].entry.seq
    assert await _balance(site, "a102") == before + Decimal("12.34")
    assert len(_audit(site, "billing.topup")) == 1
    st, ledger, _ = await site.api("GET", "/api/accounts/a102/ledger?kind=topup")
    assert st == 200 and [e["amount"] for e in ledger["entries"]] == ["12.34"]


async def test_unsigned_or_wrongly_signed_callbacks_are_401_audited_never_posted(
    site: Served,
) -> None:
    body = notice("2026011500007", "a102", "500.00")
    cases = [
        (None, "no X-Signature header"),
        ("sha256=xyz", "X-Signature is not sha256=<64 hex digits>"),
        (sign("an-attacker-guessed-this-secret", body), "does not match the body"),
        (sign(SECRET, body.replace(b"500.00", b"5.00")), "does not match the body"),
    ]
    for signature, reason in cases:
        st, err, resp = await pay(site, body, signature=signature)
        assert st == 401 and reason in err["error"], (signature, st, err)
        assert resp.headers["WWW-Authenticate"].startswith("HMAC")
    # a signed body of another provider's (unknown) id
    st, err, _ = await pay(site, body, path="/api/payments/callback/paypal")
    assert st == 404 and "unknown payment provider 'paypal'" in err["error"]
    assert await _balance(site, "a102") == Decimal("100.00")
    assert _audit(site, "billing.topup") == []
    recs = _audit(site, "payments.callback")
    assert len(recs) == 5 and {r["result"] for r in recs} == {"denied"}
    details = [r["detail"] for r in recs]
    assert sum("does not match the body" in d for d in details) == 2
    assert "no X-Signature header (sha256=<hex HMAC-SHA256 of the body>)" in details
    wrong = next(r for r in recs if r["target"] == "alipay" and "does not match" in r["detail"])
    assert wrong["after"]["body_bytes"] == len(body) and "transaction_id" not in wrong["after"]


async def test_malformed_notices_and_unknown_or_closed_accounts_are_refused_with_the_reason(
    site: Served,
) -> None:
    billing = site.runtime.billing
    billing.ledger.open_account("gone", "0.00")  # a ledger, but no longer configured
    cases = [
        (b"{not json", 400, "the body is not JSON"),
        (notice("T-1", "a102", "5.00")[:-1] + b', "tip": 1}', 422, "tip: Extra inputs"),
        (
            json.dumps({"transaction_id": "T-2", "account": "a102", "amount": 5}).encode(),
            422,
            "amount: Input should be a valid string",
        ),
        (notice("T-3", "a102", "5.001"), 422, "at most two decimals"),
        (notice("T-4", "a102", "5.00", currency="USD"), 422, "currency: USD is not CNY"),
        (notice("T-5", "a102", "5.00", paid_at="yesterday"), 422, "paid_at"),
        (notice("T-6", "nobody", "5.00"), 404, "unknown account 'nobody'"),
        (notice("T-7", "gone", "5.00"), 409, "account gone is closed"),
    ]
    for body, status, reason in cases:
        st, err, _ = await pay(site, body)
        assert st == status and reason in err["error"], (body, st, err)
    recs = _audit(site, "payments.callback")
    assert len(recs) == len(cases) and {r["result"] for r in recs} == {"failed"}
    closed = next(r for r in recs if r["target"] == "gone")
    assert closed["after"]["transaction_id"] == "T-7" and "closed" in closed["detail"]

    # a transaction posted once, then sent with another amount: refused, audited by billing
    st, _, _ = await pay(site, notice("T-8", "a102", "5.00"))
    assert st == 200
    st, err, _ = await pay(site, notice("T-8", "a102", "50.00"))
    assert st == 409 and "was posted to account a102 with 5.00" in err["error"]
    assert [r["result"] for r in _audit(site, "billing.topup")] == ["failed", "ok"]
    assert await _balance(site, "a102") == Decimal("105.00")
    assert billing.ledger.balance("gone") == Decimal("0.00")


async def test_a_statement_is_reconciled_over_rest(site: Served) -> None:
    for txid, amount in (("T-100", "10.00"), ("T-101", "20.00"), ("T-102", "30.00")):
        st, _, _ = await pay(site, notice(txid, "a102", amount))
        assert st == 200
    statement = (
        b"transaction_id,account,amount,paid_at\n"
        b"T-100,a102,10.00,2026-01-15T10:00:00Z\n"
        b"T-101,a102,21.00,2026-01-15T10:00:00Z\n"  # another amount
        b"T-103,a102,40.00,2026-01-15T10:05:00Z\n"  # never posted
    )
    path = "/api/payments/reconcile/alipay?date=2026-01-15"
    headers = {"Content-Type": "text/csv"}
    st, body, _ = await site.api("POST", path, role="operator", raw=statement, headers=headers)
    assert st == 200, body
    out = ReconcileOut.model_validate(body)
    assert (out.date, out.statement_lines, out.matched, out.ok) == ("2026-01-15", 3, 1, False)
    assert [d["transaction_id"] for d in out.missing] == ["T-103"]
    assert [d["transaction_id"] for d in out.extra] == ["T-102"]
    assert [(d["transaction_id"], d["reason"]) for d in out.mismatched] == [
        ("T-101", "amount 21.00 in the statement, 20.00 in the ledger")
    ]
    st, _, _ = await site.api("POST", path, role="viewer", raw=statement, headers=headers)
    assert st == 403
    st, err, _ = await site.api(
        "POST", path, role="operator", raw=b"transaction_id,account\nT-1,a1\n", headers=headers
    )
    assert st == 422 and "the header lacks amount" in err["error"]
    st, err, _ = await site.api(
        "POST", "/api/payments/reconcile/paypal?date=2026-01-15", raw=statement, headers=headers
    )
    assert st == 404
    st, err, _ = await site.api(
        "POST", "/api/payments/reconcile/alipay?date=2026-13-01", raw=statement, headers=headers
    )
    assert st == 400 and err["error"].startswith("date:")
