"""The billing scheduler: catch-up from history, monthly run, idempotent re-runs, readings."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl

from billing.jobs import BillingScheduler
from billing.ledger import EntryKind, Ledger
from billing.tags import account_tag_defs
from historian.sqlite import SqliteHistorian
from scada.scheduler import make_scheduler
from scada.services.audit import AuditLog
from tags.database import TagDatabase
from tags.model import Quality
from tests.billing.conftest import DEC1, HOUR, NOV1, relay_commander, write

D = Decimal


def _fill(h: SqliteHistorian, end: float) -> None:
    ts = np.arange(NOV1 - HOUR, end + 1, 600.0)
    hours = (ts - NOV1) / HOUR
    write(h, "e.101.energy_kwh", [(float(t), 100.0 + x) for t, x in zip(ts, hours, strict=True)])
    write(
        h, "e.102.energy_kwh", [(float(t), 50.0 + 0.5 * x) for t, x in zip(ts, hours, strict=True)]
    )
    write(h, "e.main.energy_kwh", [(float(t), 2.0 * x) for t, x in zip(ts, hours, strict=True)])
    write(
        h,
        "b1.hm.energy_kwh",
        [(float(t), 10.0 * x) for t, x in zip(ts[::6], hours[::6], strict=True)],
    )
    for tag in ("b1.101.valve.open", "b1.102.valve.open", "b1.201.valve.open"):
        write(h, tag, [(NOV1 - HOUR, True)])


async def test_catch_up_monthly_and_reruns_change_nothing(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path
) -> None:
    now = DEC1 + 2 * HOUR + 60  # 2025-12-01 02:01 local
    _fill(historian, now)
    db = TagDatabase([*site.tag_defs(), *account_tag_defs(site)])
    db.update("e.101.energy_kwh", 100.0 + (now - NOV1) / HOUR)
    db.update("e.102.energy_kwh", 0.0, Quality.BAD)  # comm lost now: no reading taken
    ledger.open_account("shop-101", "1000.00", ts=NOV1 - HOUR)
    ledger.open_account("home-102", "500.00", ts=NOV1 - HOUR)
    ledger.mark_run("installed", "installed", ts=DEC1 - 2 * 86400)
    scheduler = make_scheduler(site.site.timezone)
    scheduler.start()
    sched = BillingScheduler(
        site,
        db,
        historian,
        ledger,
        tmp_path,
        commander=relay_commander(site, db, audit),
        audit=audit,
        scheduler=scheduler,
        clock=lambda: now,
        catch_up_days=3,
    )
    await sched.start()
    try:
        assert sorted(sched.jobs()) == [
            "billing.daily",
            "billing.monthly",
            "billing.prepaid",
            "billing.readings",
        ]
        assert sched.catch_up_task is not None
        await sched.catch_up_task
        # readings from history for the last 3 days, every 30 minutes, up to the current slot
        ts, _vs = ledger.readings_around("e.101.energy_kwh", DEC1 - 3 * 86400 - 1, now)
        assert ts[0] == DEC1 - 3 * 86400 + 2 * HOUR and ts[-1] == DEC1 + 2 * HOUR
        assert np.all(np.diff(ts) == 1800.0)
        # November ran: documents, shared loss charged, reports written
        assert ledger.run_done("monthly", "2025-11")
        heat = ledger.document("heat", "2025-11")
        assert heat is not None and heat["buildings"][0]["heat_kwh"] == 7200.0  # 720 h x 10 kWh
        bill = ledger.document("bill", "2025-11")
        assert bill is not None and {a["id"] for a in bill["accounts"]} == {"shop-101", "home-102"}
        shared = ledger.entries("shop-101", kinds=[EntryKind.SHARED_LOSS])
        # master 2 kW, meters 1 + 0.5 kW: 0.5 kW x 720 h = 360 kWh shared, 120 : 80 by area
        assert len(shared) == 1 and shared[0].energy_kwh == 216.0
        for kind in ("heat", "bills", "energy", "financial"):
            assert (tmp_path / "reports" / f"{kind}-2025-11.xlsx").exists()
        assert ledger.runs("daily") == ["2025-11-29", "2025-11-30"]
        wb = openpyxl.load_workbook(tmp_path / "reports" / "energy-2025-11-30.xlsx")
        assert "accounts" in wb.sheetnames
        # consumption charged from the catch-up readings (the last 3 days, from opening on)
        assert ledger.charged("shop-101", EntryKind.CONSUMPTION, "2025-12") > 0
        entries = len(ledger.entries())
        balance = ledger.balances()
        # everything again: nothing changes
        assert await sched.monthly("2025-11") is False
        assert await sched.daily("2025-11-30") is False
        await sched.catch_up()
        await sched.read_meters(sched.slot(now))
        assert len(ledger.entries()) == entries
        assert ledger.balances() == balance
        # the level tags were published
        assert db.read("acct.shop-101.level").value == 0
        assert db.read("acct.shop-101.balance").value == float(ledger.balance("shop-101"))
    finally:
        await sched.stop()
        scheduler.shutdown(wait=False)
    assert sched.jobs() == []


async def test_reading_job_takes_good_values_only(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path
) -> None:
    db = TagDatabase([*site.tag_defs(), *account_tag_defs(site)])
    sched = BillingScheduler(
        site,
        db,
        historian,
        ledger,
        tmp_path,
        commander=relay_commander(site, db, audit),
        audit=audit,
        scheduler=make_scheduler(site.site.timezone),  # never started: the jobs are called
        clock=lambda: NOV1 + 1000,
    )
    db.update("e.101.energy_kwh", 123.0)
    db.update("e.102.energy_kwh", 7.0, Quality.BAD)
    assert sched.slot() == NOV1
    assert await sched.read_meters() == 1
    assert ledger.last_reading_ts("e.101.energy_kwh") == NOV1
    assert ledger.last_reading_ts("e.102.energy_kwh") is None
    assert await sched.read_meters() == 0  # the same slot again
