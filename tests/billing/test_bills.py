"""Electricity bills: TOU + tier worked examples, interval splitting, tiers, shared loss, additivity."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.bills import bill_accounts
from billing.config import TariffConfig
from billing.losses import allocate_loss
from billing.readings import Curve, HistorianReadings, build_curve
from billing.tariff import band_schedule, price_usage, tier_split, usage
from historian.base import Replacement
from historian.sqlite import SqliteHistorian
from scada.config import load_site_text
from tests.billing.conftest import DEC1, HOUR, NOV1, site_text, write

STATIC_SITE = load_site_text(site_text())

TZ = "Asia/Shanghai"
D = Decimal


def _lines(bill: Any) -> dict[str, tuple[float, Decimal, Decimal]]:
    return {ln.name: (ln.kwh, ln.price, ln.amount) for ln in bill.lines}


def _constant(
    h: SqliteHistorian,
    tag: str,
    kw: float,
    start: float,
    end: float,
    every: float,
    base: float = 100.0,
) -> None:
    ts = np.arange(start, end + every / 2, every)
    write(h, tag, [(float(t), base + kw * (t - start) / HOUR) for t in ts])


def test_tou_day_by_hand(site: Any, historian: SqliteHistorian) -> None:
    # 1 kW all day, readings every 90 minutes (intervals straddle band changes)
    _constant(historian, "e.101.energy_kwh", 1.0, NOV1 - 3 * HOUR, NOV1 + 27 * HOUR, 1.5 * HOUR)
    run = bill_accounts(
        site,
        HistorianReadings(historian),
        NOV1,
        NOV1 + 24 * HOUR,
        accounts=["shop-101"],
        shared=False,
    )
    bill = run.account("shop-101")
    lines = _lines(bill)
    # sharp 10-11, 19-21 = 3 h; peak 8-10, 11-15, 18-19, 21-23 = 9 h; flat 7-8, 15-18 = 4 h;
    # valley 23-07 = 8 h.  3 x 1.3782 = 4.1346 -> 4.13; 9 x 1.1452 = 10.3068 -> 10.31;
    # 4 x 0.7135 = 2.854 -> 2.85; 8 x 0.3062 = 2.4496 -> 2.45; total 19.74
    assert lines["sharp"][0] == pytest.approx(3.0) and lines["sharp"][2] == D("4.13")
    assert lines["peak"][0] == pytest.approx(9.0) and lines["peak"][2] == D("10.31")
    assert lines["flat"][0] == pytest.approx(4.0) and lines["flat"][2] == D("2.85")
    assert lines["valley"][0] == pytest.approx(8.0) and lines["valley"][2] == D("2.45")
    assert bill.total == D("19.74")
    assert bill.energy_kwh == pytest.approx(24.0)
    doc = run.to_json()["accounts"][0]
    assert set(doc) == {"id", "energy_kwh", "lines", "shared_kwh", "total"}
    assert doc["total"] == "19.74"
    assert doc["lines"][0] == {"name": "sharp", "kwh": 3.0, "price": "1.3782", "amount": "4.13"}


def test_one_interval_is_split_across_bands_in_proportion_to_time(
    site: Any, historian: SqliteHistorian
) -> None:
    # two readings: 10:30 -> 11:30 local, 2 kWh: half in sharp (10:30-11), half in peak (11-11:30)
    write(historian, "e.101.energy_kwh", [(NOV1 + 10.5 * HOUR, 50.0), (NOV1 + 11.5 * HOUR, 52.0)])
    bill = bill_accounts(
        site,
        HistorianReadings(historian),
        NOV1,
        NOV1 + 24 * HOUR,
        accounts=["shop-101"],
        shared=False,
    ).account("shop-101")
    lines = _lines(bill)
    assert lines["sharp"][0] == pytest.approx(1.0)
    assert lines["peak"][0] == pytest.approx(1.0)
    assert lines["flat"][0] == 0.0 and lines["valley"][0] == 0.0
    # and a bill that ends inside the interval takes the proportional part
    half = bill_accounts(
        site,
        HistorianReadings(historian),
        NOV1,
        NOV1 + 11.25 * HOUR,
        accounts=["shop-101"],
        shared=False,
    ).account("shop-101")
    assert half.energy_kwh == pytest.approx(1.5)


def test_tiers_step_on_the_calendar_month(site: Any, historian: SqliteHistorian) -> None:
    mid = NOV1 + 15 * 86400
    write(
        historian,
        "e.102.energy_kwh",
        [(NOV1, 1000.0), (mid, 1200.0), (DEC1, 1500.0), (DEC1 + 86400, 1510.0)],
    )
    readings = HistorianReadings(historian)
    bill = bill_accounts(site, readings, mid, DEC1, accounts=["home-102"], shared=False).account(
        "home-102"
    )
    # 200 kWh used in November before the bill starts; the bill's 300 kWh are 200..500:
    #   tier 1 (to 240): 40 x 0.4883 = 19.532 -> 19.53
    #   tier 2 (to 400): 160 x 0.5383 = 86.128 -> 86.13
    #   tier 3:          100 x 0.7883 = 78.83
    assert [(ln.name, ln.kwh, ln.amount) for ln in bill.lines] == [
        ("tier 1", pytest.approx(40.0), D("19.53")),
        ("tier 2", pytest.approx(160.0), D("86.13")),
        ("tier 3", pytest.approx(100.0), D("78.83")),
    ]
    assert bill.total == D("184.49")
    # December starts again at tier 1: 10 x 0.4883 = 4.883 -> 4.88
    dec = bill_accounts(site, readings, DEC1, DEC1 + 86400, accounts=["home-102"], shared=False)
    assert [(ln.name, ln.amount) for ln in dec.account("home-102").lines] == [("tier 1", D("4.88"))]
    # a bill across the month boundary steps each month on its own
    both = bill_accounts(site, readings, mid, DEC1 + 86400, accounts=["home-102"], shared=False)
    assert _lines(both.account("home-102"))["tier 1"][0] == pytest.approx(50.0)


def test_tou_with_tier_surcharge_and_seasons() -> None:
    t = TariffConfig.model_validate(
        {
            "id": "mix",
            "bands": [
                {"name": "day", "price": "1.00", "hours": ["08:00-20:00"]},
                {"name": "night", "price": "0.50", "hours": ["20:00-08:00"]},
            ],
            "seasons": [
                {
                    "name": "summer",
                    "months": [7, 8],
                    "bands": [
                        {"name": "day", "price": "1.20", "hours": ["08:00-22:00"]},
                        {"name": "night", "price": "0.40", "hours": ["22:00-08:00"]},
                    ],
                }
            ],
            "tiers": [{"up_to_kwh": 10}, {"surcharge": "0.05"}],
        }
    )
    start = NOV1
    sched = band_schedule(t, start, start + 86400, TZ)
    curve = Curve(np.array([start, start + 86400]), np.array([0.0, 24.0]))
    u = usage(curve, sched, start, TZ)
    lines = {ln.name: ln for ln in price_usage(t, u)}
    # 12 h day x 1 kWh x 1.00 = 12.00; 12 h night x 0.50 = 6.00; 14 kWh above 10 x 0.05 = 0.70
    assert lines["day"].amount == D("12.00") and lines["night"].amount == D("6.00")
    assert lines["tier 2 surcharge"].kwh == pytest.approx(14.0)
    assert lines["tier 2 surcharge"].amount == D("0.70")
    jul1 = 1_751_299_200.0  # 2025-07-01T00:00 +08:00
    s2 = band_schedule(t, jul1, jul1 + 86400, TZ)
    u2 = usage(Curve(np.array([jul1, jul1 + 86400]), np.array([0.0, 24.0])), s2, jul1, TZ)
    lines2 = {ln.name: ln for ln in price_usage(t, u2)}
    # summer: 14 h x 1.20 = 16.80, 10 h x 0.40 = 4.00
    assert lines2["day (summer)"].amount == D("16.80")
    assert lines2["night (summer)"].amount == D("4.00")


def test_shared_loss_by_area_is_its_own_line(site: Any, historian: SqliteHistorian) -> None:
    end = NOV1 + 24 * HOUR
    _constant(historian, "e.101.energy_kwh", 1.0, NOV1 - 3 * HOUR, end + 3 * HOUR, 1.5 * HOUR)
    write(historian, "e.102.energy_kwh", [(NOV1, 0.0), (end, 10.0)])
    write(historian, "e.main.energy_kwh", [(NOV1, 0.0), (end, 50.0)])
    run = bill_accounts(site, HistorianReadings(historian), NOV1, end)
    # master 50 - (24 + 10) = 16 kWh shared by area 120 : 80 -> 9.6 and 6.4 kWh
    assert run.losses["b1"].shared_kwh == pytest.approx(16.0)
    shop, home = run.account("shop-101"), run.account("home-102")
    assert shop.shared_kwh == pytest.approx(9.6) and home.shared_kwh == pytest.approx(6.4)
    # priced at the account's own average price: 19.74 / 24 = 0.8225 -> 9.6 x 0.8225 = 7.896 -> 7.90
    # home: 10 kWh tier 1 = 4.88; 4.88 / 10 = 0.4880 -> 6.4 x 0.488 = 3.1232 -> 3.12
    assert _lines(shop)["shared loss"][1:] == (D("0.8225"), D("7.90"))
    assert _lines(home)["shared loss"][1:] == (D("0.4880"), D("3.12"))
    assert shop.total == D("19.74") + D("7.90")
    assert home.total == D("4.88") + D("3.12")


def test_shared_loss_by_consumption_and_negative_difference() -> None:
    loss = allocate_loss("b", 100.0, {"a": 30.0, "b": 50.0}, {"a": 10.0, "b": 10.0}, "consumption")
    assert loss.shared_kwh == pytest.approx(20.0)
    assert loss.parts == {"a": pytest.approx(7.5), "b": pytest.approx(12.5)}
    neg = allocate_loss("b", 70.0, {"a": 30.0, "b": 50.0}, {"a": 10.0, "b": 10.0}, "area")
    assert neg.shared_kwh == 0.0 and neg.parts == {"a": 0.0, "b": 0.0}
    with pytest.raises(ValueError, match="expected area or consumption"):
        allocate_loss("b", 1.0, {"a": 1.0}, {"a": 1.0}, "volume")


def test_meter_replacement_in_the_curve() -> None:
    # old meter 100 -> 112 by 12:00 (final 112), new meter starts at 0, reads 12 at 24:00
    ts = [NOV1, NOV1 + 6 * HOUR, NOV1 + 18 * HOUR, NOV1 + 24 * HOUR]
    vs = [100.0, 106.0, 6.0, 12.0]
    c = build_curve(ts, vs, [Replacement("m", NOV1 + 12 * HOUR, 112.0, 0.0)])
    assert c.energy(NOV1, NOV1 + 24 * HOUR) == pytest.approx(24.0)
    assert c.energy(NOV1, NOV1 + 12 * HOUR) == pytest.approx(12.0)
    # without the replacement record the drop would be a reset: only 6 + 6 + 6 = 18
    assert build_curve(ts, vs).energy(NOV1, NOV1 + 24 * HOUR) == pytest.approx(18.0)


def test_tier_split() -> None:
    assert tier_split([240, 400, None], 0.0, 100.0) == [100.0, 0.0, 0.0]
    assert tier_split([240, 400, None], 230.0, 200.0) == [10.0, 160.0, 30.0]
    assert sum(tier_split([240, 400, None], 500.0, 50.0)) == 50.0


@settings(max_examples=60, deadline=None)
@given(
    incs=st.lists(st.floats(0.0, 5.0), min_size=2, max_size=60),
    cut=st.floats(0.0, 1.0),
)
def test_bills_of_adjacent_periods_add_up(incs: list[float], cut: float) -> None:
    site = STATIC_SITE

    class Mem:
        def __init__(self, curve: Curve) -> None:
            self.c = curve

        def curve(self, tag: str, start: float, end: float) -> Curve:
            return self.c

    ts = NOV1 + np.arange(len(incs)) * 1700.0
    c = build_curve(ts, np.cumsum(incs))
    end = float(ts[-1])
    mid = NOV1 + cut * (end - NOV1)
    if not NOV1 < mid < end:
        return
    src = Mem(c)
    whole = bill_accounts(site, src, NOV1, end, accounts=["shop-101"], shared=False).account(
        "shop-101"
    )
    a = bill_accounts(site, src, NOV1, mid, accounts=["shop-101"], shared=False).account("shop-101")
    b = bill_accounts(site, src, mid, end, accounts=["shop-101"], shared=False).account("shop-101")
    assert a.energy_kwh + b.energy_kwh == pytest.approx(whole.energy_kwh, abs=1e-9)
    for name in ("sharp", "peak", "flat", "valley"):
        assert _lines(a)[name][0] + _lines(b)[name][0] == pytest.approx(
            _lines(whole)[name][0], abs=1e-9
        )
    assert whole.total == sum((ln.amount for ln in whole.lines), D("0"))
