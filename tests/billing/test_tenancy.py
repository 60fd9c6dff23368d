"""Tenant change mid-period and the vacant flat, with numbers made by hand.

The period is November 2025 (30 days, site time Asia/Shanghai); flat b1.102 (50 m2, position
factor 1.2) changes tenant at the end of day 10 (``T`` = 2025-11-11 00:00). Its meter reads
1000 kWh at the start, 1040 at ``T`` and 1100 at the end; the flat price is 0.50 / kWh. The
building's heat meter counts 3000 kWh; valves: b1.101 open 216 h (days 1-9), b1.102 open 120 h
before ``T`` (days 1-5) and 240 h after (days 11-20), b1.201 closed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.bills import bill_accounts
from billing.charging import charge_consumption
from billing.errors import IdempotencyConflict
from billing.heat import allocate_heat
from billing.heat_fees import heat_fees
from billing.ledger import EntryKind, Ledger
from billing.readings import HistorianReadings, LedgerReadings
from billing.service import Billing
from billing.tenancy import TenancyRefused, change_tenant, changes, reading_at
from billing.tenancy_split import split_tenancy
from historian.sqlite import SqliteHistorian
from scada.config import ConfigError, load_site_text
from tests.billing.conftest import DEC1, NOV1, free_port, site_text, write

D = Decimal
DAY = 86400.0
T = NOV1 + 10 * DAY
METER = "e.102.energy_kwh"
OLD, NEW = "flat-102a", "flat-102b"

TARIFF = (
    'heat_tariff: {area_price_per_m2: "30.00", basic_ratio: "0.3", energy_price_per_kwh: "0.20"}\n'
)
HOME_102 = (
    '  - {id: home-102, tenant: "Flat 102", tariff: home-tier, area_m2: 80, meters: '
    '[e.102.energy_kwh], alarm1: "20.00", alarm2: "10.00"}\n'
)
TENANCIES = (
    '  - {id: flat, price: "0.50"}\n'
    "accounts:\n"
    "  - {id: flat-102a, tenant: Ann, tariff: flat, household: b1.102, meters: [e.102.energy_kwh],"
    " moved_out: '2025-11-11T00:00:00+08:00'}\n"
)
NEW_ACCOUNT = (
    "  - {id: flat-102b, tenant: Bob, tariff: flat, household: b1.102, meters: [e.102.energy_kwh],"
    " moved_in: '2025-11-11T00:00:00+08:00'}\n"
)


def site_yaml(new: str = NEW_ACCOUNT, extra: str = TARIFF) -> str:
    text = site_text(free_port())
    assert HOME_102 in text
    text = text.replace(HOME_102, "")
    text = text.replace("accounts:\n", "", 1)
    text = text.replace('      - {price: "0.7883"}\n', '      - {price: "0.7883"}\n' + TENANCIES)
    return text + new + extra


def fill_history(h: SqliteHistorian) -> None:
    write(h, METER, [(NOV1, 1000.0), (T, 1040.0), (DEC1, 1100.0)])
    write(h, "b1.hm.energy_kwh", [(NOV1, 0.0), (DEC1, 3000.0), (DEC1 + 3600, 3000.0)])
    write(h, "b1.101.valve.open", [(NOV1, True), (NOV1 + 9 * DAY, False), (DEC1, False)])
    write(
        h,
        "b1.102.valve.open",
        [(NOV1, True), (NOV1 + 5 * DAY, False), (T, True), (T + 10 * DAY, False), (DEC1, False)],
    )
    write(h, "b1.201.valve.open", [(NOV1, False), (DEC1, False)])


def test_the_two_tenancies_are_allowed_and_overlapping_ones_refused() -> None:
    site = load_site_text(site_yaml())
    accounts = {a.id: a for a in site.accounts}
    assert accounts[OLD].moved_out == accounts[NEW].moved_in is not None
    overlapping = NEW_ACCOUNT.replace("2025-11-11T00:00:00", "2025-11-10T00:00:00")
    text = site_yaml(overlapping)
    with pytest.raises(ConfigError) as info:
        load_site_text(text, name="site.yaml")
    issues = [str(i) for i in info.value.issues]
    line = text[: text.index("id: flat-102b")].count("\n") + 1
    first = text[: text.index("id: flat-102a")].count("\n") + 1
    assert any(
        i.startswith(f"site.yaml:{line}:")
        and "accounts[2].meters[0]: meter 'e.102.energy_kwh' already belongs to another "
        f"account 'flat-102a' (site.yaml:{first}) whose tenancy overlaps that of account "
        "'flat-102b'"
        in i
        and "2025-11-10T00:00:00+08:00 .. 2025-11-11T00:00:00+08:00" in i
        for i in issues
    ), issues
    # without any tenancy bounds the meter in two accounts is refused as before
    plain = site_yaml(NEW_ACCOUNT.replace(", moved_in: '2025-11-11T00:00:00+08:00'", ""))
    with pytest.raises(ConfigError):
        load_site_text(plain.replace(", moved_out: '2025-11-11T00:00:00+08:00'", ""))


def test_each_tenant_pays_their_share_and_the_shares_sum_to_the_whole(
    historian: SqliteHistorian, ledger: Ledger
) -> None:
    fill_history(historian)
    site = load_site_text(site_yaml())
    split = split_tenancy(
        site,
        HistorianReadings(historian),
        historian,
        OLD,
        NEW,
        start=NOV1,
        at=T,
        end=DEC1,
        household="b1.102",
    )
    a, b = split.before, split.after
    # electricity by reading: 1040 - 1000 = 40 kWh x 0.50 = 20.00; 1100 - 1040 = 60 kWh = 30.00
    assert (a.electricity_kwh, a.electricity) == (pytest.approx(40.0), D("20.00"))
    assert (b.electricity_kwh, b.electricity) == (pytest.approx(60.0), D("30.00"))
    # heat: Q 3000, basic_share 0.3 -> 900 by area (100:50:50) = 225 for b1.102; the rest 2100 by
    # F x t x k: 100 x 216 x 1.0 = 21600 and 50 x 360 x 1.2 = 21600 -> 1050; heat 1275 kWh
    fee = split.fee
    assert fee is not None and fee.heat_kwh == D("1275.000000")
    # fee: area 50 x 30.00 = 1500.00; basic 0.3 -> 450.00; metered 1275 x 0.20 = 255.00
    assert (fee.basic, fee.metered, fee.total) == (D("450.00"), D("255.00"), D("705.00"))
    # basic by days 10 : 20 -> 150.00 / 300.00; metered by valve time 120 h : 240 h -> 85 / 170
    assert (a.heat_days, a.heat_basic, b.heat_days, b.heat_basic) == (
        10,
        D("150.00"),
        20,
        D("300.00"),
    )
    assert (a.valve_hours, b.valve_hours) == (120.0, 240.0)
    assert (a.heat_metered, b.heat_metered) == (D("85.00"), D("170.00"))
    assert (a.heat_kwh, b.heat_kwh) == (D("425.000000"), D("850.000000"))
    assert (a.heat_total, b.heat_total) == (D("235.00"), D("470.00"))
    assert a.heat_total + b.heat_total == fee.total
    assert a.electricity_kwh + b.electricity_kwh == pytest.approx(100.0)
    doc = split.to_json()
    assert doc["before"]["heat_total"] == "235.00" and doc["after"]["electricity"] == "30.00"


def _open_and_charge(site: Any, ledger: Ledger, until: float, kwh_per_day: float) -> None:
    start = ledger.last_reading_ts(METER) or NOV1
    base = ledger.readings_around(METER, start, start)[1][-1] if start > NOV1 else 1000.0
    days = round((until - start) / DAY)
    rows = [(METER, start + k * DAY, base + k * kwh_per_day) for k in range(1, days + 1)]
    ledger.add_readings(rows)
    for _tag, ts, _v in rows:
        charge_consumption(site, ledger, ts)


def test_the_tenant_change_closes_one_account_and_opens_the_next_once(
    ledger: Ledger, historian: SqliteHistorian
) -> None:
    site = load_site_text(site_yaml())
    b = Billing(site, ledger, None, commander=None, audit=None)
    ledger.open_account(OLD, "100.00", ts=NOV1 - DAY)
    ledger.add_readings([(METER, NOV1, 1000.0)])
    _open_and_charge(site, ledger, T, 4.0)  # 40 kWh in 10 days
    assert ledger.charged(OLD, EntryKind.CONSUMPTION, "2025-11") == D("20.00")
    change = change_tenant(
        site,
        ledger,
        b.account_config(OLD),
        NEW,
        at=T,
        key="k-1",
        readings={METER: 1040.0},
        tenant={"tenant": "Bob", "phone": "+86 10 1234"},
        user="cashier",
        now=DEC1,
    )
    assert not change.repeated
    assert change.closing.settlement == "refund" and change.closing.amount == D("80.00")
    assert change.opening.account == NEW and change.opening.ts == T
    assert ledger.is_closed(OLD) and ledger.is_open(NEW)
    # the same key again: nothing posted, the first change answered
    n = len(ledger.entries())
    again = change_tenant(
        site, ledger, b.account_config(OLD), NEW, at=T, key="k-1", readings={METER: 1040.0}
    )
    assert again.repeated and again.opening.seq == change.opening.seq
    assert len(ledger.entries()) == n
    with pytest.raises(IdempotencyConflict):
        change_tenant(
            site, ledger, b.account_config(OLD), "flat-102c", at=T, key="k-1", readings={}
        )
    # the new tenant's charges start at T from the reading at T: 60 kWh in 20 days = 30.00
    _open_and_charge(site, ledger, DEC1, 3.0)
    assert ledger.charged(NEW, EntryKind.CONSUMPTION, "2025-11") == D("30.00")
    assert ledger.charged(OLD, EntryKind.CONSUMPTION, "2025-11") == D("20.00")
    assert [c.new_account for c in changes(ledger, OLD)] == [NEW]
    assert reading_at(historian, METER, T) is None  # (this test's history is empty)


def test_a_change_before_the_last_billed_period_end_is_refused(ledger: Ledger) -> None:
    site = load_site_text(site_yaml())
    b = Billing(site, ledger, None, commander=None, audit=None)
    ledger.open_account(OLD, "100.00", ts=NOV1 - DAY)
    ledger.add_readings([(METER, NOV1, 1000.0)])
    _open_and_charge(site, ledger, T, 4.0)
    with pytest.raises(TenancyRefused, match="before the last billed period end"):
        change_tenant(
            site,
            ledger,
            b.account_config(OLD),
            NEW,
            at=T - 2 * DAY,
            key="k-early",
            readings={METER: 1032.0},
            now=DEC1,
        )
    assert ledger.is_open(OLD) and not ledger.entries(NEW)


def test_the_reading_at_t_comes_from_the_history(historian: SqliteHistorian) -> None:
    write(historian, METER, [(NOV1, 1000.0), (NOV1 + 4 * 3600, 1004.0)])
    assert reading_at(historian, METER, NOV1 + 3600) == pytest.approx(1001.0)
    assert reading_at(historian, METER, NOV1) == 1000.0


VACANT_201 = (
    "- {id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open,"
    ' vacant: {from: %s, heat_basic_ratio: "0.15", owner: owner-b1}}'
)


@pytest.mark.parametrize(
    ("since", "days", "total"),
    [
        # vacant all month: the owner pays 1500.00 x 0.15 = 225.00
        ("2025-11-01", 30, "225.00"),
        # vacant the last 10 days: basic 450.00 x 20/30 = 300.00, metered 225 kWh (its share of
        # the allocation's basic part; the valve stayed closed) x 0.20 x 20/30 = 30.00, the
        # owner's 1500.00 x 0.15 x 10/30 = 75.00; total 405.00
        ("2025-11-21", 10, "405.00"),
    ],
)
def test_a_vacant_flat_pays_the_reduced_basic_fee_and_keeps_its_area(
    historian: SqliteHistorian, since: str, days: int, total: str
) -> None:
    fill_history(historian)
    text = site_yaml().replace(
        "- {id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open}",
        VACANT_201 % since,
    )
    site = load_site_text(text)
    allocation = allocate_heat(site, historian, NOV1, DEC1)
    # the allocation still counts its area: 900 kWh basic by 100:50:50 -> 225 kWh for b1.201
    got = {h.id: h.heat_kwh for h in allocation.buildings[0].households}
    assert got["b1.201"] == pytest.approx(225.0)
    fee = next(f for f in heat_fees(site, allocation, NOV1, DEC1) if f.household == "b1.201")
    assert (fee.vacant_days, fee.owner, str(fee.total)) == (days, "owner-b1", total)
    assert not fee.suspended
    assert fee.to_json()["owner"] == "owner-b1"


def test_a_bad_vacancy_names_the_field() -> None:
    text = site_yaml().replace(
        "- {id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open}",
        "- {id: b1.201, area_m2: 50, valve_tag: b1.201.valve.open,"
        ' vacant: {from: 2025-11-21, until: 2025-11-01, heat_basic_ratio: "1.5"}}',
    )
    with pytest.raises(ConfigError) as info:
        load_site_text(text, name="site.yaml")
    issues = " | ".join(str(i) for i in info.value.issues)
    assert "households[2].vacant.heat_basic_ratio" in issues, issues


def test_ledger_readings_are_the_opening_readings(ledger: Ledger) -> None:
    site = load_site_text(site_yaml())
    b = Billing(site, ledger, None, commander=None, audit=None)
    ledger.open_account(OLD, "10.00", ts=NOV1 - DAY)
    ledger.add_readings([(METER, NOV1, 1000.0)])
    change_tenant(
        site, ledger, b.account_config(OLD), NEW, at=T, key="k", readings={METER: 1040.0}, now=DEC1
    )
    curve = LedgerReadings(ledger).curve(METER, T, DEC1)
    assert curve.last_ts == T


def test_a_bill_over_the_whole_month_counts_each_tenancy_once(historian: SqliteHistorian) -> None:
    fill_history(historian)
    site = load_site_text(site_yaml())
    run = bill_accounts(site, HistorianReadings(historian), NOV1, DEC1, accounts=[OLD, NEW])
    got = {b.id: (round(b.energy_kwh, 6), b.energy_amount) for b in run.accounts}
    assert got == {OLD: (40.0, D("20.00")), NEW: (60.0, D("30.00"))}
    # a window inside one tenancy bills the other account nothing
    inside = bill_accounts(site, HistorianReadings(historian), T, DEC1, accounts=[OLD, NEW])
    assert [round(b.energy_kwh, 6) for b in inside.accounts] == [0.0, 60.0]
