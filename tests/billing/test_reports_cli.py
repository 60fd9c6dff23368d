"""Reports (Excel opened back with openpyxl, CSV) and the CLI commands end to end."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pytest

from billing.ledger import Ledger
from billing.reports import build_report, write_csv, write_xlsx
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.services.audit import AuditLog
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

DAY_END = NOV1 + 24 * HOUR


def _fill(h: SqliteHistorian) -> None:
    ts = np.arange(NOV1 - HOUR, DAY_END + HOUR + 1, 1800.0)
    x = (ts - NOV1) / HOUR
    write(h, "e.101.energy_kwh", [(float(t), 100.0 + v) for t, v in zip(ts, x, strict=True)])
    write(h, "e.102.energy_kwh", [(float(t), 10.0 + 0.5 * v) for t, v in zip(ts, x, strict=True)])
    write(h, "e.main.energy_kwh", [(float(t), 2.0 * v) for t, v in zip(ts, x, strict=True)])
    write(h, "b1.hm.energy_kwh", [(NOV1 - 60, 5000.0), (DAY_END, 5600.0)])
    write(h, "b1.101.valve.open", [(NOV1 - 100, True), (NOV1 + 12 * HOUR, False)])
    write(
        h,
        "b1.102.valve.open",
        [(NOV1 - 100, False), (NOV1 + 6 * HOUR, True), (NOV1 + 12 * HOUR, False)],
    )
    write(h, "b1.201.valve.open", [(NOV1 - 100, True)])
    write(
        h, "e.101.online", [(NOV1 - 100, True), (NOV1 + 3 * HOUR, False), (NOV1 + 5 * HOUR, True)]
    )
    write(h, "e.102.online", [(NOV1 - 100, True)])


async def test_excel_reports_open_back(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path
) -> None:
    _fill(historian)
    b = Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)
    await b.open_account("shop-101", "100.00")
    await b.topup("shop-101", "50.00")
    heat = build_report(b, "heat", "2025-11-01")
    write_xlsx(heat, tmp_path / "heat.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "heat.xlsx")
    ws = wb["heat"]
    assert "Heat allocation" in ws["A1"].value and "2025-11-01" in ws["A1"].value
    headers = [c.value for c in ws[2]]
    assert headers[:3] == ["building", "household", "area [m2]"] and "heat [kWh]" in headers
    rows = list(ws.iter_rows(min_row=3, values_only=True))
    data, total = rows[:-1], rows[-1]
    assert [r[1] for r in data] == ["b1.101", "b1.102", "b1.201"]
    col = headers.index("heat [kWh]")
    assert total[0] == "Total" and total[col] == pytest.approx(600.0)
    assert total[headers.index("cost [CNY]")] == pytest.approx(150.00)
    assert len(ws._charts) == 1
    bills = build_report(b, "bills", "2025-11-01")
    write_xlsx(bills, tmp_path / "bills.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "bills.xlsx")["bills"]
    lines = {(r[0], r[1]): r for r in ws.iter_rows(min_row=3, values_only=True) if r[0] != "Total"}
    assert lines[("shop-101", "sharp")][4] == pytest.approx(4.13)
    fin = build_report(b, "financial", str(datetime.now().year))  # entries are stamped now
    write_xlsx(fin, tmp_path / "fin.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "fin.xlsx")
    assert wb.sheetnames == ["by time", "by account"]
    rows = list(wb["by account"].iter_rows(min_row=3, values_only=True))
    hdr = [c.value for c in wb["by account"][2]]
    assert rows[0][0] == "shop-101" and rows[0][hdr.index("topup [CNY]")] == pytest.approx(50.0)
    assert rows[0][hdr.index("net [CNY]")] == pytest.approx(150.0)
    lost = build_report(b, "lost-contact", "2025-11-01")
    rows_by = {r[0]: r for r in lost.sheets[0].rows}
    assert "e.102" not in rows_by  # online all day
    assert rows_by["e.101"][2] == pytest.approx(2.0)  # offline 03:00-05:00
    assert rows_by["b1.hm"][2:4] == [0.0, 24.0]  # never reported: 24 h unknown
    unit = build_report(b, "unit", "2025-11")
    row = unit.sheets[0].rows[0]
    # area 100 + 50 + 50 + 120 = 320 m2; heat 600 kWh -> 1.875 kWh/m2
    assert row[:4] == ["b1", 320.0, 600.0, 1.875]
    write_csv(unit, tmp_path / "unit.csv")
    with open(tmp_path / "unit.csv", encoding="utf-8") as fh:
        got = list(csv.reader(fh))
    assert got[3][:3] == ["building", "area [m2]", "heat [kWh]"] and got[4][0] == "b1"
    with pytest.raises(ValueError, match="unknown report"):
        build_report(b, "weather", "2025")
    with pytest.raises(ValueError, match="period"):
        build_report(b, "heat", "2025-13")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site_text(free_port()), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill(h)
    h.close()
    common = [str(cfg), "--data-dir", str(data)]
    assert (
        main(["allocate", "heat", *common, "--from", "2025-11-01", "--to", "2025-11-02", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    costs = [h["cost"] for h in doc["buildings"][0]["households"]]
    assert costs == ["68.15", "24.95", "56.90"]
    assert main(["bill", *common, "--from", "2025-11-01", "--to", "2025-11-02", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    shop = next(a for a in doc["accounts"] if a["id"] == "shop-101")
    assert set(shop) == {"id", "energy_kwh", "lines", "shared_kwh", "total"}
    assert shop["lines"][0] == {"name": "sharp", "kwh": 3.0, "price": "1.3782", "amount": "4.13"}
    assert isinstance(shop["total"], str)
    assert main(["account", "open", *common, "shop-101", "--amount", "10.00"]) == 0
    assert main(["account", "topup", *common, "--user", "ann", "shop-101", "25.50"]) == 0
    assert "balance 35.50" in capsys.readouterr().out
    assert main(["account", "refund", *common, "shop-101", "99.00"]) == 2
    assert "exceeds the balance" in capsys.readouterr().err
    assert main(["account", "reverse", *common, "shop-101", "2"]) == 0
    assert main(["account", "show", str(cfg), "shop-101", "--json", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["account", "show", str(cfg), "shop-101", "--json", "--data-dir", str(data)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["balance"] == "10.00" and [e["kind"] for e in doc["entries"]] == [
        "opening",
        "topup",
        "reversal",
    ]
    assert doc["entries"][1]["user"] == "ann"
    assert (
        main(
            [
                "account",
                "replace-meter",
                *common,
                "shop-101",
                "--meter",
                "e.101.energy_kwh",
                "--old-final",
                "120.5",
                "--new-initial",
                "0",
                "--at",
                "2025-11-02T12:00",
            ]
        )
        == 0
    )
    lg = Ledger.in_data_dir(data)
    assert lg.replacements("e.101.energy_kwh")[0].old_final == 120.5
    assert lg.balance("shop-101") == Decimal("10.00")
    lg.close()
    assert main(["account", "topup", *common, "nobody", "1.00"]) == 2
    assert "unknown account 'nobody'" in capsys.readouterr().err
    out = tmp_path / "energy.xlsx"
    assert main(["report", "energy", *common, "--period", "2025-11", "--xlsx", str(out)]) == 0
    assert set(openpyxl.load_workbook(out).sheetnames) == {"accounts", "households", "buildings"}
    capsys.readouterr()
    assert main(["report", "financial", *common, "--period", "2025-11"]) == 0
    assert "Top-ups" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        site_text(free_port()).replace("tariff: home-tier", "tariff: nope"), encoding="utf-8"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "bill",
                str(bad),
                "--data-dir",
                str(data),
                "--from",
                "2025-11-01",
                "--to",
                "2025-11-02",
            ]
        )
    assert exit_info.value.code == 1
    assert "unknown tariff 'nope'" in capsys.readouterr().err
