"""Office pages: meter tiles and relay trips, the tenant's page, the config confirm step.

In headless Chromium against the HMI test site (``tests/hmi/conftest.py``), and the pure parts
(names, money, the balance story, result texts, the change summary, the tile layout) directly.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout

from billing.ledger import Entry, EntryKind
from hmi.config_apply import plan_summary_html
from hmi.meters_actions import ResultRow, result_text
from hmi.meters_grid import GAP_UNITS, HEADER_UNITS, grid_layout
from hmi.tenant_labels import flat_label, household_label, money_text
from hmi.tenant_money import balance_story
from tests.hmi.conftest import model_data, screenshot, wait_for
from tests.hmi.test_browser_paths import meter_position, wait_selected

browser = pytest.mark.asyncio(loop_scope="session")

#: Every text the user can read: the light DOM and every shadow root, styles left out.
VISIBLE_TEXT_JS = """() => {
    const out = [];
    const walk = (root) => {
        for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) walk(el.shadowRoot);
        }
        for (const el of root.children) {
            if (el.tagName !== 'STYLE' && el.tagName !== 'SCRIPT' && el.innerText) out.push(el.innerText);
        }
    };
    walk(document);
    return out.join('\\n');
}"""


async def grid_row(page: Any, device: str) -> dict[str, Any]:
    """Return the browser's values of one meter tile."""
    data = await model_data(page, "meter-grid")
    i = data["device"].index(device)
    return {k: v[i] for k, v in data.items()}


async def tap_tile(page: Any, device: str) -> None:
    """Tap a meter tile to select it (again if the tap arrived as a long press: loaded machine)."""
    x, y = await meter_position(page, device)
    for attempt in range(3):
        await page.mouse.click(x, y)
        try:
            await wait_selected(page, 1)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


@browser
async def test_meter_tile_shows_name_balance_and_level(open_page, rig) -> None:
    db = rig.runtime.db
    page = (await open_page("meters")).page
    tile = await grid_row(page, "b1.s1.em")
    assert tile["name"] == "Bakery"
    assert tile["balance"] == money_text(db.read("acct.b1-s1.balance").value, "CNY")
    assert tile["balance"].endswith(" CNY") and re.match(r"^[\d,]+\.\d\d CNY$", tile["balance"])
    assert tile["level"] in ("level ok", "alarm 1 (priority 3)", "alarm 2 (priority 2)")
    flat = await grid_row(page, "b1.101.em")
    assert flat["name"] == "Flat 101"  # named, not b1.101
    # the browser laid the tiles out (columns fitted to the canvas) and scaled the texts
    tags = await page.evaluate("() => Bokeh.documents[0].get_model_by_name('meters').tags")
    assert len(tags) == 5 and tags[0] >= 3


@browser
async def test_trip_a_relay_shows_the_tripped_tile_and_a_final_result(open_page, rig) -> None:
    sim, db = rig.runtime.simulator, rig.runtime.db
    device = "b2.s1.em"
    await wait_for(lambda: sim.value(device, "relay") is True, db=db)
    page = (await open_page("meters")).page
    assert (await grid_row(page, device))["relay_state"] == "closed"
    await tap_tile(page, device)
    await page.locator(".bk-btn", has_text="Trip").click()
    await page.locator("[data-batch]").wait_for()
    results = await model_data(page, "meter-results")
    assert results["state"] == ["selected"] and results["meter"] == ["Corner shop"]
    assert results["result"][0].startswith("selected: confirm before ")
    await page.locator(".bk-btn", has_text="Confirm batch").click()
    await page.locator("[data-batch-done='1']").wait_for(timeout=15000)
    await page.wait_for_function(
        """() => { const d = Bokeh.documents[0].get_model_by_name('meter-results').data;
                   return d.state.length === 1 && d.state[0] === 'confirmed'; }""",
        timeout=10000,
    )
    results = await model_data(page, "meter-results")
    assert re.fullmatch(r"done: relay open \(read back \d\d:\d\d:\d\d CST\)", results["result"][0])
    cell = page.locator(".slick-cell", has_text="done: relay open")
    await cell.first.wait_for(timeout=5000)  # on screen, not only in the model
    assert sim.value(device, "relay") is False
    # the tile: teal band, open-switch symbol, the word "tripped"; not the comm-lost look
    await page.wait_for_function(
        """(dev) => { const d = Bokeh.documents[0].get_model_by_name('meter-grid').data;
                      return d.relay_state[d.device.indexOf(dev)] === 'tripped'; }""",
        arg=device,
        timeout=10000,
    )
    tile = await grid_row(page, device)
    assert tile["relay"] == "tripped" and tile["band_alpha"] == 1 and tile["open_alpha"] == 1
    assert tile["closed_alpha"] == 0 and tile["band_fill"] != tile["fill"]
    assert tile["state"] != "lost" and tile["line"] != "#C000C0"
    legend = page.locator("[data-count-of='tripped']")
    assert int(await legend.inner_text()) >= 1
    await screenshot(page, "meters-tripped")
    await rig.runtime.drivers.write(f"{device}.relay", True)  # as it was, for the other tests
    await wait_for(lambda: sim.value(device, "relay") is True, db=db)


@browser
async def test_replace_meter_is_checked_then_confirmed(open_page, rig) -> None:
    """Issue 18 item 1: an implausible reading is refused with its reason before anything is
    written; a plausible one waits for the confirm, then is in the ledger (and audited)."""
    sim, ledger = rig.runtime.simulator, rig.runtime.ledger
    device, meter = "b1.s2.em", "b1.s2.em.energy_kwh"
    page = (await open_page("meters")).page
    await tap_tile(page, device)
    await page.locator(".bk-btn", has_text="Replace meter…").click()
    form = page.locator(".bk-TextInput", has_text="final reading").locator("input")
    await form.fill("8.5e11")
    await form.press("Enter")
    await page.locator(".bk-btn", has_text="Check").click()
    refused = page.locator("[data-refused]")
    await refused.wait_for()
    assert "beyond any meter register" in await refused.inner_text()
    assert ledger.replacements(meter) == []
    # a plausible swap: the new meter shows what the old one ended at (continuous curve)
    value = f"{sim.value(device, 'energy_kwh'):.2f}"
    await form.fill(value)
    await form.press("Enter")
    new = page.locator(".bk-TextInput", has_text="first reading").locator("input")
    await new.fill(value)
    await new.press("Enter")
    await page.locator(".bk-btn", has_text="Check").click()
    box = page.locator(f"[data-replace='{meter}']")
    await box.wait_for()
    text = await box.inner_text()
    assert "Pharmacy" in text and f"ends at {float(value):g} kWh" in text
    assert ledger.replacements(meter) == []  # nothing written before the confirm
    await page.locator(".bk-btn", has_text="Confirm replacement").click()
    await page.locator("[data-replaced]").wait_for(timeout=15000)
    (rep,) = ledger.replacements(meter)
    assert rep.old_final == pytest.approx(float(value)) == rep.new_initial
    rows = rig.runtime.audit.query(action="billing.replace_meter", target="b1-s2")
    assert rows[0]["result"] == "ok" and rows[0]["user"] == "olga"


@browser
async def test_meters_page_on_a_phone_has_no_overlap(open_page) -> None:
    page = (await open_page("meters", width=390, height=844)).page
    await page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('meters').tags.length === 5", timeout=10000
    )
    boxes = await page.evaluate(
        """() => {
            const fig = Bokeh.documents[0].get_model_by_name('meters');
            const v = Bokeh.index.query_one((v) => v.model === fig);
            const r = v.el.getBoundingClientRect();
            const d = Bokeh.documents[0].get_model_by_name('meter-grid').data;
            const xs = v.frame.x_scale, ys = v.frame.y_scale;
            const tiles = [];
            for (let i = 0; i < d.x.length; i++) {
                const x0 = r.left + xs.compute(d.x[i] - 0.475), x1 = r.left + xs.compute(d.x[i] + 0.475);
                const y0 = r.top + ys.compute(d.y[i] + 0.46), y1 = r.top + ys.compute(d.y[i] - 0.46);
                tiles.push([x0, y0, x1, y1]);
            }
            const box = (name) => {
                const w = Bokeh.index.query_one((v) => v.model.name === name);
                const b = w.el.getBoundingClientRect();
                return [b.left, b.top, b.right, b.bottom];
            };
            const controls = ['meter-trip', 'meter-close', 'meter-keep', 'meter-restore',
                              'meter-result-table', 'meter-side'].map(box);
            return {tiles, controls, cols: fig.tags[0], box: fig.toolbar.tools
                    .filter((t) => t.type === 'BoxSelectTool').map((t) => t.active)};
        }"""
    )
    tiles, controls = boxes["tiles"], boxes["controls"]
    assert tiles and boxes["cols"] <= 2
    assert boxes["box"] == [False]  # a drag scrolls the page on a phone

    def overlap(a: list[float], b: list[float]) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    for t in tiles:
        assert t[0] >= 0 and t[2] <= 390, f"tile cut off: {t}"
        for c in controls:
            assert not overlap(t, c), f"tile {t} overlaps control {c}"
    assert min(c[1] for c in controls) >= max(t[3] for t in tiles)  # tiles, then controls
    await screenshot(page, "meters-phone")


@browser
async def test_tenant_sees_names_heat_gaps_and_the_last_top_up(open_page, rig) -> None:
    billing = rig.runtime.billing
    probe = await open_page("tenant", "tina", width=390, height=844)
    page = probe.page
    await page.locator("[data-this-month]").wait_for(timeout=15000)
    await page.locator("[data-heat-kwh]").wait_for(timeout=15000)
    text = await page.evaluate(VISIBLE_TEXT_JS)
    assert "Flat 101" in text and "Building 1" in text
    assert "b1.101" not in text and "b1-101" not in text
    assert "Electricity" in text and "Heat" in text and "kWh" in text
    heat = float(await page.locator("[data-heat-kwh]").get_attribute("data-heat-kwh"))
    assert heat >= 0
    assert await page.locator("[data-heat-cost]").count() == 1  # b1 has a heat price
    # the simulator's history starts a week ago: the days before are gaps, not zero bars
    gaps = int(await page.locator("[data-gap-days]").get_attribute("data-gap-days"))
    assert gaps >= 1
    gap_days = (await model_data(page, "tenant-gaps"))["day"]
    bar_days = (await model_data(page, "tenant-daily"))["day"]
    assert len(gap_days) == gaps and not set(gap_days) & set(bar_days)
    # a top-up through the billing service shows as the last top-up, live
    if not next(a for a in billing.accounts() if a["id"] == "b1-101")["open"]:
        await billing.open_account("b1-101", user="test")
    await billing.topup("b1-101", "12.34", user="test", note="tenant page test")
    last = page.locator("[data-last-topup]")
    await page.wait_for_function(
        """() => { const find = (root) => { for (const el of root.querySelectorAll('*')) {
                       if (el.shadowRoot) { const r = find(el.shadowRoot); if (r) return r; }
                       if (el.dataset && el.dataset.lastTopup) return el; } return null; };
                   const el = find(document); return el && el.textContent.includes('12.34 CNY'); }""",
        timeout=15000,
    )
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST", await last.inner_text())
    await screenshot(page, "tenant-office")
    assert probe.errors == []


@browser
async def test_config_apply_shows_the_change_and_waits_for_confirm(open_page, rig) -> None:
    api = rig.runtime.config

    def description() -> str:
        return next(t for t in rig.runtime.site.tags if t.name == "test.trip").description

    old_text, before = description(), api.current_version()
    page = (await open_page("config", "erik")).page
    await page.locator("select").first.select_option("hmi-test.yaml")
    await page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('config-editor').value.includes('test.trip')",
        timeout=5000,
    )
    editor = page.locator("textarea")
    new_text = "Changed by the confirm test"
    await editor.fill((await editor.input_value()).replace(old_text, new_text, 1))
    await page.locator(".bk-btn", has_text="Apply").click()
    summary = page.locator("[data-confirm-apply]")
    await summary.wait_for(timeout=15000)
    assert await summary.get_attribute("data-tags-changed") == "1"
    assert await summary.get_attribute("data-restart-drivers") == "0"
    assert (
        "test.trip" in await summary.inner_text() and "hmi-test.yaml" in await summary.inner_text()
    )
    assert api.current_version() == before and description() == old_text  # asked, not applied
    await screenshot(page, "config-confirm")
    await page.get_by_role("button", name="Cancel", exact=True).click()
    await page.locator("[data-cancelled]").wait_for()
    assert await summary.count() == 0
    assert api.current_version() == before and description() == old_text
    # again, and confirm this time
    await page.locator(".bk-btn", has_text="Apply").click()
    await summary.wait_for(timeout=15000)
    await page.get_by_role("button", name="Confirm", exact=True).click()
    applied = page.locator("[data-applied]")
    await applied.wait_for(timeout=30000)
    assert int(await applied.get_attribute("data-applied")) == before + 1
    assert description() == new_text
    entry = rig.runtime.audit.query(action="config.apply", user="erik", limit=1)[0]
    assert entry["after"]["version"] == before + 1 and entry["source"] == "hmi 127.0.0.1"
    when = (await model_data(page, "config-versions"))["when"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST", when)


# ---------------------------------------------------------------------- the pure parts


def test_households_are_named_not_numbered() -> None:
    assert flat_label("b1.101", "b1") == "Flat 101"
    assert flat_label("b2.604", "b2") == "Flat 604"
    assert flat_label("b1.s1", "b1") == "Unit s1"
    assert household_label("Bakery", "b1.s1", "b1") == "Bakery"
    assert household_label("", "b1.101", "b1") == "Flat 101"


def test_money_has_two_decimals_and_the_currency() -> None:
    assert money_text(Decimal("1234.5")) == "1,234.50 CNY"
    assert money_text(-3.256, "EUR") == "-3.26 EUR"
    assert money_text(None) == "—" and money_text(float("nan")) == "—"


def _entry(seq: int, ts: float, kind: EntryKind, amount: str, reverses: int | None = None) -> Entry:
    return Entry(seq, "a1", ts, kind, Decimal(amount), reverses=reverses)


def test_the_balance_is_explained_from_the_ledger() -> None:
    month = 1_000_000.0
    entries = [
        _entry(1, month - 500, EntryKind.OPENING, "100.00"),
        _entry(2, month - 400, EntryKind.TOPUP, "50.00"),
        _entry(3, month + 10, EntryKind.CONSUMPTION, "-12.30"),
        _entry(4, month + 20, EntryKind.TOPUP, "40.00"),
        _entry(5, month + 30, EntryKind.SHARED_LOSS, "-0.70"),
        _entry(6, month + 40, EntryKind.TOPUP, "99.00"),
        _entry(7, month + 50, EntryKind.REVERSAL, "-99.00", reverses=6),  # a mistyped top-up
    ]
    s = balance_story(entries, month)
    assert s.month_start_balance == Decimal("150.00")
    assert s.topups == Decimal("139.00") and s.other == Decimal("-99.00")
    assert s.charges == Decimal("13.00")
    assert s.balance == Decimal("177.00") == s.month_start_balance + s.topups - s.charges + s.other
    assert (s.last_topup, s.last_topup_ts) == (Decimal("40.00"), month + 20)  # not the reversed


def test_command_results_end_in_words_with_the_read_back_time() -> None:
    tz, ts = "Asia/Shanghai", 1_700_000_000.0  # 2023-11-15 06:13:20 CST
    done = ResultRow("Bakery", "b1.s1.em.relay", "c1", "confirmed", read_back=False, finished_ts=ts)
    assert result_text(done, tz) == "done: relay open (read back 2023-11-15 06:13:20 CST)"
    done.read_back = True
    assert result_text(done, tz).startswith("done: relay closed (read back ")
    refused = ResultRow("Bakery", "t", None, "failed", "device offline", refused=True)
    assert result_text(refused, tz) == "refused: device offline"
    failed = ResultRow("Bakery", "t", "c2", "failed", "read-back mismatch")
    assert result_text(failed, tz) == "failed: read-back mismatch"
    assert result_text(ResultRow("x", "t", "c3", "expired"), tz).startswith("expired: ")
    assert result_text(ResultRow("x", "t", "c4", "cancelled"), tz) == "cancelled"


def test_the_change_summary_names_what_changes() -> None:
    plan = {
        "tags": {"added": ["a.x"], "removed": [], "changed": [f"t{i}" for i in range(7)]},
        "devices": {"added": [], "removed": ["d1"], "changed": []},
        "channels_changed": ["bus1"],
        "templates_changed": [],
        "alarms_changed": True,
        "restart_drivers": True,
    }
    out = plan_summary_html(plan, ["site.yaml"], "Apply?")
    assert 'data-tags-changed="7"' in out and 'data-restart-drivers="1"' in out
    assert "t0, t1, t2, t3, t4 and 2 more" in out and "bus1" in out and "d1" in out
    assert "restarted" in out and "templates" not in out


def test_tiles_fill_rows_per_building() -> None:
    xs, ys, firsts, heads, bottom = grid_layout(["b1", "b1", "b1", "b2"], 2)
    assert xs == [0, 1, 0, 0] and firsts == [0, 3]
    first = -HEADER_UNITS - 0.5
    assert ys[:3] == [first, first, first - 1]
    assert ys[3] == pytest.approx(first - 1 - 0.5 - GAP_UNITS - HEADER_UNITS - 0.5)
    assert heads[0] == -HEADER_UNITS / 2 and bottom == ys[3] - 0.5
