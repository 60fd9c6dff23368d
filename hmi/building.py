"""Building page: the mimic of floors x units, the heat meter, and the unit detail with commands.

URL arguments (kiosk use): ``?building=b1`` picks the building; ``?rotate=30`` cycles through
all buildings every 30 s. Clicking a unit opens its detail on the right: values with quality,
a trend of room temperature and setpoint (the historian's last 24 h, then live), and the
valve / setpoint commands with select-before-operate and a confirm step.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import Select
from bokeh.plotting import figure

from hmi.command_panel import CommandAction, CommandPanel
from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.mimic import Mimic
from hmi.model import UnitCell, building_layout, tag_or_none
from hmi.services import CommandClient
from hmi.session import HmiSession
from hmi.theme import EQUIPMENT, EQUIPMENT_DARK, TEXT_DIM, local_ms, time_formatter, value_html
from scada.config import BuildingConfig
from tags.bus import ChangeBatch

__all__ = ["HeatMeterPanel", "UnitDetail", "make_building"]

log = logging.getLogger(__name__)

TREND_HOURS = 24
TREND_BUCKET_S = 300.0
TREND_ROLLOVER = 2000

HEAT_CSS = f"""
.hm h2 {{ font-size: 1.1em; }}
.tile h2 {{ font-size: 1.1em; }}
.tile table {{ font-size: 1em; }}
.hm .pipe {{ display: flex; align-items: center; gap: 0.5em; margin: 0.25em 0; }}
.hm .line {{ flex: 1; height: 0; border-top: 6px solid {EQUIPMENT_DARK}; position: relative; min-width: 3em; }}
.hm .line.ret {{ border-top-color: {EQUIPMENT}; }}
.hm .arrow {{ color: {EQUIPMENT_DARK}; font-size: 1.2em; }}
.hm .grid {{ display: grid; grid-template-columns: auto auto; gap: 0.1em 0.8em; margin-top: 0.3em; }}
.hm .lbl {{ color: {TEXT_DIM}; }}
"""


class HeatMeterPanel:
    """The building heat meter: supply and return pipes with temperatures, flow, power, energy."""

    def __init__(self, session: HmiSession, building: BuildingConfig) -> None:
        self.session = session
        db = session.services.db
        heat = building.heat
        self.tags: dict[str, str | None] = {
            key: tag_or_none(db, getattr(heat, f"{key}_tag", None)) if heat else None
            for key in ("supply", "return", "flow", "power", "energy")
        }
        dev = db.definition(heat.energy_tag).device if heat and heat.energy_tag in db else None
        self.tags["online"] = tag_or_none(db, f"{dev}.online") if dev else None
        self.device = dev
        self.div = html_div("", name="heat-meter", css=HEAT_CSS, sizing_mode="stretch_width")
        self.render()

    @property
    def watched(self) -> list[str]:
        return [t for t in self.tags.values() if t]

    def render(self) -> None:
        db = self.session.services.db

        def v(key: str, unit: str, digits: int = 1) -> str:
            tag = self.tags.get(key)
            return (
                value_html(db.read(tag), unit, digits, tag=tag)
                if tag
                else '<span class="u">n/a</span>'
            )

        if self.device is None:
            self.div.text = '<div class="tile hm"><h2>Heat meter</h2><span class="u">none configured</span></div>'
            return
        online = db.read(self.tags["online"]) if self.tags["online"] else None
        lost = online is not None and online.value is not True
        comm = (
            '<span class="comm-lost" data-comm="lost">comm lost</span>'
            if lost
            else '<span class="comm-ok" data-comm="ok">online</span>'
        )
        self.div.text = (
            f'<div class="tile hm" data-device="{html.escape(self.device)}">'
            f"<h2>Heat meter {html.escape(self.device)} {comm}</h2>"
            f'<div class="pipe"><span class="lbl">supply</span><span class="line"></span>'
            f'<span class="arrow">&#9654;</span>{v("supply", "°C")}</div>'
            f'<div class="pipe"><span class="lbl">return</span><span class="arrow">&#9664;</span>'
            f'<span class="line ret"></span>{v("return", "°C")}</div>'
            f'<div class="grid"><span class="lbl">flow</span><span>{v("flow", "m³/h", 2)}</span>'
            f'<span class="lbl">power</span><span>{v("power", "kW")}</span>'
            f'<span class="lbl">energy</span><span>{v("energy", "kWh")}</span></div></div>'
        )


class UnitDetail:
    """Detail of the selected unit: values, trend (history then live) and the command panel."""

    def __init__(
        self, session: HmiSession, commands: CommandClient | None, mimic_ref: list[Mimic]
    ) -> None:
        self.session = session
        self.tz = session.services.site.site.timezone
        self.mimic_ref = mimic_ref
        self.cell: UnitCell | None = None
        self.info = html_div(
            '<p class="u">click a unit for its detail</p>',
            name="unit-detail",
            sizing_mode="stretch_width",
        )
        self.commands = commands
        # The trend and the command panel are built on the first click: a wall display that
        # never opens a unit does not pay for a second figure and a dozen widgets in its
        # first render.
        self.trend_source: ColumnDataSource | None = None
        self.trend: figure | None = None
        self.panel: CommandPanel | None = None
        self.layout = column(self.info, sizing_mode="stretch_width", width=420)
        self._unsubscribe: Callable[[], None] | None = None
        self._loading = 0

    def _build(self) -> tuple[ColumnDataSource, CommandPanel]:
        """Create the trend and the command panel (once) and add them under the values."""
        if self.trend_source is not None and self.panel is not None:
            return self.trend_source, self.panel
        source = ColumnDataSource({"t": [], "room": [], "sp": []}, name="unit-trend")
        fig = figure(
            name="unit-trend-plot",
            x_axis_type="datetime",
            height=150,
            sizing_mode="stretch_width",
            tools="xpan,xwheel_zoom,reset",
            toolbar_location=None,
            background_fill_color="#F2F2F2",
            border_fill_color=None,
        )
        fig.line(
            "t", "room", source=source, color=EQUIPMENT_DARK, line_width=2, legend_label="room"
        )
        fig.step(
            "t",
            "sp",
            source=source,
            color=TEXT_DIM,
            line_dash="dashed",
            legend_label="setpoint",
            mode="after",
        )
        fig.legend.location = "top_left"
        fig.legend.background_fill_alpha = 0.6
        fig.yaxis.axis_label = "°C"
        fig.xaxis.formatter = time_formatter()
        panel = CommandPanel(self.session, self.commands, on_busy=self._busy, name="cmd")
        self.trend_source, self.trend, self.panel = source, fig, panel
        self.layout.children = [self.info, fig, panel.layout]
        return source, panel

    def _busy(self, household: str, on: bool) -> None:
        if self.mimic_ref:
            self.mimic_ref[0].set_commanded(household, on)

    def show(self, cell: UnitCell | None) -> None:
        """Show ``cell`` (None clears the detail)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.cell = cell
        if cell is None:
            self.info.text = '<p class="u">click a unit for its detail</p>'
            if self.trend_source is not None and self.panel is not None:
                self.trend_source.data = {"t": [], "room": [], "sp": []}
                self.panel.set_target(None, {})
            return
        trend_source, panel = self._build()
        trend_source.data = {"t": [], "room": [], "sp": []}
        actions: dict[str, CommandAction] = {}
        if cell.valve_tag and self._writable(cell.valve_tag):
            actions["open"] = CommandAction("open", "Open valve", cell.valve_tag, True)
            actions["close"] = CommandAction("close", "Close valve", cell.valve_tag, False)
        if cell.setpoint_tag and self._writable(cell.setpoint_tag):
            actions["setpoint"] = CommandAction("setpoint", "Set setpoint", cell.setpoint_tag, None)
        sp = self.session.services.db.read(cell.setpoint_tag).value if cell.setpoint_tag else None
        panel.set_target(cell.household, actions, setpoint=sp)
        self.render()
        tags = [
            t
            for t in (
                cell.valve_tag,
                cell.room_tag,
                cell.setpoint_tag,
                cell.fault_tag,
                cell.online_tag,
            )
            if t
        ]
        self._unsubscribe = self.session.subscribe(tags, self._on_changes)
        self._load_history(cell)

    def _writable(self, tag: str) -> bool:
        return bool(self.session.services.db.definition(tag).writable)

    def render(self) -> None:
        c = self.cell
        if c is None:
            return
        db = self.session.services.db
        mimic = self.mimic_ref[0] if self.mimic_ref else None
        state = comm = "?"
        if mimic is not None and c.household in mimic.row_of:
            i = mimic.row_of[c.household]
            state = mimic.source.data["valve_state"][i]
            comm = mimic.source.data["comm"][i]

        def v(tag: str | None, unit: str) -> str:
            return (
                value_html(db.read(tag), unit, 1, tag=tag) if tag else '<span class="u">n/a</span>'
            )

        name = f" {html.escape(c.name)}" if c.name else ""
        comm_html = (
            f'<span class="comm-lost" data-comm="{comm}">{comm}</span>'
            if comm != "ok"
            else '<span class="comm-ok" data-comm="ok">ok</span>'
        )
        self.info.text = (
            f'<div class="tile" data-household="{html.escape(c.household)}">'
            f"<h2>{html.escape(c.household)}{name}</h2><table>"
            f"<tr><td>floor / area</td><td>{c.floor} / {c.area_m2:g} m²</td></tr>"
            f'<tr><td>valve</td><td><span data-valve-state="{state}">{state}</span></td></tr>'
            f"<tr><td>room</td><td>{v(c.room_tag, '°C')}</td></tr>"
            f"<tr><td>setpoint</td><td>{v(c.setpoint_tag, '°C')}</td></tr>"
            f"<tr><td>comm</td><td>{comm_html}</td></tr></table></div>"
        )

    def _on_changes(self, batch: ChangeBatch) -> None:
        c = self.cell
        if c is None:
            return
        self.render()
        if self.trend_source is not None and (c.room_tag in batch or c.setpoint_tag in batch):
            db = self.session.services.db
            room = db.read(c.room_tag).value if c.room_tag else None
            sp = db.read(c.setpoint_tag).value if c.setpoint_tag else None
            self.trend_source.stream(
                {"t": [local_ms(time.time(), self.tz)], "room": [_nan(room)], "sp": [_nan(sp)]},
                rollover=TREND_ROLLOVER,
            )

    def _load_history(self, cell: UnitCell) -> None:
        historian = self.session.services.historian
        tags = [t for t in (cell.room_tag, cell.setpoint_tag) if t]
        if historian is None or not tags:
            return
        end = time.time()
        start = end - TREND_HOURS * 3600.0
        self._loading += 1
        token = self._loading

        def query() -> dict[str, list[tuple[float, float | None]]]:
            return historian.query_agg(tags, start, end, TREND_BUCKET_S, "twa")

        def done(series: Any, error: BaseException | None) -> None:
            if token != self._loading or self.cell is not cell:
                return  # another unit was opened meanwhile
            if error is not None:
                log.warning("trend of %s: historian query failed: %s", cell.household, error)
                return
            room = dict(series.get(cell.room_tag, [])) if cell.room_tag else {}
            sp = dict(series.get(cell.setpoint_tag, [])) if cell.setpoint_tag else {}
            ts = sorted(set(room) | set(sp))
            source = self.trend_source
            if source is None:
                return
            old = dict(source.data)
            source.data = {
                "t": [local_ms(t, self.tz) for t in ts] + list(old["t"]),
                "room": [_nan(room.get(t)) for t in ts] + list(old["room"]),
                "sp": [_nan(sp.get(t)) for t in ts] + list(old["sp"]),
            }

        self.session.spawn(self.session.in_thread(query), done)


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def make_building(
    session: HmiSession, doc: Document, commands: CommandClient | None = None
) -> None:
    """Build the building page into ``doc``."""
    if not page_allowed(session, "building"):
        page_frame(session, doc, "building", denied_body("not allowed for your role"), "Building")
        return
    doc.template_variables["hmi_skip_tables"] = True  # no DataTable on this page
    services = session.services
    site = services.site
    ids = [b.id for b in site.buildings]
    if not ids:
        page_frame(session, doc, "building", denied_body("no buildings configured"), "Building")
        return
    wanted = session.arg("building") or ids[0]
    if wanted not in ids:
        denied = denied_body(f"unknown building {wanted!r}; configured: {', '.join(ids)}")
        page_frame(session, doc, "building", denied, "Building")
        return
    try:
        rotate_s = float(session.arg("rotate") or 0)
    except ValueError:
        rotate_s = 0.0
    select = Select(
        title="",
        value=wanted,
        options=select_options((b.id, b.name or b.id) for b in site.buildings),
        name="building-select",
        width=220,
    )
    mimic_ref: list[Mimic] = []
    detail = UnitDetail(session, commands, mimic_ref)
    state: dict[str, Any] = {"unsub": None, "heat": None}
    mimic_slot = column(sizing_mode="stretch_both", name="mimic-slot")
    heat_slot = column(sizing_mode="stretch_width", width=420)
    status = html_div("", name="building-status", sizing_mode="stretch_width")

    def on_select(household: str) -> None:
        m = mimic_ref[0]
        detail.show(m.cells[m.row_of[household]])

    def show(building_id: str) -> None:
        if state["unsub"] is not None:
            state["unsub"]()
        building = site.building(building_id)
        cells = building_layout(site, services.db, building_id)
        mimic = Mimic(services.db, cells, on_select)
        mimic_ref[:] = [mimic]
        heat = HeatMeterPanel(session, building)
        state["heat"] = heat
        mimic_slot.children = [mimic.figure]
        heat_slot.children = [heat.div]
        detail.show(None)
        floors = len({c.floor for c in cells})
        rot = f" · rotating every {rotate_s:g} s" if rotate_s > 0 else ""
        status.text = (
            f'<span data-units="{len(cells)}" data-building="{html.escape(building_id)}">'
            f"{html.escape(building.name or building_id)}: {len(cells)} units on {floors} floors{rot}</span>"
        )
        names = mimic.tag_names + heat.watched

        def on_changes(batch: ChangeBatch) -> None:
            mimic.apply(batch)
            if any(t in batch for t in heat.watched):
                heat.render()
            if detail.cell is not None:
                detail.render()

        state["unsub"] = session.subscribe(names, on_changes)
        doc.title = f"{building.name or building_id} — Building"

    select.on_change("value", lambda _a, _o, new: show(new))
    show(wanted)
    right = column(heat_slot, detail.layout, sizing_mode="stretch_height", width=440)
    body = column(
        row(select, status, sizing_mode="stretch_width"),
        row(mimic_slot, right, sizing_mode="stretch_both"),
        sizing_mode="stretch_both",
    )
    page_frame(session, doc, "building", body, doc.title or "Building")
    if rotate_s > 0 and len(ids) > 1:

        def rotate() -> None:
            i = (ids.index(select.value) + 1) % len(ids)
            select.value = ids[i]  # on_change shows it

        session.periodic(rotate, rotate_s)
