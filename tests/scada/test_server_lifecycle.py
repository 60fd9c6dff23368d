"""Account lifecycle over REST against the running server: open (repeat-safe), close with the
live final reading, a closed account refusing money with 409 and the reason, the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from scada.server.app import ROUTES
from scada.server.handlers.billing import CloseOut, MoneyOut
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML
from tests.scada.test_server_payments import PAYMENTS_YAML, SECRET, notice, pay

METER = "b1.102.em.energy_kwh"


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    """The server test site with two prepaid accounts (a102 opened with 100.00) and a payment
    provider."""
    monkeypatch.setenv("SCADA_TEST_PAY_SECRET", SECRET)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    (tmp_path / "config" / "payments.yaml").write_text(PAYMENTS_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml, payments.yaml]\n")
    try:
        await s.wait_good([METER, "b1.101.em.energy_kwh"])
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def test_lifecycle_routes_are_in_the_route_table() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/api/accounts/{account_id}/open", "/api/accounts/{account_id}/close"} <= paths


async def test_open_is_repeat_safe_and_refuses_another_amount(site: Served) -> None:
    # the configured accounts are opened at start-up: a102 with its opening_balance 100.00
    st, body, _ = await site.api("POST", "/api/accounts/a102/open", role="operator", body={})
    assert st == 200, body
    out = MoneyOut.model_validate(body)
    assert out.repeated and out.entry.kind == "opening" and out.entry.amount == "100.00"
    st, body, _ = await site.api(
        "POST", "/api/accounts/a102/open", role="operator", body={"amount": "5.00"}
    )
    assert st == 409 and "opened with 100.00" in body["error"], body
    st, body, _ = await site.api(
        "POST", "/api/accounts/a102/open", role="operator", body={"amount": "-5"}
    )
    assert st in (400, 422), body
    st, body, _ = await site.api("POST", "/api/accounts/nope/open", role="operator", body={})
    assert st == 404
    st, body, _ = await site.api("POST", "/api/accounts/a102/open", role="viewer", body={})
    assert st == 403
    (rec,) = site.server.ctx.audit.query(action="billing.open_account")
    assert (rec["result"], rec["target"], rec["user"]) == ("failed", "a102", "operator")
    assert "opened with 100.00" in rec["detail"]


async def test_close_with_the_live_reading_then_money_is_refused_with_the_reason(
    site: Served,
) -> None:
    st, body, _ = await site.api(
        "POST", "/api/accounts/a102/close", role="operator", body={"reason": "moved out"}
    )
    assert st == 200, body
    out = CloseOut.model_validate(body)
    assert set(out.readings) == {METER} and out.balance == "0.00" and not out.repeated
    assert out.entry.kind == "closing"
    at_close = Decimal(out.balance_at_close)
    # the closing entry is minus the balance after the final charges: the account ends at 0.00
    assert Decimal(out.entry.amount) == -at_close
    assert out.settlement == ("refund" if at_close > 0 else "debt" if at_close < 0 else "none")
    assert Decimal(out.settlement_amount) == abs(at_close)
    st, ledger, _ = await site.api("GET", "/api/accounts/a102/ledger")
    assert st == 200 and ledger["balance"] == "0.00"
    before = [e for e in ledger["entries"] if e["seq"] < out.entry.seq]
    assert sum((Decimal(e["amount"]) for e in before), Decimal(0)) == at_close
    assert {c.seq for c in out.charges} <= {e["seq"] for e in before}  # the final charges
    st, acct, _ = await site.api("GET", "/api/accounts/a102")
    assert st == 200 and acct["open"] is False

    st, again, _ = await site.api(
        "POST", "/api/accounts/a102/close", role="operator", body={"reason": "twice"}
    )
    assert st == 200 and again["repeated"] is True and again["entry"] == body["entry"]

    for op, payload in (
        ("topup", {"amount": "20.00", "reference": "cash"}),
        ("refund", {"amount": "1.00"}),
        ("open", {}),
    ):
        st, err, _ = await site.api(
            "POST", f"/api/accounts/a102/{op}", role="operator", body=payload
        )
        assert st == 409, (op, err)
        assert "account a102 is closed since" in err["error"] and "new account id" in err["error"]
    # a provider's payment to the closed account: refused with the reason, never posted
    st, err, _ = await pay(site, notice("T-1", "a102", "20.00"))
    assert st == 409 and "account a102 is closed since" in err["error"], err
    st, ledger2, _ = await site.api("GET", "/api/accounts/a102/ledger")
    assert ledger2["count"] == ledger["count"] and ledger2["balance"] == "0.00"

    audit = site.server.ctx.audit
    (ok,) = audit.query(action="billing.close_account")
    assert (ok["result"], ok["user"], ok["target"]) == ("ok", "operator", "a102")
    assert ok["after"]["settlement"] == out.settlement and ok["after"]["reason"] == "moved out"
    assert ok["after"]["entry"] == out.entry.seq
    (topup,) = audit.query(action="billing.topup")
    assert topup["result"] == "failed" and "is closed since" in topup["detail"]
    assert topup["after"]["amount"] == "20.00"
    (callback,) = audit.query(action="payments.callback")
    assert callback["result"] == "failed" and "is closed since" in callback["detail"]


async def test_close_refusals_are_409_or_400_audited_and_write_nothing(site: Served) -> None:
    st, before, _ = await site.api("GET", "/api/accounts/a101/ledger")
    cases = [
        ({"readings": {"b1.102.em.energy_kwh": 5.0}}, 409, "has no meter"),
        ({"readings": {"b1.101.em.energy_kwh": 1e12}}, 422, "less than 1000000000"),
        ({"at": "4000000000"}, 409, "lies in the future"),
        ({"at": "yesterday noon"}, 422, ""),
    ]
    for payload, status, text in cases:
        st, err, _ = await site.api(
            "POST", "/api/accounts/a101/close", role="operator", body=payload
        )
        assert st == status, (payload, err)
        assert text in str(err), (payload, err)
    st, after, _ = await site.api("GET", "/api/accounts/a101/ledger")
    assert after["count"] == before["count"]
    failed = site.server.ctx.audit.query(action="billing.close_account", result="failed")
    assert len(failed) == 2 and all(r["target"] == "a101" for r in failed)
    st, err, _ = await site.api("POST", "/api/accounts/a101/close", role="tenant", body={})
    assert st == 403
