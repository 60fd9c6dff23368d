"""Backends for the historian contract suite: SQLite always, InfluxDB when configured."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from historian.base import Historian
from historian.sqlite import SqliteHistorian

INFLUX_ENV = (
    "SCADA_TEST_INFLUX_URL",
    "SCADA_TEST_INFLUX_ORG",
    "SCADA_TEST_INFLUX_BUCKET",
    "SCADA_TEST_INFLUX_TOKEN",
)

# A day boundary (UTC) so hour and day rollups line up with the test times.
T0 = 1_700_006_400.0


@pytest.fixture(params=["sqlite", "influx"])
def historian(request: pytest.FixtureRequest, tmp_path) -> Iterator[Historian]:
    """Yield a fresh backend (InfluxDB: skipped unless the SCADA_TEST_INFLUX_* vars are set)."""
    if request.param == "sqlite":
        h: Historian = SqliteHistorian(tmp_path / "history.sqlite")
    else:
        missing = [n for n in INFLUX_ENV if not os.environ.get(n)]
        if missing:
            pytest.skip(f"InfluxDB contract suite needs {', '.join(missing)}")
        from historian.influx import InfluxHistorian

        h = InfluxHistorian(*(os.environ[n] for n in INFLUX_ENV))
    yield h
    h.close()


@pytest.fixture
def ns() -> str:
    """A unique tag-name prefix, so tests can share one InfluxDB bucket."""
    return f"t{uuid.uuid4().hex[:10]}."
