"""Never frozen-as-live: clock, data age, the lost-connection overlay and the automatic reconnect.

A real ``scada run`` in a subprocess (the demo site on free ports, its own data dir), pages in
headless Chromium. The server is stopped (SIGSTOP: a stall), killed (SIGKILL) and started
again on the same port and data dir; the pages must show it and come back by themselves.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio

from tests.demo import demo_site_copy, free_port
from tests.hmi.conftest import PASSWORD, wait_rendered

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCADA = Path(sys.executable).with_name("scada")
START_TIMEOUT_S = 120.0
USERS = {"olga": ("operator", ()), "tina": ("tenant", ("b1.101",))}


class ScadaProcess:
    """``scada run`` of one config and data dir on a fixed port, started and killed at will."""

    def __init__(self, config: Path, data_dir: Path, port: int) -> None:
        self.config = config
        self.data_dir = data_dir
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.output: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the server and return once it prints that it serves."""
        self.proc = await asyncio.create_subprocess_exec(
            str(SCADA), "run", str(self.config), "--data-dir", str(self.data_dir),
            "--port", str(self.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        serving = asyncio.Event()
        self._drain = asyncio.create_task(self._read(self.proc, serving))
        waiter = asyncio.create_task(serving.wait())
        done, _ = await asyncio.wait(
            {waiter, self._drain}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            raise AssertionError("scada run did not start:\n" + "".join(self.output[-40:]))

    async def _read(self, proc: asyncio.subprocess.Process, serving: asyncio.Event) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:  # drained to the end: a full pipe would block the server
            line = raw.decode("utf-8", "replace")
            self.output.append(line)
            if line.startswith("serving http"):
                serving.set()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def kill(self) -> None:
        """SIGKILL the server (no clean shutdown) and reap it."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.signal(signal.SIGCONT)  # in case a test left it stopped
        self.proc.kill()
        await self.proc.wait()
        if self._drain is not None:
            await self._drain


async def add_users(config: Path, data_dir: Path) -> None:
    """Add the test users with ``scada user add ... --password-stdin``."""
    for name, (role, links) in USERS.items():
        args = [str(SCADA), "user", "add", str(config), name, "--role", role, "--password-stdin"]
        for link in links:
            args += ["--link", link]
        proc = await asyncio.create_subprocess_exec(
            *args, "--data-dir", str(data_dir),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate(PASSWORD.encode() + b"\n")
        assert proc.returncode == 0, out.decode()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScadaProcess]:
    base = tmp_path_factory.mktemp("reconnect")
    config = demo_site_copy(base / "config")
    data_dir = base / "var"
    await add_users(config, data_dir)
    proc = ScadaProcess(config, data_dir, free_port())
    await proc.start()
    try:
        yield proc
    finally:
        await proc.kill()


async def open_logged_in(browser: Any, server: ScadaProcess, user: str, path: str) -> Any:
    """Return a new rendered page of ``path`` for ``user`` (logged in through ``POST /api/login``)."""
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    reply = await context.request.post(
        f"{server.base}/api/login", data={"username": user, "password": PASSWORD}
    )
    assert reply.status == 200, await reply.text()
    page = await context.new_page()
    await page.goto(server.base + path)
    await wait_rendered(page, timeout_ms=60_000)
    return page


async def assert_live(page: Any, *, with_age: bool) -> None:
    """Assert the page's server clock ticks and, ``with_age``, that it shows its data's age."""
    from playwright.async_api import expect

    clock = page.locator("[data-clock]")
    await clock.wait_for(timeout=10_000)
    first = await clock.inner_text()
    assert re.fullmatch(r"\d\d:\d\d:\d\d \S+", first), first
    assert await clock.get_attribute("title") == "server time, Asia/Shanghai"
    await expect(clock).not_to_have_text(first, timeout=20_000)
    age = page.locator("[data-age]")
    if with_age:
        assert re.fullmatch(r"data \d+ (s|min|h) old", await age.inner_text())
    else:
        assert await age.count() == 0


async def assert_greyed_out(page: Any) -> None:
    """Assert the lost-connection overlay covers the whole window, greys it and says so."""
    overlay = page.locator("#hmi-lost")
    await overlay.wait_for(state="visible", timeout=5_000)
    text = await overlay.inner_text()
    assert "Connection to the server lost at" in text and "reconnecting" in text, text
    box = await overlay.bounding_box()
    assert box == {"x": 0, "y": 0, "width": 1920, "height": 1080}
    covered = await page.evaluate(
        """() => {
            const top = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
            return [document.getElementById("hmi-lost").contains(top),
                    getComputedStyle(document.getElementById("hmi-lost")).backdropFilter];
        }"""
    )
    assert covered[0], "the overlay does not cover the page"
    assert "grayscale" in covered[1], covered


async def test_a_stalled_server_greys_the_page_until_beats_resume(browser, server) -> None:
    page = await open_logged_in(browser, server, "olga", "/hmi/overview")
    await assert_live(page, with_age=True)
    await page.evaluate("() => { window.beforeStall = true; }")
    server.signal(signal.SIGSTOP)  # the websocket stays open; only the heartbeat stops
    try:
        await assert_greyed_out(page)
    finally:
        server.signal(signal.SIGCONT)
    await page.locator("#hmi-lost").wait_for(state="hidden", timeout=10_000)
    assert await page.evaluate("() => window.beforeStall") is True  # no reload needed
    await assert_live(page, with_age=True)
    alarms = await open_logged_in(browser, server, "olga", "/hmi/alarms")
    await assert_live(alarms, with_age=False)  # no tag feed: the clock only
    await page.context.close()
    await alarms.context.close()


@pytest.mark.timeout(400)
async def test_pages_reconnect_by_themselves_after_a_server_restart(browser, server) -> None:
    overview = await open_logged_in(browser, server, "olga", "/hmi/overview")
    building = await open_logged_in(browser, server, "olga", "/hmi/building?building=b2")
    tenant = await open_logged_in(browser, server, "tina", "/hmi/tenant")
    pages = [overview, building, tenant]
    for page in pages:
        await assert_live(page, with_age=True)
        await page.evaluate("() => { window.beforeKill = true; }")

    await server.kill()
    for page in pages:
        await assert_greyed_out(page)
    # the tenant's login ends while the server is down: that page must go to the login page
    await tenant.context.clear_cookies()
    await server.start()

    for page in (overview, building):
        await page.wait_for_function(
            "() => window.beforeKill === undefined && window.hmiLastBeat > 0", timeout=90_000
        )
        await wait_rendered(page, timeout_ms=60_000)
        assert await page.locator("#hmi-lost").is_visible() is False
        await assert_live(page, with_age=True)
    assert parse_qs(urlsplit(building.url).query) == {"building": ["b2"]}
    assert await building.locator("[data-denied]").count() == 0  # the login survived

    await tenant.wait_for_url(re.compile(r"/login\?"), timeout=90_000)
    assert parse_qs(urlsplit(tenant.url).query)["next"] == ["/hmi/tenant"]
    for page in pages:
        await page.context.close()


async def test_clock_and_age_texts() -> None:
    from hmi.liveness import age_text, clock_text

    assert clock_text(1_796_656_680.0, "Asia/Shanghai") == "23:18:00 CST"
    assert clock_text(1_796_656_680.0, "UTC") == "15:18:00 UTC"
    assert [age_text(s) for s in (-1, 2.7, 119, 120, 7199, 7200)] == [
        "data 0 s old", "data 2 s old", "data 119 s old",
        "data 2 min old", "data 119 min old", "data 2 h old",
    ]  # fmt: skip
