"""The ``household_statement`` report: a household's months from consumption to balance.

Household b1.102 (50 m2, position factor 1.2) owns account home-102 (meter e.102, 0.5 kWh/h).
The building's heat meter counts 25 kWh/h; every valve is open all the time, basic share 0.3,
so b1.102's share is 0.3 x 50/200 + 0.7 x 60/210 = 0.275 of the heat. Window: 2025-10-31
00:00 to 2025-11-03 00:00 (two months, each clipped: one day of October, two of November).
Ledger: opened with 20.00 on Oct 31, a top-up of 50.00 and a charge of 12.34 on Nov 2.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.ledger import EntryKind, Ledger
from billing.periods import Period
from billing.reports import build_report, write_xlsx
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.config import load_site_text
from scada.services.audit import AuditLog
from tests.billing.conftest import HOUR, NOV1, free_port, site_text, write

DAY = 24 * HOUR
OCT31 = NOV1 - DAY
WINDOW = Period("window", "2025-10-31 .. 2025-11-03", OCT31, NOV1 + 2 * DAY)


def _text() -> str:
    text = site_text(free_port())
    return text.replace(
        "meters: [e.102.energy_kwh],", "meters: [e.102.energy_kwh], household: b1.102,"
    )


def _fill(h: SqliteHistorian) -> None:
    ks = range(-25, 49)
    write(h, "e.102.energy_kwh", [(NOV1 + k * HOUR, 10.0 + 0.5 * k) for k in ks])
    write(h, "b1.hm.energy_kwh", [(NOV1 + k * HOUR, 5000.0 + 25.0 * k) for k in ks])
    for flat in ("101", "102", "201"):
        write(h, f"b1.{flat}.valve.open", [(OCT31 - 100, True)])


def _post(ledger: Ledger) -> None:
    ledger.open_account("home-102", "20.00", ts=OCT31 + HOUR)
    ledger.topup("home-102", "50.00", ts=NOV1 + DAY + HOUR)
    ledger.charge(
        "home-102", EntryKind.CONSUMPTION, Decimal("12.34"), key="c1", ts=NOV1 + DAY + 2 * HOUR
    )


@pytest.fixture
def billing(ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path) -> Billing:
    _fill(historian)
    _post(ledger)
    site = load_site_text(_text())
    return Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)


def test_months_from_consumption_to_balance(billing: Billing, tmp_path: Path) -> None:
    r = build_report(billing, "household_statement", WINDOW, household="b1.102")
    assert "b1.102" in r.title
    (sheet,) = r.sheets
    assert sheet.rows == [
        [
            "2025-10",
            12.0,
            165.0,
            27.5,
            Decimal("0.00"),
            Decimal("20.00"),
            Decimal("0.00"),
            Decimal("20.00"),
        ],
        [
            "2025-11",
            24.0,
            330.0,
            27.5,
            Decimal("12.34"),
            Decimal("50.00"),
            Decimal("0.00"),
            Decimal("57.66"),
        ],
    ]
    write_xlsx(r, tmp_path / "s.xlsx")
    assert (tmp_path / "s.xlsx").stat().st_size > 0


def test_bad_household_and_no_data(billing: Billing) -> None:
    with pytest.raises(ValueError, match="unknown household b9"):
        build_report(billing, "household_statement", WINDOW, household="b9")
    with pytest.raises(ValueError, match="household: required"):
        build_report(billing, "household_statement", WINDOW)
    with pytest.raises(ValueError, match="no consumption, heat share or ledger entry"):
        build_report(billing, "household_statement", "2024-11", household="b1.102")
    with pytest.raises(ValueError, match="takes no household"):
        build_report(billing, "meter_energy", WINDOW, household="b1.102")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(_text(), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    _fill(h)
    h.close()
    lg = Ledger.in_data_dir(data)
    _post(lg)
    lg.close()
    common = ["report", "household_statement", str(cfg), "--data-dir", str(data)]
    window = ["--from", "2025-10-31", "--to", "2025-11-03"]
    assert main([*common, *window, "--household", "b1.102"]) == 0
    out = capsys.readouterr().out
    assert "2025-11,24.0,330.0,27.5,12.34,50.00,0.00,57.66" in out
    assert main([*common, *window, "--household", "nobody"]) == 2
    assert "unknown household nobody" in capsys.readouterr().err
