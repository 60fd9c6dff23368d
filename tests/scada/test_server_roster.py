"""The roster over the real server (issue 16 item 3): a dry run answers the diff summary and
applies nothing; an import is a new configuration version applied hot (the new account is
open with its opening balance, once); a bad roster is 422 naming every row and changes nothing;
the export downloads the same roster, and importing it again changes nothing.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from tornado.httpclient import HTTPRequest

from billing.ledger import EntryKind
from scada.server.handlers.roster import XLSX
from scada.server.roster_schemas import RosterImportOut
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML

EXTRA_YAML = """
tags:
  - {name: b1.201.em.energy_kwh, type: float, initial: 0, unit: kWh}
"""
ROSTER = (
    b"building,flat,area_m2,tenant,phone,email,meter,tariff,opening_balance\n"
    b"b1,101,,Anna Li,+86 138 0013 8000,anna@example.org,b1.101.em,,0.00\n"
    b"b1,201,70.5,Chen Wei,,,b1.201.em,flat,150.00\n"
)
CSV = {"Content-Type": "text/csv"}


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    (tmp_path / "config" / "extra.yaml").write_text(EXTRA_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml, extra.yaml]\n")
    try:
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def _files(site: Served) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(site.config.parent.iterdir())}


def _multipart(name: str, data: bytes, content_type: str) -> tuple[bytes, dict[str, str]]:
    boundary = "roster-boundary-7d1f"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def _version(site: Served) -> int:
    st, body, _ = await site.api("GET", "/api/config/versions", role="engineer")
    assert st == 200
    return int(body["current"])


async def test_a_dry_run_answers_the_summary_and_applies_nothing(site: Served) -> None:
    files, version = _files(site), await _version(site)
    st, body, _ = await site.api(
        "POST", "/api/roster/import?dry_run=1", role="engineer", raw=ROSTER, headers=CSV
    )
    assert st == 200, body
    out = RosterImportOut.model_validate(body)
    assert out.dry_run and out.valid and out.version is None
    assert [h["id"] for h in out.summary.households.added] == ["b1.201"]
    assert [a["id"] for a in out.summary.accounts.added] == ["b1.201"]
    assert [a["id"] for a in out.summary.accounts.changed] == ["a101"]
    assert out.summary.openings == [
        {"account": "b1.201", "amount": "150.00", "row": 3, "entry": None, "state": "to post"}
    ]
    assert set(out.diff) == {"site.yaml", "roster.yaml", "billing.yaml"}
    assert _files(site) == files and await _version(site) == version
    st, _, _ = await site.api("GET", "/api/accounts/b1.201")
    assert st == 404


async def test_an_import_is_a_version_applied_hot_and_opens_the_account_once(site: Served) -> None:
    version = await _version(site)
    st, body, _ = await site.api(
        "POST", "/api/roster/import", role="engineer", raw=ROSTER, headers=CSV
    )
    assert st == 200, body
    assert body["valid"] and body["version"] == version + 1 and not body["dry_run"]
    assert body["summary"]["openings"][0]["state"] == "posted"
    # hot: the running site and billing have the new household and account
    household = next(h for h in site.runtime.site.households() if h.id == "b1.201")
    assert (household.area_m2, household.tenant) == (70.5, "")  # the tenant is the account's
    st, acct, _ = await site.api("GET", "/api/accounts/b1.201", role="viewer")
    assert st == 200, acct
    assert (acct["open"], acct["balance"], acct["tenant"]) == (True, "150.00", "Chen Wei")
    assert acct["meters"] == ["b1.201.em.energy_kwh"]
    st, a101, _ = await site.api("GET", "/api/accounts/a101")
    assert st == 200 and a101["tenant"] == "Anna Li"
    assert site.runtime.billing.account_config("a101").config.phone == "+86 138 0013 8000"
    (rec,) = site.server.ctx.audit.query(action="config.apply")
    assert rec["user"] == "engineer" and rec["detail"].startswith("roster import upload:")
    assert rec["after"]["version"] == version + 1

    # the same roster again: no version, nothing posted twice
    files = _files(site)
    st, again, _ = await site.api(
        "POST", "/api/roster/import", role="admin", raw=ROSTER, headers=CSV
    )
    assert st == 200 and again["diff"] == {} and again["version"] == version + 1
    assert again["summary"]["openings"] == []
    ledger = site.runtime.billing.ledger
    openings = ledger.entries("b1.201", kinds=[EntryKind.OPENING])
    assert [e.amount for e in openings] == [Decimal("150.00")]
    assert _files(site) == files


async def test_a_bad_roster_is_422_naming_every_row_and_changes_nothing(site: Served) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Roster"
    sheet.append(["building", "flat", "area_m2", "phone", "meter", "tariff"])
    sheet.append(["b1", "201", 70.5, "+86 10 1234 5678", "b1.201.em", "flat"])  # good
    sheet.append(["b1", "202", 60, "call me", None, None])  # a bad cell
    sheet.append(["b7", "101", 60, None, None, None])  # no such building
    sheet.append(["b1", "203", None, None, "b1.101.em", "flat"])  # no area; a101's meter
    buf = io.BytesIO()
    book.save(buf)
    files, version = _files(site), await _version(site)
    raw, headers = _multipart("roster.xlsx", buf.getvalue(), "application/octet-stream")
    st, err, _ = await site.api(
        "POST", "/api/roster/import", role="engineer", raw=raw, headers=headers
    )
    assert st == 422, err
    assert [i["text"] for i in err["issues"]] == [
        "sheet Roster, row 3, column phone: not a phone number: 'call me' (digits, spaces, "
        "+ - ( ) /)",
        "sheet Roster, row 4, column building: unknown building 'b7'",
        "sheet Roster, row 5, column area_m2: b1.203 is a new household: give its area",
        "sheet Roster, row 5, column meter: meter b1.101.em.energy_kwh belongs to account a101",
    ]
    assert err["error"].startswith("4 problem(s) in the roster: sheet Roster, row 3")
    assert _files(site) == files and await _version(site) == version
    assert site.server.ctx.audit.query(action="config.apply") == []


async def test_the_export_downloads_the_roster_and_imports_as_no_change(site: Served) -> None:
    st, _, _ = await site.api(
        "POST", "/api/roster/import", role="engineer", raw=ROSTER, headers=CSV
    )
    assert st == 200
    st, text, resp = await site.api("GET", "/api/roster/export?format=csv", role="engineer")
    assert st == 200 and resp.headers["Content-Type"] == "text/csv"
    assert 'filename="roster-srvtest.csv"' in resp.headers["Content-Disposition"]
    lines = text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("building,flat,area_m2,tenant,phone,email,meter,tariff")
    assert (
        "b1,201,70.5,Chen Wei,,,b1.201.em.energy_kwh,flat,150.00,b1.201,0.00,0.00,150.00" in lines
    )
    req = HTTPRequest(
        site.url + "/api/roster/export?format=xlsx",
        headers={"Authorization": f"Bearer {site.tokens['admin']}"},
    )
    resp = await site.http.fetch(req, raise_error=False)  # a workbook: bytes, not text
    assert resp.code == 200 and resp.headers["Content-Type"] == XLSX
    book = openpyxl.load_workbook(io.BytesIO(resp.body))
    assert book.sheetnames == ["Roster"]
    for data, ctype in ((resp.body, XLSX), (text.encode(), "text/csv")):
        st, body, _ = await site.api(
            "POST",
            "/api/roster/import?dry_run=true",
            role="engineer",
            raw=data,
            headers={"Content-Type": ctype},
        )
        assert st == 200 and body["diff"] == {}, body
        summary: dict[str, Any] = body["summary"]
        assert summary["households"]["added"] == summary["accounts"]["changed"] == []
    st, _, _ = await site.api("GET", "/api/roster/export?format=csv", role="operator")
    assert st == 403
    st, err, _ = await site.api("GET", "/api/roster/export", role="engineer")
    assert st == 400 and err["error"] == "format: required"
    st, err, _ = await site.api("GET", "/api/roster/export?format=pdf", role="engineer")
    assert st == 400 and err["error"].startswith("format:")


async def test_other_uploads_are_refused_with_the_reason(site: Served) -> None:
    st, err, _ = await site.api("POST", "/api/roster/import", role="engineer", body={"rows": []})
    assert st == 415 and "text/csv" in err["error"]
    st, err, _ = await site.api("POST", "/api/roster/import", role="engineer", raw=b"", headers=CSV)
    assert st == 422 and "empty" in err["error"]
    st, err, _ = await site.api(
        "POST",
        "/api/roster/import",
        role="engineer",
        raw=b"\x00\xff garbage",
        headers={"Content-Type": XLSX},
    )
    assert st == 422 and "not an Excel workbook" in err["error"]
    st, _, _ = await site.api(
        "POST", "/api/roster/import", role="operator", raw=ROSTER, headers=CSV
    )
    assert st == 403
