"""Estate overview: one tile per building, worst state first, filling the screen for 1 to 200 buildings.

A tile shows the building's name, its worst alarm (ISA-101 priority indicator: shape,
colour and number; filled while unacknowledged) with the alarm counts by priority, its
comm state ("24 / 26 online"), heat power, supply / return temperature, flow, energy
today (the energy tag's increase since local midnight, from the historian) and a 24-hour
sparkline of heat power. Tiles are ordered worst state first (unacknowledged priority 1
first, then by priority, then by devices lost), and a click opens the building's mimic.

The whole grid is one HTML element (one CSS grid, tiles sized with container query units),
not one Bokeh model per tile: 200 buildings render as fast as 2. A tile's HTML is rebuilt
only when its tags or alarms change. The whole grid is sent again only when its order or a
tile's state (alarms, comm) changed; a changed figure (heat power, temperatures, flow, energy
today) goes alone, as its value span in the ``estate-values`` source, and the browser puts it
in place (``PATCH_JS``): with the session's coalesced changes, once per beat. On a wall display (``?wall=1``) the text scales with the screen
and a tile drops its secondary lines (never below the wall's minimum text size) when it is
too small to hold them.
"""

from __future__ import annotations

import html
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from bokeh.document import Document
from bokeh.models import ColumnDataSource, CustomJS

from alarms.model import Alarm
from hmi.layout import denied_body, html_div, page_allowed, page_frame
from hmi.mimic_alarms import MARKERS
from hmi.model import building_devices, comm_summary, tag_or_none
from hmi.session import HmiSession
from hmi.theme import PRIORITY_COLOURS, PRIORITY_NAMES, PRIORITY_TEXT, value_html
from i18n import _, pick
from scada.config import BuildingConfig
from tags.bus import ChangeBatch
from tags.model import TagValue

__all__ = [
    "OverviewPage",
    "grid_shape",
    "local_midnight",
    "make_overview",
    "reading_at_midnight",
    "sparkline_svg",
]

log = logging.getLogger(__name__)

TREND_REFRESH_S = 300.0
TREND_HOURS = 24

GRID_CSS = """
:host { width: 100%; height: 100%; }
:host > div { width: 100%; height: 100%; }
.estate { display: grid; gap: 0.45em; width: 100%; height: 100%; box-sizing: border-box; }
.btile { container-type: size; background: #E6E6E6; border: 1px solid #B0B0B0; border-radius: 4px;
         overflow: hidden; box-sizing: border-box; min-height: 0; min-width: 0; }
.btile a.fill { display: flex; flex-direction: column; height: 100%; padding: 0.35em 0.55em;
                box-sizing: border-box; color: inherit; text-decoration: none;
                font-size: clamp(12px, min(9.5cqh, 4.6cqw), 64px); gap: 0.1em; }
html.wall .btile a.fill { font-size: max(var(--hmi-font-size, 13px), min(9.5cqh, 4.6cqw)); }
.btile .l { display: flex; align-items: center; gap: 0.4em; white-space: nowrap; overflow: hidden;
            text-overflow: ellipsis; flex: 0 0 auto; }
.btile .name { font-weight: 700; font-size: 1.1em; }
.btile .spark { flex: 1 1 0; min-height: 0; }
.btile .spark svg { width: 100%; height: 100%; display: block; }
.btile.lost { border: 3px solid #C000C0; }
.btile.alarm-1 { border: 3px solid #E0001B; }
.prio { display: inline-flex; align-items: center; justify-content: center; width: 1.25em; height: 1.25em;
        font-weight: 800; font-size: 0.85em; box-sizing: border-box; border: 0.15em solid; }
.prio.s1 { border-radius: 0; }
.prio.s2 { transform: rotate(45deg) scale(0.85); } .prio.s2 > i { transform: rotate(-45deg); }
.prio.s3 { clip-path: polygon(50% 0, 100% 100%, 0 100%); border: none; padding-top: 0.3em; }
.prio.s4 { clip-path: polygon(0 0, 100% 0, 50% 100%); border: none; padding-bottom: 0.3em; }
.prio i { font-style: normal; }
.cnt { font-weight: 600; margin-left: 0.15em; }
@media (max-width: 700px) {
  :host > div { overflow-y: auto; }
  .estate { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; grid-template-rows: none !important;
            grid-auto-rows: minmax(8.5em, auto); height: auto; }
}
@media (max-width: 480px) {  /* a phone: one tile a row, every figure whole */
  .estate { grid-template-columns: minmax(0, 1fr) !important; grid-auto-rows: minmax(7.5em, auto); }
}
@container (max-height: 130px) { .spark { display: none; } }
@container (max-height: 95px) { .l.fig2 { display: none; } }
@container (max-height: 70px) { .l.fig { display: none; } }
"""


def local_midnight(ts: float, tz: str) -> float:
    """Return the epoch seconds of the local midnight before ``ts`` in time zone ``tz``."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(ts, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def reading_at_midnight(historian: Any, tag: str, midnight: float, now: float) -> float | None:
    """Return a counter's reading at ``midnight``: its last sample before, else its first after."""
    sample = historian.value_at(tag, midnight)
    if sample is None:  # no history before midnight: count from the first sample
        first = historian.query_raw(tag, midnight, now)
        sample = first[0] if first else None
    base = sample.numeric if sample is not None else None
    return float(base) if base is not None and math.isfinite(base) else None


#: width / height a tile should have: its figures are lines of ~35 characters, so a
#: portrait tile either cuts them or shrinks their text below the wall's minimum
TILE_ASPECT = 1.4


def grid_shape(n: int, aspect: float = 16 / 9) -> tuple[int, int]:
    """Return ``(columns, rows)`` of a grid of ``n`` tiles filling a screen of ``aspect``,
    the tiles about ``TILE_ASPECT`` wide (10 buildings at 16:9: 4 x 3, not 5 x 2)."""
    if n <= 0:
        return 1, 1
    cols = max(1, min(n, math.ceil(math.sqrt(n * aspect / TILE_ASPECT))))
    rows = math.ceil(n / cols)
    while cols > 1 and math.ceil(n / (cols - 1)) == rows:
        cols -= 1  # as few columns as give the same rows: wider tiles
    return cols, rows


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting "Building 2" before "Building 10" (digit runs compare as numbers)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.casefold())
        for part in re.split(r"(\d+)", text)
        if part
    )


def sparkline_svg(points: Sequence[float | None]) -> str:
    """Return an inline SVG polyline of ``points`` (None: a gap), scaled to its box."""
    vals = [p for p in points if p is not None and math.isfinite(p)]
    if len(vals) < 2:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    n = len(points) - 1 or 1
    runs: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p is None or not math.isfinite(p):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(f"{100 * i / n:.1f},{28 - 26 * (p - lo) / span:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(r)}" fill="none" stroke="#4D4D4D" stroke-width="1.5" '
        'vector-effect="non-scaling-stroke"/>'
        for r in runs
        if len(r) > 1
    )
    return f'<svg viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true">{lines}</svg>'


def priority_badge(priority: int, unacked: bool) -> str:
    """Return the ISA-101 priority indicator (shape, colour, number) as HTML."""
    p = priority if priority in MARKERS else 4
    colour = PRIORITY_COLOURS[p]
    shape = list(MARKERS).index(p) + 1
    if unacked:
        style = f"background:{colour};border-color:{colour};color:{PRIORITY_TEXT[p]}"
    else:
        style = f"background:transparent;border-color:{colour};color:#1A1A1A"
        if shape in (3, 4):  # clipped shapes have no border: a pale fill says "acknowledged"
            style = f"background:{colour}55;color:#1A1A1A"
    state = _("unacknowledged") if unacked else _("acknowledged")
    title = _("{name} alarm, {state}", name=_(PRIORITY_NAMES[p]), state=state)
    return (
        f'<span class="prio s{shape}" style="{style}" data-priority="{p}" '
        f'data-unacked="{int(unacked)}" title="{html.escape(title)}"><i>{p}</i></span>'
    )


#: The heat meter's figures of a tile: key -> (unit, decimals).
_FIGURES: dict[str, tuple[str, int]] = {
    "power": ("kW", 1),
    "supply": ("°C", 1),
    "return": ("°C", 1),
    "flow": ("m³/h", 2),
    "energy": ("kWh", 0),
}

#: Put changed figures in place (``values``: data-tag keys and their new spans) in the grid's
#: shadow DOM: a second of 200 buildings' power is ~20 kB of spans, not the whole grid.
PATCH_JS = """
const view = Bokeh.index.query_one((v) => v.model === grid);
if (view == null) return;
const root = view.shadow_el;
const d = values.data;
for (let i = 0; i < d.key.length; i++) {
  const el = root.querySelector('[data-tag="' + CSS.escape(d.key[i]) + '"]');
  if (el !== null) el.outerHTML = d.html[i];
}
"""


class BuildingTile:
    """One building's tile: its tags, alarm summary and cached HTML."""

    def __init__(self, session: HmiSession, building: BuildingConfig, wall: bool) -> None:
        db = session.services.db
        self.session = session
        self.building = building
        self.wall = wall
        heat = building.heat
        self.tags: dict[str, str | None] = {
            key: tag_or_none(db, getattr(heat, f"{key}_tag", None)) if heat else None
            for key in ("power", "supply", "return", "flow", "energy")
        }
        self.online_tags = [
            t
            for d in building_devices(session.services.site, building.id)
            if (t := f"{d}.online") in db
        ]
        self.energy_base: float | None = None
        self.trend: list[float | None] = []
        self.alarms: list[Alarm] = []
        self.html = ""
        self.dirty = True

    @property
    def watched(self) -> list[str]:
        return [t for t in self.tags.values() if t] + self.online_tags

    def value_patch(self, tag: str) -> tuple[str, str] | None:
        """Return ``(data-tag key, value span)`` of a heat-meter tag's figure, or None.

        The span is what the tile shows for the tag (without its unit, a sibling that does
        not change): the page replaces the old one in place instead of resending the grid.
        """
        for key, unit_digits in _FIGURES.items():
            if self.tags[key] != tag:
                continue
            if key == "energy":
                return f"{self.building.id}.energy_today", self._energy_today(unit=False)
            db = self.session.services.db
            return tag, value_html(db.read(tag), "", unit_digits[1], tag=tag)
        return None

    def sort_key(self) -> tuple[int, int, float, tuple[tuple[int, int | str], ...]]:
        """Worst first: unacked priority, then priority, then share of devices lost."""
        unacked = min((a.priority for a in self.alarms if a.unacked), default=9)
        worst = min((a.priority for a in self.alarms), default=9)
        online, total = self.comm()
        lost = (total - online) / total if total else 0.0
        return (unacked, worst, -lost, natural_key(pick(self.building.name) or self.building.id))

    def comm(self) -> tuple[int, int]:
        return comm_summary(self.session.services.db.read_many(self.online_tags))

    def _value(self, key: str, unit: str, digits: int = 1) -> str:
        tag = self.tags[key]
        if tag is None:
            return '<span class="u">n/a</span>'
        return value_html(self.session.services.db.read(tag), unit, digits, tag=tag)

    def _energy_today(self, unit: bool = True) -> str:
        tag = self.tags["energy"]
        if tag is None:
            return '<span class="u">n/a</span>'
        b = self.building.id
        tv = self.session.services.db.read(tag)
        if tv.value is None or self.energy_base is None:
            return f'<span class="u" data-tag="{html.escape(b)}.energy_today">…</span>'
        today = max(0.0, float(tv.value) - self.energy_base)
        return value_html(
            TagValue(today, tv.quality, tv.reason, tv.ts),
            "kWh" if unit else "",
            0,
            tag=f"{b}.energy_today",
        )

    def _alarm_html(self) -> str:
        counts = dict.fromkeys(PRIORITY_COLOURS, 0)
        for a in self.alarms:
            counts[a.priority] = counts.get(a.priority, 0) + 1
        if not self.alarms:
            return f'<span class="u" data-worst="0">{_("no alarms")}</span>'
        worst = min(self.alarms, key=lambda a: (a.priority, not a.unacked))
        parts = [priority_badge(worst.priority, worst.unacked)]
        for p, n in sorted(counts.items()):
            if n:
                name = _(PRIORITY_NAMES[p])
                parts.append(
                    f'<span class="cnt" data-priority="{p}" data-count="{n}">{n} {name}</span>'
                )
        return f'<span data-worst="{worst.priority}">{"".join(parts)}</span>'

    def render(self) -> str:
        if not self.dirty:
            return self.html
        b = self.building
        online, total = self.comm()
        lost = total and online < total
        comm_cls = "comm-lost" if lost else "comm-ok"
        comm = _("{online} / {total} online", online=online, total=total)
        cls = "btile" + (" lost" if total and online * 2 < total else "")
        cls += " alarm-1" if any(a.priority == 1 and a.unacked for a in self.alarms) else ""
        href = f"building?building={html.escape(b.id)}" + ("&amp;wall=1" if self.wall else "")
        self.html = (
            f'<div class="{cls}" data-building="{html.escape(b.id)}"><a class="fill" href="{href}">'
            f'<span class="l"><span class="name">{html.escape(pick(b.name) or b.id)}</span></span>'
            f'<span class="l">{self._alarm_html()}</span>'
            f'<span class="l"><span class="{comm_cls}" data-online="{online}" data-total="{total}">{comm}</span></span>'
            f'<span class="l fig">{self._value("power", "kW")} · {self._value("supply", "°C")} / '
            f"{self._value('return', '°C')}</span>"
            f'<span class="l fig2">{_("flow")} {self._value("flow", "m³/h", 2)} · {_("today")} '
            f"{self._energy_today()}</span>"
            f'<span class="spark" title="{_("heat power, last 24 h")}">{sparkline_svg(self.trend)}</span>'
            "</a></div>"
        )
        self.dirty = False
        return self.html


class OverviewPage:
    """The overview page of one session."""

    def __init__(self, session: HmiSession, doc: Document) -> None:
        self.session = session
        self.doc = doc
        services = session.services
        wall = (session.arg("wall") or "").lower() in ("1", "true", "yes", "on")
        self.tiles = [BuildingTile(session, b, wall) for b in services.site.buildings]
        self.by_tag: dict[str, list[BuildingTile]] = {}
        for t in self.tiles:
            for name in t.watched:
                self.by_tag.setdefault(name, []).append(t)
        self.by_building = {t.building.id: t for t in self.tiles}
        self.div = html_div("", name="estate", css=GRID_CSS, sizing_mode="stretch_both")
        self.values = ColumnDataSource({"key": [], "html": []}, name="estate-values")
        self.values.js_on_change(
            "data", CustomJS(args={"grid": self.div, "values": self.values}, code=PATCH_JS)
        )
        self.div.tags = [self.values]  # in the document through the grid (not drawn)
        self.pending = True  # the grid must be sent again (order, alarms, comm, history)
        self.patches: dict[str, str] = {}  # changed figures only: data-tag key -> span
        self.order: list[str] = []
        self._alarms_from_engine()

    def _alarms_from_engine(self) -> None:
        engine = self.session.services.alarms
        found: dict[str, list[Alarm]] = {b: [] for b in self.by_building}
        for a in engine.active() if engine is not None else ():
            b = a.building if a.building in found else a.area if a.area in found else None
            if b is not None:
                found[b].append(a)
        for b, alarms in found.items():
            tile = self.by_building[b]
            if [(x.key, x.state, x.priority) for x in alarms] != [
                (x.key, x.state, x.priority) for x in tile.alarms
            ]:
                tile.alarms = alarms
                tile.dirty = True
                self.pending = True

    def grid_html(self) -> str:
        cols, rows = grid_shape(len(self.tiles))
        ordered = sorted(self.tiles, key=BuildingTile.sort_key)
        self.order = [t.building.id for t in ordered]
        style = f"grid-template-columns: repeat({cols}, minmax(0, 1fr)); grid-template-rows: repeat({rows}, minmax(0, 1fr));"
        body = "".join(t.render() for t in ordered)
        return f'<div class="estate" data-tiles="{len(self.tiles)}" style="{style}">{body}</div>'

    def flush(self) -> None:
        """Send what changed: the whole grid if its order or a tile's state changed, else
        only the changed figures (patched in place by ``PATCH_JS``)."""
        if self.pending:
            self.pending = False
            self.patches.clear()
            text = self.grid_html()
            if text != self.div.text:
                self.div.text = text
            return
        if self.patches:
            keys = list(self.patches)
            self.values.data = {"key": keys, "html": [self.patches[k] for k in keys]}
            self.patches.clear()

    def on_changes(self, batch: ChangeBatch) -> None:
        for name in batch.names:
            for t in self.by_tag.get(name, ()):
                t.dirty = True  # its cached HTML is stale
                patch = None if self.pending else t.value_patch(name)
                if patch is None:  # comm state: the order may change
                    self.pending = True
                else:
                    self.patches[patch[0]] = patch[1]
        self.flush()

    def on_alarms(self, _events: Any) -> None:
        self._alarms_from_engine()
        self.flush()

    async def load_history(self) -> None:
        """Energy at local midnight and the 24-hour power trend of every building (one query)."""
        services = self.session.services
        historian = services.historian
        if historian is None:
            return
        now = time.time()
        midnight = local_midnight(now, services.site.site.timezone)
        power = [t.tags["power"] for t in self.tiles if t.tags["power"]]
        try:
            series = await self.session.in_thread(
                historian.query_agg, power, now - TREND_HOURS * 3600.0, now, 3600.0, "twa"
            )
            bases = await self.session.in_thread(self._bases, historian, midnight, now)
        except Exception:
            log.exception("overview: historian query failed")
            return
        for t in self.tiles:
            tag = t.tags["power"]
            if tag is not None:
                t.trend = [v for _ts, v in series.get(tag, [])]
            if t.building.id in bases:
                t.energy_base = bases[t.building.id]
            t.dirty = True
        self.pending = True
        if not self.session.closed:
            self.flush()

    def _bases(self, historian: Any, midnight: float, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.tiles:
            tag = t.tags["energy"]
            if tag is None:
                continue
            base = reading_at_midnight(historian, tag, midnight, now)
            if base is None:
                cur = self.session.services.db.read(tag).value
                base = float(cur) if isinstance(cur, int | float) else None
            if base is not None and math.isfinite(base):
                out[t.building.id] = float(base)
        return out

    def build(self) -> None:
        if self.tiles:
            self.div.text = self.grid_html()
            self.pending = False
            body = self.div
        else:
            body = html_div(f'<p class="denied">{_("no buildings configured")}</p>')
        page_frame(self.session, self.doc, "overview", body, _("Overview"))
        self.session.subscribe(list(self.by_tag), self.on_changes)
        self.session.on_alarm(self.on_alarms)
        # Bokeh takes a coroutine function as a callback and awaits it with the document lock
        # held; its stubs name only ``Callable[[], None]``
        load = cast("Callable[[], None]", self.load_history)
        self.doc.add_next_tick_callback(load)
        self.session.periodic(load, TREND_REFRESH_S)


def make_overview(session: HmiSession, doc: Document) -> None:
    """Build the site overview page into ``doc``."""
    if not page_allowed(session, "overview"):
        body = denied_body(_("not allowed for your role"))
        page_frame(session, doc, "overview", body, _("Overview"))
        return
    doc.template_variables["hmi_skip_tables"] = True
    OverviewPage(session, doc).build()
