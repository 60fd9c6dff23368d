"""The ``room_compliance`` report on hand-made room-temperature profiles: exact shares and hours."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest

from billing.ledger import Ledger
from billing.periods import Period
from billing.report_compliance import parse_hours
from billing.reports import build_report, write_csv, write_xlsx
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.config import load_site_text
from scada.services.audit import AuditLog
from tags.model import Quality
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

DAY = 24 * HOUR
#: The two local days of the fixtures.
Period2 = Period("window", "2025-11-01 .. 2025-11-03", NOV1, NOV1 + 2 * DAY)


def _text(hours: str | None = '"06:00-22:00"') -> str:
    text = site_text(free_port())
    extra = "room_min_c: 20.0" + ("" if hours is None else f", room_hours: {hours}")
    text = text.replace('price_per_kwh: "0.25"}', f'price_per_kwh: "0.25", {extra}}}')
    for flat in ("101", "102", "201"):
        tag = f"valve_tag: b1.{flat}.valve.open"
        text = text.replace(tag, f"{tag}, room_tag: b1.{flat}.valve.room_c")
    return text


def _fill(h: SqliteHistorian) -> None:
    """Two local days (Asia/Shanghai), heating hours 06:00-22:00, minimum 20 degC.

    101: 21 throughout. 102: 19 until 14:00 on day 1, then 22 (mean 20.5, 8 h below).
    201: 21, 17 from 10:00 to 23:00 on day 1 (mean 18.0, 12 h below), 21; comm lost from
    06:00 on day 2 (no data that day).
    """
    write(h, "b1.101.valve.room_c", [(NOV1 - 100, 21.0)])
    write(h, "b1.102.valve.room_c", [(NOV1 - 100, 19.0), (NOV1 + 14 * HOUR, 22.0)])
    write(
        h,
        "b1.201.valve.room_c",
        [(NOV1 - 100, 21.0), (NOV1 + 10 * HOUR, 17.0), (NOV1 + 23 * HOUR, 21.0)],
    )
    write(h, "b1.201.valve.room_c", [(NOV1 + 30 * HOUR, 0.0)], Quality.BAD)


@pytest.fixture
def billing(ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path) -> Billing:
    _fill(historian)
    site = load_site_text(_text())
    return Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)


def test_shares_and_hours_below(billing: Billing) -> None:
    r = build_report(billing, "room_compliance", Period2)
    summary, under, flats = r.sheets
    assert [s.name for s in r.sheets] == ["compliance", "under-heated", "flats"]
    assert summary.rows == [
        ["b1", "2025-11-01", 3, 3, 2, 66.67, 20.0],
        ["b1", "2025-11-02", 3, 2, 2, 100.0, 20.0],
    ]
    assert under.rows == [["b1", "b1.201", 12.0, 1, 18.0], ["b1", "b1.102", 8.0, 0, 20.5]]
    by = {(row[1], row[2]): row[3:] for row in flats.rows}
    assert by[("b1.101", "2025-11-01")] == [21.0, 0.0, "yes"]
    assert by[("b1.102", "2025-11-01")] == [20.5, 8.0, "yes"]
    assert by[("b1.201", "2025-11-01")] == [18.0, 12.0, "no"]
    assert by[("b1.201", "2025-11-02")] == [None, 0.0, ""]
    assert by[("b1.102", "2025-11-02")] == [22.0, 0.0, "yes"]
    # the mean is the historian's own time-weighted mean over the heating hours
    h = billing._hist()
    a, b = NOV1 + 6 * HOUR, NOV1 + 22 * HOUR
    twa = h.query_agg(["b1.102.valve.room_c", "b1.201.valve.room_c"], a, b, b - a, "twa")
    assert twa["b1.102.valve.room_c"][0][1] == pytest.approx(20.5)
    assert twa["b1.201.valve.room_c"][0][1] == pytest.approx(18.0)


def test_whole_day_by_default(ledger: Ledger, historian: SqliteHistorian, audit: AuditLog) -> None:
    _fill(historian)
    site = load_site_text(_text(hours=None))
    b = Billing(site, ledger, historian, commander=None, audit=audit)
    r = build_report(b, "room_compliance", "2025-11-01")
    by = {row[1]: row[3:] for row in r.sheets[2].rows}
    # 102: 14 h at 19, 10 h at 22 -> 20.25; 201: 10 h at 21, 13 h at 17, 1 h at 21 -> 18.83
    assert by["b1.102"] == [20.25, 14.0, "yes"]
    assert by["b1.201"] == [round((11 * 21 + 13 * 17) / 24, 2), 13.0, "no"]


def test_bad_hours_and_no_history(billing: Billing) -> None:
    with pytest.raises(ValueError, match="after the start"):
        parse_hours("22:00-06:00")
    with pytest.raises(ValueError, match="room_hours"):
        load_site_text(_text(hours='"6-22"'))
    with pytest.raises(ValueError, match="outside the stored history"):
        build_report(billing, "room_compliance", "2024-11")


def test_files_and_cli(
    billing: Billing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = build_report(billing, "room_compliance", Period2)
    write_xlsx(r, tmp_path / "c.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "c.xlsx")
    assert wb.sheetnames == ["compliance", "under-heated", "flats"]
    ranked = list(wb["under-heated"].iter_rows(min_row=3, values_only=True))
    assert [x[1] for x in ranked[:2]] == ["b1.201", "b1.102"] and ranked[2][0] == "Total"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(_text(), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill(h)
    h.close()
    common = ["report", "room_compliance", str(cfg), "--data-dir", str(data)]
    out = tmp_path / "c.csv"
    assert main([*common, "--from", "2025-11-01", "--to", "2025-11-03", "--csv", str(out)]) == 0
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert ["b1", "2025-11-01", "3", "3", "2", "66.67", "20.0"] in rows
    write_csv(r, tmp_path / "same.csv")
    assert (tmp_path / "same.csv").read_text(encoding="utf-8").splitlines()[1:] == [
        ",".join(x) for x in rows[1:]
    ]
    capsys.readouterr()
    assert main([*common, "--period", "2024-11"]) == 2
    assert "outside the stored history" in capsys.readouterr().err
