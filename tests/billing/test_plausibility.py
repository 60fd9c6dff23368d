"""Implausible meter readings never become money (issue 18 items 1 and 9).

A meter swap with an impossible reading is refused with the reason; a consumption charge the
meters could not have used is held for review (tag ``acct.<id>.held``, alarm ``billing.held``)
instead of posted, and an operator releases or discards it, both audited.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.charging import charge_consumption
from billing.errors import Implausible, LedgerError, UnknownEntry
from billing.ledger import EntryKind, Ledger
from billing.plausibility import HeldCharges, HoldState
from billing.service import Billing
from billing.tags import account_tag_defs, held_tag
from scada.cli import main
from scada.config import load_site
from scada.services.audit import AuditLog
from scada.services.auth import Role, User
from tags.database import TagDatabase
from tests.billing.conftest import DEC1, HOUR, NOV1, free_port, relay_commander, site_text

ANN = User("ann", Role.OPERATOR)
METER = "e.102.energy_kwh"  # account home-102 (residential tiers), default max_kw 100
SLOT = 1800.0


@pytest.fixture
def db(site: Any) -> TagDatabase:
    return TagDatabase([*site.tag_defs(), *account_tag_defs(site)])


@pytest.fixture
def billing(site: Any, ledger: Ledger, audit: AuditLog, db: TagDatabase) -> Iterator[Billing]:
    yield Billing(site, ledger, commander=relay_commander(site, db, audit), audit=audit, db=db)


def _readings(ledger: Ledger, start: float, values: list[float], step: float = SLOT) -> float:
    """Store billing readings of METER every ``step`` from ``start``; return the last time."""
    rows = [(METER, start + i * step, v) for i, v in enumerate(values)]
    ledger.add_readings(rows)
    return rows[-1][1]


def _charged_kwh(ledger: Ledger, account: str = "home-102") -> float:
    return sum(e.energy_kwh or 0.0 for e in ledger.entries(account, kinds=[EntryKind.CONSUMPTION]))


# ---------------------------------------------------------------- meter replacement


@pytest.mark.parametrize(
    ("old_final", "new_initial", "reason"),
    [
        (math.nan, 0.0, "not a finite number"),
        (math.inf, 0.0, "not a finite number"),
        (1010.0, -1.0, "negative"),
        (8.5e11, 0.0, "beyond any meter register"),
        (5e-324, 0.0, "below its last reading"),
        (999.0, 0.0, "below its last reading"),
        # the last reading was 1000 kWh two hours ago: at 100 kW at most 200 kWh more
        (1201.0, 0.0, "at most 200 kWh fit in 2 h at 100 kW"),
    ],
)
async def test_an_implausible_swap_is_refused_with_its_reason(
    billing: Billing,
    ledger: Ledger,
    audit: AuditLog,
    old_final: float,
    new_initial: float,
    reason: str,
) -> None:
    await billing.open_account("home-102", "100.00", ts=NOV1)
    last = _readings(ledger, NOV1 + HOUR, [990.0, 1000.0])
    with pytest.raises(Implausible, match=reason):
        await billing.replace_meter(
            "home-102", METER, old_final, new_initial, ts=last + 2 * HOUR, user=ANN
        )
    assert ledger.replacements(METER) == []
    assert ledger.entries("home-102", kinds=[EntryKind.REPLACEMENT]) == []
    (row,) = audit.query(action="billing.replace_meter")
    assert row["result"] == "failed" and reason.split(" ")[-1] in row["detail"]


async def test_a_plausible_swap_is_kept_and_the_next_one_is_checked_against_it(
    billing: Billing, ledger: Ledger
) -> None:
    await billing.open_account("home-102", "100.00", ts=NOV1)
    last = _readings(ledger, NOV1 + HOUR, [990.0, 1000.0])
    swap = last + 2 * HOUR
    await billing.replace_meter("home-102", METER, 1150.0, 3.0, ts=swap, user=ANN)
    assert [(r.old_final, r.new_initial) for r in ledger.replacements(METER)] == [(1150.0, 3.0)]
    # the same swap again (or an earlier one) is refused
    with pytest.raises(Implausible, match="not after its previous swap"):
        await billing.replace_meter("home-102", METER, 1150.0, 3.0, ts=swap, user=ANN)
    # a new meter that started at 3 kWh cannot read 5,000 kWh a minute later
    with pytest.raises(Implausible, match="first reading after the previous swap"):
        await billing.replace_meter("home-102", METER, 5000.0, 0.0, ts=swap + 60, user=ANN)
    with pytest.raises(Implausible, match="in the future"):
        await billing.replace_meter("home-102", METER, 10.0, 0.0, ts=4e9, user=ANN)


# ---------------------------------------------------------------- held consumption


async def test_an_impossible_charge_is_held_then_released(
    billing: Billing, site: Any, ledger: Ledger, db: TagDatabase, audit: AuditLog
) -> None:
    await billing.open_account("home-102", "200.00", ts=NOV1)
    # 5 kWh per half hour for a day: plausible, charged
    t = _readings(ledger, NOV1 + SLOT, [1000.0 + 5.0 * i for i in range(48)])
    charge_consumption(site, ledger, t)
    normal = _charged_kwh(ledger)
    assert normal == pytest.approx(5.0 * 47)
    balance = ledger.balance("home-102")
    # then the counter jumps from 1,235 to 40,000 kWh in half an hour (a corrupt register,
    # a swapped meter nobody recorded)
    t2 = _readings(ledger, t + SLOT, [40_000.0])
    assert charge_consumption(site, ledger, t2) == []
    assert ledger.balance("home-102") == balance  # nothing posted
    (hold,) = HeldCharges(ledger).holds("home-102")
    assert hold.state is HoldState.HELD and "can draw" in hold.reason
    assert hold.step_kwh == pytest.approx(40_000.0 - 1235.0)
    # the account's held tag rises (the alarm rule billing.held watches it)
    await billing.prepaid.evaluate("home-102")
    assert db.read(held_tag("home-102")).value == 1
    # later readings are held too (same hold, latest figures), nothing posted
    t3 = _readings(ledger, t2 + SLOT, [40_005.0])
    assert charge_consumption(site, ledger, t3) == []
    (hold,) = HeldCharges(ledger).holds("home-102")
    assert hold.month_kwh == pytest.approx(40_005.0 - 1000.0)
    # an operator releases it: charged at once, audited, the tag falls
    released, posted = await billing.review_hold(
        "home-102", hold.id, True, user=ANN, note="confirmed on site"
    )
    assert released.state is HoldState.RELEASED and released.reviewed_by == "ann"
    assert len(posted) == 1 and posted[0].energy_kwh == pytest.approx(40_005.0 - 1235.0)
    assert ledger.balance("home-102") < balance
    assert db.read(held_tag("home-102")).value == 0
    (row,) = audit.query(action="billing.release_hold")
    assert row["result"] == "ok" and row["after"]["entries"] == [posted[0].seq]
    # normal consumption afterwards is charged again
    t4 = _readings(ledger, t3 + SLOT, [40_010.0])
    assert len(charge_consumption(site, ledger, t4)) == 1
    # a hold is reviewed once
    with pytest.raises(LedgerError, match="already released"):
        await billing.review_hold("home-102", hold.id, False, user=ANN)
    with pytest.raises(UnknownEntry):
        await billing.review_hold("home-102", 999, True, user=ANN)


async def test_a_discarded_hold_charges_nothing_until_the_readings_are_corrected(
    billing: Billing, site: Any, ledger: Ledger
) -> None:
    await billing.open_account("home-102", "200.00", ts=NOV1)
    t = _readings(ledger, NOV1 + SLOT, [6935.0, 6936.0])
    charge_consumption(site, ledger, t)
    balance = ledger.balance("home-102")
    # the counter went back from 6,936 to 6,517: the reset rule reads 6,517 kWh
    t2 = _readings(ledger, t + SLOT, [6517.0])
    assert charge_consumption(site, ledger, t2) == []
    (hold,) = HeldCharges(ledger).holds("home-102")
    await billing.review_hold("home-102", hold.id, False, user=ANN, note="simulator restart")
    assert ledger.balance("home-102") == balance
    # the correction: the drop recorded as a swap (6,936 -> 6,517) between the readings
    await billing.replace_meter("home-102", METER, 6936.0, 6517.0, ts=t + 60, user=ANN)
    t3 = _readings(ledger, t2 + SLOT, [6518.0])
    posted = charge_consumption(site, ledger, t3)
    assert [round(e.energy_kwh or 0.0, 6) for e in posted] == [1.0]
    assert HeldCharges(ledger).holds("home-102", HoldState.HELD) == []


async def test_a_month_far_above_the_accounts_history_is_held(
    billing: Billing, site: Any, ledger: Ledger
) -> None:
    await billing.open_account("home-102", "5000.00", ts=NOV1)
    # November: 10 kWh a day (0.2083 kWh per half hour), read every 6 h
    step = 6 * HOUR
    n = int(30 * 86400 / step) - 1  # the last November reading 6 h before December
    t = _readings(ledger, NOV1 + step, [100.0 + 2.5 * (i + 1) for i in range(n)], step=step)
    for k in range(1, n + 1):
        charge_consumption(site, ledger, NOV1 + k * step)
    assert _charged_kwh(ledger) == pytest.approx(2.5 * (n - 1), rel=1e-6)
    # December: 20 kWh every 6 h (80 kWh a day, 8 times November's rate: possible for the
    # meter, implausible for this flat; hold_multiple 5)
    assert t < DEC1
    last = 100.0 + 2.5 * n
    dec = [last + 20.0 * (i + 1) for i in range(8)]
    _readings(ledger, DEC1, dec, step=step)
    held_at = None
    for k in range(8):
        at = DEC1 + k * step
        charge_consumption(site, ledger, at)
        if HeldCharges(ledger).open_hold("home-102") is not None:
            held_at = at
            break
    assert held_at is not None
    (hold,) = HeldCharges(ledger).holds("home-102")
    assert hold.period == "2025-12" and "times the highest daily rate" in hold.reason
    assert Decimal(hold.amount) > 0


def test_the_cli_lists_releases_and_discards_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site_text(free_port()), encoding="utf-8")
    data = tmp_path / "var"
    common = [str(cfg), "--data-dir", str(data)]
    assert main(["account", "open", *common, "home-102", "--amount", "50.00"]) == 0
    lg = Ledger.in_data_dir(data)
    site = load_site(cfg)
    try:
        t = _readings(lg, time.time() + 60, [100.0, 101.0, 90_000.0])  # after the opening
        charge_consumption(site, lg, t)
        (hold,) = HeldCharges(lg).holds()
    finally:
        lg.close()
    capsys.readouterr()
    assert main(["account", "holds", *common]) == 0
    out = capsys.readouterr().out
    assert f"{hold.id:>5} home-102" in out and "can draw" in out
    assert main(["account", "release", *common, "home-102", str(hold.id), "--note", "ok"]) == 0
    assert f"held charge {hold.id} released (entry" in capsys.readouterr().out
    assert main(["account", "discard", *common, "home-102", str(hold.id)]) == 2
    assert "already released" in capsys.readouterr().err
    assert main(["account", "holds", *common, "--json", "--all"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(h["id"], h["state"], h["reviewed_by"]) for h in doc["holds"]] == [
        (hold.id, "released", "cli")
    ]
