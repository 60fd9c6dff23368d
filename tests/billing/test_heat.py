"""Heat allocation: the worked example by hand, estimation of comm-lost valves, properties."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.heat import allocate_building, allocate_heat, heat_shares
from historian.sqlite import SqliteHistorian
from tags.model import Quality
from tests.billing.conftest import HOUR, NOV1, write

DAY_END = NOV1 + 24 * HOUR


def _fill_day(h: SqliteHistorian) -> None:
    """Q = 600 kWh; valves open 12 h (101), 6 h (102), 24 h (201) on 2025-11-01 (local)."""
    write(
        h, "b1.hm.energy_kwh", [(NOV1 - 60, 5000.0), (NOV1 + 12 * HOUR, 5300.0), (DAY_END, 5600.0)]
    )
    write(h, "b1.101.valve.open", [(NOV1 - 100, True), (NOV1 + 12 * HOUR, False)])
    write(
        h,
        "b1.102.valve.open",
        [(NOV1 - 100, False), (NOV1 + 6 * HOUR, True), (NOV1 + 12 * HOUR, False)],
    )
    write(h, "b1.201.valve.open", [(NOV1 - 100, True)])


def test_worked_example_with_basic_share_and_position_factors(
    site: Any, historian: SqliteHistorian
) -> None:
    _fill_day(historian)
    alloc = allocate_heat(site, historian, NOV1, DAY_END)
    (b,) = alloc.buildings
    # Q = 5600 - 5000 = 600 kWh; basic = 0.3 x 600 = 180 kWh, shared by area 100:50:50
    #   -> 90, 45, 45.  The rest, 420 kWh, by F x t x k:
    #   101: 100 m2 x 12 h x 1.0 = 1200;  102: 50 x 6 x 1.2 = 360;  201: 50 x 24 x 1.0 = 1200
    #   sum 2760 -> 420 x 1200/2760 = 182.6087, 420 x 360/2760 = 54.7826, 182.6087
    # heat: 272.6087, 99.7826, 227.6087 kWh (sum 600); cost at 0.25/kWh rounded half-up:
    #   68.152 -> 68.15, 24.9457 -> 24.95, 56.902 -> 56.90; total 150.00
    assert b.heat_kwh == pytest.approx(600.0)
    assert b.basic_kwh == pytest.approx(180.0)
    got = {h.id: h for h in b.households}
    assert set(got) == {"b1.101", "b1.102", "b1.201"}  # the shop has no valve
    assert got["b1.101"].heat_kwh == pytest.approx(90 + 420 * 1200 / 2760)
    assert got["b1.102"].heat_kwh == pytest.approx(45 + 420 * 360 / 2760)
    assert got["b1.201"].heat_kwh == pytest.approx(45 + 420 * 1200 / 2760)
    assert got["b1.101"].basic_kwh == pytest.approx(90.0)
    assert [got[k].cost for k in ("b1.101", "b1.102", "b1.201")] == [
        Decimal("68.15"),
        Decimal("24.95"),
        Decimal("56.90"),
    ]
    assert b.cost == Decimal("150.00")
    assert got["b1.102"].share == pytest.approx((45 + 420 * 360 / 2760) / 600)
    assert not any(h.estimated for h in b.households)
    doc = alloc.to_json()
    (jb,) = doc["buildings"]
    assert set(jb) == {"id", "heat_kwh", "basic_kwh", "estimated", "households"}
    assert set(jb["households"][0]) == {
        "id",
        "area_m2",
        "on_hours",
        "share",
        "heat_kwh",
        "cost",
        "estimated",
    }
    assert jb["households"][1]["on_hours"] == pytest.approx(6.0)
    assert jb["households"][1]["cost"] == "24.95"


def test_comm_lost_valve_is_estimated_from_the_building_ratio(
    site: Any, historian: SqliteHistorian
) -> None:
    _fill_day(historian)
    # 201 loses contact from 06:00 to 18:00: a bad sample, then a good "open" again
    write(historian, "b1.201.valve.open", [(NOV1 + 6 * HOUR, False)], Quality.BAD)
    write(historian, "b1.201.valve.open", [(NOV1 + 18 * HOUR, True)])
    (b,) = allocate_heat(site, historian, NOV1, DAY_END).buildings
    got = {h.id: h for h in b.households}
    h201 = got["b1.201"]
    # known: open 00-06 and 18-24 = 12 h on, 12 h known; unknown 12 h.
    # building ratio that day: on (12 + 6 + 12) / known (24 + 24 + 12) = 30/60 = 0.5
    # estimate: 12 h + 12 h x 0.5 = 18 h
    assert h201.estimated and not got["b1.101"].estimated
    assert h201.on_s == pytest.approx(18 * HOUR)
    assert h201.unknown_s == pytest.approx(12 * HOUR)
    w = np.array([100 * 12 * 1.0, 50 * 6 * 1.2, 50 * 18 * 1.0])
    assert h201.heat_kwh == pytest.approx(45 + 420 * w[2] / w.sum())
    assert sum(h.heat_kwh for h in b.households) == pytest.approx(600.0)


def test_no_valve_open_shares_the_rest_by_area(site: Any, historian: SqliteHistorian) -> None:
    write(historian, "b1.hm.energy_kwh", [(NOV1, 0.0), (DAY_END, 100.0)])
    for t in ("b1.101.valve.open", "b1.102.valve.open", "b1.201.valve.open"):
        write(historian, t, [(NOV1 - 1, False)])
    (b,) = allocate_heat(site, historian, NOV1, DAY_END).buildings
    assert [h.heat_kwh for h in b.households] == pytest.approx([50.0, 25.0, 25.0])


def test_unknown_building_is_a_key_error(site: Any, historian: SqliteHistorian) -> None:
    with pytest.raises(KeyError):
        allocate_heat(site, historian, NOV1, DAY_END, ["nope"])
    with pytest.raises(ValueError, match="empty"):
        allocate_heat(site, historian, DAY_END, NOV1)


areas = st.lists(st.floats(1.0, 500.0), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    area=areas,
    basic=st.floats(0.0, 1.0),
    q=st.floats(0.0, 1e6),
)
def test_shares_sum_to_one_and_energy_to_q(
    data: Any, area: list[float], basic: float, q: float
) -> None:
    n = len(area)
    on = data.draw(st.lists(st.floats(0.0, 86400.0 * 31), min_size=n, max_size=n))
    k = data.draw(st.lists(st.floats(0.5, 2.0), min_size=n, max_size=n))
    shares = heat_shares(basic, np.array(area), np.array(k), np.array(on))
    assert shares.sum() == pytest.approx(1.0, abs=1e-9)
    assert (shares >= 0).all()
    b = allocate_building(
        "b",
        q,
        basic,
        Decimal("0.30"),
        [f"h{i}" for i in range(n)],
        np.array(area),
        np.array(k),
        np.array(on),
    )
    assert sum(h.heat_kwh for h in b.households) == pytest.approx(q, rel=1e-9, abs=1e-6)
    assert sum(h.basic_kwh for h in b.households) == pytest.approx(q * basic, rel=1e-9, abs=1e-6)
    # each cost is its energy (rounded to 1e-6 kWh) priced and rounded to the cent: within half
    # a cent plus the price of half a micro-kWh
    for h in b.households:
        assert h.cost is not None and h.cost == h.cost.quantize(Decimal("0.01"))
        assert abs(float(h.cost) - h.heat_kwh * 0.30) <= 0.005 + 0.30 * 0.5e-6 + 1e-9


def test_a_month_to_date_allocation_counts_valve_time_up_to_now(
    site: Any, ledger: Any, historian: SqliteHistorian
) -> None:
    from billing.service import Billing

    now = time.time()
    write(historian, "b1.hm.energy_kwh", [(now - 3 * HOUR, 100.0), (now - 60, 130.0)])
    write(historian, "b1.101.valve.open", [(now - 3 * HOUR, True)])  # open since 3 h ago
    write(historian, "b1.102.valve.open", [(now - 3 * HOUR, True), (now - 2 * HOUR, False)])
    write(historian, "b1.201.valve.open", [(now - 3 * HOUR, False)])
    # the period runs 30 days into the future: only the 3 h up to now are known
    billing = Billing(site, ledger, historian, commander=None, audit=None)  # queries only
    (b,) = billing.allocate_heat(now - 3 * HOUR, now + 30 * 86400).buildings
    got = {h.id: h for h in b.households}
    assert 2.99 <= got["b1.101"].on_s / 3600 <= 3.01  # not 723 h
    assert got["b1.102"].on_s == pytest.approx(3600.0)
    assert got["b1.201"].on_s == 0.0
    assert b.heat_kwh == pytest.approx(30.0)
    with pytest.raises(ValueError, match="not begun"):
        billing.allocate_heat(now + 86400, now + 2 * 86400)
