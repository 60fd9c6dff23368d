"""Heat meter daily sheet, buildings by heat per m2 per degree-day, meter readings: known figures.

Two local days (Asia/Shanghai) of hand-made readings. b1 (320 m2 of flats): 25 kWh/h, the
heat meter bad from 10:00 to 13:00 on day 2; supply 70 degC, then 60 / 80 around noon of
day 2 (mean 70); return 40; flow 2 m3/h until 18:00 on day 1, 1 m3/h from 06:00 on day 2.
b2 (200 m2): 10 kWh/h, return 50. Outdoor: 8 degC on day 1, 13 on day 2 (base 18: 10 + 5
degree-days).
"""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest

from billing.ledger import Ledger
from billing.periods import Period
from billing.report_buildings import degree_days
from billing.reports import build_report, write_csv, write_xlsx
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.config import load_site_text
from scada.services.audit import AuditLog
from tags.model import Quality
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

DAY = 24 * HOUR
TWO_DAYS = Period("window", "2025-11-01 .. 2025-11-03", NOV1, NOV1 + 2 * DAY)
OUTDOOR = "weather.outdoor_c"


def _text() -> str:
    text = site_text(free_port())
    text = text.replace(
        "      power_kw:   {address: 4, kind: holding, type: float32, unit: kW}\n",
        "      power_kw:   {address: 4, kind: holding, type: float32, unit: kW}\n"
        "      supply_c:   {address: 6, kind: holding, type: float32, unit: degC}\n"
        "      return_c:   {address: 8, kind: holding, type: float32, unit: degC}\n"
        "      flow_m3h:   {address: 10, kind: holding, type: float32, unit: m3/h}\n",
        1,
    )
    text = text.replace(
        'price_per_kwh: "0.25"}',
        'price_per_kwh: "0.25", supply_tag: b1.hm.supply_c, return_tag: b1.hm.return_c, '
        "flow_tag: b1.hm.flow_m3h}",
    )
    text = text.replace(
        "  - {id: b1.hm, template: heat-meter, channel: bus, unit: 1}\n",
        "  - {id: b1.hm, template: heat-meter, channel: bus, unit: 1}\n"
        "  - {id: b2.hm, template: heat-meter, channel: bus, unit: 2}\n",
    )
    text = text.replace(
        "buildings:\n",
        "buildings:\n"
        "  - id: b2\n"
        "    heat: {energy_tag: b2.hm.energy_kwh, return_tag: b2.hm.return_c}\n"
        "    households:\n"
        "      - {id: b2.1, area_m2: 200}\n",
    )
    return text


def _fill(h: SqliteHistorian) -> None:
    """Write the readings of the module docstring."""
    ks = range(-1, 49)
    bad = {34, 35, 36}  # day 2, 10:00 .. 12:00
    write(
        h,
        "b1.hm.energy_kwh",
        [(NOV1 + k * HOUR, 5000.0 + 25.0 * (k + 1)) for k in ks if k not in bad],
    )
    write(h, "b1.hm.energy_kwh", [(NOV1 + k * HOUR, None) for k in sorted(bad)], Quality.BAD)
    write(h, "b2.hm.energy_kwh", [(NOV1 + k * HOUR, 100.0 + 10.0 * (k + 1)) for k in ks])
    write(
        h,
        "b1.hm.supply_c",
        [(NOV1 - 100, 70.0), (NOV1 + DAY, 60.0), (NOV1 + DAY + 12 * HOUR, 80.0)],
    )
    write(h, "b1.hm.return_c", [(NOV1 - 100, 40.0)])
    write(h, "b2.hm.return_c", [(NOV1 - 100, 50.0)])
    write(
        h,
        "b1.hm.flow_m3h",
        [(NOV1 - 100, 2.0), (NOV1 + 18 * HOUR, 0.0), (NOV1 + DAY + 6 * HOUR, 1.0)],
    )
    write(h, OUTDOOR, [(NOV1 - 100, 8.0), (NOV1 + DAY, 13.0)])


@pytest.fixture
def billing(ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path) -> Billing:
    _fill(historian)
    site = load_site_text(_text())
    return Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)


def test_heat_meter_daily_parameters(billing: Billing) -> None:
    r = build_report(billing, "heat_meter_days", TWO_DAYS)
    (sheet,) = r.sheets
    assert [c.name for c in sheet.columns] == [
        "building",
        "day",
        "heat",
        "volume",
        "supply",
        "return",
        "operating",
        "error",
        "uncertain",
    ]
    assert sheet.columns[3].unit == "m3"
    rows = {(x[0], x[1]): x for x in sheet.rows}
    assert rows[("b1", "2025-11-01")][2:] == [600.0, 36.0, 70.0, 40.0, 18.0, 0.0, ""]
    assert rows[("b1", "2025-11-02")][2:] == [600.0, 18.0, 70.0, 40.0, 18.0, 3.0, "comm_lost"]
    # b2: no flow, supply or power tag: those columns are empty
    assert rows[("b2", "2025-11-01")][2:] == [240.0, None, None, 50.0, None, 0.0, ""]
    i = sheet.rows.index(rows[("b1", "2025-11-02")])
    assert sheet.notes[(i, 2)] == "comm_lost"
    # the heat is meter_energy's figure for the same day
    energy = build_report(billing, "meter_energy", TWO_DAYS)
    heat = {x[0]: x for x in energy.sheets[-1].rows}
    assert heat["b1.hm.energy_kwh"][3:5] == [600.0, 600.0]


def test_buildings_by_heat_per_m2_per_degree_day(billing: Billing, tmp_path: Path) -> None:
    assert degree_days([8.0, 13.0, None, 20.0]).degree_days == 15.0
    assert degree_days([8.0, None]).unknown_days == 1
    r = build_report(billing, "building_heat", TWO_DAYS, outdoor=OUTDOOR)
    (sheet,) = r.sheets
    # b1: 1200 kWh / 320 m2 = 3.75 kWh/m2 / 15 Kd = 250 Wh/m2/Kd; b2: 480 / 200 = 2.4 -> 160
    assert sheet.rows == [
        ["b1", 320.0, 1200.0, 15.0, 0, 3.75, 250.0, 40.0, -5.0],
        ["b2", 200.0, 480.0, 15.0, 0, 2.4, 160.0, 50.0, 5.0],
    ]
    warm = build_report(billing, "building_heat", TWO_DAYS, outdoor=OUTDOOR, base_c=20.0)
    assert warm.sheets[0].rows[0][3] == 19.0  # 12 + 7
    write_xlsx(r, tmp_path / "b.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "b.xlsx")["buildings"]
    hdr = [c.value for c in ws[2]]
    assert "heat per m2 per degree-day [Wh/m2/Kd]" in hdr
    assert [row[0] for row in ws.iter_rows(min_row=3, values_only=True)][:2] == ["b1", "b2"]
    with pytest.raises(ValueError, match="no outdoor temperature"):
        build_report(billing, "building_heat", TWO_DAYS)  # no substation, no outdoor tag
    with pytest.raises(ValueError, match="base_c"):
        build_report(billing, "building_heat", TWO_DAYS, outdoor=OUTDOOR, base_c=99.0)
    with pytest.raises(ValueError, match="takes no base_c"):
        build_report(billing, "heat_meter_days", TWO_DAYS, base_c=18.0)


def test_meter_readings_as_of_the_period_end(billing: Billing, tmp_path: Path) -> None:
    r = build_report(billing, "meter_readings", TWO_DAYS)
    rows = {x[0]: x for x in r.sheets[0].rows}
    assert rows["b1.hm.energy_kwh"][1:] == [
        "heat",
        "b1",
        6225.0,
        "kWh",
        "good",
        "",
        "2025-11-03T00:00:00+08:00",
    ]
    assert rows["e.101.energy_kwh"][3:6] == [None, "kWh", "no data"]
    day1 = build_report(billing, "meter_readings", "2025-11-01")
    assert {x[0]: x for x in day1.sheets[0].rows}["b1.hm.energy_kwh"][3] == 5625.0
    write_csv(r, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", encoding="utf-8") as fh:
        got = {row[0]: row for row in csv.reader(fh) if row}
    assert got["b2.hm.energy_kwh"][3] == "590.0"


@pytest.mark.parametrize("kind", ["meter_readings", "heat_meter_days", "building_heat"])
def test_a_period_outside_the_history_is_an_error(billing: Billing, kind: str) -> None:
    with pytest.raises(ValueError, match="stored history"):
        if kind == "building_heat":
            build_report(billing, kind, "2024-11", outdoor=OUTDOOR)
        else:
            build_report(billing, kind, "2024-11")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(_text(), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill(h)
    h.close()
    window = ["--from", "2025-11-01", "--to", "2025-11-03"]
    common = [str(cfg), "--data-dir", str(data)]
    out = tmp_path / "b.csv"
    argv = ["report", "building_heat", *common, *window, "--outdoor", OUTDOOR, "--csv", str(out)]
    assert main(argv) == 0
    with open(out, encoding="utf-8") as fh:
        rows = {r[0]: r for r in csv.reader(fh) if r}
    assert rows["b1"][6] == "250.0"
    capsys.readouterr()
    assert main(["report", "heat_meter_days", *common, *window]) == 0
    assert "b1,2025-11-02,600.0*,18.0,70.0,40.0,18.0,3.0,comm_lost" in capsys.readouterr().out
    assert main(["report", "meter_readings", *common, "--period", "2025-11-02"]) == 0
    assert "b1.hm.energy_kwh,heat,b1,6225.0,kWh,good,," in capsys.readouterr().out
    bad = tmp_path / "bad.xlsx"
    argv = ["report", "heat_meter_days", *common, "--period", "2024-11", "--xlsx", str(bad)]
    assert main(argv) == 2
    assert "outside the stored history" in capsys.readouterr().err
    assert not bad.exists()
    assert main(["report", "building_heat", *common, *window]) == 2
    assert "no outdoor temperature" in capsys.readouterr().err
    assert main(["report", "meter_energy", *common, *window, "--base-c", "15"]) == 2
    assert "takes no base_c" in capsys.readouterr().err
