"""Tenant change and vacant flat over the real server (issue 16 item 2).

A cashier changes a102's tenant now with the live reading: the old account closes (refund of
its balance), the new one opens on the same meter, the configuration gets the old account's
``moved_out`` and the new account in ``roster.yaml`` (a version, applied hot). The same
idempotency key again answers ``repeated`` and posts nothing, with one audit entry. Other roles
are 403, bad input 400/422 naming the field; a flat is marked vacant and let again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from billing.ledger import EntryKind
from scada.server.app import ROUTES
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML

METER = "b1.102.em.energy_kwh"


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml]\n")
    try:
        await s.wait_good([METER])
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def test_the_routes_are_in_the_route_table() -> None:
    paths = {r.path for r in ROUTES}
    assert {
        "/api/accounts/{account_id}/tenant-change",
        "/api/accounts/{account_id}/tenancies",
        "/api/households/{household}/vacant",
        "/api/households/{household}/let",
    } <= paths


def _body(site: Served, key: str = "tc-1") -> dict[str, object]:
    value = site.db.read(METER).value
    assert isinstance(value, float | int)
    return {
        "at": str(time.time()),
        "tenant": "Bob Wang",
        "phone": "+86 138 0000 0000",
        "email": "bob@example.org",
        "new_account": "a102b",
        "readings": {METER: float(value)},
        "idempotency_key": key,
    }


async def test_a_tenant_change_closes_opens_and_is_posted_once(site: Served) -> None:
    ledger = site.server.ctx.services.billing.ledger
    body = _body(site)
    st, out, _ = await site.api(
        "POST", "/api/accounts/a102/tenant-change", role="cashier", body=body
    )
    assert st == 200, out
    assert (out["account"], out["new_account"], out["repeated"]) == ("a102", "a102b", False)
    closing = out["closing"]
    assert closing["settlement"] in ("refund", "none") and closing["balance"] == "0.00"
    assert out["opening"]["account"] == "a102b" and out["opening"]["kind"] == "opening"
    assert out["opening_readings"] == {METER: body["readings"][METER]}  # type: ignore[index]
    n = len(ledger.entries())
    # the same key again: nothing posted, the first change answered
    st, again, _ = await site.api(
        "POST", "/api/accounts/a102/tenant-change", role="cashier", body=body
    )
    assert st == 200 and again["repeated"] is True, again
    assert again["opening"]["seq"] == out["opening"]["seq"]
    assert len(ledger.entries()) == n
    assert [e.kind for e in ledger.entries("a102b")] == [EntryKind.OPENING]
    # the configuration: the old account's moved_out, the new account in roster.yaml
    files = {p.name: p.read_text() for p in site.config.parent.iterdir() if p.is_file()}
    assert "moved_out:" in files["billing.yaml"]
    assert "a102b" in files["roster.yaml"] and "moved_in:" in files["roster.yaml"]
    assert "Bob Wang" in files["roster.yaml"] and "b1.102.em.energy_kwh" in files["roster.yaml"]
    st, acct, _ = await site.api("GET", "/api/accounts/a102b")
    assert st == 200 and acct["open"] is True, acct
    st, hist, _ = await site.api("GET", "/api/accounts/a102/tenancies", role="cashier")
    assert st == 200 and [c["new_account"] for c in hist["changes"]] == ["a102b"]
    assert "split" not in hist["changes"][0]
    at = float(str(body["at"]))
    window = f"from={at - 3600:.3f}&to={at + 60:.3f}"
    st, hist, _ = await site.api("GET", f"/api/accounts/a102b/tenancies?{window}", role="cashier")
    assert st == 200, hist
    split = hist["changes"][0]["split"]
    assert (split["before"]["account"], split["after"]["account"]) == ("a102", "a102b")
    assert split["before"]["electricity_kwh"] >= 0 and split["after"]["electricity_kwh"] >= 0
    st, err, _ = await site.api(
        "GET", f"/api/accounts/a102/tenancies?from={at:.3f}", role="cashier"
    )
    assert st == 400 and "from and to" in err["error"], err
    audit = site.server.ctx.audit
    (rec,) = audit.query(action="billing.tenant_change")
    assert (rec["result"], rec["user"], rec["target"]) == ("ok", "cashier", "a102")
    assert rec["after"]["new_account"] == "a102b" and rec["after"]["key"] == "tc-1"
    assert Decimal(rec["after"]["amount"]) == Decimal(closing["settlement_amount"])
    # a change of the new account before its opening: refused with the reason, audited
    early = {**body, "at": "2020-01-01T00:00:00Z", "idempotency_key": "tc-2", "new_account": "c"}
    st, err, _ = await site.api(
        "POST", "/api/accounts/a102b/tenant-change", role="admin", body=early
    )
    assert st == 409 and "is not after its tenancy began" in err["error"], err
    fails = [r for r in audit.query(action="billing.tenant_change") if r["result"] == "failed"]
    assert len(fails) == 1 and fails[0]["target"] == "a102b"


async def test_other_roles_and_bad_input_are_refused(site: Served) -> None:
    body = _body(site, "tc-x")
    st, _, _ = await site.api(
        "POST", "/api/accounts/a102/tenant-change", role="operator", body=body
    )
    assert st == 403
    st, _, _ = await site.api("POST", "/api/accounts/a102/tenant-change", role="viewer", body=body)
    assert st == 403
    no_key = {k: v for k, v in body.items() if k != "idempotency_key"}
    st, err, _ = await site.api(
        "POST", "/api/accounts/a102/tenant-change", role="cashier", body=no_key
    )
    assert st == 422 and "idempotency_key" in str(err), err
    st, err, _ = await site.api(
        "POST", "/api/accounts/a102/tenant-change", role="cashier", body={**body, "at": "soon"}
    )
    assert st == 422 and "at" in str(err), err
    st, err, _ = await site.api(
        "POST", "/api/accounts/a102/tenant-change", role="cashier", body={**body, "tenant": ""}
    )
    assert st == 422 and "tenant" in str(err), err
    st, _, _ = await site.api("POST", "/api/accounts/nope/tenant-change", role="cashier", body=body)
    assert st == 404
    # the new account id of another configured account: refused, nothing written
    st, err, _ = await site.api(
        "POST",
        "/api/accounts/a102/tenant-change",
        role="cashier",
        body={**body, "new_account": "a101"},
    )
    assert st == 409 and "a101 exists already" in err["error"], err
    assert site.server.ctx.services.billing.ledger.is_open("a102")


async def test_a_flat_is_marked_vacant_and_let_again(site: Served) -> None:
    vacant = {"from": "2025-12-01", "heat_basic_ratio": "0.2", "owner": "owner-b1"}
    # a flat with an open tenant account cannot be vacant
    st, err, _ = await site.api(
        "POST", "/api/households/b1.101/vacant", role="cashier", body=vacant
    )
    assert st == 409 and "open account a101" in err["error"], err
    st, _, _ = await site.api(
        "POST", "/api/accounts/a101/close", role="cashier", body={"reason": "moved out"}
    )
    assert st == 200
    st, out, _ = await site.api(
        "POST", "/api/households/b1.101/vacant", role="cashier", body=vacant
    )
    assert st == 200, out
    assert out["vacant"] == vacant
    site_cfg = site.server.ctx.services.plant.site
    hh = next(h for h in site_cfg.households() if h.id == "b1.101")
    assert hh.vacant is not None and hh.vacant.heat_basic_ratio == Decimal("0.2")
    st, err, _ = await site.api(
        "POST",
        "/api/households/b1.101/vacant",
        role="cashier",
        body={**vacant, "heat_basic_ratio": "2"},
    )
    assert st == 422 and "heat_basic_ratio" in str(err), err
    st, _, _ = await site.api("POST", "/api/households/nope/vacant", role="cashier", body=vacant)
    assert st == 404
    st, out, _ = await site.api(
        "POST", "/api/households/b1.101/let", role="cashier", body={"from": "2026-01-10"}
    )
    assert st == 200 and out["vacant"]["until"] == "2026-01-09", out
    site_cfg = site.server.ctx.services.plant.site
    hh = next(h for h in site_cfg.households() if h.id == "b1.101")
    assert hh.vacant is not None and str(hh.vacant.until) == "2026-01-09"
    actions = [
        r["action"]
        for r in site.server.ctx.audit.query()
        if r["action"] in ("billing.vacant", "billing.let")
    ]
    assert sorted(actions) == ["billing.let", "billing.vacant", "billing.vacant"]


async def test_the_same_key_from_many_clients_at_once_changes_the_tenant_once(
    site: Served,
) -> None:
    value = site.db.read("b1.101.em.energy_kwh").value
    assert isinstance(value, float | int)
    body = {
        "at": str(time.time()),
        "tenant": "Chen Wei",
        "new_account": "a101b",
        "readings": {"b1.101.em.energy_kwh": float(value)},
        "idempotency_key": "tc-many",
    }
    answers = await asyncio.gather(
        *(
            site.api(
                "POST",
                "/api/accounts/a101/tenant-change",
                role="cashier",
                body=body,
            )
            for _ in range(6)
        )
    )
    assert [st for st, _, _ in answers] == [200] * 6, answers
    assert sorted(out["repeated"] for _, out, _ in answers) == [False] + [True] * 5
    assert len({out["opening"]["seq"] for _, out, _ in answers}) == 1
    ledger = site.server.ctx.services.billing.ledger
    assert [e.kind for e in ledger.entries("a101b")] == [EntryKind.OPENING]
    assert len([e for e in ledger.entries("a101") if e.kind is EntryKind.CLOSING]) == 1
    recs = site.server.ctx.audit.query(action="billing.tenant_change")
    assert [(r["result"], r["target"]) for r in recs] == [("ok", "a101")]
