"""HMI logic without a browser: unit states, mimic patching, CSV import, formatting, layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bokeh.core.property.vectorization import Value
from bokeh.document import Document
from bokeh.document.events import ColumnsPatchedEvent

from hmi.audit_page import audit_rows, chain_html, csv_link
from hmi.config_page import csv_devices_yaml, errors_html
from hmi.mimic import Mimic, column_patch, unit_state
from hmi.model import building_layout
from hmi.theme import COLD, COMM_LOST, value_html
from tags.model import Quality, Reason, TagValue

G, U, B = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)


def test_unit_state_draws_quality_and_valve() -> None:
    ok = unit_state((True, G, 0), (21.0, G, 0), (20.0, G, 0), (False, G, 0), (True, G, 0), False)
    assert ok["valve_state"] == "open" and ok["comm"] == "ok" and ok["hatch"] == " "
    cold = unit_state((False, G, 0), (16.0, G, 0), (20.0, G, 0), None, None, False)
    assert cold["valve_state"] == "closed" and cold["fill"] == COLD
    stale = unit_state((True, G, 0), (21.0, U, int(Reason.STALE)), (20.0, G, 0), None, None, False)
    assert stale["comm"] == "stale" and stale["hatch"] == "/"
    lost = unit_state(
        (True, B, int(Reason.COMM_LOST)), (21.0, B, 1), (20.0, B, 1), None, None, False
    )
    assert lost["comm"] == "lost" and lost["hatch"] == "x" and lost["line"] == COMM_LOST
    assert lost["fill"] != COLD  # a lost room is never judged cold on old data
    offline = unit_state((True, G, 0), (21.0, G, 0), (20.0, G, 0), None, (False, G, 0), False)
    assert offline["comm"] == "lost"
    fault = unit_state((True, G, 0), None, None, (True, G, 0), None, True)
    assert fault["valve_state"] == "fault"  # a fault wins over a command in progress
    cmd = unit_state((True, G, 0), None, None, None, None, True)
    assert cmd["valve_state"] == "commanded"
    none = unit_state(None, None, None, None, None, False)
    assert none["valve_state"] == "none" and none["valve_alpha"] == 0.0 and none["room"] == ""


def test_value_html_never_shows_bad_values_as_fresh() -> None:
    good = value_html(TagValue(21.456, Quality.GOOD), "°C", tag="t")
    assert "21.5" in good and "q-bad" not in good and "q-uncertain" not in good
    stale = value_html(TagValue(21.4, Quality.UNCERTAIN, Reason.STALE), "°C")
    assert "q-uncertain" in stale and 'title="uncertain: stale"' in stale
    lost = value_html(TagValue(21.4, Quality.BAD, Reason.COMM_LOST), "°C")
    assert "q-bad" in lost and "comm_lost" in lost
    assert "q-bad" in value_html(None)


@pytest.fixture()
def estate(tmp_path: Path):
    from scada.bench.hmi import Estate

    return Estate(3, 4, tmp_path)


def test_layout_follows_floors_and_order(estate) -> None:
    cells = building_layout(estate.site, estate.db, "big")
    assert len(cells) == 12
    assert {c.floor for c in cells} == {1, 2, 3}
    first_floor = [c for c in cells if c.floor == 1]
    assert [c.position for c in first_floor] == [0, 1, 2, 3]
    assert (
        first_floor[0].household == "big.1-01"
        and first_floor[0].online_tag == "big.1-01.valve.online"
    )


def test_mimic_patches_only_changed_cells(estate) -> None:
    db = estate.db
    db.flush()
    mimic = Mimic(db, building_layout(estate.site, db, "big"), lambda h: None)
    doc = Document()
    doc.add_root(mimic.figure)
    sent: list[dict] = []  # what the document would send to the browser

    def on_event(event) -> None:
        if isinstance(event, ColumnsPatchedEvent):
            sent.append({k: [tuple(x) for x in v] for k, v in event.patches.items()})
        else:
            sent.append({"other": type(event).__name__})

    doc.on_change(on_event)
    batches = []
    unsubscribe = db.subscribe("*", batches.append)
    db.update("big.2-03.valve.room_c", 30.0)
    db.flush()
    unsubscribe()
    assert mimic.apply(batches[-1]) == 1
    assert sent == [{"room": [(6, "30.0")]}]
    # quality only: the same cell gets the stale hatch, nothing else is sent
    db.set_quality(db.ids_of(["big.2-03.valve.room_c"]), Quality.UNCERTAIN, Reason.STALE)
    batch = db.snapshot_batch(["big.2-03.valve.room_c"])
    mimic.apply(batch)
    assert set(sent[-1]) == {"comm", "hatch", "text_color"}
    assert all(row == 6 for col in sent[-1].values() for row, _ in col)
    # an unrelated tag changes nothing
    db.update("big.hm.power_kw", 1.0)
    assert mimic.apply(db.snapshot_batch(["big.hm.power_kw"])) == 0
    # floors are drawn by rank: the lowest configured floor at y = 0, no gaps
    ranks = sorted({c.floor for c in mimic.cells})
    assert np.asarray(mimic.source.data["y"]).tolist() == [
        ranks.index(c.floor) for c in mimic.cells
    ]


def test_csv_import_builds_devices_and_names_bad_rows() -> None:
    text = "id,template,channel,unit,household\nb3.101.valve,valve,b3-bus,11,b3.101\nb3.102.valve,valve,b3-bus,12,\n"
    yaml_text = csv_devices_yaml(text)
    assert (
        "{id: b3.101.valve, template: valve, channel: b3-bus, unit: 11, household: b3.101}"
        in yaml_text
    )
    assert "{id: b3.102.valve, template: valve, channel: b3-bus, unit: 12}" in yaml_text
    with pytest.raises(ValueError, match="line 2: unit 'x'"):
        csv_devices_yaml("id,template,channel,unit\na,valve,bus,x\n")
    with pytest.raises(ValueError, match="lacks unit"):
        csv_devices_yaml("id,template,channel\na,valve,bus\n")


def test_errors_show_location_field_and_source_line() -> None:
    files = {"site.yaml": "site: {id: demo}\ndevices:\n  - {id: d1, template: valvee}\n"}
    out = errors_html(
        [
            {
                "file": "site.yaml",
                "line": 3,
                "col": 24,
                "path": "devices[0].template",
                "message": "unknown template",
            }
        ],
        files,
    )
    assert "site.yaml:3:24" in out and "devices[0].template" in out and "unknown template" in out
    assert "{id: d1, template: valvee}" in out and "^" in out


def test_mimic_patches_a_busy_column_as_one_slice(tmp_path: Path) -> None:
    from scada.bench.hmi import Estate

    estate = Estate(4, 10, tmp_path)  # 40 units, every room moves: one slice per column
    db = estate.db
    db.flush()
    mimic = Mimic(db, building_layout(estate.site, db, "big"), lambda h: None)
    doc = Document()
    doc.add_root(mimic.figure)
    sent: list[dict] = []
    doc.on_change(lambda e: sent.append(e.patches) if isinstance(e, ColumnsPatchedEvent) else None)
    batches = []
    unsubscribe = db.subscribe("*", batches.append)
    estate.step()
    db.flush()
    unsubscribe()
    mimic.apply(batches[-1])
    # one patch per source: the units' columns, and the valves' own (a tenth of them toggled)
    assert len(sent) == 2 and "room" in sent[0] and set(sent[1]) == {"valve_fill"}
    assert "valve_fill" not in sent[0] and "room" not in sent[1]
    (index, values), *more = sent[0]["room"]
    assert more == [] and index == slice(0, 40)
    assert values == mimic.source.data["room"] == estate.room_texts()
    # few changes stay per cell; a column patched at 3 of 40 cells is not sent whole
    assert column_patch(list("abcdefghij"), [(1, "B"), (8, "I")]) == [(1, "B"), (8, "I")]
    col = [str(i) for i in range(100)]
    sparse = [(i, "x") for i in range(0, 100, 3)]  # 34 changes over 100 cells
    assert column_patch(col, sparse) == sparse


def test_quality_hatches_are_scalar_overlays(estate) -> None:
    db = estate.db
    mimic = Mimic(db, building_layout(estate.site, db, "big"), lambda h: None)
    hatched = {}
    for r in mimic.figure.renderers:
        spec = (
            r.glyph.lookup("hatch_pattern").get_value(r.glyph)
            if "hatch_pattern" in r.glyph.properties()
            else None
        )
        if spec is None:
            continue
        # a per-cell (field) hatch makes BokehJS build one canvas per cell on every update
        assert isinstance(spec, Value), f"{r.name}: hatch_pattern {spec}"
        if spec.value is not None:
            hatched[r.name] = (spec.value, r.view.filter.column_name, r.view.filter.group)
    assert hatched == {"units-stale": ("/", "hatch", "/"), "units-lost": ("x", "hatch", "x")}


def test_chain_status_is_intact_with_its_head_or_broken_in_the_alarm_colour() -> None:
    intact = chain_html(
        {"ok": True, "entries": 7, "head": {"seq": 7, "hash": "ab" * 32}, "broken_at": None}
    )
    assert 'data-chain="intact"' in intact and 'data-head="7"' in intact and "abababab" in intact
    broken = chain_html(
        {"ok": False, "entries": 4, "head": None, "broken_at": 3, "reason": "changed <x>"}
    )
    assert 'class="result-bad"' in broken and "BROKEN at seq 3" in broken
    assert "&lt;x&gt;" in broken  # escaped
    assert 'data-chain="error"' in chain_html(None, OSError("disk gone"))


def test_rows_use_the_site_time_zone_and_links_carry_the_filters() -> None:
    entry = {
        "seq": 1,
        "ts": 1714521600.0,  # 2024-05-01 00:00 UTC
        "user": "olga",
        "role": "operator",
        "source": "hmi 10.0.0.1",
        "action": "alarm.ack",
        "target": "b1.trip",
        "result": "ok",
        "detail": None,
        "before": {"state": "unacknowledged"},
        "after": None,
    }
    rows = audit_rows([entry], "Europe/Berlin")
    assert rows["time"] == ["2024-05-01 02:00:00"] and rows["detail"] == [""]
    assert '"unacknowledged"' in rows["before"][0] and rows["after"] == [""]
    link = csv_link({"since": 10.5, "until": 20.2, "user": "olga", "action": "alarm.*"})
    assert link == "/api/audit?format=csv&since=10&until=21&user=olga&action=alarm.%2A"
