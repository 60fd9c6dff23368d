"""No English words on HMI widgets outside the translation function.

A scan of ``hmi/*.py`` for literal texts given to what a person reads: Bokeh widget and
figure keywords (``Button(label="...")``, ``Div(text="...")``, ``title=``, ``placeholder=``,
options' labels) and the same attributes set later (``button.label = "..."``,
``axis.axis_label = "..."``). A literal with a word of two or more letters (markup, CSS and
``{fields}`` removed) is a text a reader of Chinese or Russian would see in English: wrap
it in ``_()``. Column names (``fig.text("x", "y", text="label")``: a lowercase glyph
method) and ``value=`` keys are not texts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = frozenset(
    {"label", "text", "title", "placeholder", "options", "labels", "x_axis_label", "y_axis_label"}
)
#: Calls whose first positional argument is a text (the HMI's HTML helpers and Bokeh's).
TEXT_FIRST = frozenset({"html_div", "denied_body", "Div", "Paragraph", "PreText"})
ATTRIBUTES = frozenset({"label", "text", "title", "placeholder", "axis_label"})
WORD = re.compile(r"[A-Za-z]{2,}")
NOT_WORDS = re.compile(r"<[^>]*>|&\w+;|\{[^{}]*\}|\b(?:px|em|rem|kWh|kW|m3|GJ|MWh)\b")
#: Texts that are the same in every language (units, codes).
ALLOWED = frozenset({"°C", "kWh", "m³/h"})


def _literals(node: ast.AST) -> Iterator[str]:
    """Yield the literal text parts of ``node`` (not inside a call such as ``_()``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr):  # the whole template, each expression as {x}
        yield "".join(
            part.value if isinstance(part, ast.Constant) else "{x}" for part in node.values
        )
    elif isinstance(node, ast.List | ast.Tuple):
        for item in node.elts:
            if isinstance(item, ast.Tuple) and len(item.elts) == 2:
                yield from _literals(item.elts[1])  # (value, label): the label is read
            else:
                yield from _literals(item)
    elif isinstance(node, ast.IfExp):
        yield from _literals(node.body)
        yield from _literals(node.orelse)
    elif isinstance(node, ast.BinOp):
        yield from _literals(node.left)
        yield from _literals(node.right)


def _english(text: str) -> bool:
    return text.strip() not in ALLOWED and bool(WORD.search(NOT_WORDS.sub(" ", text)))


def _name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _reader_facing_call(node: ast.Call) -> bool:
    name = _name(node)
    return name[:1].isupper() or name in TEXT_FIRST or name == "figure"


def untranslated(source: str, filename: str) -> list[str]:
    """Return ``file:line: text`` for each literal English text on a widget in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and _reader_facing_call(node):
            pairs = [(kw.arg, kw.value) for kw in node.keywords if kw.arg in KEYWORDS]
            if _name(node) in TEXT_FIRST and node.args:
                pairs.append(("text", node.args[0]))
        elif isinstance(node, ast.Assign):
            pairs = [
                (t.attr, node.value)
                for t in node.targets
                if isinstance(t, ast.Attribute) and t.attr in ATTRIBUTES
            ]
        else:
            continue
        for _key, value in pairs:
            for text in _literals(value):
                if _english(text):
                    found.append((node.lineno, f"{filename}:{node.lineno}: {text!r}"))
    return [line for _n, line in sorted(found)]


def test_the_scan_finds_what_it_is_for() -> None:
    sample = """
Button(label="Save", name="save-button")
Div(text=f'<b>{_("Total")}</b> kWh')
Select(value="all", options=[("all", "All buildings"), ("b1", _("Building"))])
fig.text("x", "y", text="label")
self.status.text = "loading"
axis.axis_label = _("time")
figure(title="Heat power")
html_div(f'<p class="x">{html.escape(_("fine"))}</p>', name="ok")
html_div("<p>Not fine</p>")
"""
    assert untranslated(sample, "sample.py") == [
        "sample.py:2: 'Save'",
        "sample.py:4: 'All buildings'",
        "sample.py:6: 'loading'",
        "sample.py:8: 'Heat power'",
        "sample.py:10: '<p>Not fine</p>'",
    ]


def test_hmi_widgets_have_no_untranslated_english() -> None:
    found = []
    for path in sorted((ROOT / "hmi").glob("*.py")):
        found += untranslated(path.read_text(encoding="utf-8"), f"hmi/{path.name}")
    assert not found, "wrap these in _():\n" + "\n".join(found)
