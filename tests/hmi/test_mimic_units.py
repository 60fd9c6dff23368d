"""The plant mimic's and the overview's logic without a browser: geometry, shop cells, alarm marks, grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms.model import Alarm, AlarmState
from hmi.mimic import TRIPPED_FILL, Mimic, unit_state
from hmi.mimic_alarms import MARKERS, AlarmMarks
from hmi.mimic_entry import EntryRow, entry_text
from hmi.mimic_geometry import RISER_S, Geometry
from hmi.model import UnitCell, building_layout
from hmi.overview import grid_shape, natural_key, priority_badge, sparkline_svg
from hmi.theme import COMM_LOST, TEXT, TEXT_DIM
from tags.model import Quality

G, U, B = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)


def _cell(hid: str, floor: int, pos: int, **kw: object) -> UnitCell:
    base: dict[str, object] = dict.fromkeys(
        ("valve_tag", "room_tag", "setpoint_tag", "fault_tag", "online_tag")
    )
    base.update(kw)
    return UnitCell(hid, hid, floor, pos, 50.0, **base)  # type: ignore[arg-type]


def test_geometry_stacks_floors_by_rank_and_keeps_the_entry_a_share_of_the_width() -> None:
    cells = [_cell("s1", 0, 0), _cell("101", 1, 0), _cell("102", 1, 1), _cell("301", 3, 0)]
    geo = Geometry.of(cells, substation=False)
    assert geo.floors == (0, 1, 3) and [geo.rank(c.floor) for c in cells] == [0, 1, 1, 2]
    x0, x1 = geo.x_range
    assert x0 < RISER_S < 0 < x1
    wide = Geometry.of([_cell(f"1{i:02d}", 1, i) for i in range(20)], substation=False)
    narrow_share = geo.entry_width / (geo.x_range[1] - geo.x_range[0])
    wide_share = wide.entry_width / (wide.x_range[1] - wide.x_range[0])
    assert 0.25 < wide_share < 0.4 and narrow_share > 0.25
    with_sub = Geometry.of(cells, substation=True)
    assert with_sub.columns == 2 and with_sub.entry_width > geo.entry_width
    # the two text columns sit side by side left of the risers, without overlapping
    (l0, r0), (l1, r1) = with_sub.column_span(0), with_sub.column_span(1)
    assert l1 < r1 <= l0 < r0 <= RISER_S
    # every floor has a supply branch; the entry pipes start at the drawing's left edge
    pipes = geo.pipes()
    assert len(pipes["supply"][0]) == 1 + len(geo.floors)
    assert pipes["supply"][0][0][0] == x0 and pipes["return"][0][0][0] == x0


def test_a_shop_shows_its_meter_and_a_tripped_relay_differs_from_a_closed_one() -> None:
    closed = unit_state(None, None, None, None, None, False, power=(1.234, G, 0), relay=(True, G, 0),
                        meter_online=(True, G, 0), level=(0, G, 0), energy_today=12.34, title="Bakery")  # fmt: skip
    assert closed["title"] == "Bakery" and closed["relay_state"] == "closed"
    assert "1.23 kW" in closed["info1"] and "12.3 kWh today" in closed["info1"]
    tripped = unit_state(None, None, None, None, None, False, power=(0.0, G, 0), relay=(False, G, 0),
                         meter_online=(True, G, 0), level=(3, G, 0), title="Bakery")  # fmt: skip
    assert tripped["relay_state"] == "tripped" and tripped["fill"] == TRIPPED_FILL
    assert "TRIPPED" in tripped["info2"] and "arrears" in tripped["info2"]
    assert tripped["info2"] != closed["info2"] and "⊘" in tripped["info2"]
    lost = unit_state(None, None, None, None, None, False, power=(1.0, B, 1), relay=(True, B, 1),
                      meter_online=(False, G, 0), title="Bakery")  # fmt: skip
    assert lost["comm"] == "lost" and lost["hatch"] == "x" and lost["fill"] != TRIPPED_FILL


def test_valve_states_differ_by_more_than_colour() -> None:
    marks = {
        s: unit_state(v, None, None, f, None, cmd)["mark"]
        for s, v, f, cmd in (
            ("open", (True, G, 0), None, False),
            ("closed", (False, G, 0), None, False),
            ("commanded", (False, G, 0), None, True),
            ("fault", (False, G, 0), (True, G, 0), False),
            ("unknown", (None, B, 0), None, False),
        )
    }
    assert marks == {"open": "", "closed": "", "commanded": "…", "fault": "✕", "unknown": "?"}
    fills = {
        s: unit_state(v, None, None, None, None, False)["valve_fill"]
        for s, v in (("open", (True, G, 0)), ("closed", (False, G, 0)))
    }
    assert fills["open"] != fills["closed"]  # filled against hollow


def test_entry_values_are_drawn_by_quality() -> None:
    row = EntryRow("hm", "supply", "b.hm.supply_c")
    assert entry_text(row, 68.04, G, "degC") == ("supply 68.0 °C", TEXT)
    text, colour = entry_text(row, 68.04, U, "degC")
    assert text.endswith("?") and colour == TEXT_DIM
    text, colour = entry_text(row, 68.04, B, "degC")
    assert text.startswith("✕") and colour == COMM_LOST
    assert entry_text(EntryRow("sub", "pump", "p", kind="pump"), True, G, "")[0] == "pump running"


def _alarm(
    key: str, prio: int, state: AlarmState, tag: str | None = None, device: str | None = None
) -> Alarm:
    return Alarm(key, key.split(":")[0], "limit", "x", None, prio, "b1", state, True,
                 occurrence=1, message=f"{key} message", tag=tag, device=device)  # fmt: skip


@pytest.fixture()
def estate(tmp_path: Path):
    from scada.bench.hmi import Estate

    return Estate(3, 4, tmp_path)


def test_alarm_marks_sit_on_their_objects_worst_first(estate) -> None:
    db = estate.db
    cells = building_layout(estate.site, db, "big")
    mimic = Mimic(db, cells, lambda h: None, building="big", heat={"supply": "big.hm.supply_c"},
                  meter_device="big.hm")  # fmt: skip
    c = cells[5]
    assert c.room_tag is not None and c.online_tag is not None
    n = mimic.set_alarms(
        [
            _alarm("room:a", 3, AlarmState.ACKED, tag=c.room_tag),
            _alarm("room:b", 2, AlarmState.UNACKED, tag=c.setpoint_tag),  # same cell, worse
            _alarm("hm_lost", 1, AlarmState.UNACKED, device="big.hm"),
            _alarm("supply:l", 4, AlarmState.ACKED, tag="big.hm.supply_c"),
            _alarm("elsewhere", 1, AlarmState.UNACKED, tag="other.tag"),  # not on this mimic
        ]
    )
    data = {k: list(v) for k, v in mimic.alarms.source.data.items()}
    assert n == 3 and sorted(data["key"]) == ["hm_lost", "room:b", "supply:l"]
    i = data["key"].index("room:b")
    x, y = mimic.geo.cell_xy(c)
    assert (data["x"][i], data["y"][i]) == (x - 0.36, y + 0.28)
    assert (data["marker"][i], data["num"][i], data["fill_alpha"][i]) == (MARKERS[2], "2", 1.0)
    j = data["key"].index("supply:l")
    assert data["fill_alpha"][j] == 0.0  # acknowledged: hollow
    assert mimic.set_alarms([]) == 0 and mimic.alarms.source.data["key"] == []
    assert isinstance(mimic.alarms, AlarmMarks)


def test_the_overview_grid_fills_a_wide_screen_and_sparklines_keep_gaps() -> None:
    assert grid_shape(1) == (1, 1)
    assert grid_shape(2) == (2, 1)
    cols, rows = grid_shape(200)
    assert cols * rows >= 200 and cols > rows and cols * (rows - 1) < 200
    svg = sparkline_svg([1.0, 2.0, None, 3.0, 4.0])
    assert svg.count("<polyline") == 2  # the gap splits the line
    assert sparkline_svg([None, 1.0]) == ""
    badge = priority_badge(1, True)
    assert 'data-priority="1"' in badge and 'data-unacked="1"' in badge and ">1<" in badge
    assert 'data-unacked="0"' in priority_badge(3, False)


def test_the_overview_prefers_wide_tiles_and_numbers_in_names_sort_as_numbers() -> None:
    assert grid_shape(10) == (4, 3)  # 4 x 3 landscape tiles, not 5 x 2 portrait ones
    assert grid_shape(9) == (3, 3)
    names = ["Building 10", "Building 2", "building 1", "Commerce House"]
    assert sorted(names, key=natural_key) == [
        "building 1",
        "Building 2",
        "Building 10",
        "Commerce House",
    ]
