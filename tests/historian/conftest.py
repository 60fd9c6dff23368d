"""Backends for the historian contract suite: SQLite, and InfluxDB's v1 API on a real server.

``influxd`` is a private InfluxDB 1.x (Debian's ``influxd``) started once per session on a free
loopback port in its own temp dir, with authentication on (``historian.influxd``). Without
``influxd`` installed the InfluxDB half skips, unless ``CI=true``: then it fails, because CI must
run the whole contract suite against the real server.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from historian.base import Historian
from historian.influxd import ADMIN, ADMIN_PASSWORD, InfluxdServer
from historian.sqlite import SqliteHistorian

# A day boundary (UTC) so hour and day rollups line up with the test times.
T0 = 1_700_006_400.0
CONTRACT_DB = "contract"


def require_influxd() -> str:
    """Return the path of ``influxd``; skip (or fail under ``CI=true``) when it is missing."""
    exe = shutil.which("influxd")
    if exe is None:
        reason = (
            "influxd is not installed (apt-get install influxdb): the InfluxDB v1 contract "
            "suite needs a real InfluxDB 1.x"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxdServer]:
    """Yield one started InfluxDB 1.x with auth on, shared by the session."""
    require_influxd()
    server = InfluxdServer(tmp_path_factory.mktemp("influxd"), auth=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def influx_v1(server: InfluxdServer, database: str = CONTRACT_DB, **kwargs: object) -> Historian:
    """Return a connected v1 backend on ``server`` as its admin (the database is created)."""
    from historian.influx_v1 import Influx1Historian

    h = Influx1Historian(
        server.url,
        database,
        username=ADMIN,
        password=ADMIN_PASSWORD,
        **kwargs,  # type: ignore[arg-type]
    )
    h.connect()
    return h


@pytest.fixture(params=["sqlite", "influxdb-v1"])
def historian(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Historian]:
    """Yield a fresh backend: SQLite, or the v1 backend on the session's ``influxd``."""
    if request.param == "sqlite":
        h: Historian = SqliteHistorian(tmp_path / "history.sqlite")
    else:
        h = influx_v1(request.getfixturevalue("influxd"))
    yield h
    h.close()


@pytest.fixture
def ns() -> str:
    """A unique tag-name prefix, so tests can share one InfluxDB database."""
    return f"t{uuid.uuid4().hex[:10]}."
