"""``GET /api/reports/{kind}`` of the historian reports on the running server: data and 4xx reasons."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from historian.base import Sample
from scada.server.handlers.billing import XLSX
from tests.scada.server_fixtures import Served, start_served


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    s = await start_served(tmp_path)
    try:
        await s.wait_good(["b1.hm.energy_kwh"])
        yield s
    finally:
        for conn in s.sockets:
            conn.close()
        await s.runtime.stop()


async def test_reports_answer_data_or_a_reason(site: Served) -> None:
    tz = ZoneInfo(site.runtime.site.site.timezone)
    month = datetime.now(tz).strftime("%Y-%m")
    # a reading of January 2020 written to the running historian: the export of that month
    jan = datetime(2020, 1, 15, 12, tzinfo=tz).timestamp()
    site.runtime.historian.write([Sample("b1.hm.energy_kwh", jan, 1234.5678)])
    st, body, _ = await site.api("GET", "/api/reports/meter_readings?period=2020-01")
    assert st == 200, body
    rows = {r[0]: r for r in body["sheets"][0]["rows"]}
    assert rows["b1.hm.energy_kwh"][3:] == [
        1234.568,
        "kWh",
        "good",
        "",
        datetime.fromtimestamp(jan, tz).isoformat(),
    ]
    resp = await site.http.fetch(
        f"{site.url}/api/reports/meter_readings?period={month}&format=xlsx",
        headers={"Authorization": f"Bearer {site.tokens['viewer']}"},
        raise_error=False,
    )
    assert resp.code == 200 and resp.headers["Content-Type"] == XLSX
    assert openpyxl.load_workbook(io.BytesIO(resp.body))["readings"].max_row >= 3
    bad = {
        "/api/reports/heat_meter_days?period=2001-01": "outside the stored history",
        f"/api/reports/household_statement?period={month}&household=nobody": "unknown household",
        f"/api/reports/household_statement?period={month}": "household: required",
        f"/api/reports/building_heat?period={month}&base_c=warm": "base_c",
        f"/api/reports/building_heat?period={month}&base_c=99&outdoor=x": "base_c",
        f"/api/reports/meter_energy?period={month}&household=b1.101": "takes no household",
    }
    for path, reason in bad.items():
        st, body, _ = await site.api("GET", path)
        assert st == 400, (path, body)
        assert reason in str(body), (path, body)
