"""Payments and receipts over the real server (issue 16 items 1, 4, 5, 6): the rate limit on
refused callbacks (429 with the reason, audited), the receipt URL (a tenant sees only their own
account's receipts), the demo provider's page paying through the signed callback once however
often it is sent, and the daily reconciliation run on the scheduler.

The server test site with two prepaid accounts (a101 of the tenant's household b1.101, a102 of
another flat) and a demo provider whose secret comes from the environment; loopback HTTP, real
SQLite ledger and audit.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from billing.jobs import RECONCILE_ACTION
from billing.payments import sign
from billing.receipts import Receipts
from scada.server.handlers.payments import RefusalLimiter
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML

SECRET = "provider-shared-secret-0123456789"
PAYMENTS_YAML = """
payments:
  max_refused: 3
  refused_window_s: 600
  providers:
    - {{id: demopay, name: Demo Pay, secret: "${{SCADA_TEST_PAY_SECRET}}", demo: true,
       statement_dir: "{statements}"}}
    - {{id: bank, secret: "${{SCADA_TEST_PAY_SECRET}}"}}
"""
CALLBACK = "/api/payments/callback/demopay"


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("SCADA_TEST_PAY_SECRET", SECRET)
    statements = tmp_path / "statements"
    statements.mkdir()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    (tmp_path / "config" / "payments.yaml").write_text(
        PAYMENTS_YAML.format(statements=statements), encoding="utf-8"
    )
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml, payments.yaml]\n")
    try:
        await s.wait_good(["b1.101.em.relay", "b1.102.em.relay", "b1.101.em.energy_kwh"])
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def notice(txid: str, account: str, amount: str, paid_at: str = "2026-01-15T10:00:00Z") -> bytes:
    body = {"transaction_id": txid, "account": account, "amount": amount, "paid_at": paid_at}
    return json.dumps(body).encode()


async def pay(site: Served, body: bytes, signature: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Signature": signature or sign(SECRET, body)}
    st, answer, _ = await site.api("POST", CALLBACK, role=None, raw=body, headers=headers)
    return st, answer


def _callback_audits(site: Served) -> list[Any]:
    return site.server.ctx.audit.query(action="payments.callback")


# ---------------------------------------------------------------------- rate limit


def test_the_limiter_counts_a_sliding_window_per_source() -> None:
    now = [1000.0]
    lim = RefusalLimiter(max_refused=2, window_s=60.0, clock=lambda: now[0])
    assert lim.retry_after("a") == 0
    lim.refused("a")
    lim.refused("a")
    assert lim.retry_after("a") == pytest.approx(60.0) and lim.retry_after("b") == 0
    assert lim.first_of_block("a", 60.0) and not lim.first_of_block("a", 60.0)
    now[0] += 30
    lim.refused("b")
    assert lim.retry_after("a") == pytest.approx(30.0) and lim.retry_after("b") == 0
    now[0] += 30.5  # the first two left the window
    assert lim.retry_after("a") == 0 and lim.count("a") == 0 and lim.count("b") == 1
    assert lim.first_of_block("a", 10.0)  # a new block is audited again


async def test_wrongly_signed_callbacks_are_rate_limited_and_audited(site: Served) -> None:
    ledger = site.runtime.ledger
    before = ledger.balance("a102")
    body = notice("T-1", "a102", "20.00")
    for _ in range(3):  # max_refused: each refused and audited on its own
        st, answer = await pay(site, body, signature="sha256=" + "0" * 64)
        assert st == 401, answer
    st, answer = await pay(site, b"{not json", signature=sign(SECRET, b"{not json"))
    assert st == 429 and "too many refused callbacks" in answer["error"], answer
    assert "retry after" in answer["error"]
    # while blocked, a good callback from the same address waits too (the provider retries)
    st, answer, resp = await site.api(
        "POST",
        CALLBACK,
        role=None,
        raw=body,
        headers={"Content-Type": "application/json", "X-Signature": sign(SECRET, body)},
    )
    assert st == 429 and int(resp.headers["Retry-After"]) > 0
    assert ledger.balance("a102") == before  # nothing posted
    audits = _callback_audits(site)
    limited = [a for a in audits if "too many refused" in (a["detail"] or "")]
    assert len(limited) == 1 and limited[0]["result"] == "denied"  # once per block
    assert limited[0]["after"]["refused"] == 3
    assert sum(1 for a in audits if a["result"] == "denied") == 4  # 3 bad signatures + the block
    # another provider's callbacks share the address's count: the limit is per source
    st, _ = await pay(site, body)
    assert st == 429


# ---------------------------------------------------------------------- receipts


async def test_receipt_url_serves_own_receipts_only(site: Served) -> None:
    st, answer = await pay(site, notice("T-101", "a101", "30.00"))
    assert st == 200, answer
    st, again = await pay(site, notice("T-101", "a101", "30.00"))
    assert st == 200 and again["repeated"]
    st, other = await pay(site, notice("T-102", "a102", "40.00"))
    assert st == 200, other
    receipts = Receipts(site.runtime.ledger)
    mine = receipts.by_seq(answer["entry"]["seq"])
    theirs = receipts.by_seq(other["entry"]["seq"])
    assert mine is not None and theirs is not None
    assert receipts.by_seq(again["entry"]["seq"]) == mine  # a repeat: the same receipt
    assert (mine.method.value, mine.reference, mine.cashier) == (
        "online",
        "T-101",
        "payment:demopay",
    )
    # the tenant (linked to b1.101, whose account is a101) reads their own receipt
    st, page, resp = await site.api("GET", f"/receipts/{mine.number}", role="tenant")
    assert st == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert f'data-receipt-number="{mine.number}"' in page and "T-101" in page
    assert 'data-after="' in page and "30.00" in page
    resp = await site.http.fetch(
        site.url + f"/receipts/{mine.number}?format=pdf",
        headers={"Authorization": f"Bearer {site.tokens['tenant']}"},
    )
    assert resp.code == 200 and resp.headers["Content-Type"] == "application/pdf"
    assert resp.body.startswith(b"%PDF")
    # another account's receipt is refused exactly as a number that does not exist
    for path in (f"/receipts/{theirs.number}", f"/receipts/{theirs.number}?format=pdf"):
        st, body, _ = await site.api("GET", path, role="tenant")
        assert st == 404 and body["error"] == f"unknown receipt {theirs.number}"
    st, body, _ = await site.api("GET", "/receipts/999999", role="tenant")
    assert st == 404 and body["error"] == "unknown receipt 999999"
    # the cash desk reprints any receipt by number; bad input is a clear 4xx
    st, page, _ = await site.api("GET", f"/receipts/{theirs.number}", role="cashier")
    assert st == 200 and "T-102" in page
    st, body, _ = await site.api("GET", "/receipts/abc", role="cashier")
    assert st == 404
    st, body, _ = await site.api("GET", f"/receipts/{mine.number}?format=xml", role="cashier")
    assert st == 400 and "format" in body["error"]
    st, _, _ = await site.api("GET", f"/receipts/{mine.number}", role=None)
    assert st == 401
    # the monthly statement: the tenant's own account only, the month named
    resp = await site.http.fetch(
        site.url + "/api/accounts/a101/statement?month=2026-01",
        headers={"Authorization": f"Bearer {site.tokens['tenant']}"},
    )
    assert resp.code == 200 and resp.body.startswith(b"%PDF")
    st, body, _ = await site.api("GET", "/api/accounts/a102/statement?month=2026-01", role="tenant")
    assert st == 404 and body["error"] == "unknown account 'a102'"
    for month in ("2026-13", "0000-01"):
        path = f"/api/accounts/a101/statement?month={month}"
        st, body, _ = await site.api("GET", path, role="tenant")
        assert st == 400 and body["error"].startswith("month:"), body


# ---------------------------------------------------------------------- the demo provider


def _form(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))


async def _post_form(site: Served, fields: dict[str, str]) -> tuple[int, Any]:
    st, page, _ = await site.api(
        "POST",
        "/demo-pay/demopay",
        role=None,
        raw=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return st, page


async def test_demo_provider_pays_through_the_signed_callback_once(site: Served) -> None:
    ledger = site.runtime.ledger
    before = ledger.balance("a101")
    st, page, _ = await site.api("GET", "/demo-pay/demopay?account=a101", role="tenant")
    assert st == 200 and "Demo payment provider" in page, page
    fields = _form(page)
    assert set(fields) == {"account", "order", "token"} and fields["account"] == "a101"
    st, result = await _post_form(site, {**fields, "amount": "25.50"})
    assert st == 200 and 'data-demo-status="posted"' in result, result
    assert ledger.balance("a101") == before + Decimal("25.50")
    # the provider retries (the result page's form): nothing more is posted
    retry = _form(result)
    assert retry["order"] == fields["order"] and retry["amount"] == "25.50"
    st, again = await _post_form(site, retry)
    assert st == 200 and 'data-demo-status="repeated"' in again, again
    assert ledger.balance("a101") == before + Decimal("25.50")
    (posted,) = [p for p in ledger.query("SELECT transaction_id FROM payments")]
    assert posted[0] == f"demo-{fields['order']}"
    # bad input names the field; a forged order or another account is refused
    for bad, field in (
        ({**fields, "amount": "lots"}, "amount"),
        ({**fields, "amount": "0"}, "amount"),
        ({**fields, "token": "0" * 64, "amount": "1.00"}, "token"),
        ({**fields, "account": "a102", "amount": "1.00"}, "token"),
        ({**fields, "order": "x", "amount": "1.00"}, "order"),
    ):
        st, body = await _post_form(site, bad)
        assert st == 400 and body["error"].startswith(f"{field}:"), (bad, body)
    # only the tenant's own account, only a demo provider
    st, body, _ = await site.api("GET", "/demo-pay/demopay?account=a102", role="tenant")
    assert st == 404 and "account" in body["error"]
    st, body, _ = await site.api("GET", "/demo-pay/bank?account=a101", role="tenant")
    assert st == 404
    st, body, _ = await site.api("GET", "/demo-pay/demopay", role="tenant")
    assert st == 400 and "account" in body["error"]
    assert ledger.balance("a101") == before + Decimal("25.50")


# ---------------------------------------------------------------------- reconciliation


async def test_daily_reconciliation_runs_on_the_scheduler(site: Served, tmp_path: Path) -> None:
    sched = site.runtime.billing_scheduler
    assert RECONCILE_ACTION in sched.jobs()
    job = site.runtime.scheduler.get_job(RECONCILE_ACTION)
    assert job is not None and job.name == "payment statements reconciled"
    st, _ = await pay(site, notice("S-1", "a101", "10.00"))
    assert st == 200
    st, _ = await pay(site, notice("S-2", "a102", "20.00"))
    assert st == 200
    (tmp_path / "statements" / "demopay-2026-01-15.csv").write_text(
        "transaction_id,account,amount\nS-1,a101,10.00\nS-3,a102,5.00\n", encoding="utf-8"
    )
    done = await sched.reconcile_statements("2026-01-16")
    assert len(done) == 1
    (found,) = done
    assert found.day == "2026-01-15" and found.matched == 1 and not found.ok
    assert [d.transaction_id for d in found.missing] == ["S-3"]
    assert [d.transaction_id for d in found.extra] == ["S-2"]
    report = site.data_dir / "reports" / "reconciliation" / "demopay-2026-01-15.json"
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["matched"] == 1 and data["ok"] is False
    (entry,) = site.server.ctx.audit.query(action=RECONCILE_ACTION)
    assert entry["result"] == "failed"
    assert entry["after"]["missing"] == 1 and entry["after"]["extra"] == 1
    # once per day: the next run does not redo it
    assert await sched.reconcile_statements("2026-01-17") == []
    assert len(site.server.ctx.audit.query(action=RECONCILE_ACTION)) == 1
