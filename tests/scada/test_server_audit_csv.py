"""``GET /api/audit?format=csv``: the same filters as JSON, a header row, a download name."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from scada.cli import main
from scada.services.audit import EXPORT_COLUMNS
from tests.scada.server_fixtures import Served, served_fixture  # noqa: F401


def _record(served: Served) -> None:
    audit = served.server.ctx.audit
    audit.record(
        "alarm.ack",
        user="operator",
        source="10.0.0.7",
        target="flag",
        before={"state": "unacknowledged"},
        after={"state": "acknowledged", "note": 'Ünïcode, "quoted"'},
        detail="checked, on site",
    )
    audit.record("command.select", user="engineer", target="b1.101.valve.open", result="denied")


async def test_csv_has_a_header_the_filters_and_an_attachment_name(served: Served) -> None:
    _record(served)
    st, body, resp = await served.api(
        "GET", "/api/audit?format=csv&action=alarm.*", role="engineer"
    )
    assert st == 200, body
    assert resp.headers["Content-Type"].startswith("text/csv")
    disposition = resp.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="audit-\d{8}T\d{6}Z-\d{8}T\d{6}Z\.csv"', disposition)
    rows = list(csv.reader(io.StringIO(body)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    entries = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert entries and all(e["action"].startswith("alarm.") for e in entries)
    ack = next(e for e in entries if e["target"] == "flag" and e["source"] == "10.0.0.7")
    assert ack["detail"] == "checked, on site"
    assert json.loads(ack["before"]) == {"state": "unacknowledged"}
    assert json.loads(ack["after"])["note"] == 'Ünïcode, "quoted"'
    # the same entries, in the same order, as the JSON answer of the same query
    st, doc, _ = await served.api("GET", "/api/audit?action=alarm.*", role="engineer")
    assert [str(e["seq"]) for e in doc["entries"]] == [e["seq"] for e in entries]


async def test_csv_name_follows_since_and_until_and_result_filters(served: Served) -> None:
    _record(served)
    q = "format=csv&result=denied&since=2024-05-01T00:00:00%2B00:00&until=4102444800"
    st, body, resp = await served.api("GET", f"/api/audit?{q}", role="admin")
    assert st == 200
    assert (
        'filename="audit-20240501T000000Z-21000101T000000Z.csv"'
        in resp.headers["Content-Disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows and {r["result"] for r in rows} == {"denied"}
    assert any(r["action"] == "command.select" and r["user"] == "engineer" for r in rows)
    st, body, _ = await served.api("GET", f"/api/audit?{q}&user=nobody", role="admin")
    assert st == 200 and body.strip() == ",".join(EXPORT_COLUMNS)  # the header, no rows


async def test_csv_is_refused_to_roles_without_audit_read_and_bad_formats(served: Served) -> None:
    for role in ("viewer", "operator", "oncall", "tenant"):
        st, body, _ = await served.api("GET", "/api/audit?format=csv", role=role)
        assert st == 403, (role, body)
    st, body, _ = await served.api("GET", "/api/audit?format=xml", role="admin")
    assert st == 400 and "format" in body["error"]


async def test_the_api_and_the_cli_write_the_same_rows(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    _record(served)
    st, body, _ = await served.api("GET", "/api/audit?format=csv", role="admin")
    assert st == 200
    api_rows = list(csv.reader(io.StringIO(body)))
    assert main(["audit", "export", "--data-dir", str(served.data_dir)]) == 0
    cli_rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert api_rows[0] == cli_rows[0]
    # the CLI writes oldest first, the API newest first; entries written since may differ
    by_seq = {r[0]: r for r in cli_rows[1:]}
    assert all(by_seq[r[0]] == r for r in api_rows[1:] if r[0] in by_seq)
    assert len(api_rows) > 2
