"""Heat fees and statements over REST against the running server on the simulator.

``GET /api/billing/heat`` answers the heat fees beside the allocation (the document of
``scada bill heat --json``); ``GET /api/billing/heat/statement/{household}.{pdf|xlsx}`` a
household's statement. Tenants see their own households only; bad input is 400 or 404,
never 5xx; both are declared in the served OpenAPI document.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import openpyxl
import pytest

from scada.server.handlers.billing import PDF, XLSX, HeatAllocationOut
from tests.scada.server_fixtures import Served, start_served

#: No floor or cap: a fee is basic + metered whatever the simulator's valves did.
TARIFF_YAML = (
    'heat_tariff: {area_price_per_m2: "20.00", basic_ratio: "0.3", energy_price_per_kwh: "0.25"}\n'
)


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    s = await start_served(tmp_path, extra_yaml=TARIFF_YAML)
    try:
        await s.wait_good(["b1.hm.energy_kwh", "b1.101.valve.open", "b1.102.valve.open"])
        yield s
    finally:
        await s.runtime.stop()


def _window() -> str:
    now = time.time()
    iso = [datetime.fromtimestamp(t, UTC).isoformat() for t in (now - 3600, now + 60)]
    return urlencode({"from": iso[0], "to": iso[1]})


async def _download(site: Served, path: str, role: str) -> tuple[int, bytes, dict[str, str]]:
    resp = await site.http.fetch(
        f"{site.url}{path}",
        headers={"Authorization": f"Bearer {site.tokens[role]}"},
        raise_error=False,
    )
    return resp.code, resp.body or b"", dict(resp.headers)


async def test_heat_fees_beside_the_allocation_as_the_cli_prints_them(site: Served) -> None:
    q = _window()
    st, body, _ = await site.api("GET", f"/api/billing/heat?{q}", role="viewer")
    assert st == 200, body
    doc = HeatAllocationOut.model_validate(body)
    assert [f.household for f in doc.households] == ["b1.101", "b1.102"]
    heat = {h.id: h.heat_kwh for h in doc.buildings[0].households}
    for f in doc.households:
        # 80 m2 and 60 m2 x 20.00 = 1600.00 and 1200.00 due in advance; 30 % basic
        assert f.advance == {"b1.101": "1600.00", "b1.102": "1200.00"}[f.household]
        assert Decimal(f.basic) == Decimal(f.advance) * Decimal("0.3")
        assert Decimal(f.total) == Decimal(f.basic) + Decimal(f.metered)
        assert Decimal(f.settlement) == Decimal(f.advance) - Decimal(f.total)
        assert f.heat_kwh == pytest.approx(heat[f.household], abs=1e-6)
        # nothing paid: the scheduler opens each heat account with 0.00 (billing.heat_accounts)
        assert f.paid in (None, "0.00") and not f.suspended and f.limit is None
    st, mine, _ = await site.api("GET", f"/api/billing/heat?{q}", role="tenant")
    assert st == 200 and [h["household"] for h in mine["households"]] == ["b1.101"]
    for bad in ({"from": "2025-01-02", "to": "2025-01-01"}, {"from": "2025-01-01"}):
        st, err, _ = await site.api("GET", f"/api/billing/heat?{urlencode(bad)}")
        assert st == 400 and err["error"], bad


async def test_a_household_statement_downloads_as_pdf_and_excel(site: Served) -> None:
    q = _window()
    st, pdf, headers = await _download(
        site, f"/api/billing/heat/statement/b1.101.pdf?{q}", "tenant"
    )
    assert st == 200 and headers["Content-Type"] == PDF
    assert 'filename="heat-b1.101.pdf"' in headers["Content-Disposition"]
    assert pdf.startswith(b"%PDF-")
    st, xlsx, headers = await _download(
        site, f"/api/billing/heat/statement/b1.102.xlsx?{q}", "viewer"
    )
    assert st == 200 and headers["Content-Type"] == XLSX
    rows = list(openpyxl.load_workbook(io.BytesIO(xlsx))["b1.102"].iter_rows(values_only=True))
    assert ("Household", "b1.102") in [r[:2] for r in rows]
    assert any(r[0] == "Area fee (advance due)" and r[2] == pytest.approx(1200.0) for r in rows)
    for path, role, status in (
        (f"/api/billing/heat/statement/b1.102.pdf?{q}", "tenant", 404),  # not the tenant's
        (f"/api/billing/heat/statement/b9.1.pdf?{q}", "viewer", 404),
        (f"/api/billing/heat/statement/b1.101.doc?{q}", "viewer", 404),
        ("/api/billing/heat/statement/b1.101.pdf?from=2025-01-02&to=2025-01-01", "viewer", 400),
        ("/api/billing/heat/statement/b1.101.pdf", "viewer", 400),
    ):
        st, body, _ = await _download(site, path, role)
        assert st == status, (path, body)
        assert b'"error"' in body
    resp = await site.http.fetch(
        f"{site.url}/api/billing/heat/statement/b1.101.pdf?{q}", raise_error=False
    )
    assert resp.code == 401


async def test_the_endpoints_are_in_the_openapi_document(site: Served) -> None:
    st, doc, _ = await site.api("GET", "/api/openapi.json")
    assert st == 200
    op = doc["paths"]["/api/billing/heat/statement/{household}.{format}"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["format"]["schema"]["enum"] == ["pdf", "xlsx"]
    assert params["from"]["required"] and params["to"]["required"]
    assert set(op["responses"]["200"]["content"]) == {PDF, XLSX}
    assert {"400", "404"} <= set(op["responses"])
    heat = doc["paths"]["/api/billing/heat"]["get"]["responses"]["200"]["content"]
    ref = heat["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "households" in doc["components"]["schemas"][ref]["properties"]
