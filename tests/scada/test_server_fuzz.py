"""Property-based fuzzing of the REST API from its OpenAPI document (schemathesis): no 5xx.

The server runs on the simulator in a background thread with its own event loop (the
schemathesis calls are synchronous); every generated request is sent with an admin
bearer token, so the handlers behind the permission checks are reached too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from scada.server.openapi import document
from tests.scada.server_fixtures import Served, start_served

schema = schemathesis.openapi.from_dict(document())


class _LiveServer:
    """A served site on its own loop thread."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fuzz-server", daemon=True
        )
        self.thread.start()
        self.served: Served = asyncio.run_coroutine_threadsafe(start_served(tmp), self.loop).result(
            60
        )

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.served.runtime.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = _LiveServer(tmp_path_factory.mktemp("fuzz"))
    try:
        yield server.served
    finally:
        server.close()


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, live: Served) -> None:
    if case.path == "/api/logout":  # would revoke the token the other cases use
        token = live.tokens["operator2"]
    else:
        token = live.tokens["admin"]
    response = case.call(
        base_url=live.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code < 500, (
        case.method,
        case.path,
        response.status_code,
        response.text[:500],
    )
