"""The ISA-101 high-performance palette, quality styling and the page template of every HMI page.

Grey is normal: process equipment, values and text are shades of grey; colour appears only
for abnormal states (alarm priorities, bad or stale quality, faults, commands in progress),
so an abnormal unit stands out on a wall display from across a room. The same colour is never
used for two meanings. ``PAGE_CSS`` makes every page fill the window without scrolling
(4K and 1080p) and lets the alarm page reflow on a 390-px phone.
"""

from __future__ import annotations

import html
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bokeh.models import DatetimeTickFormatter
from jinja2 import Template

from i18n import N_, _
from tags.model import Quality, Reason, TagValue

# ---------------------------------------------------------------- greys (normal state)
BACKGROUND = "#D4D4D4"  # page
PANEL = "#E6E6E6"  # tiles, mimic background
PANEL_EDGE = "#B0B0B0"
EQUIPMENT = "#8C8C8C"  # pipes, outlines
EQUIPMENT_DARK = "#4D4D4D"  # valve open (filled), active pipe
TEXT = "#1A1A1A"
TEXT_DIM = "#5C5C5C"
UNIT_FILL = "#EFEFEF"  # a dwelling in normal state
VALVE_OPEN = EQUIPMENT_DARK
VALVE_CLOSED = "#FFFFFF"

# ---------------------------------------------------------------- colours (abnormal only)
#: Alarm priority -> colour (1 critical .. 4 low). Used for alarm rows, counts and faults.
PRIORITY_COLOURS: dict[int, str] = {1: "#E0001B", 2: "#FF7F00", 3: "#F2C500", 4: "#7B3FBF"}
PRIORITY_TEXT: dict[int, str] = {1: "#FFFFFF", 2: "#000000", 3: "#000000", 4: "#FFFFFF"}
PRIORITY_NAMES: dict[int, str] = {1: N_("critical"), 2: N_("high"), 3: N_("medium"), 4: N_("low")}
COMM_LOST = "#C000C0"  # magenta: the value is not from the device (bad quality)
STALE = "#8A8AE6"  # hatched blue-grey: the value is old (uncertain)
COMMANDED = "#1E78C8"  # blue: a command was sent and is waiting for read-back
COLD = "#BFD9EF"  # room well below setpoint (abnormal, not an alarm)

#: Electricity meter/account states (issue 8) -> (fill, label).
ACCOUNT_COLOURS: dict[str, str] = {
    "open": UNIT_FILL,
    "alarm1": PRIORITY_COLOURS[3],
    "alarm2": PRIORITY_COLOURS[2],
    "arrears": PRIORITY_COLOURS[1],
    "no_account": "#BDBDBD",
    "lost": COMM_LOST,
}
ACCOUNT_LABELS: dict[str, str] = {
    "open": N_("open account"),
    "alarm1": N_("balance alarm 1"),
    "alarm2": N_("balance alarm 2"),
    "arrears": N_("arrears"),
    "no_account": N_("no account"),
    "lost": N_("lost contact"),
}

FONT = "'DejaVu Sans', 'Helvetica Neue', Arial, sans-serif"

#: The page's text size: follows the viewport width, on a wall display (``?wall=1``, which sets
#: ``--hmi-font-size``) the screen height.
PAGE_FONT = "var(--hmi-font-size, clamp(13px, 0.95vw, 40px))"
#: Widget text (Bokeh widgets default to 12 px): a little smaller than the page's, the
#: wall's size on a wall.
WIDGET_FONT = "var(--hmi-font-size, clamp(12px, 0.68vw, 28px))"
#: Buttons as wide as their label (which follows the font size).
AUTO_WIDTH: dict[str, str | None] = {"width": "auto", "min-width": "6em"}

#: The overlay of a page whose server connection is lost (drawn by hmi/liveness.py's watchdog):
#: over the whole window, the page greyed and dimmed below it, clicks blocked, one banner.
OFFLINE_CSS = f"""
#hmi-lost {{ position: fixed; inset: 0; z-index: 2147483000; display: flex; align-items: flex-start;
            justify-content: center; background: rgba(160, 160, 160, 0.55); cursor: not-allowed;
            backdrop-filter: grayscale(1) blur(1.5px); -webkit-backdrop-filter: grayscale(1) blur(1.5px); }}
#hmi-lost[hidden] {{ display: none; }}
#hmi-lost .hmi-lost-banner {{ margin-top: 16vh; max-width: min(92vw, 48em); box-sizing: border-box;
            display: flex; gap: 0.7em; align-items: center; padding: 0.8em 1.1em; border-radius: 6px;
            background: #FFF; color: {TEXT}; border: 0.3em solid {COMM_LOST}; font-family: {FONT};
            font-size: clamp(17px, 1.7vw, 72px); font-weight: 600; line-height: 1.35;
            box-shadow: 0 0.3em 1.2em rgba(0, 0, 0, 0.35); }}
html.wall #hmi-lost .hmi-lost-banner {{ font-size: max(20px, 3.2vh); }}
#hmi-lost .hmi-lost-icon {{ flex: none; display: inline-flex; align-items: center; justify-content: center;
            width: 1.8em; height: 1.8em; border-radius: 50%; background: {COMM_LOST}; color: #FFF; }}
#hmi-lost .hmi-lost-text {{ font-variant-numeric: tabular-nums; }}
"""

#: Template of every HMI page: the Bokeh root fills the window; nothing scrolls but lists.
#: ``hmi_head`` (a document template variable) adds the liveness watchdog of framed pages.
PAGE_TEMPLATE = Template(
    """{% extends base %}
{% block preamble %}
<meta name="viewport" content="width=device-width, initial-scale=1">
<script>
/* wall display mode (?wall=1): every text scales with the viewport height (see PAGE_CSS) */
if (/[?&]wall=(1|true|yes|on)(&|$)/.test(location.search)) document.documentElement.classList.add("wall");
/* hmiSetArg(name, value): keep a page's selection in its URL without reloading
   (history.replaceState on the query string), so a reload, a bookmark or the automatic
   reconnect (hmi/liveness.py) opens the same selection. null, undefined or "" removes the
   argument. From a page: widget.js_on_change("value", CustomJS(code=
   "hmiSetArg('building', cb_obj.value)")); the session reads it with session.arg(name). */
window.hmiSetArg = function (name, value) {
  var url = new URL(location.href);
  if (value === null || value === undefined || value === "") url.searchParams.delete(name);
  else url.searchParams.set(name, String(value));
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
};
</script>
{{ hmi_head | default("") }}
<style>
html { --bokeh-font-size: clamp(12px, 0.85vw, 36px); }
html.wall { --hmi-font-size: max(13px, 2.0vh); --bokeh-font-size: max(13px, 1.8vh); }
html, body { margin: 0; padding: 0; height: 100%; width: 100%; overflow: hidden;
             background: """
    + BACKGROUND
    + """; color: """
    + TEXT
    + """; font-family: """
    + FONT
    + """; }
"""
    + OFFLINE_CSS
    + """
</style>
{% endblock %}
{% block js_resources -%}
{# no MathJax (1.8 MB) nor WebGL bundle: the HMI uses neither; first render is faster.
   A page without a DataTable sets hmi_skip_tables and spares the tables bundle too. #}
{% for line in (bokeh_js or "").split("\n")
   if "bokeh-mathjax" not in line and "bokeh-gl" not in line
      and not (hmi_skip_tables and "bokeh-tables" in line) %}{{ line }}
{% endfor %}
{%- endblock js_resources %}"""
)

#: A Select's own <select> keeps the browser's 13.33 px unless told: the page's size, and on
#: a wall the wall's (give it as the Select's ``stylesheets``).
SELECT_CSS = f"select {{ font-size: {PAGE_FONT}; height: auto; }}"

#: CSS shared by the HTML parts of every page (passed to Divs as a stylesheet).
PAGE_CSS = f"""
:host {{ font-family: {FONT}; color: {TEXT}; font-size: {PAGE_FONT}; }}
.hmi-nav {{ display: flex; flex-wrap: wrap; gap: 0.2em 1em; align-items: center; font-size: 1.05em; }}
.hmi-nav a {{ color: {TEXT}; text-decoration: none; padding: 0.15em 0.4em; border-radius: 3px; }}
.hmi-nav a.current {{ background: {EQUIPMENT_DARK}; color: #FFF; }}
.hmi-nav .who {{ margin-left: auto; color: {TEXT_DIM}; }}
.hmi-nav a.account {{ color: {TEXT_DIM}; font-size: 0.9em; text-decoration: underline; }}
.v {{ font-variant-numeric: tabular-nums; font-weight: 600; }}
.u {{ color: {TEXT_DIM}; font-size: 0.85em; margin-left: 0.15em; }}
.q-uncertain {{ background: repeating-linear-gradient(45deg, transparent 0 4px, {STALE}66 4px 8px);
               outline: 1px dashed {STALE}; }}
.q-bad {{ color: {COMM_LOST}; text-decoration: line-through; }}
.q-bad::after {{ content: " \\2715"; text-decoration: none; display: inline-block; margin-left: 0.2em; }}
.tile {{ background: {PANEL}; border: 1px solid {PANEL_EDGE}; border-radius: 4px; padding: 0.6em 0.8em;
        box-sizing: border-box; height: 100%; overflow: hidden; }}
.tile-big {{ font-size: clamp(14px, 1.5vw, 64px); }}
.tile h2 {{ margin: 0 0 0.3em 0; font-size: 1.35em; font-weight: 600; }}
.tile table {{ border-collapse: collapse; width: 100%; font-size: 1.1em; }}
.tile td {{ padding: 0.1em 0.3em; }}
.tile td:last-child {{ text-align: right; }}
.tile a {{ color: inherit; }}
.pill {{ display: inline-block; min-width: 1.6em; text-align: center; border-radius: 0.8em;
        padding: 0 0.45em; margin-right: 0.25em; font-weight: 700; background: #C8C8C8; color: {TEXT_DIM}; }}
.comm-ok {{ color: {TEXT_DIM}; }}
.comm-lost {{ color: #FFF; background: {COMM_LOST}; padding: 0 0.4em; border-radius: 3px; }}
.result-ok {{ color: {TEXT}; font-weight: 600; }}
.result-bad {{ color: #FFF; background: {PRIORITY_COLOURS[1]}; padding: 0.1em 0.4em; border-radius: 3px; }}
.confirm {{ border: 3px solid {COMMANDED}; background: #FFF; padding: 0.5em; border-radius: 4px; }}
.denied {{ color: {TEXT_DIM}; font-style: italic; }}
"""
for _p, _c in PRIORITY_COLOURS.items():
    PAGE_CSS += f".p{_p} {{ background: {_c}; color: {PRIORITY_TEXT[_p]}; }}\n"


def fmt_number(value: Any, digits: int = 1) -> str:
    """Return ``value`` formatted for display (``—`` for no value)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def quality_class(tv: TagValue | None) -> str:
    """Return the CSS class of a value's quality: ``""`` for good, ``q-uncertain``/``q-bad`` else."""
    if tv is None or tv.value is None:
        return "q-bad"
    if tv.quality is Quality.GOOD:
        return ""
    return "q-uncertain" if tv.quality is Quality.UNCERTAIN else "q-bad"


def quality_title(tv: TagValue | None) -> str:
    """Return a tooltip text saying why a value is not good ("" for good).

    With the reason's detail where the source gave one (``bad: comm_lost — timeout: no
    answer within 1 s, FC3 0+10``).
    """
    detail = f" — {tv.detail}" if tv is not None and tv.detail else ""
    if tv is None or tv.value is None:
        return _("no value") + detail
    if tv.quality is Quality.GOOD:
        return ""
    reason = tv.reason.label if tv.reason is not Reason.NONE else _("unknown")
    return f"{tv.quality.label}: {reason}{detail}"


def value_html(tv: TagValue | None, unit: str = "", digits: int = 1, tag: str = "") -> str:
    """Return an HTML span showing a value with its unit, drawn by quality (never as fresh if not good).

    ``tag`` goes into ``data-tag`` so tests and tools can find the value of a tag on screen.
    """
    cls = quality_class(tv)
    title = quality_title(tv)
    text = fmt_number(None if tv is None else tv.value, digits)
    attrs = f' data-tag="{html.escape(tag)}"' if tag else ""
    attrs += f' data-quality="{tv.quality.label if tv else "bad"}"'
    if title:
        attrs += f' title="{html.escape(title)}"'
    unit_html = f'<span class="u">{html.escape(unit)}</span>' if unit else ""
    return f'<span class="v {cls}"{attrs}>{text}</span>{unit_html}'


def time_formatter() -> DatetimeTickFormatter:
    """Return tick labels for time axes (values are local wall-clock ms, see ``local_ms``).

    A new model per call: a Bokeh model belongs to one document only.
    """
    return DatetimeTickFormatter(
        microseconds="%H:%M:%S",
        milliseconds="%H:%M:%S",
        seconds="%H:%M:%S",
        minsec="%H:%M:%S",
        minutes="%H:%M",
        hourmin="%H:%M",
        hours="%H:%M",
        days="%d %b",
        months="%b %Y",
        years="%Y",
        context=None,
    )


def local_ms(ts: float, tz: str) -> float:
    """Return epoch seconds ``ts`` as milliseconds of the site's wall clock (for datetime axes).

    Bokeh draws datetime axes in UTC; shifting by the zone's offset at ``ts`` shows the
    operators' local time, daylight saving included.
    """
    offset = datetime.fromtimestamp(ts, ZoneInfo(tz)).utcoffset()
    return (ts + (offset.total_seconds() if offset else 0.0)) * 1000.0
