"""Chinese and Russian pages in Chromium without missing glyphs, with screenshots (issue 20).

The building, alarms and tenant pages are opened in ``zh_CN`` and ``ru`` by users who chose
that language. Every character a page shows (the DOM text, shadow roots included, and the
texts of its Bokeh data sources, which the canvas draws) is drawn on a canvas in the page's
own font stack and compared pixel by pixel with a character no font has (U+0378, unassigned):
a character drawn the same is a ``.notdef`` box. Without ``fonts-noto-cjk`` every Chinese
character is such a box and the test fails (a control character proves the check sees boxes).
Screenshots go to test-artifacts/screenshots/ (``lang-<language>-<page>.png``).
"""

from __future__ import annotations

from typing import Any

import pytest

from scada.services.auth import Role
from tests.hmi.conftest import PASSWORD, HmiRig, screenshot, wait_rendered

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Page, the operator or tenant who opens it, and a text each language must show there.
PAGES = {
    "zh_CN": [
        ("building", "?building=b1", "operator", "1号楼"),  # the per-language building name
        ("alarms", "", "operator", "告警"),
        ("tenant", "", "tenant", "¥"),  # money in the Chinese format
    ],
    "ru": [
        ("building", "?building=b1", "operator", "Дом 1"),
        ("alarms", "", "operator", "Тревоги"),
        ("tenant", "", "tenant", "CN¥"),
    ],
}

#: Every character a page shows: DOM text (shadow roots too) and Bokeh data source strings.
SHOWN_TEXT = """() => {
    const parts = [];
    const walk = (root) => {
        const it = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let n = it.nextNode(); n; n = it.nextNode()) {
            const el = n.parentElement;
            if (el && !["SCRIPT", "STYLE"].includes(el.tagName)) parts.push(n.data);
        }
        for (const el of root.querySelectorAll("*")) if (el.shadowRoot) walk(el.shadowRoot);
    };
    walk(document.body);
    for (const doc of Bokeh.documents) {
        for (const m of doc.all_models) {
            if (m.data === undefined || m.data === null) continue;
            for (const col of Object.values(m.data)) {
                for (const v of Array.from(col)) if (typeof v === "string") parts.push(v);
            }
        }
    }
    return parts.join("\\n");
}"""

#: The characters of ``text`` drawn as the ``.notdef`` box in the page's font stack.
MISSING_GLYPHS = """(text) => {
    const family = getComputedStyle(document.body).fontFamily;
    const canvas = document.createElement("canvas");
    canvas.width = 48; canvas.height = 48;
    const ctx = canvas.getContext("2d", {willReadFrequently: true});
    ctx.font = `32px ${family}`;
    ctx.textBaseline = "top";
    const draw = (ch) => {
        ctx.clearRect(0, 0, 48, 48);
        ctx.fillText(ch, 4, 4);
        const d = ctx.getImageData(0, 0, 48, 48).data;
        let h = 0;
        for (let i = 3; i < d.length; i += 4) h = (h * 31 + d[i] + i) | 0;
        return `${h}:${ctx.measureText(ch).width}`;
    };
    const box = draw("\\u0378");
    const missing = [];
    for (const ch of new Set(Array.from(text))) {
        if (ch.codePointAt(0) < 0x80 || /\\s/.test(ch) || ch === "\\u0378") continue;
        if (draw(ch) === box) missing.push(ch);
    }
    return {missing, box_blank: draw(" ") === box};
}"""


def _user(rig: HmiRig, language: str, kind: str) -> str:
    users = rig.server.ctx.users
    name = f"glyph_{kind}_{language}".lower()
    if users.get(name) is None:
        if kind == "tenant":
            users.add_user(name, Role.TENANT, PASSWORD, ("b1.101",))
        else:
            users.add_user(name, Role.OPERATOR, PASSWORD)
    users.set_language(name, language)
    return name


async def test_the_glyph_check_sees_a_missing_glyph(rig: HmiRig, browser: Any) -> None:
    """The check is not blind: an unassigned character is found, Latin-1 and CJK are not."""
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    try:
        await rig.login(context, _user(rig, "en", "operator"))
        page = await context.new_page()
        await page.goto(rig.url("alarms"))
        await wait_rendered(page)
        found = await page.evaluate(MISSING_GLYPHS, "é\u0379\U0010fffd")
        assert found["missing"] == ["\u0379", "\U0010fffd"] and not found["box_blank"]
    finally:
        await context.close()


@pytest.mark.parametrize("language", ["zh_CN", "ru"])
async def test_pages_in_chinese_and_russian_have_every_glyph(
    rig: HmiRig, browser: Any, language: str
) -> None:
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        for page_name, query, kind, expected in PAGES[language]:
            await rig.login(context, _user(rig, language, kind))
            page = await context.new_page()
            await page.goto(rig.url(page_name) + query)
            await wait_rendered(page)
            await page.wait_for_function(f"(want) => ({SHOWN_TEXT})().includes(want)", arg=expected)
            text = await page.evaluate(SHOWN_TEXT)
            found = await page.evaluate(MISSING_GLYPHS, text)
            assert not found["missing"], f"{language} {page_name}: no glyph for {found['missing']}"
            shown = {ch for ch in text if ord(ch) > 0x2E80} if language == "zh_CN" else set()
            assert language != "zh_CN" or len(shown) > 20, "the page shows little Chinese"
            await screenshot(page, f"lang-{language}-{page_name}")
            await page.close()
            await context.clear_cookies()
    finally:
        await context.close()
