"""Fixtures for HMI tests: the demo site on the simulator, users, the HMI server, headless Chromium.

One runtime and one browser serve the whole HMI test session (``loop_scope="session"``):
starting them per test would cost seconds each. Tests log in by putting a real session token
of the user store into the browser's cookie jar, exactly what ``POST /api/login`` sets.

Chromium: Debian's ``/usr/bin/chromium`` driven by Playwright; without it the browser tests
skip with the reason (they must not skip under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.demo import demo_site_copy

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"

#: Extra config of the HMI test site: a priority-1 alarm the tests can raise at will, and a
#: priority-2 limit alarm with the default message in words (tests/hmi/test_browser_alarms.py).
EXTRA_YAML = """
tags:
  - {name: test.trip, type: bool, initial: false, description: Raised by the HMI tests}
  - {name: test.supply_c, type: float, unit: degC, deadband: 0.1, initial: 80,
     description: "Supply temperature of the test substation behind building 1, north wing"}
alarms:
  - {id: test_trip, kind: state, tag: test.trip, equals: true, priority: 1, area: b1,
     message: "test trip raised"}
  - {id: test_supply, kind: limit, tag: test.supply_c, limits: {l: 70}, priority: 2, area: b1}
  - {id: test_room_hot, kind: limit, tag: b1.201.valve.room_c, limits: {hh: 60}, priority: 2,
     description: Room temperature}
"""

USERS = {
    "olga": ("operator", ()),
    "vera": ("viewer", ()),
    "oscar": ("oncall", ()),
    "erik": ("engineer", ()),
    "tina": ("tenant", ("b1.101",)),
}


def chromium_or_skip() -> str:
    """Return the Chromium path, or skip (fail under CI=true) when it is missing."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    reason = f"{CHROMIUM} not installed (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def write_test_site(dest: Path) -> Path:
    """Copy the demo config to ``dest`` (free ports) and add ``hmi-test.yaml``; return the main file.

    The demo's ``min_interval_s`` limits are dropped: these tests switch one relay or valve
    several times within seconds to test the pages (tests/scada/test_command_limits.py tests
    the limits). So are the ``system.*`` health alarm rules: they follow the machine (a
    1,000-unit page and Chromium on a busy CI machine make the loop lag; a small disk), and
    these tests count and read the alarms they raise themselves (tests/scada/test_health.py
    tests the health rules). So is the demo's payment provider (the pages without one are
    tested; tests/hmi/test_tenant_pay.py adds its own).
    """
    demo_site_copy(dest)
    templates = dest / "templates" / "standard.yaml"
    text = re.sub(r",\s*min_interval_s:\s*[0-9.]+", "", templates.read_text(encoding="utf-8"))
    templates.write_text(text, encoding="utf-8")
    alarms = dest / "alarms.yaml"
    text, n = re.subn(r"  - \{id: system\.[^\n]*\n[^\n]*\n", "", alarms.read_text(encoding="utf-8"))
    assert n, "no system.* rules found in the demo's alarms.yaml: update this filter"
    alarms.write_text(text, encoding="utf-8")
    billing = dest / "billing.yaml"  # no payment provider: tests/hmi/test_tenant_pay.py adds one
    text, n = re.subn(r"\npayments:\n(?:[ #][^\n]*\n?)*", "\n", billing.read_text(encoding="utf-8"))
    assert n, "no payments: section found in the demo's billing.yaml: update this filter"
    billing.write_text(text, encoding="utf-8")
    (dest / "hmi-test.yaml").write_text(EXTRA_YAML, encoding="utf-8")
    main = dest / "demo-site.yaml"
    text = main.read_text(encoding="utf-8").replace(
        "include:\n", "include:\n  - hmi-test.yaml\n", 1
    )
    main.write_text(text, encoding="utf-8")
    return main


@dataclass
class HmiRig:
    """A running runtime with the full server (REST, login, HMI) and its users."""

    runtime: Any
    server: Any
    base: str

    @property
    def commands(self) -> Any:
        return self.server.ctx.commands

    def url(self, page: str) -> str:
        return f"{self.base}/hmi/{page}"

    async def login(self, context: Any, name: str) -> None:
        """Log ``name`` in within a browser context through ``POST /api/login`` (sets the cookie)."""
        reply = await context.request.post(
            f"{self.base}/api/login", data={"username": name, "password": PASSWORD}
        )
        assert reply.status == 200, await reply.text()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, db: Any = None) -> None:
    """Wait until ``predicate()`` is true, re-checking on every tag change (no fixed sleeps)."""
    if predicate():
        return
    event = asyncio.Event()
    unsubscribe = db.subscribe("*", lambda _b: event.set() if predicate() else None) if db else None
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                event.clear()
                if db is None:
                    await asyncio.sleep(0.05)  # no bus to wait on: re-check the loop soon
                else:
                    await event.wait()
    finally:
        if unsubscribe:
            unsubscribe()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HmiRig]:
    from scada.config import load_site
    from scada.runtime import Runtime
    from scada.services.users import UserStore

    base = tmp_path_factory.mktemp("hmi")
    site = load_site(write_test_site(base / "config"))
    data = base / "var"
    with UserStore.in_data_dir(data) as users:
        for name, (role, links) in USERS.items():
            users.add_user(name, role, PASSWORD, links)
    runtime = Runtime(site, data, simulate=True, serve=True, port=0)
    await runtime.start()
    server = runtime.server
    assert server is not None
    try:
        yield HmiRig(runtime, server, server.url)
    finally:
        await runtime.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Any]:
    path = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@dataclass
class PageProbe:
    """A Playwright page with its console errors collected."""

    page: Any
    errors: list[str]


Opener = Callable[..., Awaitable[PageProbe]]


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(rig: HmiRig, browser: Any) -> AsyncIterator[Opener]:
    """Return ``open(page, user, width=1920, height=1080, query="")`` -> PageProbe (rendered)."""
    contexts: list[Any] = []

    async def open_(
        page_name: str,
        user: str = "olga",
        *,
        width: int = 1920,
        height: int = 1080,
        query: str = "",
    ) -> PageProbe:
        context = await browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        await rig.login(context, user)
        page = await context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(rig.url(page_name) + query)
        await wait_rendered(page)
        return PageProbe(page, errors)

    yield open_
    for c in contexts:
        await c.close()


async def wait_rendered(page: Any, timeout_ms: float = 20000) -> None:
    """Wait until the Bokeh document is rendered and idle in the browser."""
    await page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle",
        timeout=timeout_ms,
    )


async def model_data(page: Any, name: str) -> dict[str, list[Any]]:
    """Return the browser-side data of the ColumnDataSource named ``name``."""
    return await page.evaluate(
        """(name) => {
            const m = Bokeh.documents[0].get_model_by_name(name);
            const out = {};
            for (const [k, v] of Object.entries(m.data)) { out[k] = Array.from(v); }
            return out;
        }""",
        name,
    )


async def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot under test-artifacts/screenshots/ and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
