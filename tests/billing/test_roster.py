"""The roster (issue 16 item 3): xlsx / CSV in, every bad cell named, all or nothing, through the
configuration's versions, opening balances posted once, the export imported again changes nothing.

Real files in a temporary configuration folder, the real loader, a real SQLite ledger and audit
log: the import runs as the CLI runs it (``ConfigManager`` with the offline applier).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml

from billing.ledger import EntryKind, Ledger
from billing.roster import RosterError, export_rows, read_roster, write_roster
from billing.roster_plan import plan_roster
from scada.config import load_site
from scada.services.audit import AuditLog
from scada.services.auth import Role, User
from scada.services.config_versions import ConfigManager
from scada.services.plant import Plant
from scada.services.roster import ROSTER_FILE, OfflineApplier, RosterService
from scada.services.yaml_edit import YamlEdit
from tags.database import TagDatabase

MAIN = """\
# The roster test site: memory tags stand for the meters.
site: {id: rost, name: Roster test, timezone: Asia/Shanghai}
include: [buildings.yaml]
tags:
  - {name: m.101.energy_kwh, type: float, initial: 0}
  - {name: m.102.energy_kwh, type: float, initial: 0}
  - {name: m.201.energy_kwh, type: float, initial: 0}
  - {name: m.s1.energy_kwh, type: float, initial: 0}
  - {name: m.note, type: str, initial: ""}
tariffs:
  - {id: flat, price: "0.50"}
  - {id: shop, price: "0.90"}
accounts:
  - {id: a101, tenant: "Flat 101", tariff: flat, household: b1.101, meters: [m.101.energy_kwh],
     alarm1: "30.00", alarm2: "10.00", opening_balance: "100.00"}   # the first tenant
"""
BUILDINGS = """\
# Buildings of the roster test site.
buildings:
  - id: b1
    name: Building 1
    households:
      - {id: b1.101, area_m2: 80}   # ground floor
      - {id: b1.102, area_m2: 60}
  - id: b2
    generate: {floors: 2, units_per_floor: 2, area_m2: 50}
"""
HEADER = "building,flat,area_m2,tenant,phone,email,meter,tariff,opening_balance\n"
ROSTER = (
    HEADER
    + "b1,101,,Anna Li,+86 138 0013 8000,anna@example.org,m.101,,100.00\n"
    + "b1,102,60,Bob Ma,,,m.102,flat,150.00\n"
    + "b1,201,70.5,Chen Wei,13800138001,,,,\n"
    + "b2,101,,Dong,,,m.201.energy_kwh,shop,\n"
)


class Office:
    """The configuration folder, data dir, ledger and the roster service (as the CLI has them)."""

    def __init__(self, root: Path) -> None:
        self.config_dir = root / "config"
        self.config_dir.mkdir()
        (self.config_dir / "site.yaml").write_text(MAIN, encoding="utf-8")
        (self.config_dir / "buildings.yaml").write_text(BUILDINGS, encoding="utf-8")
        self.data_dir = root / "var"
        self.ledger = Ledger.in_data_dir(self.data_dir)
        self.audit = AuditLog.in_data_dir(self.data_dir)
        self.plant = Plant(load_site(self.config_dir / "site.yaml"), TagDatabase())
        applier = OfflineApplier(self.plant, self.ledger, "anna", "roster import")
        self.config = ConfigManager(self.plant, applier, self.audit, self.data_dir)
        self.config.ensure_baseline()
        self.service = RosterService(self.config, lambda: self.ledger)

    def run(self, data: bytes, fmt: str = "csv", *, dry_run: bool = False) -> dict[str, Any]:
        user = User("anna", Role.ENGINEER)
        return asyncio.run(
            self.service.import_roster(user, data, fmt, dry_run=dry_run, name="roster.csv")
        )

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(self.config_dir.iterdir())}

    def close(self) -> None:
        self.audit.close()
        self.ledger.close()


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    o = Office(tmp_path)
    yield o
    o.close()


def _issues(exc: pytest.ExceptionInfo[RosterError]) -> list[str]:
    return [str(i) for i in exc.value.issues]


# ---------------------------------------------------------------------- reading


def test_a_csv_roster_is_read_with_the_office_s_header_words() -> None:
    text = "Building,Flat,Area [m2],Tenant name,Phone,E-mail,Meter,Tariff,Opening balance\n"
    text += "b1,101,80,Anna,+86 10 1234 5678,a@example.org,m.101; m.102,flat,12.50\n\n"
    roster = read_roster(text.encode("utf-8-sig"), "csv")
    (row,) = roster.rows
    assert (row.row, row.household, row.area_m2, row.tenant) == (2, "b1.101", 80.0, "Anna")
    assert row.meters == ("m.101", "m.102") and row.money("opening_balance") == Decimal("12.50")
    assert "email" in roster.columns and roster.sheet is None


def test_every_bad_cell_is_named_by_sheet_row_and_column() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Roster"
    sheet.append(["building", "flat", "area_m2", "phone", "email", "opening_balance"])
    sheet.append(["b1", "101", 80, "+86 10 1234 5678", "a@example.org", 10])
    sheet.append(["b1", "1 02", "eighty", "call me", "nobody", "1.234"])
    sheet.append(["b 1", "103", -5, None, None, "-3"])
    buf = io.BytesIO()
    book.save(buf)
    with pytest.raises(RosterError) as exc:
        read_roster(buf.getvalue(), "xlsx")
    issues = _issues(exc)
    assert issues[0].startswith("sheet Roster, row 3, column flat: not an id")
    assert any(i.startswith("sheet Roster, row 3, column area_m2: not a number") for i in issues)
    assert any(
        i.startswith("sheet Roster, row 3, column phone: not a phone number") for i in issues
    )
    assert any(i.startswith("sheet Roster, row 3, column email: not an e-mail") for i in issues)
    assert any(i.startswith("sheet Roster, row 3, column opening_balance:") for i in issues)
    assert any(i.startswith("sheet Roster, row 4, column building: not an id") for i in issues)
    assert any(i.startswith("sheet Roster, row 4, column area_m2:") for i in issues)
    assert len(issues) == 8, issues  # row 2 is good; each bad cell once


def test_the_header_must_name_known_columns() -> None:
    with pytest.raises(RosterError) as exc:
        read_roster(b"building,flat,phnoe,colour\nb1,101,1,red\n", "csv")
    issues = _issues(exc)
    assert issues[0] == (
        "row 1, column phnoe: unknown column 'phnoe' (did you mean 'phone'?); columns: "
        "building, flat, area_m2, tenant, phone, email, meter, tariff, opening_balance, "
        "account, alarm1, alarm2, balance"
    )
    assert issues[1].startswith("row 1, column colour: unknown column 'colour';")
    with pytest.raises(RosterError) as exc:
        read_roster(b"flat,area_m2\n101,80\n", "csv")
    assert _issues(exc) == ["row 1: the header lacks the column 'building'"]
    for data, fmt, text in (
        (b"", "csv", "the roster is empty"),
        (b"building,flat\n", "csv", "the roster has a header but no rows"),
        (b"not a zip", "xlsx", "not an Excel workbook (.xlsx)"),
        (b"\xff\xfe\x00b", "csv", "the CSV is not UTF-8 text"),
    ):
        with pytest.raises(RosterError) as exc:
            read_roster(data, fmt)
        assert text in str(exc.value), (data, fmt)


# ---------------------------------------------------------------------- planning


def test_the_plan_names_what_is_added_and_changed(office: Office) -> None:
    plan = plan_roster(read_roster(ROSTER.encode(), "csv"), office.plant.site, office.ledger)
    s = plan.summary()
    assert [h["id"] for h in s["households"]["added"]] == ["b1.201"]
    assert s["households"]["added"][0]["set"] == {
        "area_m2": 70.5,
        "tenant": "Chen Wei",
        "phone": "13800138001",
    }
    assert s["households"]["unchanged"] == 3  # b1.101, b1.102, b2.101 (areas not given or same)
    added = {a["id"]: a["set"] for a in s["accounts"]["added"]}
    assert added == {
        "b1.102": {
            "household": "b1.102",
            "meters": ["m.102.energy_kwh"],
            "tariff": "flat",
            "tenant": "Bob Ma",
            "opening_balance": "150.00",
        },
        "b2.101": {
            "household": "b2.101",
            "meters": ["m.201.energy_kwh"],
            "tariff": "shop",
            "tenant": "Dong",
        },
    }
    (changed,) = s["accounts"]["changed"]
    assert changed["id"] == "a101" and changed["row"] == 2
    assert changed["set"] == {
        "tenant": "Anna Li",
        "phone": "+86 138 0013 8000",
        "email": "anna@example.org",
    }
    assert changed["before"] == {"tenant": "Flat 101", "phone": None, "email": None}
    assert [(o["account"], o["amount"], o["state"]) for o in s["openings"]] == [
        ("a101", "100.00", "to post"),
        ("b1.102", "150.00", "to post"),
        ("b2.101", "0.00", "to post"),
    ]


def test_a_roster_with_bad_rows_is_refused_naming_every_row(office: Office) -> None:
    office.ledger.open_account("a101", "100.00")
    text = HEADER + (
        "b11,101,80,,,,,,\n"  # unknown building
        "b1,301,,Eve,,,,,\n"  # a new household without its area
        "b1,102,60,Bob,,,m.102,fla,\n"  # unknown tariff
        "b1,103,60,Cleo,,,m.101,flat,\n"  # a101's meter
        "b1,101,,Anna,,,,,200.00\n"  # a101 was opened with 100.00
        "b1,104,40,,,,m.nope,flat,\n"  # no such meter
        "b1,105,40,,,,,flat,\n"  # a tariff without a meter
        "b1,102,61,,,,,,\n"  # b1.102 again, another area
    )
    with pytest.raises(RosterError) as exc:
        plan_roster(read_roster(text.encode(), "csv"), office.plant.site, office.ledger)
    assert _issues(exc) == [
        "row 2, column building: unknown building 'b11' (did you mean 'b1'?)",
        "row 3, column area_m2: b1.301 is a new household: give its area",
        "row 4, column tariff: unknown tariff 'fla' (did you mean 'flat'?)",
        "row 5, column meter: meter m.101.energy_kwh belongs to account a101",
        "row 6, column opening_balance: account a101 was opened with 100.00 (ledger entry 1): "
        "an opening balance cannot change; post the difference as a top-up or refund and "
        "write 100.00 here",
        "row 7, column meter: unknown meter 'm.nope': no such tag, and no m.nope.energy_kwh",
        "row 8, column meter: an account needs its meter (column tariff is given)",
        "row 9, column area_m2: household b1.102 has area 60.0 on row 4",
        "row 9, column flat: household b1.102 is on row 4 too",
    ]


# ---------------------------------------------------------------------- import and export


def test_dry_run_shows_the_diff_and_changes_nothing(office: Office) -> None:
    before = office.files()
    result = office.run(ROSTER.encode(), dry_run=True)
    assert result["valid"] and result["dry_run"] and result["version"] is None
    assert set(result["diff"]) == {"site.yaml", "buildings.yaml", ROSTER_FILE}
    assert (
        "+      - {id: b1.201, area_m2: 70.5, tenant: Chen Wei" in result["diff"]["buildings.yaml"]
    )
    assert result["plan"]["tags"] == {"added": [], "removed": [], "changed": []}
    assert office.files() == before
    assert office.config.current_version() == 1
    assert office.ledger.entries() == []


def test_import_applies_a_version_opens_accounts_once_and_keeps_the_files_comments(
    office: Office,
) -> None:
    result = office.run(ROSTER.encode())
    assert result["valid"] and result["version"] == 2, result
    files = office.files()
    assert (
        "# ground floor" in files["buildings.yaml"] and "# the first tenant" in files["site.yaml"]
    )
    assert "include: [buildings.yaml, roster.yaml]" in files["site.yaml"]
    site = load_site(office.config_dir / "site.yaml")
    h201 = next(h for h in site.households() if h.id == "b1.201")
    assert (h201.area_m2, h201.tenant, h201.phone) == (70.5, "Chen Wei", "13800138001")
    accounts = {a.id: a for a in site.accounts}
    assert accounts["a101"].phone == "+86 138 0013 8000"
    assert accounts["b1.102"].opening_balance == Decimal("150.00")
    openings = {e.account: e.amount for e in office.ledger.entries(kinds=[EntryKind.OPENING])}
    assert openings == {
        "a101": Decimal("100.00"),
        "b1.102": Decimal("150.00"),
        "b2.101": Decimal("0.00"),
    }
    assert [o["state"] for o in result["summary"]["openings"]] == ["posted"] * 3
    (rec,) = office.audit.query(action="config.apply")
    assert rec["user"] == "anna" and "roster import roster.csv" in rec["detail"]

    # the same roster again: nothing changes, nothing is posted twice
    again = office.run(ROSTER.encode())
    assert again["valid"] and again["diff"] == {} and again["version"] == 2
    assert again["summary"]["openings"] == []
    assert len(office.ledger.entries()) == 3
    assert office.files() == files


def test_an_export_imported_again_changes_nothing_csv_and_xlsx(office: Office) -> None:
    office.run(ROSTER.encode())
    office.ledger.topup("b1.102", "20.00")
    site = office.plant.site
    rows = export_rows(site, office.ledger)
    by_flat = {(r["building"], r["flat"]): r for r in rows}
    assert by_flat[("b1", "102")]["balance"] == Decimal("170.00")
    assert (
        by_flat[("b1", "201")]["tenant"] == "Chen Wei" and "account" not in by_flat[("b1", "201")]
    )
    assert by_flat[("b2", "101")]["account"] == "b2.101"
    assert len(rows) == 7  # 3 + 4 generated
    for fmt in ("csv", "xlsx"):
        data = write_roster(rows, fmt)
        result = office.run(data, fmt, dry_run=True)
        s = result["summary"]
        assert result["diff"] == {}, (fmt, result["diff"])
        assert s["households"]["added"] == s["households"]["changed"] == [], fmt
        assert s["accounts"]["added"] == s["accounts"]["changed"] == [], fmt
        assert s["rows"] == 7


def test_a_generated_household_takes_no_tenant_without_an_account(office: Office) -> None:
    text = HEADER + "b1,102,,Bob,,,,,\nb2,201,55,Zoe,,,,,\n"
    with pytest.raises(RosterError) as exc:
        office.run(text.encode(), dry_run=True)
    assert _issues(exc) == [
        "row 3, column area_m2: household b2.201 is made by building b2's generate: block: "
        "change its area there, or give the flat a meter (an account) for its tenant"
    ]
    assert office.config.current_version() == 1


def test_an_empty_cell_clears_a_contact_a_missing_column_keeps_it(office: Office) -> None:
    office.run(ROSTER.encode())
    office.run(b"building,flat,phone\nb1,101,\nb1,201,\n")
    accounts = {a.id: a for a in office.plant.site.accounts}
    assert accounts["a101"].phone is None and accounts["a101"].email == "anna@example.org"
    h201 = next(h for h in office.plant.site.households() if h.id == "b1.201")
    assert h201.phone is None and h201.tenant == "Chen Wei"


# ---------------------------------------------------------------------- the YAML edits


def test_yaml_edits_touch_only_what_changes() -> None:
    text = (
        "# head\nbuildings:\n  - id: b1   # one\n    households:\n"
        "      - {id: b1.1, area_m2: 5}  # keep\n      - id: b1.2\n        area_m2: 6\n"
        "  - {id: b2, name: Two}\ninclude: [a.yaml]\n"
    )
    ed = YamlEdit(text)
    buildings = ed.get(ed.root, "buildings")
    b1, b2 = ed.find(buildings, "id", "b1"), ed.find(buildings, "id", "b2")
    assert b1 is not None and b2 is not None
    h1 = ed.find(ed.get(b1, "households"), "id", "b1.1")
    h2 = ed.find(ed.get(b1, "households"), "id", "b1.2")
    assert h1 is not None and h2 is not None
    ed.set_values(h1, {"area_m2": 7.5, "tenant": "Ann: the 1st"})
    ed.set_values(h2, {"phone": "+8613800138000"})
    ed.append_to_key(b1, "households", [{"id": "b1.3", "area_m2": 8}])
    ed.append_to_key(b2, "households", [{"id": "b2.1", "area_m2": 9}])
    ed.append(ed.get(ed.root, "include"), ["roster.yaml"])
    ed.append_to_key(None, "accounts", [{"id": "x", "meters": ["m.1"]}])
    out = ed.text()
    assert out == (
        "# head\nbuildings:\n  - id: b1   # one\n    households:\n"
        "      - {id: b1.1, area_m2: 7.5, tenant: 'Ann: the 1st'}  # keep\n"
        "      - id: b1.2\n        area_m2: 6\n        phone: '+8613800138000'\n"
        "      - {id: b1.3, area_m2: 8}\n"
        "  - {id: b2, name: Two, households: [{id: b2.1, area_m2: 9}]}\n"
        "include: [a.yaml, roster.yaml]\naccounts:\n  - {id: x, meters: [m.1]}\n"
    )
    data = yaml.safe_load(out)
    assert data["buildings"][0]["households"][1]["phone"] == "+8613800138000"  # a string
