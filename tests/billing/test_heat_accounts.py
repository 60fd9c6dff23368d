"""Heat accounts in the ledger: seasons, advance -> statements -> payment -> settlement, arrears.

Real SQLite ledger and historian; the fees come from the real allocation (``billing.heat``) and
``billing.heat_fees``. The heat meter counts 6000, 16000, 26000, 34000 and 38000 kWh by the
1st of December, January, February, March and the season's end; the valves of b1.101 and
b1.102 are open all season, b1.201's closed. Shares (basic 0.3 by area, the rest by area x
time x factor): 0.5875, 0.3375, 0.075. Tariff: 30.00 per m2 (advance = area fee), basic 40 %,
0.20 per kWh, floor 50 %.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.errors import NotReversible
from billing.heat import allocate_heat
from billing.heat_accounts import (
    HeatSeason,
    arrears_state,
    heat_account_id,
    heat_households,
    household_of,
    is_heat_account,
    last_season,
    post_month,
    post_season_advance,
    post_settlement,
    season_charged,
    season_of,
    unpaid_since,
)
from billing.heat_fees import HeatFee, heat_fees
from billing.jobs import BillingScheduler
from billing.ledger import EntryKind, Ledger
from billing.periods import local_midnight
from billing.tags import account_tag_defs, alarm_rules
from historian.sqlite import SqliteHistorian
from scada.config import load_site_text
from scada.scheduler import make_scheduler
from scada.services.audit import AuditLog
from tags.database import TagDatabase
from tests.billing.conftest import free_port, relay_commander, site_text, write

D = Decimal
TZ = "Asia/Shanghai"
DAY = 86400.0
HEAT = 'heat: {energy_tag: b1.hm.energy_kwh, basic_share: 0.3, price_per_kwh: "0.25"}'
TARIFF = (
    'tariff: {area_price_per_m2: "30.00", basic_ratio: "0.4", energy_price_per_kwh: "0.20",'
    ' min_ratio: "0.5"}'
)
HOUSEHOLDS = ["b1.101", "b1.102", "b1.201"]
ACCOUNTS = [heat_account_id(h) for h in HOUSEHOLDS]


def heat_site_text(arrears: str = "{grace_days: 10}") -> str:
    """The billing test site with a heat tariff (and arrears rules) on building b1."""
    text = site_text(free_port())
    assert HEAT in text
    return text.replace(HEAT, HEAT[:-1] + f", {TARIFF}, arrears: {arrears}}}")


def day(y: int, m: int, d: int) -> float:
    return local_midnight(date(y, m, d), TZ)


@pytest.fixture
def heat_site() -> Any:
    return load_site_text(heat_site_text())


@pytest.fixture
def season(heat_site: Any) -> HeatSeason:
    return season_of(heat_households(heat_site)[0].tariff, 2025, TZ)


#: (end of the statement's window, its month)
MONTHS = [
    (day(2025, 12, 1), "2025-11"),
    (day(2026, 1, 1), "2025-12"),
    (day(2026, 2, 1), "2026-01"),
    (day(2026, 3, 1), "2026-02"),
]


def fill_season(h: SqliteHistorian, season: HeatSeason) -> None:
    """Write the season's heat meter and valve history (module docstring)."""
    counts = [0.0, 6000.0, 16000.0, 26000.0, 34000.0]
    ends = [season.start] + [end for end, _ in MONTHS]
    points = [(season.start - 60, 0.0), *zip(ends, counts, strict=True)]
    write(h, "b1.hm.energy_kwh", [*points, (season.end, 38000.0), (season.end + DAY, 38000.0)])
    for tag, is_open in (
        ("b1.101.valve.open", True),
        ("b1.102.valve.open", True),
        ("b1.201.valve.open", False),
    ):
        write(h, tag, [(season.start - 60, is_open)])


def fees_to(site: Any, h: SqliteHistorian, season: HeatSeason, end: float) -> list[HeatFee]:
    """The season-to-date fees up to ``end``."""
    return heat_fees(site, allocate_heat(site, h, season.start, end), season.start, end)


def amounts(entries: list[Any]) -> dict[str, str]:
    return {e.account: str(e.amount) for e in entries}


def test_heat_accounts_exist_for_households_with_a_valve_and_a_tariff(heat_site: Any) -> None:
    assert [h.account for h in heat_households(heat_site)] == ACCOUNTS  # not the shop b1.s1
    assert heat_account_id("b1.101") == "b1.101.heat" and household_of("b1.101.heat") == "b1.101"
    assert is_heat_account("b1.101.heat") and not is_heat_account("shop-101")
    with pytest.raises(ValueError, match="not a heat account"):
        household_of("shop-101")
    # the site without a heat tariff has no heat accounts (and none of their tags)
    assert heat_households(load_site_text(site_text(free_port()))) == []
    names = [d.name for d in account_tag_defs(heat_site)]
    assert names[-3:] == [
        "acct.b1.201.heat.balance",
        "acct.b1.201.heat.level",
        "acct.b1.201.heat.locked",
    ]
    # the prepaid arrears alarm covers the heat accounts' level tags too
    (arrears,) = [r for r in alarm_rules(heat_site) if r.id == "billing.arrears"]
    assert arrears.tags == "acct.*.level"


def test_seasons_are_local_days_labelled_by_their_years(heat_site: Any) -> None:
    tariff = heat_households(heat_site)[0].tariff  # 11-15 .. 03-15
    s = season_of(tariff, 2025, TZ)
    assert (s.label, s.first_day, s.last_day) == ("2025/26", date(2025, 11, 15), date(2026, 3, 15))
    assert (s.start, s.end) == (day(2025, 11, 15), day(2026, 3, 16))  # the last day included
    assert s.months() == ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
    assert last_season(tariff, s.start - 1, TZ).label == "2024/25"
    assert last_season(tariff, s.start, TZ) == s
    assert last_season(tariff, day(2026, 7, 1), TZ) == s  # over, not yet the next one
    one_year = tariff.model_copy(update={"season_start": "01-10", "season_end": "02-29"})
    s27 = season_of(one_year, 2027, TZ)  # not a leap year: February's last day
    assert (s27.label, s27.last_day) == ("2027", date(2027, 2, 28))


def test_advance_statements_payment_and_settlement_add_up_to_the_season_fee(
    heat_site: Any, season: HeatSeason, ledger: Ledger, historian: SqliteHistorian
) -> None:
    fill_season(historian, season)
    hhs = heat_households(heat_site)
    at = season.start + 300
    advance = post_season_advance(ledger, hhs, season, ts=at)
    assert amounts(advance) == {
        "b1.101.heat": "-3000.00",  # 100 m2 x 30.00
        "b1.102.heat": "-1500.00",
        "b1.201.heat": "-1500.00",
    }
    assert {e.kind for e in advance} == {EntryKind.HEAT_ADVANCE}
    assert all(e.period == "2025/26" and e.user == "system" for e in advance)
    assert all(ledger.is_open(a) for a in ACCOUNTS)  # opened by the first entry (0.00)
    assert post_season_advance(ledger, hhs, season, ts=at + 1) == []  # a re-run posts nothing

    posted: dict[str, dict[str, str]] = {}
    for end, month in MONTHS:
        posted[month] = amounts(
            post_month(ledger, fees_to(heat_site, historian, season, end), season, month, ts=end)
        )
        if month == "2025-12":
            ledger.topup("b1.101.heat", "3000.00", ts=end + 3600)  # the household pays
            ledger.topup("b1.201.heat", "1500.00", ts=end + 3600)
    # to date below the advance: nothing; above it: the difference to what was charged before
    assert posted == {
        "2025-11": {},  # 1905.00 / 1005.00 / 750.00 (floor) to date: the advance covers them
        "2025-12": {"b1.101.heat": "-80.00", "b1.102.heat": "-180.00"},  # 3080.00, 1680.00
        "2026-01": {"b1.101.heat": "-1175.00", "b1.102.heat": "-675.00"},  # 4255.00, 2355.00
        "2026-02": {"b1.101.heat": "-940.00", "b1.102.heat": "-540.00"},  # 5195.00, 2895.00
    }
    # a re-run of a month, with the same data, posts nothing
    end, month = MONTHS[1]
    assert post_month(ledger, fees_to(heat_site, historian, season, end), season, month) == []

    final = fees_to(heat_site, historian, season, season.end)
    settled = post_settlement(ledger, final, season, ts=season.end + 300)
    assert amounts(settled) == {
        "b1.101.heat": "-470.00",  # 5665.00 due, 5195.00 charged: shortfall
        "b1.102.heat": "-270.00",  # 3165.00 due, 2895.00 charged
        "b1.201.heat": "330.00",  # 1170.00 due, 1500.00 advance: money back (a credit)
    }
    assert {e.kind for e in settled} == {EntryKind.HEAT_SETTLEMENT}
    assert settled[2].data["total"] == "1170.00" and settled[2].note.endswith("(refund)")
    for fee in final:  # the season's entries add up to minus its fee
        assert season_charged(ledger, heat_account_id(fee.household), season) == fee.total
    assert ledger.balance("b1.101.heat") == D("3000.00") - D("5665.00")
    assert ledger.balance("b1.201.heat") == D("330.00")

    # nothing of the season is posted after its settlement: not again, no statement, no advance
    assert post_settlement(ledger, final, season) == []
    march = fees_to(heat_site, historian, season, season.end)
    assert post_month(ledger, march, season, "2026-03") == []
    assert post_season_advance(ledger, hhs, season) == []
    # the credit is paid out like any other
    ledger.refund("b1.201.heat", "330.00")
    assert ledger.balance("b1.201.heat") == D("0.00")


def test_a_reversed_advance_is_made_up_by_the_statements_and_statements_are_not_reversible(
    heat_site: Any, season: HeatSeason, ledger: Ledger, historian: SqliteHistorian
) -> None:
    fill_season(historian, season)
    (adv, *_) = post_season_advance(ledger, heat_households(heat_site), season)
    rev = ledger.reverse("b1.101.heat", adv.seq, note="advance waived")
    assert rev.amount == D("3000.00") and rev.period == "2025/26"
    assert season_charged(ledger, "b1.101.heat", season) == D("0.00")
    end, month = MONTHS[0]
    (charge,) = [
        e
        for e in post_month(ledger, fees_to(heat_site, historian, season, end), season, month)
        if e.account == "b1.101.heat"
    ]
    assert charge.amount == D("-1905.00")  # the season to date: paid as it goes now
    with pytest.raises(NotReversible, match="heat statements follow the allocation"):
        ledger.reverse("b1.101.heat", charge.seq)
    (s,) = [
        e
        for e in post_settlement(ledger, fees_to(heat_site, historian, season, season.end), season)
        if e.account == "b1.101.heat"
    ]
    assert s.amount == D("-3760.00")  # 5665.00 - 1905.00
    with pytest.raises(NotReversible, match="settlement closes the season"):
        ledger.reverse("b1.101.heat", s.seq)


def test_suspended_household_advance_is_its_suspended_fee(ledger: Ledger) -> None:
    text = heat_site_text().replace(
        "{id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open}",
        "{id: b1.201, area_m2: 50, position_factor: 1.0, valve_tag: b1.201.valve.open,"
        " suspended: true}",
    )
    site = load_site_text(text)
    hhs = heat_households(site)
    season = season_of(hhs[0].tariff, 2025, TZ)
    posted = amounts(post_season_advance(ledger, hhs, season))
    assert posted["b1.201.heat"] == "-600.00"  # 1500.00 x suspended_ratio (basic 0.4)
    assert posted["b1.101.heat"] == "-3000.00"


def test_payments_clear_the_oldest_charges_first(ledger: Ledger) -> None:
    acct = "b1.101.heat"
    t0 = day(2025, 11, 15)
    ledger.ensure_open(acct, ts=t0)
    assert unpaid_since(ledger.entries(acct)) is None
    ledger.post_keyed(acct, EntryKind.HEAT_ADVANCE, D("-1000.00"), key="a", ts=t0 + 1)
    ledger.topup(acct, "400.00", ts=t0 + 2 * DAY)
    assert unpaid_since(ledger.entries(acct)) == t0 + 1  # 600.00 of the advance still owed
    ledger.post_keyed(acct, EntryKind.HEAT_CHARGE, D("-300.00"), key="b", ts=t0 + 16 * DAY)
    ledger.topup(acct, "600.00", ts=t0 + 17 * DAY)  # the advance is paid, the charge is not
    assert unpaid_since(ledger.entries(acct)) == t0 + 16 * DAY
    st = arrears_state(ledger, acct, 10, t0 + 25 * DAY)
    assert (st.balance, st.overdue, st.due_ts) == (D("-300.00"), False, t0 + 26 * DAY)
    assert arrears_state(ledger, acct, 10, t0 + 26 * DAY).overdue
    ledger.topup(acct, "500.00", ts=t0 + 27 * DAY)  # a credit left over pays the next charge
    ledger.post_keyed(acct, EntryKind.HEAT_CHARGE, D("-150.00"), key="c", ts=t0 + 40 * DAY)
    st = arrears_state(ledger, acct, 10, t0 + 60 * DAY)
    assert (st.balance, st.unpaid_since, st.overdue) == (D("50.00"), None, False)


async def test_scheduled_season_jobs_post_once_and_catch_up(
    heat_site: Any,
    season: HeatSeason,
    ledger: Ledger,
    historian: SqliteHistorian,
    audit: AuditLog,
    tmp_path: Path,
) -> None:
    fill_season(historian, season)
    now = [season.start - DAY]
    db = TagDatabase([*heat_site.tag_defs(), *account_tag_defs(heat_site)])
    scheduler = make_scheduler(TZ)
    sched = BillingScheduler(
        heat_site,
        db,
        historian,
        ledger,
        tmp_path,
        commander=relay_commander(heat_site, db, audit),
        audit=audit,
        scheduler=scheduler,
        clock=lambda: now[0],
    )
    ledger.mark_run("installed", "installed", ts=now[0])
    await sched._open_new_accounts("opened at start-up")
    assert all(ledger.balance(a) == 0 and ledger.is_open(a) for a in ACCOUNTS)
    assert await sched.heat_season() == 0  # the season has not begun
    now[0] = season.start + 300  # 00:05 of the first day
    assert await sched.heat_season() == 3
    assert await sched.heat_season() == 0
    assert db.read("acct.b1.101.heat.balance").value == pytest.approx(-3000.0)
    assert db.read("acct.b1.101.heat.level").value == 0  # due, not yet overdue
    for end, month in MONTHS:
        now[0] = end + 900  # the 1st, 00:15
        await sched.heat_month()
        assert ledger.run_done("heat_month", f"{month}:b1")
    assert await sched.heat_month("2025-12") == 0  # a re-run of a month posts nothing
    assert ledger.balance("b1.101.heat") == D("-5195.00")
    assert db.read("acct.b1.101.heat.level").value == 3  # unpaid far beyond 10 days

    now[0] = season.end + 300
    assert await sched.heat_season() == 3  # the settlement
    before = ledger.entries()
    await sched.heat_catch_up()  # a restart: nothing new
    assert await sched.heat_season() == 0 and await sched.heat_month("2026-03") == 0
    assert ledger.entries() == before
    assert [ledger.balance(a) for a in ACCOUNTS] == [D("-5665.00"), D("-3165.00"), D("-1170.00")]


def test_cli_pays_into_a_heat_account_and_sets_keep_heat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from scada.cli import main

    cfg = tmp_path / "site.yaml"
    cfg.write_text(heat_site_text(), encoding="utf-8")
    data = tmp_path / "var"
    site = load_site_text(heat_site_text())
    hhs = heat_households(site)
    season = season_of(hhs[0].tariff, 2025, TZ)
    lg = Ledger.in_data_dir(data)  # the season's advance, as the scheduler posts it
    post_season_advance(lg, hhs, season, ts=season.start)
    lg.close()
    common = [str(cfg), "--data-dir", str(data)]
    assert main(["account", "topup", *common, "--user", "ann", "b1.101.heat", "1000.00"]) == 0
    assert "topup 1000.00; balance -2000.00" in capsys.readouterr().out
    assert main(["account", "keep-heat", *common, "b1.101.heat", "on"]) == 2
    assert "needs --note" in capsys.readouterr().err
    assert main(["account", "keep-heat", *common, "b1.101", "on", "--note", "oxygen at home"]) == 0
    assert "b1.101.heat: keep-heat on (was off)" in capsys.readouterr().out
    assert (
        main(["account", "show", str(cfg), "b1.101.heat", "--json", "--data-dir", str(data)]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert (doc["balance"], doc["keep_heat"], doc["overdue"]) == ("-2000.00", True, True)
    assert [e["kind"] for e in doc["entries"]] == ["opening", "heat_advance", "topup"]
    assert main(["account", "keep-heat", *common, "nobody", "on", "--note", "x"]) == 2
    assert "unknown heat account 'nobody'" in capsys.readouterr().err
    audit = AuditLog.in_data_dir(data)
    (rec,) = audit.query(action="billing.keep_heat")
    audit.close()
    assert (rec["user"], rec["target"], rec["before"], rec["after"]["reason"]) == (
        "cli",
        "b1.101.heat",
        {"keep_heat": False},
        "oxygen at home",
    )


def test_arrears_configuration_is_checked() -> None:
    from scada.config import ConfigError

    with pytest.raises(ConfigError, match=r"heat\.arrears\.cold_weather_tag: unknown tag 'wx.x'"):
        load_site_text(heat_site_text("{cold_weather_tag: wx.x, cold_weather_below_c: -10}"))
    with pytest.raises(ConfigError, match="cold_weather_tag and cold_weather_below_c together"):
        load_site_text(heat_site_text("{cold_weather_below_c: -10}"))
    with pytest.raises(ConfigError, match="grace_days"):
        load_site_text(heat_site_text("{grace_days: -1}"))
    site = load_site_text(heat_site_text("{lock: false}"))
    (b1,) = site.buildings
    assert b1.heat.arrears.grace_days == 15 and not b1.heat.arrears.lock
    assert not b1.households[0].keep_heat
