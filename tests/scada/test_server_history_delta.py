"""``GET /api/history/agg?fn=delta``: counter consumption per local day on the running server.

The test site runs in Europe/Berlin; a meter's history (1 kWh an hour, comm lost for two
hours) is written into the runtime's historian, and the API answers a bucket per local day
(25 hours the day clocks go back) with its quality and reason. Bad input is 400 naming the
parameter, never 5xx, and the operation is in the served OpenAPI document.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from historian.base import Sample
from historian.buckets import Every, parse_every
from scada.server import formats
from scada.server.openapi import document
from tags.model import Quality
from tests.scada import server_fixtures
from tests.scada.server_fixtures import Served, start_served

BERLIN = ZoneInfo("Europe/Berlin")
METER = "test.level"  # a memory tag of the test site: nothing else writes its history here


def local(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def q(**params: str) -> str:
    return "/api/history/agg?" + urllib.parse.urlencode(params)


@pytest.fixture(name="served")
async def served_berlin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    site = server_fixtures.SITE_YAML.replace("timezone: UTC", "timezone: Europe/Berlin")
    assert site != server_fixtures.SITE_YAML
    monkeypatch.setattr(server_fixtures, "SITE_YAML", site)
    s = await start_served(tmp_path)
    try:
        h = s.runtime.historian
        assert h is not None
        first = local(2025, 10, 25)
        samples = [Sample(METER, first + 3600 * i, float(i)) for i in range(24 * 3 + 2)]
        for i in (50, 51):
            samples[i] = Sample(METER, samples[i].ts, float(i), Quality.BAD)
        h.write(samples)
        yield s
    finally:
        await s.runtime.stop()


async def test_consumption_per_local_day_with_quality(served: Served) -> None:
    st, body, _ = await served.api(
        "GET",
        q(
            tags=METER,
            fn="delta",
            every="1d",
            start="2025-10-25T00:00:00+02:00",
            end="2025-10-28T00:00:00+01:00",
        ),
        role="viewer",
    )
    assert st == 200, body
    assert body["fn"] == "delta" and body["every"] == "1d" and body["timezone"] == "Europe/Berlin"
    buckets = body["series"][METER]
    assert [b["start"] for b in buckets] == [
        "2025-10-24T22:00:00.000+00:00",
        "2025-10-25T22:00:00.000+00:00",
        "2025-10-26T23:00:00.000+00:00",
    ]
    assert buckets[1]["end"] == "2025-10-26T23:00:00.000+00:00"  # 25 hours
    assert [b["value"] for b in buckets] == [24, 25, 24]
    assert [(b["quality"], b["reason"]) for b in buckets] == [
        ("good", None),
        ("good", None),
        ("uncertain", "comm_lost"),
    ]
    # hours: the same total, and a month of them as seconds too
    st, hours, _ = await served.api(
        "GET",
        q(
            tags=METER,
            fn="delta",
            every="1h",
            start="2025-10-25T00:00:00+02:00",
            end="2025-10-28T00:00:00+01:00",
        ),
        role="viewer",
    )
    assert st == 200 and len(hours["series"][METER]) == 24 + 25 + 24
    assert sum(b["value"] for b in hours["series"][METER]) == 73
    st, fixed, _ = await served.api(
        "GET",
        q(
            tags=METER,
            fn="delta",
            every="86400",
            start=str(local(2025, 10, 25)),
            end=str(local(2025, 10, 27)),
        ),
        role="viewer",
    )
    assert st == 200 and fixed["every_s"] == 86400 and fixed["every"] == 86400
    # fixed widths of 24 h from start: the 49 hours of these two local days are three buckets
    assert [b["value"] for b in fixed["series"][METER]] == [24, 24, 1]


async def test_bad_delta_queries_are_400_with_a_reason(served: Served) -> None:
    day = {"start": "2025-10-25T00:00:00+02:00", "end": "2025-10-28T00:00:00+01:00"}
    cases = {
        q(tags=METER, fn="delta", every="7h", **day): "every",
        q(tags=METER, fn="delta", every="1w", **day): "every",
        q(tags=METER, fn="delta", every="0", **day): "every",
        q(tags=METER, fn="delta", every="1e999", **day): "every",
        q(tags=METER, fn="delta", every="9999y", **day): "wider than a year",
        q(tags=METER, fn="delta", every="1s", start="0", end="4102444800"): "too many buckets",
        q(tags=METER, fn="delta", every="1d", include_bad="true", **day): "include_bad",
        q(tags=METER, fn="delta", every="1d", rollover="0", **day): "rollover",
        q(tags=METER, fn="twa", every="1d", **day): "every",  # calendar units: delta only
        q(tags=METER, fn="mean", rollover="100", **day): "rollover",
        q(
            tags=METER,
            fn="delta",
            every="1d",
            start="2025-10-28T00:00:00Z",
            end="2025-10-25T00:00:00Z",
        ): "end",
    }
    for path, name in cases.items():
        st, body, _ = await served.api("GET", path, role="viewer")
        assert st == 400, (path, st, body)
        assert name in body["error"], (path, body)
    st, body, _ = await served.api("GET", q(tags="nope", fn="delta", **day), role="viewer")
    assert st == 404


async def test_delta_is_in_the_served_openapi_document(served: Served) -> None:
    st, doc, _ = await served.api("GET", "/api/openapi.json", role=None)
    assert st == 200 and doc == document()
    op = doc["paths"]["/api/history/agg"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert "delta" in params["fn"]["schema"]["enum"]
    assert params["every"]["schema"]["pattern"] == formats.EVERY
    assert params["rollover"]["schema"]["type"] == "number"
    assert "fn=delta" in op["x-rules"]["description"]
    for text in ("1h", "1d", "1mo", "15m", "3600", "1.5e3"):
        assert formats.matches(formats.EVERY, text), text
    for text in ("1w", "-1h", "1 d", "h", "1h\n", "01d"):
        assert not formats.matches(formats.EVERY, text), text


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(formats.EVERY, fullmatch=True))
def test_every_documented_every_is_read_or_refused_with_a_reason(text: str) -> None:
    try:
        every = parse_every(text)
    except ValueError as exc:  # the handler's 400 (x-rules): 0, 7h, 1e999
        assert "every" in str(exc)
        return
    assert isinstance(every, Every) or every > 0
