"""``scada account tenant-change / vacant / let`` on configuration files and a real ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from billing.ledger import EntryKind, Ledger
from scada.cli import main
from scada.config import load_site
from scada.services.audit import AuditLog
from tests.billing.conftest import NOV1
from tests.billing.test_tenancy import METER, NEW_ACCOUNT, site_yaml

DAY = 86400.0


@pytest.fixture(name="paths")
def paths_fixture(tmp_path: Path) -> tuple[str, str]:
    cfg = tmp_path / "config" / "site.yaml"
    cfg.parent.mkdir()
    text = site_yaml(new="").replace(", moved_out: '2025-11-11T00:00:00+08:00'", "")
    assert NEW_ACCOUNT not in text
    cfg.write_text(text, encoding="utf-8")
    var = tmp_path / "var"
    ledger = Ledger.in_data_dir(var)
    ledger.open_account("flat-102a", "100.00", ts=NOV1 - DAY)
    ledger.add_readings([(METER, NOV1, 1000.0)])
    ledger.close()
    return str(cfg), str(var)


def test_a_tenant_change_from_the_cli_writes_the_ledger_and_the_files(
    paths: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, var = paths
    args = [
        "account",
        "tenant-change",
        cfg,
        "flat-102a",
        "--at",
        "2025-11-11T00:00",
        "--tenant",
        "Bob",
        "--phone",
        "+86 10 1234",
        "--new-id",
        "flat-102b",
        "--reading",
        f"{METER}=1040",
        "--data-dir",
        var,
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    # 40 kWh x 0.50 = 20.00 charged at the change; 100.00 - 20.00 = 80.00 paid back
    assert out["closing"]["settlement"] == "refund"
    assert out["closing"]["settlement_amount"] == "80.00"
    assert (out["new_account"], out["repeated"]) == ("flat-102b", False)
    site = load_site(cfg)
    accounts = {a.id: a for a in site.accounts}
    assert accounts["flat-102a"].moved_out == accounts["flat-102b"].moved_in is not None
    assert accounts["flat-102b"].tenant == "Bob" and accounts["flat-102b"].phone == "+86 10 1234"
    assert [m.energy for m in accounts["flat-102b"].meters] == [METER]
    assert main(args) == 0  # the same change again: the same default key, nothing posted
    assert json.loads(capsys.readouterr().out)["repeated"] is True
    ledger = Ledger.in_data_dir(var)
    try:
        assert [e.kind for e in ledger.entries("flat-102b")] == [EntryKind.OPENING]
        assert ledger.charged("flat-102a", EntryKind.CONSUMPTION, "2025-11") == Decimal("20.00")
    finally:
        ledger.close()
    audit = AuditLog.in_data_dir(var)
    try:
        recs = audit.query(action="billing.tenant_change")
        assert [(r["result"], r["target"], r["source"]) for r in recs] == [
            ("ok", "flat-102a", "cli")
        ]
    finally:
        audit.close()


def test_vacant_and_let_from_the_cli(
    paths: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, var = paths
    common = [cfg, "b1.201", "--data-dir", var]
    vacant = ["account", "vacant", *common, "--from", "2025-11-21", "--ratio", "0.15"]
    assert main([*vacant, "--owner", "owner-b1"]) == 0
    hh = next(h for h in load_site(cfg).households() if h.id == "b1.201")
    assert hh.vacant is not None and hh.vacant.heat_basic_ratio == Decimal("0.15")
    assert hh.vacant.owner == "owner-b1"
    capsys.readouterr()
    assert main(["account", "vacant", *common, "--from", "2025-11-21", "--ratio", "2"]) == 2
    assert "heat_basic_ratio" in capsys.readouterr().err
    assert main(["account", "let", *common, "--from", "2025-12-05"]) == 0
    hh = next(h for h in load_site(cfg).households() if h.id == "b1.201")
    assert hh.vacant is not None and str(hh.vacant.until) == "2025-12-04"
    # a flat with an open account cannot be vacant
    assert (
        main(
            [
                "account",
                "vacant",
                cfg,
                "b1.102",
                "--data-dir",
                var,
                "--from",
                "2025-11-21",
                "--ratio",
                "0.1",
            ]
        )
        == 2
    )
    assert "open account flat-102a" in capsys.readouterr().err
