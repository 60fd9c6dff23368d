"""The legend under a building mimic: every symbol and colour the mimic uses, in words.

Drawn as HTML with inline SVG symbols sized in ``em``, so it scales with the page text (and
with the wall display's viewport-sized text).
"""

from __future__ import annotations

from hmi.mimic_alarms import MARKERS
from hmi.theme import (
    COLD,
    COMM_LOST,
    COMMANDED,
    EQUIPMENT,
    EQUIPMENT_DARK,
    PANEL,
    PRIORITY_COLOURS,
    PRIORITY_NAMES,
    PRIORITY_TEXT,
    STALE,
    UNIT_FILL,
    VALVE_CLOSED,
    VALVE_OPEN,
)
from i18n import _

__all__ = ["LEGEND_CSS", "legend_html"]

LEGEND_CSS = """
.legend { display: flex; flex-wrap: wrap; gap: 0.2em 1.1em; align-items: center; font-size: 0.9em;
          color: #333; padding: 0.2em 0; }
.legend .it { display: inline-flex; align-items: center; gap: 0.3em; white-space: nowrap; }
.legend svg { width: 1.5em; height: 1.5em; vertical-align: middle; }
.legend b { font-weight: 600; }
@media (max-width: 700px) { .legend { flex-wrap: nowrap; overflow-x: auto; font-size: 0.8em; } }
"""

_BOWTIE = "M4 3 L16 3 L4 17 L16 17 Z"


def _svg(body: str) -> str:
    return f'<svg viewBox="0 0 20 20" aria-hidden="true">{body}</svg>'


def _valve(fill: str, line: str, mark: str = "", width: int = 2) -> str:
    extra = (
        f'<text x="16" y="16" font-size="13" font-weight="700" fill="#1A1A1A">{mark}</text>'
        if mark
        else ""
    )
    return _svg(
        f'<path d="{_BOWTIE}" fill="{fill}" stroke="{line}" stroke-width="{width}"/>{extra}'
    )


def _cell(fill: str, line: str = EQUIPMENT, hatch: str = "", width: int = 1) -> str:
    pattern = ""
    if hatch == "x":
        pattern = f'<path d="M2 2 L18 18 M18 2 L2 18" stroke="{COMM_LOST}" stroke-width="1.5"/>'
    elif hatch == "/":
        pattern = f'<path d="M2 12 L12 2 M8 18 L18 8" stroke="{STALE}" stroke-width="1.5"/>'
    return _svg(
        f'<rect x="1" y="1" width="18" height="18" fill="{fill}" stroke="{line}" '
        f'stroke-width="{width}"/>{pattern}'
    )


def _priority(p: int, unacked: bool) -> str:
    colour = PRIORITY_COLOURS[p]
    fill = colour if unacked else "none"
    text = PRIORITY_TEXT[p] if unacked else "#1A1A1A"
    shape = {
        "square": '<rect x="3" y="3" width="14" height="14"',
        "diamond": '<path d="M10 1 L19 10 L10 19 L1 10 Z"',
        "triangle": '<path d="M10 1 L19 18 L1 18 Z"',
        "inverted_triangle": '<path d="M1 2 L19 2 L10 19 Z"',
    }[MARKERS[p]]
    return _svg(
        f'{shape} fill="{fill}" stroke="{colour}" stroke-width="2.5"/>'
        f'<text x="10" y="14.5" font-size="13" font-weight="700" text-anchor="middle" '
        f'fill="{text}">{p}</text>'
    )


def _pipe(colour: str, dashed: bool) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return _svg(f'<path d="M1 10 L19 10" stroke="{colour}" stroke-width="3"{dash}/>')


def legend_html() -> str:
    """Return the legend's HTML."""
    items = [
        (_pipe(EQUIPMENT_DARK, False), _("supply")),
        (_pipe(EQUIPMENT, True), _("return")),
        (_valve(VALVE_OPEN, EQUIPMENT_DARK), _("valve open")),
        (_valve(VALVE_CLOSED, EQUIPMENT_DARK), _("valve closed")),
        (_valve(VALVE_CLOSED, COMMANDED, "…", 3), _("command under way")),
        (_valve(PRIORITY_COLOURS[1], EQUIPMENT_DARK, "✕"), _("valve fault")),
        (_valve(PANEL, EQUIPMENT_DARK, "?"), _("no value")),
        (_cell(UNIT_FILL), _("<b>21.3</b> room °C, sp = setpoint")),
        (_cell(COLD), _("room 2 °C below setpoint")),
        (_cell(UNIT_FILL, STALE, "/"), _("stale value")),
        (_cell(UNIT_FILL, COMM_LOST, "x", 3), _("device lost contact")),
        (_cell("#B8B8B8"), _("⊘ relay tripped")),
    ]
    for p in sorted(PRIORITY_COLOURS):
        items.append((_priority(p, True), _("{name} alarm", name=_(PRIORITY_NAMES[p]))))
    items.append((_priority(3, False), _("hollow: acknowledged")))
    parts = "".join(f'<span class="it">{svg}<span>{text}</span></span>' for svg, text in items)
    return f'<div class="legend" data-legend="1">{parts}</div>'
