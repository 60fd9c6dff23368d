"""Heat fees (two-part heat price): worked examples by hand, configuration, the historian path.

The pure rules (``household_fee``) are checked on figures worked out by hand in the comments;
the whole path (historian -> allocation -> fees -> ledger ``paid``) on the allocation worked
example of ``test_heat`` over a real SQLite historian, through the ``Billing`` facade and the
CLI; reruns give the same answer.
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from billing.config import HeatTariff
from billing.heat_fees import (
    household_fee,
    payments_since,
    suspension_days,
    tariff_of,
    window_days,
)
from billing.ledger import Ledger
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.config import ConfigError, load_site_text
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

TZ = "Asia/Shanghai"
D = Decimal

#: 25.00 per m2 for the season, 40 % basic, 40.00 per GJ, total held in 60 % .. 120 %.
TARIFF = HeatTariff(
    area_price_per_m2="25.00",
    basic_ratio="0.4",
    energy_price_per_gj="40.00",
    min_ratio="0.6",
    max_ratio="1.2",
    suspended_ratio="0.2",
)


def _tariff(**changes: Any) -> HeatTariff:
    fields = TARIFF.model_dump(exclude_none=True)
    for name in ("energy_price_per_gj", "energy_price_per_kwh", "energy_price_per_gcal"):
        if name in changes:
            fields.pop("energy_price_per_gj", None)
    return HeatTariff.model_validate({**fields, **changes})


# ---------------------------------------------------------------------- the rules by hand


def test_a_household_between_floor_and_cap() -> None:
    # 86.5 m2 x 25.00 = 2162.50 (the advance); basic 0.4 x 2162.50 = 865.00;
    # 5000 kWh = 18 GJ x 40.00 = 720.00; total 1585.00 in [1297.50, 2595.00];
    # settlement 2162.50 - 1585.00 = 577.50 back to the household
    f = household_fee(TARIFF, 86.5, D("5000"))
    assert (f.area_fee, f.advance, f.basic, f.metered) == (
        D("2162.50"),
        D("2162.50"),
        D("865.00"),
        D("720.00"),
    )
    assert (f.floor, f.cap) == (D("1297.50"), D("2595.00"))
    assert (f.total, f.settlement, f.suspended_fee) == (D("1585.00"), D("577.50"), D("0.00"))


def test_a_household_that_used_little_pays_the_floor() -> None:
    # 500 kWh = 1.8 GJ x 40.00 = 72.00; 865.00 + 72.00 = 937.00 < floor 0.6 x 2162.50 = 1297.50
    f = household_fee(TARIFF, 86.5, D("500"))
    assert (f.basic, f.metered, f.total, f.settlement) == (
        D("865.00"),
        D("72.00"),
        D("1297.50"),
        D("865.00"),
    )


def test_a_household_that_used_much_pays_the_cap() -> None:
    # 50000 kWh = 180 GJ x 40.00 = 7200.00; 8065.00 > cap 1.2 x 2162.50 = 2595.00;
    # settlement 2162.50 - 2595.00 = -432.50: still to pay
    f = household_fee(TARIFF, 86.5, D("50000"))
    assert (f.metered, f.total, f.settlement) == (D("7200.00"), D("2595.00"), D("-432.50"))


def test_without_floor_and_cap_the_total_is_basic_plus_metered() -> None:
    t = _tariff(min_ratio=None, max_ratio=None)
    f = household_fee(t, 86.5, D("50000"))
    assert (f.floor, f.cap, f.total) == (None, None, D("8065.00"))


def test_the_same_fee_in_gj_kwh_and_gcal() -> None:
    # 40.00 per GJ = 40.00 x 0.0036 = 0.144 per kWh = 40.00 x 4.1868 = 167.472 per Gcal
    per_gj = household_fee(TARIFF, 86.5, D("5000"))
    per_kwh = household_fee(_tariff(energy_price_per_kwh="0.144"), 86.5, D("5000"))
    per_gcal = household_fee(_tariff(energy_price_per_gcal="167.472"), 86.5, D("5000"))
    assert per_gj == per_kwh == per_gcal
    assert per_gj.metered == D("720.00")


def test_gcal_is_4_1868_gj() -> None:
    # 1163 kWh = 4.1868 GJ = 1 Gcal exactly: x 100.00 per Gcal = 100.00
    t = _tariff(energy_price_per_gcal="100.00", min_ratio=None, max_ratio=None)
    assert household_fee(t, 10, D("1163")).metered == D("100.00")
    # 1000 kWh = 0.859845... Gcal x 100.00 = 85.9845 -> 85.98
    assert household_fee(t, 10, D("1000")).metered == D("85.98")


def test_every_amount_is_rounded_half_up_to_the_cent() -> None:
    # 20.1 m2 x 0.50 = 10.05; basic 0.5 x 10.05 = 5.025 -> 5.03 (half-even would give 5.02);
    # 0.15 kWh x 0.30 = 0.045 -> 0.05 (half-even: 0.04); total 5.08; settlement 4.97
    t = HeatTariff(area_price_per_m2="0.50", basic_ratio="0.5", energy_price_per_kwh="0.30")
    f = household_fee(t, 20.1, D("0.15"))
    assert (f.area_fee, f.basic, f.metered, f.total, f.settlement) == (
        D("10.05"),
        D("5.03"),
        D("0.05"),
        D("5.08"),
        D("4.97"),
    )


def test_a_household_suspended_all_season_pays_the_suspended_ratio_only() -> None:
    # 2162.50 x 0.2 = 432.50, nothing metered, no floor or cap; settlement 1730.00
    f = household_fee(TARIFF, 86.5, D("5000"), suspended_share=1)
    assert (f.basic, f.metered, f.floor, f.cap) == (D("0.00"), D("0.00"), None, None)
    assert (f.suspended_fee, f.total, f.settlement) == (D("432.50"), D("432.50"), D("1730.00"))


def test_the_suspended_ratio_defaults_to_the_basic_ratio() -> None:
    f = household_fee(_tariff(suspended_ratio=None), 86.5, D("5000"), suspended_share=1)
    assert f.total == D("865.00")  # 0.4 x 2162.50


def test_a_household_suspended_for_a_quarter_of_the_season() -> None:
    # active 3/4: basic 865.00 x 3/4 = 648.75; metered 720.00 x 3/4 = 540.00;
    # floor 1297.50 x 3/4 = 973.125 -> 973.13; cap 2595.00 x 3/4 = 1946.25; 1188.75 stays;
    # suspended 432.50 x 1/4 = 108.125 -> 108.13; total 1296.88; settlement 865.62
    f = household_fee(TARIFF, 86.5, D("5000"), suspended_share=Fraction(1, 4))
    assert (f.basic, f.metered, f.floor, f.cap) == (
        D("648.75"),
        D("540.00"),
        D("973.13"),
        D("1946.25"),
    )
    assert (f.suspended_fee, f.total, f.settlement) == (D("108.13"), D("1296.88"), D("865.62"))


def test_the_mid_season_example_of_the_docs() -> None:
    # suspended 2026-02-14 .. 03-15: 30 of 121 days, active 91/121 (docs/billing.md, Heat fees):
    # basic 650.537.. -> 650.54, metered 541.487.. -> 541.49, floor 975.805.. -> 975.81,
    # cap 1951.61; suspended 107.231.. -> 107.23; total 1299.26; settlement 863.24
    f = household_fee(TARIFF, 86.5, D("5000"), suspended_share=Fraction(30, 121))
    assert (f.basic, f.metered, f.floor, f.cap, f.suspended_fee) == (
        D("650.54"),
        D("541.49"),
        D("975.81"),
        D("1951.61"),
        D("107.23"),
    )
    assert (f.total, f.settlement) == (D("1299.26"), D("863.24"))


def test_a_float_share_is_read_as_the_ratio_of_days_it_stands_for() -> None:
    # 1/3 of a half cent stays exact: 0.045 x 1/3 = 0.015 -> 0.02 (0.333... would give 0.01)
    t = HeatTariff(
        area_price_per_m2="0.09", basic_ratio="0.5", energy_price_per_kwh="0", suspended_ratio="0"
    )
    exact = household_fee(t, 1, D(0), suspended_share=Fraction(2, 3))
    assert household_fee(t, 1, D(0), suspended_share=2 / 3) == exact
    assert exact.basic == D("0.02")  # 0.09 x 0.5 x 1/3 = 0.015
    with pytest.raises(ValueError, match="not between 0 and 1"):
        household_fee(t, 1, D(0), suspended_share=1.5)


# ---------------------------------------------------------------------- days of the window


def _midnight(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=zoneinfo.ZoneInfo(TZ)).timestamp()


def test_the_window_counts_local_days_and_an_end_at_midnight_is_the_day_before() -> None:
    start, end = _midnight(date(2025, 11, 15)), _midnight(date(2026, 3, 16))
    assert window_days(start, end, TZ) == (date(2025, 11, 15), date(2026, 3, 15))  # 121 days
    assert window_days(start, end - 1, TZ) == (date(2025, 11, 15), date(2026, 3, 15))
    assert window_days(start, end + 1, TZ) == (date(2025, 11, 15), date(2026, 3, 16))
    with pytest.raises(ValueError, match="empty"):
        window_days(end, start, TZ)


def _household(**fields: Any) -> Any:
    from billing.config import HouseholdConfig

    return HouseholdConfig.model_validate({"id": "h", "area_m2": 50, **fields})


@pytest.mark.parametrize(
    ("fields", "days"),
    [
        ({}, 0),
        ({"suspended": True}, 121),
        ({"suspended": True, "suspended_from": "2026-02-14"}, 30),  # Feb 14 .. Mar 15
        ({"suspended": True, "suspended_until": "2025-11-24"}, 10),  # Nov 15 .. 24
        ({"suspended": True, "suspended_from": "2025-12-01", "suspended_until": "2025-12-31"}, 31),
        ({"suspended": True, "suspended_from": "2025-01-01", "suspended_until": "2025-03-01"}, 0),
        ({"suspended": True, "suspended_from": "2026-03-15"}, 1),
    ],
)
def test_suspended_days_inside_the_window(fields: dict[str, Any], days: int) -> None:
    first, last = date(2025, 11, 15), date(2026, 3, 15)
    assert suspension_days(_household(**fields), first, last) == days


def test_payments_count_from_the_day_after_the_previous_season() -> None:
    t = TARIFF  # season 11-15 .. 03-15
    assert payments_since(t, _midnight(date(2025, 11, 15)), TZ) == _midnight(date(2025, 3, 16))
    assert payments_since(t, _midnight(date(2026, 3, 1)), TZ) == _midnight(date(2025, 3, 16))
    assert payments_since(t, _midnight(date(2026, 3, 16)), TZ) == _midnight(date(2026, 3, 16))


# ---------------------------------------------------------------------- configuration

SITE_TARIFF = (
    'heat_tariff: {area_price_per_m2: "1.00", basic_ratio: "0.3", energy_price_per_kwh: "0.25",'
    ' min_ratio: "0.5", max_ratio: "1.0", suspended_ratio: "0.2"}\n'
)
SUSPENDED_201 = (
    "- {id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open,"
    " suspended: true, suspended_from: 2025-11-02}"
)


def _site_yaml(extra: str = SITE_TARIFF) -> str:
    text = site_text(free_port()).replace(
        "- {id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open}",
        SUSPENDED_201,
    )
    return text + extra


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site_text(text, "site.yaml")
    return [str(i) for i in info.value.issues]


def _line_of(text: str, token: str) -> int:
    return text[: text.index(token)].count("\n") + 1


def test_a_building_tariff_overrides_the_site_tariff() -> None:
    site = load_site_text(_site_yaml())
    assert tariff_of(site, "b1") == site.heat_tariff
    assert site.heat_tariff is not None and site.heat_tariff.basic_ratio == D("0.3")
    own = _site_yaml().replace(
        'price_per_kwh: "0.25"}',
        'price_per_kwh: "0.25", tariff: {area_price_per_m2: "30", basic_ratio: "0.5",'
        ' energy_price_per_gj: "45"}}',
    )
    t = tariff_of(load_site_text(own), "b1")
    assert t is not None and t.energy_price == ("GJ", D("45")) and t.season_start == "11-15"
    assert tariff_of(load_site_text(site_text(free_port())), "b1") is None
    with pytest.raises(KeyError):
        tariff_of(site, "b9")


@pytest.mark.parametrize(
    ("tariff", "field", "message"),
    [
        (
            'energy_price_per_gj: "40", energy_price_per_gcal: "160"',
            "heat_tariff.energy_price_per_gcal",
            "give exactly one energy price: energy_price_per_gj is given already",
        ),
        ("", "heat_tariff", "missing the energy price"),
        ('energy_price_per_gj: "40", max_ratio: "0.2"', "heat_tariff.max_ratio", "below basic"),
        (
            'energy_price_per_gj: "40", min_ratio: "0.9", max_ratio: "0.8"',
            "heat_tariff.max_ratio",
            "must not be below min_ratio (0.9)",
        ),
        ('energy_price_per_gj: "40", suspended_ratio: "1.5"', "heat_tariff.suspended_ratio", "1"),
        ('energy_price_per_gj: "40", season_end: "02-30"', "heat_tariff.season_end", "not a day"),
        ('energy_price_per_gj: "40", season_start: "Nov 15"', "heat_tariff.season_start", "MM-DD"),
        ('energy_price_per_gj: "-1"', "heat_tariff.energy_price_per_gj", "greater than or equal"),
    ],
)
def test_a_bad_tariff_names_file_line_and_field(tariff: str, field: str, message: str) -> None:
    extra = f'heat_tariff: {{area_price_per_m2: "25", basic_ratio: "0.4", {tariff}}}\n'
    text = _site_yaml(extra)
    (issue,) = _errors(text)
    assert issue.startswith(f"site.yaml:{_line_of(text, 'heat_tariff:')}:")
    assert f": {field}: " in issue and message in issue


def test_bad_suspension_dates_name_the_household_field() -> None:
    text = _site_yaml().replace(
        "suspended_from: 2025-11-02}", "suspended_from: 2025-11-02, suspended_until: 2025-11-01}"
    )
    (issue,) = _errors(text)
    assert f"site.yaml:{_line_of(text, 'suspended_until: 2025')}:" in issue
    assert "buildings[0].households[2].suspended_until: " in issue
    assert "before suspended_from (2025-11-02)" in issue
    text = _site_yaml().replace("suspended: true, ", "")
    (issue,) = _errors(text)
    assert "households[2].suspended_from: suspended_from needs `suspended: true`" in issue


# ---------------------------------------------------------------------- from the historian

WINDOW = (NOV1, NOV1 + 48 * HOUR)  # 2025-11-01 .. 2025-11-02, two local days


def _fill_two_days(h: SqliteHistorian) -> None:
    """The allocation example of ``test_heat`` on day 1 (Q = 600 kWh), nothing used on day 2."""
    day2 = NOV1 + 24 * HOUR
    write(h, "b1.hm.energy_kwh", [(NOV1 - 60, 5000.0), (day2, 5600.0), (WINDOW[1], 5600.0)])
    write(h, "b1.101.valve.open", [(NOV1 - 100, True), (NOV1 + 12 * HOUR, False)])
    write(
        h,
        "b1.102.valve.open",
        [(NOV1 - 100, False), (NOV1 + 6 * HOUR, True), (NOV1 + 12 * HOUR, False)],
    )
    write(h, "b1.201.valve.open", [(NOV1 - 100, True), (day2, False)])


#: By hand, with the site tariff 1.00 / m2, basic 0.3, 0.25 / kWh, held in 0.5 .. 1.0, suspended 0.2
#: (heat as in test_heat: 272.608696, 99.782609, 227.608696 kWh):
#: b1.101 100 m2: advance 100.00; basic 30.00; 272.608696 x 0.25 = 68.152174 -> 68.15;
#:   total 98.15 in [50.00, 100.00]; settlement 1.85
#: b1.102 50 m2: advance 50.00; basic 15.00; 99.782609 x 0.25 = 24.945652 -> 24.95; total 39.95;
#:   settlement 10.05
#: b1.201 50 m2, suspended from 2025-11-02: 1 of 2 days; basic 15.00 x 1/2 = 7.50;
#:   metered 227.608696 x 0.25 x 1/2 = 28.451087 -> 28.45; 35.95 > cap 50.00 x 1/2 = 25.00 -> 25.00;
#:   suspended 50.00 x 0.2 x 1/2 = 5.00; total 30.00; settlement 20.00
EXPECTED = {
    "b1.101": {
        "advance": "100.00",
        "basic": "30.00",
        "metered": "68.15",
        "total": "98.15",
        "settlement": "1.85",
        "suspended": False,
        "limit": None,
    },
    "b1.102": {
        "advance": "50.00",
        "basic": "15.00",
        "metered": "24.95",
        "total": "39.95",
        "settlement": "10.05",
        "suspended": False,
        "limit": None,
    },
    "b1.201": {
        "advance": "50.00",
        "basic": "7.50",
        "metered": "28.45",
        "cap": "25.00",
        "suspended_fee": "5.00",
        "total": "30.00",
        "settlement": "20.00",
        "suspended": True,
        "suspended_days": 1,
        "window_days": 2,
        "limit": "cap",
    },
}


def _check(households: list[dict[str, Any]]) -> None:
    got = {h["household"]: h for h in households}
    assert list(got) == ["b1.101", "b1.102", "b1.201"]  # the shop has no valve
    for hid, want in EXPECTED.items():
        assert {k: got[hid][k] for k in want} == want, hid


async def test_fees_from_the_historian_and_paid_from_the_ledger(
    ledger: Ledger, historian: SqliteHistorian, tmp_path: Path
) -> None:
    _fill_two_days(historian)
    site = load_site_text(_site_yaml())
    b = Billing(site, ledger, historian, commander=None, audit=None, data_dir=tmp_path)
    fees = b.heat_fees(*WINDOW)
    _check([f.to_json() for f in fees])
    assert {f.household: f.paid for f in fees} == {"b1.101": None, "b1.102": None, "b1.201": None}
    assert [f.heat_kwh for f in fees] == [D("272.608696"), D("99.782609"), D("227.608696")]
    # paid: the heat account's top-ups less refunds, reversals netted, since the day after the
    # previous season (2025-03-16); earlier payments and electricity accounts do not count
    before = datetime(2025, 3, 10, tzinfo=zoneinfo.ZoneInfo(TZ)).timestamp()
    ledger.open_account("b1.101.heat", "0", ts=before)
    ledger.topup("b1.101.heat", "40.00", ts=before)  # last season's
    ledger.topup("b1.101.heat", "100.00", ts=NOV1 - 86400)
    ledger.refund("b1.101.heat", "20.00", ts=NOV1 + HOUR)
    wrong = ledger.topup("b1.101.heat", "7.00", ts=NOV1 + 2 * HOUR)
    ledger.reverse("b1.101.heat", wrong.seq, ts=NOV1 + 3 * HOUR)
    ledger.topup("b1.101.heat", "5.00", ts=WINDOW[1] + 1)  # after the window
    ledger.open_account("b1.102.heat", "0", ts=NOV1)
    paid = {f.household: f.paid for f in b.heat_fees(*WINDOW)}
    assert paid == {"b1.101": D("80.00"), "b1.102": D("0.00"), "b1.201": None}
    assert b.heat_fees(*WINDOW, buildings=["b1"])[0].to_json()["paid"] == "80.00"


async def test_reruns_give_the_same_fees(
    ledger: Ledger, historian: SqliteHistorian, tmp_path: Path
) -> None:
    _fill_two_days(historian)
    b = Billing(load_site_text(_site_yaml()), ledger, historian, commander=None, audit=None)
    first = b.heat_fees(*WINDOW)
    assert b.heat_fees(*WINDOW) == first
    assert b.heat_fees(*WINDOW, allocation=b.allocate_heat(*WINDOW)) == first


async def test_buildings_without_a_tariff_are_not_priced(
    ledger: Ledger, historian: SqliteHistorian
) -> None:
    _fill_two_days(historian)
    b = Billing(
        load_site_text(site_text(free_port())), ledger, historian, commander=None, audit=None
    )
    assert b.heat_fees(*WINDOW) == []
    assert b.allocate_heat(*WINDOW).buildings  # the allocation itself is unchanged


async def test_suspension_changes_the_fee_not_the_allocation(
    ledger: Ledger, historian: SqliteHistorian
) -> None:
    _fill_two_days(historian)
    plain = site_text(free_port()) + SITE_TARIFF  # b1.201 not suspended
    a = Billing(load_site_text(plain), ledger, historian, commander=None, audit=None)
    b = Billing(load_site_text(_site_yaml()), ledger, historian, commander=None, audit=None)
    assert a.allocate_heat(*WINDOW) == b.allocate_heat(*WINDOW)
    heat_a = {f.household: f.heat_kwh for f in a.heat_fees(*WINDOW)}
    heat_b = {f.household: f.heat_kwh for f in b.heat_fees(*WINDOW)}
    assert heat_a == heat_b  # its allocated heat is reported, not billed
    assert [f.total for f in a.heat_fees(*WINDOW)][2] == D("50.00")  # at the cap unsuspended


def test_cli_prints_the_fees_and_a_rerun_prints_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(_site_yaml(), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill_two_days(h)
    h.close()
    argv = ["bill", "heat", str(cfg), "--from", "2025-11-01", "--to", "2025-11-03"]
    argv += ["--data-dir", str(data)]
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert set(doc) == {"start", "end", "households"}
    _check(doc["households"])
    first = doc["households"][0]
    for key in ("household", "area_m2", "heat_kwh", "advance", "basic", "metered", "total"):
        assert key in first
    assert {"settlement", "suspended", "paid"} <= set(first) and first["paid"] is None
    assert isinstance(first["total"], str) and first["heat_kwh"] == pytest.approx(272.608696)
    assert main([*argv, "--json"]) == 0
    assert capsys.readouterr().out == out  # idempotent: same history, same answer
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("b1: 3 households, advance 200.00, total 168.10, settlement 31.90")
    assert "cap, suspended 1/2 d" in text
    assert main([*argv, "--household", "b1.102", "--json"]) == 0
    assert [h["household"] for h in json.loads(capsys.readouterr().out)["households"]] == ["b1.102"]
    assert main([*argv, "--household", "b1.s1"]) == 2
    assert "no heat fee for b1.s1" in capsys.readouterr().err
    assert main([*argv, "--building", "b9"]) == 2
    capsys.readouterr()
    # electricity stays what `scada bill CONFIG` bills, with or without the word
    elec = ["bill", str(cfg), "--from", "2025-11-01", "--to", "2025-11-03", "--data-dir", str(data)]
    assert main([*elec, "--json"]) == 0
    plain = capsys.readouterr().out
    assert main(["bill", "electricity", *elec[1:], "--json"]) == 0
    assert capsys.readouterr().out == plain and "accounts" in json.loads(plain)


def test_cli_writes_the_heat_fees_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import openpyxl

    cfg = tmp_path / "site.yaml"
    cfg.write_text(_site_yaml(), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill_two_days(h)
    h.close()
    out = tmp_path / "fees.xlsx"
    argv = ["bill", "heat", str(cfg), "--from", "2025-11-01", "--to", "2025-11-03"]
    assert main([*argv, "--data-dir", str(data), "--xlsx", str(out)]) == 0
    ws = openpyxl.load_workbook(out)["heat fees"]
    headers = [c.value for c in ws[2]]
    rows = list(ws.iter_rows(min_row=3, values_only=True))
    assert [r[1] for r in rows[:-1]] == ["b1.101", "b1.102", "b1.201"]
    total = rows[-1]
    assert total[0] == "Total" and total[headers.index("total [CNY]")] == pytest.approx(168.10)
    assert total[headers.index("settlement [CNY]")] == pytest.approx(31.90)
    assert rows[2][headers.index("held")] == "cap"
    # the same kind from `scada report` (November: b1.201 suspended 29 of its 30 days)
    csv_path = tmp_path / "fees.csv"
    argv = ["report", "heat_fees", str(cfg), "--period", "2025-11", "--data-dir", str(data)]
    assert main([*argv, "--csv", str(csv_path)]) == 0
    text = csv_path.read_text(encoding="utf-8")
    assert "# heat fees" in text and "suspended fee [CNY]" in text
    assert any(ln.startswith("b1,b1.201,") and ln.endswith(",29") for ln in text.splitlines())
