"""The OpenAPI document says what the server does (issue 18 item 6): answers, constraints, 405.

Beside the Schemathesis run (tests/scada/test_openapi_schemathesis.py), these pin the parts
one by one: every operation documents its success and the pipeline's errors; the constraints
the server enforces are in the document, and a value the document allows is one the parsers
take; a method a path does not have is 405 with ``Allow``.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.money import parse_amount
from billing.periods import parse_period
from scada.server import formats
from scada.server.handlers.base import parse_time
from scada.server.handlers.billing import site_time
from scada.server.openapi import document
from tests.scada.server_fixtures import (
    Served,
    served_fixture,  # noqa: F401
)

METHODS = ("get", "post", "patch", "delete", "put")
#: The extremes of the time zones a site may be in.
ZONES = [zoneinfo.ZoneInfo(z) for z in ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago")]


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    doc = document()
    return [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]


def test_every_operation_documents_its_success_and_the_pipelines_errors() -> None:
    for path, method, op in _operations():
        codes = {int(c) for c in op["responses"]}
        where = (method, path)
        assert any(c < 400 for c in codes), where  # top-up, refund, ... declared none
        if op["x-permission"] != "public":
            assert 401 in codes, where
        if "requestBody" in op:
            assert {400, 413, 422} <= codes, where  # not JSON, too big, not the schema
        if any(p["in"] in ("query", "header") for p in op.get("parameters", ())):
            assert 400 in codes, where
        for code, resp in op["responses"].items():
            if int(code) >= 400:
                assert "application/json" in resp["content"], where


def test_the_constraints_the_server_enforces_are_documented() -> None:
    doc = document()
    params = {
        (path, method, p["name"]): p
        for path, item in doc["paths"].items()
        for method, op in item.items()
        for p in op.get("parameters", ())
    }
    assert params[("/api/tags", "get", "limit")]["schema"]["minimum"] == 1
    assert params[("/api/commands", "get", "limit")]["schema"]["maximum"] == 1000
    heat_from = params[("/api/billing/heat", "get", "from")]
    assert heat_from["required"] and heat_from["schema"]["pattern"] == formats.SITE_TIME
    ledger_from = params[("/api/accounts/{account_id}/ledger", "get", "from")]
    assert not ledger_from["required"]
    money = doc["components"]["schemas"]["MoneyBody"]["properties"]["amount"]
    assert money["pattern"] == formats.AMOUNT
    assert doc["paths"]["/logout"].keys() == {"post"}
    assert doc["paths"]["/api/billing/bills"]["get"]["x-rules"]["status"] == 400


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(formats.AMOUNT, fullmatch=True))
def test_every_documented_amount_is_money(text: str) -> None:
    assert parse_amount(text) > 0


@pytest.mark.parametrize(
    "text", ["0", "0.00", "-5", " 5", "+5", "5.", ".5", "1E+2", "٥", "５", "5.001", "1" + "0" * 12]
)
def test_what_is_not_money_is_not_documented_as_money(text: str) -> None:
    assert not formats.matches(formats.AMOUNT, text)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(formats.UTC_TIME, fullmatch=True))
def test_every_documented_utc_time_is_read(text: str) -> None:
    assert 0 <= parse_time(text, "t") <= 4_102_444_800 + 86400


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(formats.SITE_TIME, fullmatch=True), st.sampled_from(ZONES))
def test_every_documented_site_time_is_read_in_any_zone(text: str, tz: Any) -> None:
    site_time(text, "from", tz)  # no ApiError: not out of 1970 .. 2100 even at +14 h


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(formats.PERIOD, fullmatch=True), st.sampled_from(ZONES))
def test_every_documented_period_is_a_period(text: str, tz: Any) -> None:
    p = parse_period(text, tz)
    assert 0 <= p.start < p.end <= 4_102_444_800


@pytest.mark.parametrize("text", ["2025-02-29", "2026-04-31", "2099-01-01", "1970-06-01", "x"])
def test_impossible_dates_are_not_documented_times(text: str) -> None:
    assert not formats.matches(formats.SITE_TIME, text)
    assert formats.matches(formats.SITE_TIME, "2024-02-29")


async def test_undeclared_methods_are_405_with_allow(served: Served) -> None:
    cases = [
        ("PUT", "/api/tags", "GET"),
        ("DELETE", "/api/users", "GET, POST"),
        ("OPTIONS", "/api/users/admin", "GET, PATCH, DELETE"),
        ("HEAD", "/api/accounts", "GET"),
        ("TRACE", "/api/me", "GET"),  # Tornado refuses it before the handler runs
        ("GET", "/api/logout", "POST"),
        ("POST", "/ws", "GET"),
    ]
    for method, path, allow in cases:
        st_, body, resp = await served.api(method, path, role="admin")
        assert st_ == 405, (method, path, st_)
        assert resp.headers["Allow"] == allow, (method, path)
        if method != "HEAD":
            assert resp.headers["Content-Type"].startswith("application/json"), (method, path)
            assert "error" in body, (method, path)


async def test_parameters_off_their_declaration_are_400_naming_them(served: Served) -> None:
    cases = {
        "/api/tags?limit=0": "limit",
        "/api/tags?values=yes": "values",
        "/api/commands?limit=%2B5": "limit",
        "/api/alarms/journal?since=yesterday": "since",
        "/api/alarms?state=unacked": "state",
        "/api/audit?until=2026-01-01T00:00": "until",  # no offset
        "/api/history/raw": "tag",
        "/api/history/agg?tags=test.level,,test.flag": "tags",
    }
    for path, name in cases.items():
        st_, body, _ = await served.api("GET", path, role="admin")
        assert st_ == 400 and body["error"].startswith(f"{name}:"), (path, st_, body)
    st_, body, _ = await served.api(
        "POST",
        "/api/commands",
        headers={"Idempotency-Key": "\u00e9"},
        body={"tag": "x", "value": 1},
    )
    assert st_ == 400 and body["error"].startswith("Idempotency-Key:"), body
    # a time in the documented form passes, and so does a large epoch the CLI writes
    st_, _, _ = await served.api(
        "GET", "/api/audit?since=2024-05-01T00:00:00%2B00:00", role="admin"
    )
    assert st_ == 200
    st_, _, _ = await served.api("GET", "/api/audit?until=4102444800", role="admin")
    assert st_ == 200


async def test_a_kpi_period_of_no_length_is_400_not_500(served: Served) -> None:
    st_, body, _ = await served.api("GET", "/api/alarms/kpis?since=100&until=100", role="admin")
    assert st_ == 400 and "until" in body["error"], body


async def test_a_json_integer_is_read_as_json_schema_reads_it(served: Served) -> None:
    # 3.0 is an integer to JSON Schema; false is not alarm 0 and "3" is not version 3
    st_, body, _ = await served.api("POST", "/api/alarms/ack", body={"alarms": [False]})
    assert st_ == 422, body
    st_, body, _ = await served.api("POST", "/api/config/rollback", body={"version": "3"})
    assert st_ == 422, body
    st_, body, _ = await served.api("POST", "/api/config/rollback", body={"version": 99.0})
    assert st_ == 404, body  # read as version 99, which does not exist
