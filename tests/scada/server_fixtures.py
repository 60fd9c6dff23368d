"""Fixtures of the server tests: a simulated site on free loopback ports, served for real.

``served`` starts a :class:`~scada.runtime.Runtime` (simulator, Modbus drivers over
loopback TCP, historian, alarms) with its server on a free port, one user per role with
a bearer token, and gives an HTTP helper (tornado's ``AsyncHTTPClient``) and a websocket
helper. Import the fixtures into a test module with
``from tests.scada.server_fixtures import served_fixture  # noqa: F401``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from scada.config import load_site
from scada.runtime import Runtime
from scada.services.auth import Role
from scada.services.users import UserStore
from tags.model import Quality

SITE_YAML = """
site: {{id: srvtest, name: Server test site, timezone: UTC}}
simulate: {{enabled: true, seed: 3}}
historian: {{backend: sqlite, path: history.sqlite, flush_s: 0.2}}
channels:
  - {{id: b1-bus, protocol: modbus-tcp, host: 127.0.0.1, port: {port}, timeout_s: 1.0, retries: 1,
      poll_s: 0.5, offline_probe_s: 2}}
templates:
  heat-meter:
    role: heat_meter
    points:
      energy_kwh: {{address: 0, kind: holding, type: float32, unit: kWh}}
      power_kw:   {{address: 2, kind: holding, type: float32, unit: kW}}
      flow_m3h:   {{address: 4, kind: holding, type: float32, unit: m3/h}}
      supply_c:   {{address: 6, kind: holding, type: float32, unit: degC}}
      return_c:   {{address: 8, kind: holding, type: float32, unit: degC}}
  valve:
    role: valve
    points:
      open:       {{address: 0, kind: coil, type: bool, writable: true}}
      room_c:     {{address: 0, kind: input, type: int16, scale: 0.1, unit: degC}}
      setpoint_c: {{address: 1, kind: holding, type: int16, scale: 0.1, unit: degC, writable: true,
                    min: 5, max: 30}}
devices:
  - {{id: b1.hm, template: heat-meter, channel: b1-bus, unit: 1}}
  - {{id: b1.101.valve, template: valve, channel: b1-bus, unit: 11}}
  - {{id: b1.102.valve, template: valve, channel: b1-bus, unit: 12}}
tags:
  - {{name: demo.note, type: str, initial: "", description: Operator note}}
  - {{name: test.flag, type: bool, initial: false}}
  - {{name: test.level, type: float, initial: 10, min: 0, max: 100}}
  - {{name: test.fixed, type: float, initial: 1, writable: false}}
buildings:
  - id: b1
    heat: {{energy_tag: b1.hm.energy_kwh, power_tag: b1.hm.power_kw, supply_tag: b1.hm.supply_c,
            return_tag: b1.hm.return_c, flow_tag: b1.hm.flow_m3h}}
    households:
      - {{id: b1.101, area_m2: 80, valve_tag: b1.101.valve.open}}
      - {{id: b1.102, area_m2: 60, valve_tag: b1.102.valve.open}}
alarms:
  - {{id: flag, kind: state, tag: test.flag, equals: true, priority: 1, message: "flag is set"}}
"""

PASSWORD = "correct horse battery"
ROLES = [r for r in Role if r is not Role.SYSTEM]


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_site(tmp_path: Path, extra: str = "") -> Path:
    """Write the test site (on a free Modbus port) under ``tmp_path/config``; return its path."""
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    path = cfg / "site.yaml"
    path.write_text(SITE_YAML.format(port=free_port()) + extra, encoding="utf-8")
    return path


class Served:
    """A running runtime + server with a user and bearer token per role."""

    def __init__(
        self, runtime: Runtime, data_dir: Path, config: Path, tokens: dict[str, str]
    ) -> None:
        self.runtime = runtime
        self.data_dir = data_dir
        self.config = config
        self.tokens = tokens
        self.server = runtime.server
        self.url = runtime.server.url
        self.http = AsyncHTTPClient()
        self.sockets: list[WebSocketClientConnection] = []

    @property
    def db(self) -> Any:
        return self.runtime.db

    async def api(
        self,
        method: str,
        path: str,
        *,
        role: str | None = "admin",
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, Any]:
        """Send one request; return ``(status, JSON body or text, response)``."""
        hdrs = dict(headers or {})
        tok = token if token is not None else (self.tokens[role] if role else None)
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method in ("POST", "PATCH", "PUT"):
            data = b"{}"
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        req = HTTPRequest(
            self.url + path,
            method=method,
            headers=hdrs,
            body=data,
            follow_redirects=False,
            request_timeout=30,
            allow_nonstandard_methods=True,
        )
        resp = await self.http.fetch(req, raise_error=False)
        text = resp.body.decode() if resp.body else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return resp.code, parsed, resp

    async def ws(
        self,
        role: str = "admin",
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> WebSocketClientConnection:
        """Open a websocket as ``role`` (bearer token on the handshake)."""
        hdrs = dict(headers or {})
        hdrs["Authorization"] = f"Bearer {token or self.tokens[role]}"
        req = HTTPRequest(self.url.replace("http", "ws", 1) + "/ws", headers=hdrs)
        conn = await websocket_connect(req)
        self.sockets.append(conn)
        return conn

    async def wait_for(
        self, check: Callable[[], bool], patterns: str | list[str] = "*", timeout_s: float = 20.0
    ) -> None:
        """Wait until ``check()`` is true, re-checked on every matching tag change (no polling)."""
        done = asyncio.Event()

        def on_change(_batch: Any = None) -> None:
            if check():
                done.set()

        unsubscribe = self.db.subscribe(patterns, on_change)
        try:
            on_change()
            await asyncio.wait_for(done.wait(), timeout_s)
        finally:
            unsubscribe()

    async def wait_good(self, names: list[str]) -> None:
        await self.wait_for(
            lambda: all(self.db.read(n).quality is Quality.GOOD for n in names), names
        )


async def recv(conn: WebSocketClientConnection, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Return the next websocket message as JSON (fails the test on timeout or close)."""
    msg = await asyncio.wait_for(conn.read_message(), timeout_s)
    assert msg is not None, "websocket closed"
    return json.loads(msg)


async def recv_until(
    conn: WebSocketClientConnection,
    pred: Callable[[dict[str, Any]], bool],
    *,
    timeout_s: float = 10.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until ``pred(msg)``; return it and every message before it."""
    seen: list[dict[str, Any]] = []

    async def loop() -> dict[str, Any]:
        while True:
            m = await recv(conn, timeout_s=timeout_s)
            if pred(m):
                return m
            seen.append(m)

    return await asyncio.wait_for(loop(), timeout_s), seen


async def start_served(
    tmp_path: Path, *, select_timeout_s: float = 30.0, extra_yaml: str = ""
) -> Served:
    """Create the users, start the runtime with its server on a free port."""
    config = write_site(tmp_path, extra_yaml)
    data_dir = tmp_path / "var"
    tokens: dict[str, str] = {}
    with UserStore.in_data_dir(data_dir) as store:
        for role in ROLES:
            links = ["b1.101"] if role is Role.TENANT else []
            store.add_user(role.value, role, PASSWORD, links)
            tokens[role.value] = store.create_token(role.value, label="test")
        store.add_user("operator2", Role.OPERATOR, PASSWORD)
        tokens["operator2"] = store.create_token("operator2")
    site = load_site(config)
    runtime = Runtime(site, data_dir, serve=True, port=0, select_timeout_s=select_timeout_s)
    await runtime.start()
    return Served(runtime, data_dir, config, tokens)


@pytest.fixture(name="served")
async def served_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    """The test site, running, served on a free port, with its device tags good."""
    s = await start_served(tmp_path)
    try:
        await s.wait_good(["b1.101.valve.open", "b1.102.valve.open", "b1.hm.energy_kwh"])
        yield s
    finally:
        for conn in s.sockets:
            conn.close()
        await s.runtime.stop()
