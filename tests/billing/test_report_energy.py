"""The ``meter_energy`` report: known buckets across a meter replacement, gaps flagged, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from billing.ledger import Ledger
from billing.report_energy import energy_decimals, meters
from billing.reports import build_report, write_csv, write_xlsx
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.services.audit import AuditLog
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

DAY = 24 * HOUR


def _fill(h: SqliteHistorian) -> None:
    """Two days (Asia/Shanghai, no DST) of hourly readings.

    e.101: 1 kWh/h; swapped at 11:30 on day 1 (old meter 111.5, new one starts at 0): 24 + 24.
    e.102: 0.5 kWh/h until 10:00 on day 1, then nothing until 16:00 on day 2 (a 30 h gap).
    e.main: 1.23456 kWh/h (rounded to 3 decimals). b1.hm: 25 kWh/h.
    """
    ks = range(-1, 49)
    old = [(NOV1 + k * HOUR, 100.0 + k) for k in ks if k <= 11]
    new = [(NOV1 + k * HOUR, k - 11.5) for k in ks if k >= 12]
    write(h, "e.101.energy_kwh", old + new)
    h.record_replacement("e.101.energy_kwh", NOV1 + 11.5 * HOUR, 111.5, 0.0)
    write(h, "e.102.energy_kwh", [(NOV1 + k * HOUR, 10.0 + 0.5 * k) for k in range(-1, 11)])
    write(h, "e.102.energy_kwh", [(NOV1 + 40 * HOUR, 50.0)])
    write(h, "e.main.energy_kwh", [(NOV1 + k * HOUR, 1.23456 * (k + 1)) for k in ks])
    write(h, "b1.hm.energy_kwh", [(NOV1 + k * HOUR, 5000.0 + 25.0 * (k + 1)) for k in ks])


@pytest.fixture
def billing(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path
) -> Billing:
    _fill(historian)
    return Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)


def _rows(sheet: Any) -> dict[str, list[Any]]:
    return {r[0]: r for r in sheet.rows}


def test_days_across_a_replacement_and_a_gap(billing: Billing, site: Any) -> None:
    assert [(m.tag, m.kind) for m in meters(site)] == [
        ("b1.hm.energy_kwh", "heat"),
        ("e.main.energy_kwh", "electricity"),
        ("e.101.energy_kwh", "electricity"),
        ("e.102.energy_kwh", "electricity"),
    ]
    defs = {d.name: d for d in site.tag_defs()}
    assert energy_decimals(defs["e.main.energy_kwh"]) == 3  # no deadband: the default
    r = build_report(billing, "meter_energy", "2025-11")
    elec, heat = r.sheets
    assert (elec.name, heat.name) == ("electricity", "heat")
    hdr = [c.name for c in elec.columns]
    assert hdr[:5] == ["meter", "building", "unit", "2025-11-01", "2025-11-02"]
    assert len(hdr) == 3 + 30 + 2 and hdr[-2:] == ["total", "uncertain"]
    rows = _rows(elec)
    e101 = rows["e.101.energy_kwh"]
    assert e101[1:5] == ["b1", "kWh", 24.0, 24.0]
    assert e101[5] == 0.0  # after the last reading the counter is carried
    assert e101[-2] == 48.0
    # a day ending more than its width after the newest reading is stale
    assert e101[-1].startswith("2025-11-04 stale, 2025-11-05 stale")
    e102 = rows["e.102.energy_kwh"]
    assert e102[3:5] == [5.0, 35.0]
    assert e102[-1].startswith("2025-11-01 gap, 2025-11-02 gap")
    main_ = rows["e.main.energy_kwh"]
    assert main_[3:5] == [round(1.23456 * 24, 3), round(1.23456 * 24, 3)] == [29.629, 29.629]
    assert _rows(heat)["b1.hm.energy_kwh"][3:5] == [600.0, 600.0]
    # the same figures as the historian's own delta of each day
    h = billing._hist()
    assert h.delta("e.101.energy_kwh", NOV1, NOV1 + DAY) == pytest.approx(24.0)
    assert h.delta("e.102.energy_kwh", NOV1 + DAY, NOV1 + 2 * DAY) == pytest.approx(35.0)
    # gaps flagged as notes: (row, column)
    i = list(rows).index("e.102.energy_kwh")
    assert elec.notes[(i, 3)] == "gap" and elec.notes[(i, 4)] == "gap"
    assert (list(rows).index("e.101.energy_kwh"), 3) not in elec.notes
    # the totals row adds the meters of one kind per bucket
    tot = elec.totals()
    assert tot is not None and tot[3] == pytest.approx(24.0 + 5.0 + 29.629)


def test_hours_and_months(billing: Billing) -> None:
    r = build_report(billing, "meter_energy", "2025-11-01", every="1h")
    e101 = _rows(r.sheets[0])["e.101.energy_kwh"]
    assert [c.name for c in r.sheets[0].columns][3] == "2025-11-01 00:00"
    assert e101[3:27] == [1.0] * 24  # the swap hour too: 0.5 old + 0.5 new
    assert "(1h)" in r.title
    m = build_report(billing, "meter_energy", "2025-Q4", every="1mo")
    assert [c.name for c in m.sheets[0].columns][3:6] == ["2025-10", "2025-11", "2025-12"]
    assert _rows(m.sheets[0])["e.101.energy_kwh"][4] == 48.0
    with pytest.raises(ValueError, match="calendar unit"):
        build_report(billing, "meter_energy", "2025-11", every="3600")
    with pytest.raises(ValueError, match="takes no every"):
        build_report(billing, "heat", "2025-11", every="1d")


def test_period_without_history_is_an_error(billing: Billing) -> None:
    with pytest.raises(ValueError, match="outside the stored history"):
        build_report(billing, "meter_energy", "2024-11")


def test_csv_star_and_excel_comment(billing: Billing, tmp_path: Path) -> None:
    r = build_report(billing, "meter_energy", "2025-11-01")
    write_csv(r, tmp_path / "e.csv")
    with open(tmp_path / "e.csv", encoding="utf-8") as fh:
        got = {row[0]: row for row in csv.reader(fh) if row}
    assert got["e.102.energy_kwh"][3] == "5.0*"
    assert got["e.101.energy_kwh"][3] == "24.0"
    write_xlsx(r, tmp_path / "e.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "e.xlsx")["electricity"]
    cells = {row[0].value: row for row in ws.iter_rows(min_row=3)}
    c = cells["e.102.energy_kwh"][3]
    assert c.value == 5.0 and c.comment is not None and "gap" in c.comment.text
    assert cells["e.101.energy_kwh"][3].comment is None
    # what GET /api/reports/meter_energy answers: the flags are in the `uncertain` column
    from scada.server.handlers.billing import REPORT_KINDS, report_json

    assert {"meter_energy", "room_compliance"} <= set(REPORT_KINDS)
    doc = json.loads(json.dumps(report_json(r)))
    row = next(x for x in doc["sheets"][0]["rows"] if x[0] == "e.102.energy_kwh")
    assert row[3] == 5.0 and row[-1] == "2025-11-01 gap"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site_text(free_port()), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill(h)
    h.close()
    common = ["report", "meter_energy", str(cfg), "--data-dir", str(data)]
    out = tmp_path / "m.csv"
    argv = [*common, "--from", "2025-11-01", "--to", "2025-11-03", "--csv", str(out)]
    assert main(argv) == 0
    with open(out, encoding="utf-8") as fh:
        rows = {r[0]: r for r in csv.reader(fh) if r}
    assert rows["meter"][3:5] == ["2025-11-01 [kWh]", "2025-11-02 [kWh]"]
    assert rows["e.101.energy_kwh"][3:6] == ["24.0", "24.0", "48.0"]
    capsys.readouterr()
    assert main([*common, "--period", "2025-11-01", "--every", "1h"]) == 0
    assert "2025-11-01 23:00 [kWh]" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    assert main([*common, "--period", "2024-11", "--csv", str(bad)]) == 2
    assert "outside the stored history" in capsys.readouterr().err
    assert not bad.exists()
    # partly before the history: the report and a note
    assert main([*common, "--from", "2025-10-31", "--to", "2025-11-02"]) == 0
    got = capsys.readouterr()
    assert "e.101.energy_kwh,b1,kWh,1.0*,24.0,25.0,2025-10-31 no_data" in got.out
    assert "history begins" in got.err
    assert main([*common, "--from", "2025-11-01"]) == 2
    assert "go together" in capsys.readouterr().err


def test_bench_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "reports", "--meters", "30", "--repeat", "1", "--data-dir", str(tmp_path)]
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after the "built" line
    assert doc["meters"] == 30 and doc["matches_delta"] is True
    assert doc["days_equal_raw_rule"] is True  # the stored day results, bucket for bucket
    assert doc["energy_kwh"] > 0 and doc["flagged_buckets"] == 0
    assert main(argv) == 0  # the file is reused
    assert "built" not in capsys.readouterr().out
