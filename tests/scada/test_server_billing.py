"""Billing over REST against the running server on the simulator: accounts, money, relays,
heat allocation, bills, reports, tenant scoping, the permission table and the audit log."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import openpyxl
import pytest

from billing.charging import charge_consumption
from billing.tags import Level
from scada.server.app import ROUTES
from scada.server.handlers.billing import (
    XLSX,
    AccountOut,
    AccountsOut,
    BillsOut,
    HeatAllocationOut,
    LedgerOut,
    MoneyOut,
    ReportOut,
)
from scada.services.auth import Action, Role, User, may
from tests.scada.server_fixtures import ROLES, Served, start_served

BILLING_YAML = """
templates:
  electricity-meter:
    role: electricity_meter
    points:
      energy_kwh: {address: 0, kind: input, type: uint32, scale: 0.01, unit: kWh}
      power_kw:   {address: 2, kind: input, type: float32, unit: kW}
      relay:      {address: 0, kind: coil, type: bool, writable: true}
devices:
  - {id: b1.101.em, template: electricity-meter, channel: b1-bus, unit: 21, building: b1}
  - {id: b1.102.em, template: electricity-meter, channel: b1-bus, unit: 22, building: b1}
tariffs:
  - {id: flat, price: "0.5000"}
accounts:
  - {id: a101, tenant: "Flat 101", tariff: flat, household: b1.101, meters: [b1.101.em.energy_kwh],
     alarm1: "30.00", alarm2: "10.00", opening_balance: "0.00"}
  - {id: a102, tenant: "Flat 102", tariff: flat, household: b1.102, meters: [b1.102.em.energy_kwh],
     alarm1: "30.00", alarm2: "10.00", opening_balance: "100.00"}
"""

RELAY = "b1.101.em.relay"
MUTATIONS = ("topup", "refund", "reverse", "replace-meter", "keep-power")


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    """The server test site plus two electricity meters with prepaid accounts (a101 in arrears)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml]\n")
    try:
        await s.wait_good([RELAY, "b1.102.em.relay", "b1.101.em.energy_kwh", "b1.hm.energy_kwh"])
        # the start-up catch-up evaluates every account too: let it finish, so what a test's
        # request does to a relay is not done by that evaluation instead
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def _balance(site: Served, account: str) -> str:
    st, body, _ = await site.api("GET", f"/api/accounts/{account}")
    assert st == 200, body
    return str(body["balance"])


async def test_accounts_are_listed_with_balance_and_tenants_see_only_their_own(
    site: Served,
) -> None:
    await site.runtime.billing.prepaid.evaluate("a101")  # in arrears: tripped (retried if early)
    st, body, _ = await site.api("GET", "/api/accounts", role="viewer")
    assert st == 200
    accounts = {a.id: a for a in AccountsOut.model_validate(body).accounts}
    assert set(accounts) == {"a101", "a102"}
    a102 = accounts["a102"]
    assert (a102.balance, a102.level, a102.level_name) == ("100.00", int(Level.OK), "ok")
    assert a102.meters == ["b1.102.em.energy_kwh"] and a102.household == "b1.102"
    assert (a102.alarm1, a102.alarm2, a102.open) == ("30.00", "10.00", True)
    assert accounts["a101"].level == int(Level.ARREARS)  # opened with 0.00
    st, body, _ = await site.api("GET", "/api/accounts?building=b9")
    assert st == 200 and body["accounts"] == []

    st, body, _ = await site.api("GET", "/api/accounts", role="tenant")
    assert st == 200 and [a["id"] for a in body["accounts"]] == ["a101"]
    st, one, _ = await site.api("GET", "/api/accounts/a101", role="tenant")
    assert st == 200 and AccountOut.model_validate(one).relays == {RELAY: True}
    for path in ("/api/accounts/a102", "/api/accounts/a102/ledger", "/api/accounts/nope"):
        st, err, _ = await site.api("GET", path, role="tenant")
        assert st == 404 and "unknown account" in err["error"], path  # as if it did not exist


async def test_topup_out_of_arrears_closes_the_relay_through_the_command_service(
    site: Served,
) -> None:
    # a101 opened at 0.00: in arrears, billing tripped its relay (system user, command service)
    await site.runtime.billing.prepaid.evaluate("a101")  # retried if the first try was early
    await site.wait_for(lambda: site.db.read(RELAY).value is False, RELAY)
    assert site.runtime.simulator.value("b1.101.em", "relay") is False

    st, body, _ = await site.api(
        "POST",
        "/api/accounts/a101/topup",
        role="operator",
        body={"amount": "50.00", "reference": "receipt 0815"},
    )
    assert st == 200, body
    out = MoneyOut.model_validate(body)
    assert (out.balance_before, out.balance, out.level) == ("0.00", "50.00", int(Level.OK))
    assert out.entry.kind == "topup" and out.entry.user == "operator"
    assert out.entry.note == "receipt 0815" and out.relay_actions == [f"{RELAY} closed"]
    assert out.relays == {RELAY: False}  # no longer tripped
    await site.wait_for(lambda: site.db.read(RELAY).value is True, RELAY)
    assert site.runtime.simulator.value("b1.101.em", "relay") is True  # the meter follows
    cmds = site.server.ctx.commands.list(limit=100)
    closes = [c for c in cmds if c.tag == RELAY and c.value is True]
    assert closes and closes[0].user == "billing" and closes[0].state.value == "confirmed"

    (rec,) = site.server.ctx.audit.query(action="billing.topup")
    assert (rec["user"], rec["role"], rec["target"], rec["result"]) == (
        "operator",
        "operator",
        "a101",
        "ok",
    )
    assert rec["before"] == {"balance": "0.00"}
    assert rec["after"]["balance"] == "50.00" and rec["after"]["reference"] == "receipt 0815"
    assert rec["after"]["relay_actions"] == [f"{RELAY} closed"]
    st, ledger, _ = await site.api("GET", "/api/accounts/a101/ledger?kind=topup", role="tenant")
    assert st == 200 and [e["amount"] for e in ledger["entries"]] == ["50.00"]


async def test_bad_amounts_are_400_and_change_nothing(site: Served) -> None:
    for amount in ("abc", "-5.00", "0", "0.00", "1.234", "NaN", "Infinity", " ", "1e20", "1e99"):
        st, err, _ = await site.api(
            "POST", "/api/accounts/a102/topup", role="operator", body={"amount": amount}
        )
        assert st == 400 and "amount" in err["error"], (amount, st, err)
    st, _, _ = await site.api(
        "POST", "/api/accounts/a102/topup", role="operator", body={"amount": ""}
    )
    assert st == 422  # the body model (min length) refuses it first
    assert await _balance(site, "a102") == "100.00"
    assert not site.server.ctx.audit.query(action="billing.topup")


async def test_amounts_decimal_reads_but_people_do_not_write_are_400(site: Served) -> None:
    # Decimal() takes all of these ("1E+2" would post 100.00): the amount rule does not
    for amount in ("1E+2", "+5.00", " 5.00", "\u0665", "\uff15"):
        st, err, _ = await site.api(
            "POST", "/api/accounts/a102/topup", role="operator", body={"amount": amount}
        )
        assert st == 400 and "amount" in err["error"], (amount, st, err)
    assert await _balance(site, "a102") == "100.00"
    assert not site.server.ctx.audit.query(action="billing.topup")
    st, ledger, _ = await site.api("GET", "/api/accounts/a102/ledger?kind=topup", role="admin")
    assert st == 200 and not ledger["entries"], ledger


async def test_money_as_a_json_number_or_an_unknown_account_is_refused(site: Served) -> None:
    st, _, _ = await site.api(
        "POST", "/api/accounts/a102/topup", role="operator", body={"amount": 5}
    )
    assert st == 422
    st, err, _ = await site.api(
        "POST", "/api/accounts/nope/topup", role="operator", body={"amount": "5.00"}
    )
    assert st == 404 and "unknown account" in err["error"]


async def test_refund_and_reverse_follow_the_ledger_rules(site: Served) -> None:
    st, body, _ = await site.api(
        "POST", "/api/accounts/a102/topup", role="admin", body={"amount": "20.00"}
    )
    assert st == 200 and body["balance"] == "120.00"
    seq = body["entry"]["seq"]
    st, err, _ = await site.api(
        "POST", "/api/accounts/a102/refund", role="operator", body={"amount": "500.00"}
    )
    assert st == 409 and "exceeds the balance" in err["error"]
    st, body, _ = await site.api(
        "POST", "/api/accounts/a102/refund", role="operator", body={"amount": "5.50"}
    )
    assert st == 200 and body["balance"] == "114.50" and body["entry"]["amount"] == "-5.50"

    rev = {"seq": seq, "reason": "paid twice"}
    st, body, _ = await site.api("POST", "/api/accounts/a102/reverse", role="operator", body=rev)
    assert st == 200 and body["balance"] == "94.50"
    assert body["entry"]["reverses"] == seq and body["entry"]["note"] == "paid twice"
    st, err, _ = await site.api("POST", "/api/accounts/a102/reverse", role="operator", body=rev)
    assert st == 409 and "already reversed" in err["error"]
    st, err, _ = await site.api(
        "POST", "/api/accounts/a101/reverse", role="operator", body=rev
    )  # an entry of another account
    assert st == 404 and "no entry" in err["error"]
    failed = site.server.ctx.audit.query(action="billing.*", result="failed")
    assert {e["action"] for e in failed} == {"billing.refund", "billing.reverse"}

    st, body, _ = await site.api("GET", "/api/accounts/a102/ledger", role="viewer")
    ledger = LedgerOut.model_validate(body)
    assert ledger.balance == "94.50"
    assert sum(Decimal(e.amount) for e in ledger.entries) == Decimal("94.50")
    kinds = [e.kind for e in ledger.entries]
    assert kinds[:1] == ["opening"] and kinds[-3:] == ["topup", "refund", "reversal"]
    st, body, _ = await site.api("GET", "/api/accounts/a102/ledger?kind=refund,reversal&limit=1")
    assert st == 200 and body["count"] == 2 and body["truncated"] is True
    assert [e["kind"] for e in body["entries"]] == ["reversal"]
    future = _iso(time.time() + 3600)
    st, body, _ = await site.api("GET", f"/api/accounts/a102/ledger?{urlencode({'from': future})}")
    assert st == 200 and body["entries"] == []
    for bad in ("kind=nonsense", "from=yesterday", "limit=0"):
        st, _, _ = await site.api("GET", f"/api/accounts/a102/ledger?{bad}")
        assert st == 400, bad


async def test_meter_replacement_is_recorded_and_audited(site: Served) -> None:
    now = float(site.db.read("b1.102.em.energy_kwh").value)  # plausible: what it reads now
    body = {"meter": "b1.102.em.energy_kwh", "old_final_kwh": now, "new_initial_kwh": 0.0}
    st, out, _ = await site.api(
        "POST", "/api/accounts/a102/replace-meter", role="engineer", body=body
    )
    assert st == 200, out
    assert out["entry"]["kind"] == "replacement" and out["balance"] == out["balance_before"]
    assert out["entry"]["meter"] == "b1.102.em.energy_kwh"
    st, err, _ = await site.api(
        "POST",
        "/api/accounts/a102/replace-meter",
        role="engineer",
        body={**body, "meter": "b1.101.em.energy_kwh"},
    )
    assert st == 404 and "has no meter" in err["error"]
    (rec,) = site.server.ctx.audit.query(action="billing.replace_meter", result="ok")
    assert rec["user"] == "engineer" and rec["after"]["old_final_kwh"] == now
    # an implausible reading is refused with the reason, and audited as failed
    st, err, _ = await site.api(
        "POST",
        "/api/accounts/a102/replace-meter",
        role="engineer",
        body={**body, "old_final_kwh": now + 5000.0, "new_initial_kwh": 0.0},
    )
    assert st == 409 and "above its first reading after the previous swap" in err["error"]
    assert site.server.ctx.audit.query(action="billing.replace_meter", result="failed")


async def test_held_charges_are_listed_and_reviewed(site: Served) -> None:
    """Issue 18 item 1: an implausible consumption charge waits for review, over REST too."""
    ledger = site.runtime.ledger
    assert ledger is not None
    t = time.time() + 60  # after the accounts' opening
    ledger.add_readings(
        [("b1.102.em.energy_kwh", t, 100.0), ("b1.102.em.energy_kwh", t + 1800, 95_000.0)]
    )
    charge_consumption(site.runtime.site, ledger, t + 1800)
    st, out, _ = await site.api("GET", "/api/billing/holds", role="operator")
    assert st == 200, out
    (hold,) = out["holds"]
    assert hold["account"] == "a102" and hold["state"] == "held" and "can draw" in hold["reason"]
    # a tenant of another account sees none of it
    st, out, _ = await site.api("GET", "/api/billing/holds", role="tenant")
    assert st == 200 and out["holds"] == []
    st, _, _ = await site.api("GET", "/api/billing/holds?account=a102", role="tenant")
    assert st == 404
    path = f"/api/accounts/a102/holds/{hold['id']}"
    st, _, _ = await site.api("POST", f"{path}/release", role="viewer", body={})
    assert st == 403
    st, err, _ = await site.api(
        "POST", "/api/accounts/a102/holds/99999/release", role="operator", body={}
    )
    assert st == 404 and "no held charge" in err["error"]
    st, out, _ = await site.api("POST", f"{path}/release", role="operator", body={"note": "seen"})
    assert st == 200, out
    assert out["hold"]["state"] == "released" and len(out["entries"]) == 1
    assert out["entries"][0]["kind"] == "consumption"
    st, err, _ = await site.api("POST", f"{path}/discard", role="operator", body={})
    assert st == 409 and "already released" in err["error"]
    st, out, _ = await site.api("GET", "/api/billing/holds?state=all", role="admin")
    assert [h["state"] for h in out["holds"]] == ["released"]
    (rec,) = site.server.ctx.audit.query(action="billing.release_hold", result="ok")
    assert rec["user"] == "operator" and rec["target"] == "a102"


def _mutation_body(kind: str, seq: int, reading: float) -> dict[str, Any]:
    if kind in ("topup", "refund"):
        return {"amount": "1.00", "reference": "perm"}
    if kind == "reverse":
        return {"seq": seq, "reason": "permission test"}
    if kind == "keep-power":
        return {"keep": False, "reason": "permission test"}
    # each swap plausible after the one before: the new meter shows where the old one ended
    return {"meter": "b1.102.em.energy_kwh", "old_final_kwh": reading, "new_initial_kwh": reading}


async def test_permission_table_over_every_role_and_billing_mutation(site: Served) -> None:
    """Each role gets 403 exactly where PERMISSIONS says no; allowed ones change the ledger."""
    ops = {
        r.path.rsplit("/", 1)[1]: op
        for r in ROUTES
        for op in r.ops
        if r.path.startswith("/api/accounts/{account_id}/")
        and op.method == "POST"
        and "/holds/" not in r.path  # test_held_charges_are_listed_and_reviewed
        and not r.path.endswith("/keep-heat")  # heat accounts: tests/scada/test_heat_arrears.py
        # open and close: tests/scada/test_server_lifecycle.py; the tenant change:
        # tests/scada/test_server_tenancy.py
        and not r.path.endswith(("/open", "/close", "/tenant-change"))
    }
    assert set(ops) == set(MUTATIONS)
    checked = 0
    for role in ROLES:
        user = User(role.value, role, ("b1.101",) if role is Role.TENANT else ())
        for kind in MUTATIONS:
            st, top, _ = await site.api(
                "POST", "/api/accounts/a102/topup", role="admin", body={"amount": "2.00"}
            )
            assert st == 200
            before = await _balance(site, "a102")
            reading = float(site.db.read("b1.102.em.energy_kwh").value)  # counts up
            body = _mutation_body(kind, top["entry"]["seq"], reading)
            st, out, _ = await site.api(
                "POST", f"/api/accounts/a102/{kind}", role=role.value, body=body
            )
            allowed = may(user, ops[kind].action)
            assert (st == 403) is (not allowed), (role, kind, st, out)
            if allowed:
                assert st == 200, (role, kind, out)
                if kind == "keep-power":
                    (rec,) = site.server.ctx.audit.query(action="billing.keep_power", limit=1)
                    assert rec["user"] == role.value and rec["target"] == "a102"
                else:
                    assert out["entry"]["user"] == role.value
            else:
                assert await _balance(site, "a102") == before
            checked += 1
    assert checked == len(ROLES) * len(MUTATIONS)
    denied = site.server.ctx.audit.query(result="denied", limit=10000)
    assert {e["user"] for e in denied} >= {"viewer", "tenant", "oncall"}
    # the chosen rights: cashier = operator (and admin); meters also engineers
    assert may(User("e", Role.ENGINEER), Action.BILLING_METER)
    assert not may(User("e", Role.ENGINEER), Action.BILLING_WRITE)
    assert not may(User("t", Role.TENANT, ("b1.101",)), Action.BILLING_REPORT)


async def test_heat_allocation_and_bills_as_the_cli_prints_them(site: Served) -> None:
    now = time.time()
    q = urlencode({"from": _iso(now - 3600), "to": _iso(now + 60)})
    st, body, _ = await site.api("GET", f"/api/billing/heat?{q}", role="viewer")
    assert st == 200, body
    heat = HeatAllocationOut.model_validate(body)
    (b1,) = heat.buildings
    assert b1.id == "b1" and [h.id for h in b1.households] == ["b1.101", "b1.102"]
    assert sum(h.share for h in b1.households) == pytest.approx(1.0)
    assert sum(h.heat_kwh for h in b1.households) == pytest.approx(b1.heat_kwh, abs=1e-5)
    st, mine, _ = await site.api("GET", f"/api/billing/heat?{q}", role="tenant")
    assert st == 200 and [h["id"] for h in mine["buildings"][0]["households"]] == ["b1.101"]
    st, _, _ = await site.api("GET", f"/api/billing/heat?{q}&building=b9")
    assert st == 404

    st, body, _ = await site.api("GET", f"/api/billing/bills?{q}", role="viewer")
    assert st == 200, body
    bills = BillsOut.model_validate(body)
    assert [a.id for a in bills.accounts] == ["a101", "a102"]
    for a in bills.accounts:
        assert Decimal(a.total) == sum(Decimal(ln.amount) for ln in a.lines)
    st, mine, _ = await site.api("GET", f"/api/billing/bills?{q}", role="tenant")
    assert st == 200 and [a["id"] for a in mine["accounts"]] == ["a101"]
    st, _, _ = await site.api("GET", f"/api/billing/bills?{q}&account=a102", role="tenant")
    assert st == 404
    st, one, _ = await site.api("GET", f"/api/billing/bills?{q}&account=a102", role="viewer")
    assert st == 200 and [a["id"] for a in one["accounts"]] == ["a102"]

    for bad in (
        {"from": "yesterday", "to": "2025-01-01"},
        {"from": "2025-01-02", "to": "2025-01-01"},
        {"from": "2020-01-01", "to": "2025-01-01"},  # longer than a season or a year
        {"from": "2025-01-01"},
        {"from": "1e30", "to": "2e30"},
    ):
        st, err, _ = await site.api("GET", f"/api/billing/heat?{urlencode(bad)}")
        assert st == 400 and err["error"], bad
        st, _, _ = await site.api("GET", f"/api/billing/bills?{urlencode(bad)}")
        assert st == 400, bad


async def test_reports_download_as_json_csv_and_excel(site: Served) -> None:
    await site.api("POST", "/api/accounts/a102/topup", role="operator", body={"amount": "7.25"})
    month = datetime.now(UTC).strftime("%Y-%m")
    st, body, _ = await site.api("GET", f"/api/reports/financial?period={month}", role="viewer")
    assert st == 200, body
    report = ReportOut.model_validate(body)
    assert report.kind == "financial" and report.period == month
    st, text, resp = await site.api("GET", f"/api/reports/financial?period={month}&format=csv")
    assert st == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert "7.25" in text
    resp = await site.http.fetch(  # binary: not through the JSON helper
        f"{site.url}/api/reports/energy?period={month}&format=xlsx",
        headers={"Authorization": f"Bearer {site.tokens['viewer']}"},
        raise_error=False,
    )
    assert resp.code == 200 and resp.headers["Content-Type"] == XLSX
    assert f'filename="energy-{month}.xlsx"' in resp.headers["Content-Disposition"]
    wb = openpyxl.load_workbook(io.BytesIO(resp.body))
    ws = wb.worksheets[0]
    assert "Energy" in str(ws["A1"].value) and ws.max_row >= 2
    resp = await site.http.fetch(
        f"{site.url}/api/reports/energy?period={month}&format=pdf",
        headers={"Authorization": f"Bearer {site.tokens['viewer']}"},
        raise_error=False,
    )
    assert resp.code == 200 and resp.body.startswith(b"%PDF")
    for path, status in (
        (f"/api/reports/nonsense?period={month}", 404),
        ("/api/reports/energy?period=2025-13", 400),
        ("/api/reports/energy", 400),
        (f"/api/reports/energy?period={month}&format=doc", 400),
    ):
        st, _, _ = await site.api("GET", path)
        assert st == status, path
    st, _, _ = await site.api("GET", f"/api/reports/energy?period={month}", role="tenant")
    assert st == 403


async def test_a_retried_topup_with_an_idempotency_key_credits_once(site: Served) -> None:
    before = Decimal(await _balance(site, "a102"))
    body = {"amount": "12.34", "reference": "till 3", "idempotency_key": "pos-3-000123"}
    st, first, _ = await site.api("POST", "/api/accounts/a102/topup", role="operator", body=body)
    assert st == 200 and first["repeated"] is False, first
    # the same request again (a retry after a lost answer), this time with the header form
    st, again, _ = await site.api(
        "POST",
        "/api/accounts/a102/topup",
        role="operator",
        body={"amount": "12.34", "reference": "till 3"},
        headers={"Idempotency-Key": "pos-3-000123"},
    )
    assert st == 200 and again["repeated"] is True
    assert again["entry"]["seq"] == first["entry"]["seq"]
    assert Decimal(await _balance(site, "a102")) == before + Decimal("12.34")
    st, err, _ = await site.api(
        "POST",
        "/api/accounts/a102/topup",
        role="operator",
        body={"amount": "99.00", "idempotency_key": "pos-3-000123"},
    )
    assert st == 409 and "pos-3-000123" in err["error"]
    assert Decimal(await _balance(site, "a102")) == before + Decimal("12.34")


async def test_keep_power_closes_an_account_in_arrears_and_trips_it_again(site: Served) -> None:
    """a101 is in arrears and tripped; keep-power closes its relay, withdrawing it trips again."""
    await site.runtime.billing.prepaid.evaluate("a101")
    await site.wait_for(lambda: site.db.read(RELAY).value is False, RELAY)
    body = {"keep": True, "reason": "medical equipment at home"}
    st, out, _ = await site.api("POST", "/api/accounts/a101/keep-power", role="operator", body=body)
    assert st == 200, out
    assert (out["keep_power"], out["previous"], out["relay_actions"]) == (
        True,
        False,
        [f"{RELAY} closed"],
    )
    await site.wait_for(lambda: site.db.read(RELAY).value is True, RELAY)
    assert site.runtime.simulator.value("b1.101.em", "relay") is True  # the meter follows
    st, acct, _ = await site.api("GET", "/api/accounts/a101", role="viewer")
    assert st == 200 and acct["keep_power"] is True and acct["balance"] == "0.00"
    st, out, _ = await site.api(
        "POST",
        "/api/accounts/a101/keep-power",
        role="operator",
        body={"keep": False, "reason": "ended"},
    )
    assert st == 200 and out["relay_actions"] == [f"{RELAY} tripped"]
    await site.wait_for(lambda: site.db.read(RELAY).value is False, RELAY)
    recs = site.server.ctx.audit.query(action="billing.keep_power", limit=10)
    assert [r["after"]["keep_power"] for r in recs][:2] in ([False, True], [True, False])
    st, _, _ = await site.api("POST", "/api/accounts/a101/keep-power", role="viewer", body=body)
    assert st == 403


async def test_ten_clients_with_one_idempotency_key_post_once_and_audit_once(site: Served) -> None:
    """Issue 18 item 2: the same key from 10 clients at once: one posts, nine are repeats."""
    before = Decimal(await _balance(site, "a102"))
    body = {"amount": "3.30", "reference": "till 7", "idempotency_key": "pos-7-000042"}
    answers = await asyncio.gather(
        *(
            site.api("POST", "/api/accounts/a102/topup", role="operator", body=body)
            for _ in range(10)
        )
    )
    assert [st for st, _, _ in answers] == [200] * 10, answers
    outs = [MoneyOut.model_validate(out) for _, out, _ in answers]
    assert sorted(o.repeated for o in outs) == [False] + [True] * 9
    assert len({o.entry.seq for o in outs}) == 1
    assert Decimal(await _balance(site, "a102")) == before + Decimal("3.30")
    (rec,) = site.server.ctx.audit.query(action="billing.topup")
    assert rec["result"] == "ok" and rec["after"]["entry"] == outs[0].entry.seq
