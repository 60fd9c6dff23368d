"""Slow clients, security headers and log-out by POST only (issue 18 item 7), against real servers.

The header and body timeouts are tested on a second server over the same runtime's services,
started with short timeouts; a raw socket plays the slow client. HSTS is tested on a TLS
server with a throw-away certificate. The browser test opens an HMI page under the
Content-Security-Policy and logs out with the page's own button.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from scada.server.headers import API_POLICY, HSTS
from scada.server.http import ScadaServer
from scada.services.auth import SESSION_COOKIE
from tests.scada.server_fixtures import (
    PASSWORD,
    Served,
    served_fixture,  # noqa: F401
)

SECURITY = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")


@contextlib.asynccontextmanager
async def _second_server(served: Served, **kwargs: Any) -> AsyncIterator[ScadaServer]:
    """Serve the running site's services once more, on another port, with ``kwargs``."""
    assert served.runtime.services is not None
    server = ScadaServer(served.runtime.services, port=0, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(name="impatient")
async def impatient_fixture(served: Served) -> AsyncIterator[ScadaServer]:
    """A server over the site's services that waits 1 s for a request head, 1 s for a body."""
    async with _second_server(served, header_timeout_s=1.0, body_timeout_s=1.0) as server:
        yield server


async def _trickle(port: int, head: bytes, slow: bytes, *, every_s: float = 0.5) -> float:
    """Send ``head``, then ``slow`` a byte at a time; return when the server hung up (seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)

    async def drip() -> None:
        for b in slow:
            await asyncio.sleep(every_s)
            writer.write(bytes([b]))
            await writer.drain()

    dripping = asyncio.create_task(drip())
    try:
        # the server closes without an answer: EOF (or a reset while we still write)
        async with asyncio.timeout(15):
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        return time.monotonic() - started
    finally:
        dripping.cancel()
        writer.close()


async def test_a_client_trickling_its_headers_is_cut_off(impatient: ScadaServer) -> None:
    assert impatient.port is not None
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    slow = b"X-Slow: " + b"a" * 60 + b"\r\n\r\n"  # 30 s of headers at a byte every 0.5 s
    took_s = await _trickle(impatient.port, head, slow)
    assert 0.9 <= took_s < 5.0, took_s  # the bytes kept coming: only the timeout can end it
    # a client that sends its request at once is served as ever
    resp = await AsyncHTTPClient().fetch(f"{impatient.url}/healthz", raise_error=False)
    assert resp.code == 200


async def test_a_client_trickling_its_body_is_cut_off(impatient: ScadaServer) -> None:
    assert impatient.port is not None
    body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
    head = (
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    took_s = await _trickle(impatient.port, head, body)
    assert 0.9 <= took_s < 5.0, took_s


async def _get(url: str, **kwargs: Any) -> Any:
    req = HTTPRequest(url, follow_redirects=False, allow_nonstandard_methods=True, **kwargs)
    return await AsyncHTTPClient().fetch(req, raise_error=False)


async def test_every_answer_carries_the_security_headers(served: Served) -> None:
    host = served.url.split("://", 1)[1]
    answers = {
        "json": await _get(f"{served.url}/api/openapi.json"),
        "error": await _get(f"{served.url}/api/tags"),  # 401
        "page": await _get(f"{served.url}/login"),
        "hmi redirect": await _get(f"{served.url}/hmi/overview"),  # to the login page
        "unknown path": await _get(f"{served.url}/no/such/page"),
        "bokeh script": await _get(f"{served.url}/static/js/bokeh.min.js"),
        "405": await _get(f"{served.url}/api/tags", method="DELETE"),
    }
    assert answers["error"].code == 401 and answers["unknown path"].code == 404
    for what, resp in answers.items():
        for name in SECURITY:
            assert resp.headers.get(name), (what, name, dict(resp.headers))
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], what
        assert "Strict-Transport-Security" not in resp.headers, what  # plain HTTP
    assert answers["json"].headers["Content-Security-Policy"] == API_POLICY
    page = answers["page"].headers["Content-Security-Policy"]
    # Bokeh's pages: inline scripts and CustomJS (eval), and the session's websocket here
    assert "script-src 'self' 'unsafe-inline' 'unsafe-eval'" in page
    assert f"connect-src 'self' ws://{host} wss://{host}" in page


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_hsts_only_under_tls(served: Served, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    async with _second_server(served, tls_cert=str(cert), tls_key=str(key)) as server:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        resp = await _get(f"{server.url}/healthz", ssl_options=ctx)
        assert resp.code == 200
        assert resp.headers["Strict-Transport-Security"] == HSTS
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    plain = await _get(f"{served.url}/healthz")
    assert "Strict-Transport-Security" not in plain.headers


async def _login_cookie(served: Served, user: str = "operator") -> str:
    resp = await _get(
        f"{served.url}/api/login",
        method="POST",
        body=json.dumps({"username": user, "password": PASSWORD}),
    )
    assert resp.code == 200
    return next(c.split(";")[0] for c in resp.headers.get_list("Set-Cookie") if SESSION_COOKIE in c)


async def test_logout_is_post_only(served: Served) -> None:
    cookie = await _login_cookie(served)
    for path in ("/logout", "/api/logout"):  # a link, a prefetch, an <img> cannot log out
        resp = await _get(f"{served.url}{path}", headers={"Cookie": cookie})
        assert resp.code == 405 and resp.headers["Allow"] == "POST", path
    st, _, _ = await served.api("GET", "/api/me", role=None, headers={"Cookie": cookie})
    assert st == 200  # still signed in
    resp = await _get(f"{served.url}/logout", method="POST", body=b"", headers={"Cookie": cookie})
    assert resp.code == 303 and resp.headers["Location"] == "/login"
    assert any(c.startswith(SESSION_COOKIE) for c in resp.headers.get_list("Set-Cookie"))
    st, _, _ = await served.api("GET", "/api/me", role=None, headers={"Cookie": cookie})
    assert st == 401  # the session is over on the server, not only in the browser
    actions = [e["action"] for e in served.server.ctx.audit.query(action="logout")]
    assert actions == ["logout"]


async def test_the_hmi_runs_under_the_policy_and_logs_out_with_its_button(served: Served) -> None:
    from tests.hmi.conftest import CHROMIUM_ARGS, chromium_or_skip, wait_rendered

    path = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            reply = await context.request.post(
                f"{served.url}/api/login", data={"username": "operator", "password": PASSWORD}
            )
            assert reply.status == 200
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{served.url}/hmi/overview")
            await wait_rendered(page)  # scripts, CustomJS and the websocket all ran
            button = page.locator(".hmi-nav [data-link='logout']")
            await button.click()
            await page.wait_for_url(f"{served.url}/login")
            assert not [e for e in errors if "Content Security Policy" in e], errors
            cookies = {c["name"] for c in await context.cookies()}
            assert SESSION_COOKIE not in cookies
        finally:
            await browser.close()
