"""One apply path: a config applied while running reconfigures alarms and billing alike.

Regression of issue 13: applying a config whose alarm section changed reloaded the site's
alarm rules only, so billing's own rules (prepaid levels) vanished until a restart, billing
kept the old site and a new account got no ``acct.*`` tags.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from billing.tags import Level, balance_tag, level_tag
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML

NEW_METER = (
    "  - {id: b1.103.em, template: electricity-meter, channel: b1-bus, unit: 23, building: b1}\n"
)
NEW_ACCOUNT = (
    '  - {id: a103, tenant: "Flat 103", tariff: flat, meters: [b1.103.em.energy_kwh],\n'
    '     alarm1: "30.00", alarm2: "10.00", opening_balance: "0.00"}\n'
)
NEW_LIMIT = (
    "  - {id: level-high, kind: limit, tag: test.level, limits: {h: 50}, priority: 2,"
    ' message: "level high"}\n'
)


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml]\n")
    try:
        await s.wait_good(["b1.101.em.energy_kwh", "b1.101.em.relay"])
        assert s.runtime.billing_scheduler is not None
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def _arrears_tags(site: Served) -> set[str]:
    engine = site.runtime.alarms
    assert engine is not None
    return {a.tag or "" for a in engine.active() if a.rule_id == "billing.arrears"}


async def _until(site: Served, check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Wait until ``check()`` holds, re-checking on every tag change (no fixed sleeps)."""
    event = asyncio.Event()
    unsubscribe = site.db.subscribe(["*"], lambda _batch: event.set(), name="test.until")
    try:
        deadline = time.monotonic() + timeout_s
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return check()
        return True
    finally:
        unsubscribe()


async def test_apply_keeps_billing_rules_and_bills_a_new_account(site: Served) -> None:
    # before: a101 (opened with 0.00) is in arrears, raised by billing's own rule
    assert await _until(site, lambda: level_tag("a101") in _arrears_tags(site))
    assert balance_tag("a103") not in site.db

    st, cfg, _ = await site.api("GET", "/api/config", role="engineer")
    assert st == 200
    main = cfg["files"]["site.yaml"].replace("alarms:\n", "alarms:\n" + NEW_LIMIT, 1)
    billing = cfg["files"]["billing.yaml"]
    billing = billing.replace("devices:\n", "devices:\n" + NEW_METER, 1)
    billing = billing.rstrip("\n") + "\n" + NEW_ACCOUNT
    st, res, _ = await site.api(
        "POST",
        "/api/config/apply",
        role="engineer",
        body={"files": {"site.yaml": main, "billing.yaml": billing}, "comment": "flat 103"},
    )
    assert st == 200, res
    assert res["valid"] is True and res["plan"]["alarms_changed"] is True

    engine = site.runtime.alarms
    assert engine is not None
    # the changed alarm section is live ...
    site.db.update("test.level", 70.0)
    assert await _until(site, lambda: any(a.rule_id == "level-high" for a in engine.active()))
    # ... and billing's rules are still active, for the old account and the new one
    assert level_tag("a101") in _arrears_tags(site)
    assert await _until(site, lambda: level_tag("a103") in _arrears_tags(site))
    # the new account has its tags and is in the ledger and in billing
    assert site.db.read(balance_tag("a103")).value == 0.0
    assert site.db.read(level_tag("a103")).value == int(Level.ARREARS)
    billing_service = site.runtime.billing
    assert billing_service is not None
    st, account, _ = await site.api("GET", "/api/accounts/a103")
    assert st == 200 and account["balance"] == "0.00" and account["open"] is True
    # ... and billed: its meter is read by the billing jobs and it has a bill of its own
    await site.wait_good(["b1.103.em.energy_kwh"])
    scheduler = site.runtime.billing_scheduler
    assert scheduler is not None and "b1.103.em.energy_kwh" in scheduler.meters
    now = time.time()
    run = billing_service.bill(now - 3600, now)
    assert run.account("a103").id == "a103"
    # a top-up of the new account goes through the same operation as any other
    st, body, _ = await site.api(
        "POST", "/api/accounts/a103/topup", role="operator", body={"amount": "50.00"}
    )
    assert st == 200, body
    assert (body["balance_before"], body["balance"], body["repeated"]) == ("0.00", "50.00", False)
    assert await _until(site, lambda: site.db.read(balance_tag("a103")).value == 50.0)
