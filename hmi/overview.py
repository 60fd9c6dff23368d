"""Site overview: one tile per building; click a tile to open its mimic.

A tile shows heat power, supply / return temperature, flow, energy today (the energy tag's
increase since local midnight, from the historian), alarm counts by priority and the comm
status of the building's devices. Only the tile whose tags changed is redrawn.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import cast
from zoneinfo import ZoneInfo

from bokeh.document import Document
from bokeh.layouts import grid
from bokeh.models.ui import UIElement

from hmi.layout import denied_body, html_div, page_allowed, page_frame
from hmi.model import building_devices, comm_summary, tag_or_none
from hmi.session import HmiSession
from hmi.theme import PRIORITY_COLOURS, value_html
from scada.config import BuildingConfig
from tags.bus import ChangeBatch

__all__ = ["make_overview"]

log = logging.getLogger(__name__)

ENERGY_BASE_REFRESH_S = 300.0


def local_midnight(ts: float, tz: str) -> float:
    """Return the epoch seconds of the local midnight before ``ts`` in time zone ``tz``."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(ts, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class _Tile:
    def __init__(self, session: HmiSession, building: BuildingConfig) -> None:
        db = session.services.db
        self.session = session
        self.building = building
        heat = building.heat
        self.tags: dict[str, str | None] = {
            "power": tag_or_none(db, heat.power_tag) if heat else None,
            "supply": tag_or_none(db, heat.supply_tag) if heat else None,
            "return": tag_or_none(db, heat.return_tag) if heat else None,
            "flow": tag_or_none(db, heat.flow_tag) if heat else None,
            "energy": tag_or_none(db, heat.energy_tag) if heat else None,
        }
        self.online_tags = [
            t
            for d in building_devices(session.services.site, building.id)
            if (t := f"{d}.online") in db
        ]
        self.energy_base: float | None = None
        self.div = html_div(
            "",
            name=f"tile-{building.id}",
            sizing_mode="stretch_both",
            css=":host > div { height: 100%; }",
        )

    @property
    def watched(self) -> list[str]:
        return [t for t in self.tags.values() if t] + self.online_tags

    def render(self, alarm_counts: dict[int, int]) -> None:
        db = self.session.services.db
        b = self.building

        def cell(key: str, unit: str, digits: int = 1) -> str:
            tag = self.tags[key]
            if tag is None:
                return '<span class="u">n/a</span>'
            return value_html(db.read(tag), unit, digits, tag=tag)

        energy_today = '<span class="u">n/a</span>'
        if self.tags["energy"] is not None:
            tv = db.read(self.tags["energy"])
            if tv.value is not None and self.energy_base is not None:
                from tags.model import TagValue

                today = max(0.0, float(tv.value) - self.energy_base)
                energy_today = value_html(
                    TagValue(today, tv.quality, tv.reason, tv.ts),
                    "kWh",
                    1,
                    tag=f"{b.id}.energy_today",
                )
        online, total = comm_summary(db.read_many(self.online_tags))
        comm_cls = "comm-ok" if online == total else "comm-lost"
        pills = "".join(
            f'<span class="pill {"p" + str(p) if n else ""}" data-priority="{p}" data-count="{n}">{n}</span>'
            for p, n in sorted(alarm_counts.items())
        )
        name = html.escape(b.name or b.id)
        self.div.text = (
            f'<div class="tile tile-big" data-building="{html.escape(b.id)}">'
            f'<h2><a href="building?building={html.escape(b.id)}">{name}</a></h2>'
            "<table>"
            f"<tr><td>heat power</td><td>{cell('power', 'kW')}</td></tr>"
            f"<tr><td>supply / return</td><td>{cell('supply', '°C')} / {cell('return', '°C')}</td></tr>"
            f"<tr><td>flow</td><td>{cell('flow', 'm³/h', 2)}</td></tr>"
            f"<tr><td>energy today</td><td>{energy_today}</td></tr>"
            f"<tr><td>alarms</td><td>{pills}</td></tr>"
            f'<tr><td>comm</td><td><span class="{comm_cls}" data-online="{online}" '
            f'data-total="{total}">{online} / {total} online</span></td></tr>'
            "</table></div>"
        )


def make_overview(session: HmiSession, doc: Document) -> None:
    """Build the site overview page into ``doc``."""
    if not page_allowed(session, "overview"):
        page_frame(session, doc, "overview", denied_body("not allowed for your role"), "Overview")
        return
    services = session.services
    buildings = list(services.site.buildings)
    tiles = [_Tile(session, b) for b in buildings]
    by_tag: dict[str, list[_Tile]] = {}
    for t in tiles:
        for name in t.watched:
            by_tag.setdefault(name, []).append(t)
    engine = services.alarms

    def counts_of(building_id: str) -> dict[int, int]:
        counts = dict.fromkeys(PRIORITY_COLOURS, 0)
        if engine is not None:
            for a in engine.active():
                if a.building == building_id or a.area == building_id:
                    counts[a.priority] = counts.get(a.priority, 0) + 1
        return counts

    def render_all() -> None:
        for t in tiles:
            t.render(counts_of(t.building.id))

    def on_changes(batch: ChangeBatch) -> None:
        dirty: dict[int, _Tile] = {}
        for name in batch.names:
            for t in by_tag.get(name, ()):
                dirty[id(t)] = t
        for t in dirty.values():
            t.render(counts_of(t.building.id))

    async def load_energy_bases() -> None:
        historian = services.historian
        if historian is None:
            return
        tz = services.site.site.timezone
        midnight = local_midnight(time.time(), tz)
        for t in tiles:
            tag = t.tags["energy"]
            if tag is None:
                continue
            try:
                sample = await session.in_thread(historian.value_at, tag, midnight)
                if sample is None:  # no history before midnight: count from the first sample
                    first = await session.in_thread(historian.query_raw, tag, midnight, time.time())
                    sample = first[0] if first else None
            except Exception:
                log.exception("energy today of %s: historian query failed", t.building.id)
                continue
            base = sample.numeric if sample is not None else None
            if base is None:  # nothing stored yet: today starts now
                cur = services.db.read(tag).value
                base = float(cur) if cur is not None else None
            if base is not None and math.isfinite(base):
                t.energy_base = base
        if not session.closed:
            doc.add_next_tick_callback(render_all)

    render_all()
    ncols = max(1, min(len(tiles), math.ceil(math.sqrt(len(tiles) * 16 / 9))))
    body: UIElement
    if tiles:
        tile_grid = grid([t.div for t in tiles], ncols=ncols, sizing_mode="stretch_both")
        # equal columns and rows filling the screen; set through ``update`` because Bokeh's
        # stubs type these properties as their ``Property`` descriptors, not their values
        tile_grid.update(cols="1fr", rows="1fr", spacing=8)
        body = tile_grid
    else:
        body = html_div('<p class="denied">no buildings configured</p>')
    page_frame(session, doc, "overview", body, "Overview")
    session.subscribe([n for n in by_tag], on_changes)
    session.on_alarm(lambda _events: render_all())
    # Bokeh takes a coroutine function as a callback and awaits it with the document lock
    # held; its stubs name only ``Callable[[], None]``
    refresh_energy_bases = cast("Callable[[], None]", load_energy_bases)
    doc.add_next_tick_callback(refresh_energy_bases)
    session.periodic(refresh_energy_bases, ENERGY_BASE_REFRESH_S)
