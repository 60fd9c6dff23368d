"""Building page: the mimic (heat entry, floors x units), and the detail of a clicked object with commands.

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
from bokeh.models import ColumnDataSource, CustomJS, InlineStyleSheet
from bokeh.models.widgets import Button, Select
from bokeh.plotting import figure

from alarms.text import unit_symbol
from hmi.command_panel import CommandAction, CommandPanel
from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.mimic import Mimic
from hmi.mimic_legend import LEGEND_CSS, legend_html
from hmi.model import UnitCell, building_layout, tag_or_none
from hmi.overview import local_midnight, reading_at_midnight
from hmi.services import CommandClient
from hmi.session import HmiSession
from hmi.theme import (
    EQUIPMENT_DARK,
    PAGE_FONT,
    SELECT_CSS,
    TEXT_DIM,
    local_ms,
    time_formatter,
    value_html,
)
from i18n import N_, _, pick
from scada.config import BuildingConfig, SiteConfig
from tags.bus import ChangeBatch

__all__ = ["BuildingPage", "UnitDetail", "heat_meter_tags", "make_building"]

log = logging.getLogger(__name__)

#: A unit's comm state in words (the mimic's ``comm`` column holds the key).
COMM_WORDS = {"lost": N_("lost contact"), "stale": N_("stale"), "ok": N_("ok")}
#: The valve states shown as ``_(state)`` (marked here for the catalog).
VALVE_WORDS = (N_("open"), N_("closed"), N_("commanded"), N_("fault"), N_("unknown"))

#: Units of the buildings whose mimics a page keeps for when they are shown again (kiosk
#: rotation): the last shown, oldest dropped first, and always the current one.
VIEW_CACHE_UNITS = 3000
TREND_HOURS = 24
TREND_BUCKET_S = 300.0
TREND_ROLLOVER = 2000

HEAT_CSS = """
.tile h2 { font-size: 1.1em; }
.tile table { font-size: 1em; }
"""


def heat_meter_tags(db: Any, building: BuildingConfig) -> tuple[dict[str, str | None], str | None]:
    """Return the building heat meter's drawn tags (supply, return, flow, power, energy) and device."""
    heat = building.heat
    tags: dict[str, str | None] = {
        key: tag_or_none(db, getattr(heat, f"{key}_tag", None)) if heat else None
        for key in ("supply", "return", "flow", "power", "energy")
    }
    dev = db.definition(heat.energy_tag).device if heat and heat.energy_tag in db else None
    return tags, dev


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
            f'<p class="u">{html.escape(_("click a unit for its detail"))}</p>',
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
        self.layout = column(self.info, sizing_mode="stretch_width")
        self._unsubscribe: Callable[[], None] | None = None
        self.obj: tuple[str, str, list[tuple[str, str]]] | None = None
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
            "t", "room", source=source, color=EQUIPMENT_DARK, line_width=2, legend_label=_("room")
        )
        fig.step(
            "t",
            "sp",
            source=source,
            color=TEXT_DIM,
            line_dash="dashed",
            legend_label=_("setpoint"),
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

    def show_object(
        self, key: str, title: str, rows: list[tuple[str, str]], actions: dict[str, CommandAction]
    ) -> None:
        """Show an entry object (heat meter, substation): its values and commands."""
        self.show(None)
        _source, panel = self._build()
        if self.trend is not None:
            self.trend.visible = False
        self.obj = (key, title, rows)
        sp = actions.get("setpoint")
        value = self.session.services.db.read(sp.tag).value if sp is not None else None
        panel.set_target(key, actions, setpoint=value)
        self.render()
        self._unsubscribe = self.session.subscribe([t for _l, t in rows], lambda _b: self.render())

    def _render_object(self) -> None:
        if self.obj is None:
            return
        key, title, rows = self.obj
        db = self.session.services.db
        table = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{value_html(db.read(tag), unit_symbol(db.definition(tag).unit), 1, tag=tag)}</td></tr>"
            for label, tag in rows
        )
        self.info.text = (
            f'<div class="tile" data-object="{html.escape(key)}"><h2>{html.escape(title)}</h2>'
            f"<table>{table}</table></div>"
        )

    def _busy(self, household: str, on: bool) -> None:
        if self.mimic_ref:
            self.mimic_ref[0].set_commanded(household, on)

    def show(self, cell: UnitCell | None) -> None:
        """Show ``cell`` (None clears the detail)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.cell = cell
        self.obj = None
        if cell is None:
            self.info.text = f'<p class="u">{html.escape(_("click a unit for its detail"))}</p>'
            if self.trend_source is not None and self.panel is not None:
                self.trend_source.data = {"t": [], "room": [], "sp": []}
                self.panel.set_target(None, {})
            return
        trend_source, panel = self._build()
        trend_source.data = {"t": [], "room": [], "sp": []}
        actions: dict[str, CommandAction] = {}
        if cell.valve_tag and self._writable(cell.valve_tag):
            actions["open"] = CommandAction("open", _("Open valve"), cell.valve_tag, True)
            actions["close"] = CommandAction("close", _("Close valve"), cell.valve_tag, False)
        if cell.setpoint_tag and self._writable(cell.setpoint_tag):
            actions["setpoint"] = CommandAction(
                "setpoint", _("Set setpoint"), cell.setpoint_tag, None
            )
        if cell.kind == "shop" and cell.relay_tag and self._writable(cell.relay_tag):
            actions["open"] = CommandAction("open", _("Switch supply on"), cell.relay_tag, True)
            actions["close"] = CommandAction("close", _("Trip relay"), cell.relay_tag, False)
        sp = self.session.services.db.read(cell.setpoint_tag).value if cell.setpoint_tag else None
        panel.set_target(cell.household, actions, setpoint=sp)
        if self.trend is not None:
            self.trend.visible = cell.kind == "flat"
        self.render()
        self._unsubscribe = self.session.subscribe(list(cell.tags), self._on_changes)
        self._load_history(cell)

    def _writable(self, tag: str) -> bool:
        return bool(self.session.services.db.definition(tag).writable)

    def render(self) -> None:
        c = self.cell
        if c is None:
            self._render_object()
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
            f'<span class="comm-lost" data-comm="{comm}">{html.escape(_(COMM_WORDS.get(comm, comm)))}</span>'
            if comm != "ok"
            else f'<span class="comm-ok" data-comm="ok">{html.escape(_("ok"))}</span>'
        )
        rows = [(_("floor / area"), f"{c.floor} / {c.area_m2:g} m²")]
        if c.kind == "flat":
            rows += [
                (_("valve"), f'<span data-valve-state="{state}">{_(state)}</span>'),
                (_("room"), v(c.room_tag, "°C")),
                (_("setpoint"), v(c.setpoint_tag, "°C")),
            ]
        if c.meter is not None:
            rows += [
                (_("electricity meter"), html.escape(c.meter)),
                (_("power"), v(c.power_tag, "kW")),
                (_("energy"), v(c.energy_tag, "kWh")),
                (_("supply relay"), v(c.relay_tag, "")),
            ]
        if c.account is not None:
            rows.append((_("balance"), v(c.balance_tag, "")))
            link = f'<a href="meters?account={html.escape(c.account)}">{_("relay and payments: Meters page")}</a>'
            rows.append((_("account"), f"{html.escape(c.account)} · {link}"))
        rows.append((_("comm"), comm_html))
        table = "".join(f"<tr><td>{k}</td><td>{val}</td></tr>" for k, val in rows)
        self.info.text = (
            f'<div class="tile" data-household="{html.escape(c.household)}">'
            f"<h2>{html.escape(c.household)}{name}</h2><table>{table}</table></div>"
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


class BuildingView:
    """One building on the page: its mimic and live feed."""

    def __init__(self, page: BuildingPage, building_id: str) -> None:
        session = page.session
        services = session.services
        site = services.site
        self.page = page
        self.building = site.building(building_id)
        self.cells = building_layout(site, services.db, building_id)
        heat_tags, meter = heat_meter_tags(services.db, self.building)
        sub = site_substation(site, building_id)
        self.mimic = Mimic(
            services.db,
            self.cells,
            page.on_select,
            building=building_id,
            heat=heat_tags if self.building.heat else None,
            meter_device=meter,
            substation=sub[1] if sub else None,
            substation_name=sub[0] if sub else "",
            energy_unit=site.site.energy_unit,
        )
        self.mimic.set_alarms(page.alarms())
        self.unsubscribe = session.subscribe(self.mimic.tag_names, self.on_changes)
        session.spawn(session.in_thread(self._energy_bases), self._bases_loaded)

    def resume(self) -> None:
        """Show the building again: redraw what changed while it was hidden, and subscribe."""
        self.mimic.refresh()
        self.mimic.entry.refresh()
        self.mimic.source.selected.indices = []
        self.mimic.set_alarms(self.page.alarms())
        self.unsubscribe = self.page.session.subscribe(self.mimic.tag_names, self.on_changes)

    def on_changes(self, batch: ChangeBatch) -> None:
        self.mimic.apply(batch)
        self.page.detail.render()

    def _energy_bases(self) -> dict[str, float]:
        """Energy readings of the shops' meters at local midnight (for "kWh today")."""
        historian = self.page.session.services.historian
        if historian is None:
            return {}
        now = time.time()
        midnight = local_midnight(now, self.page.tz)
        out: dict[str, float] = {}
        for c in self.cells:
            if c.kind == "shop" and c.energy_tag is not None:
                base = reading_at_midnight(historian, c.energy_tag, midnight, now)
                if base is not None:
                    out[c.household] = base
        return out

    def _bases_loaded(self, bases: Any, error: BaseException | None) -> None:
        if error is not None:
            log.warning("energy today of %s: %s", self.building.id, error)
        elif bases:
            self.mimic.set_energy_bases(bases)

    def status_html(self, rotate_s: float) -> str:
        floors = len({c.floor for c in self.cells})
        rot = _(" · rotating every {s} s", s=f"{rotate_s:g}") if rotate_s > 0 else ""
        name = html.escape(pick(self.building.name) or self.building.id)
        text = _(
            "{name}: {units} units on {floors} floors",
            name=name,
            units=len(self.cells),
            floors=floors,
        )
        return (
            f'<span data-units="{len(self.cells)}" data-building="{html.escape(self.building.id)}">'
            f"{text}{rot}</span>"
        )


def site_substation(site: SiteConfig, building_id: str) -> tuple[str, dict[str, str | None]] | None:
    """Return ``(name, tags)`` of the substation feeding ``building_id``, or None."""
    sub = site.substation_of(building_id)
    if sub is None:
        return None
    tags = {
        "outdoor": sub.outdoor_tag,
        "setpoint": sub.supply_setpoint_tag,
        "supply": sub.supply_tag,
        "return": sub.return_tag,
        "pump": sub.pump_tag,
        "pump_speed": sub.pump_speed_tag,
        "flow": sub.flow_tag,
        "power": sub.power_tag,
    }
    return pick(sub.name) or sub.id, tags


#: The building choice follows the page text (a <select> keeps the browser's 13 px otherwise).
#: The detail column: beside the mimic; on a phone a bottom sheet shown only for a selection.
RIGHT_CSS = """
@media (max-width: 700px) {
  :host(:not(.selected)) { display: none !important; }
  :host(.selected) { position: fixed !important; left: 0 !important; right: 0 !important; bottom: 0 !important;
    top: auto !important; width: 100% !important; max-height: 62vh; overflow-y: auto; z-index: 20;
    background: #D4D4D4; border-top: 3px solid #4D4D4D; padding: 6px; box-sizing: border-box; }
}
"""


class BuildingPage:
    """The building page: building choice, the mimic, legend, and the detail of a clicked object."""

    def __init__(self, session: HmiSession, doc: Document, commands: CommandClient | None) -> None:
        self.session = session
        self.doc = doc
        services = session.services
        self.site = services.site
        self.tz = self.site.site.timezone
        self.ids = [b.id for b in self.site.buildings]
        self.wall = (session.arg("wall") or "").lower() in ("1", "true", "yes", "on")
        try:
            self.rotate_s = float(session.arg("rotate") or 0)
        except ValueError:
            self.rotate_s = 0.0
        self.mimic_ref: list[Mimic] = []
        self.detail = UnitDetail(session, commands, self.mimic_ref)
        self.view: BuildingView | None = None
        self.views: dict[str, BuildingView] = {}  # the last shown, oldest first
        self.select = Select(
            title="",
            options=select_options((b.id, pick(b.name) or b.id) for b in self.site.buildings),
            name="building-select",
            styles={
                "width": "clamp(220px, 16vw, 900px)",
                "--bokeh-font-size": PAGE_FONT,
            },
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        self.mimic_slot = column(sizing_mode="stretch_both", name="mimic-slot")
        self.status = html_div("", name="building-status", sizing_mode="stretch_width")
        self.legend = html_div(
            legend_html(), name="mimic-legend", css=LEGEND_CSS, sizing_mode="stretch_width"
        )
        self.close = Button(
            label="✕ " + _("Close"),
            name="detail-close",
            styles={"--bokeh-font-size": PAGE_FONT},
        )
        self.close.on_click(self.close_detail)
        self.right = column(
            self.close,
            self.detail.layout,
            sizing_mode="stretch_height",
            styles={"width": "clamp(300px, 24vw, 1100px)", "overflow-y": "auto"},
            stylesheets=[InlineStyleSheet(css=RIGHT_CSS)],
        )
        self.select.js_on_change(
            "value",
            CustomJS(code="window.hmiSetArg && window.hmiSetArg('building', cb_obj.value);"),
        )

    def alarms(self) -> list[Any]:
        engine = self.session.services.alarms
        return engine.active() if engine is not None else []

    def on_select(self, obj: str) -> None:
        view = self.view
        if view is None:
            return
        self.right.visible = True
        self.right.css_classes = ["selected"]
        if obj in view.mimic.row_of:
            self.detail.show(view.mimic.cells[view.mimic.row_of[obj]])
            return
        entry = view.mimic.entry
        rows = [(r.label, r.tag) for r in entry.rows if r.obj == obj]
        actions: dict[str, CommandAction] = {}
        db = self.session.services.db
        if obj == "sub":
            sp = next(
                (r.tag for r in entry.rows if r.obj == "sub" and r.label == _("setpoint")), None
            )
            if sp is not None and db.definition(sp).writable:
                title = (_("supply setpoint °C"), 20.0, 120.0)
                actions["setpoint"] = CommandAction(
                    "setpoint", _("Set supply setpoint"), sp, None, title
                )
            pump = entry.pump_tag
            if pump is not None and db.definition(pump).writable:
                actions["open"] = CommandAction("open", _("Start pump"), pump, True)
                actions["close"] = CommandAction("close", _("Stop pump"), pump, False)
        self.detail.show_object(obj, entry.heads.get(obj, obj), rows, actions)

    def close_detail(self) -> None:
        """Clear the selection; on a phone the sheet goes away, on a wall the column too."""
        self.detail.show(None)
        self.right.css_classes = []
        self.right.visible = not self.wall
        if self.view is not None:
            self.view.mimic.source.selected.indices = []

    def on_alarm_events(self, _events: Any) -> None:
        if self.view is not None:
            self.view.mimic.set_alarms(self.alarms())

    def show(self, building_id: str) -> None:
        if self.view is not None:
            self.view.unsubscribe()
        # a kiosk rotating through the estate keeps its last few buildings: showing one again
        # patches what changed instead of building a new mimic (0.3-0.7 s of server time each)
        view = self.views.pop(building_id, None)
        if view is None:
            view = BuildingView(self, building_id)
        else:
            view.resume()
        self.views[building_id] = view
        while (
            len(self.views) > 1
            and sum(len(v.cells) for v in self.views.values()) > VIEW_CACHE_UNITS
        ):
            self.views.pop(next(iter(self.views)))
        self.view = view
        self.mimic_ref[:] = [view.mimic]
        # one recompute of the document's model graph for the whole swap, not one per change
        # (a building's mimic is a few hundred models: a kiosk rotating every few seconds
        # would otherwise spend its time walking them)
        with self.doc.models.freeze():
            self.mimic_slot.children = [view.mimic.figure]
            self.detail.show(None)
            self.right.visible = not self.wall
            self.right.css_classes = []
            self.status.text = view.status_html(self.rotate_s)
        self.doc.title = f"{pick(view.building.name) or building_id} — " + _("Building")

    def build(self, wanted: str) -> None:
        self.select.value = wanted
        self.show(wanted)
        # attached after the first value: a server-side change runs the Python callbacks too,
        # and a 1,000-unit mimic built twice per page load doubled its first render
        self.select.on_change("value", lambda _a, _o, new: self.show(new))
        body = column(
            row(self.select, self.status, sizing_mode="stretch_width"),
            row(column(self.mimic_slot, self.legend, sizing_mode="stretch_both"), self.right, sizing_mode="stretch_both"),
            sizing_mode="stretch_both",
        )  # fmt: skip
        page_frame(self.session, self.doc, "building", body, self.doc.title or _("Building"))
        self.session.on_alarm(self.on_alarm_events)
        if self.rotate_s > 0 and len(self.ids) > 1:
            self.session.periodic(self.rotate, self.rotate_s)

    def rotate(self) -> None:
        i = (self.ids.index(self.select.value) + 1) % len(self.ids)
        self.select.value = self.ids[i]  # on_change shows it


def make_building(
    session: HmiSession, doc: Document, commands: CommandClient | None = None
) -> None:
    """Build the building page into ``doc``."""
    title = _("Building")
    if not page_allowed(session, "building"):
        page_frame(session, doc, "building", denied_body(_("not allowed for your role")), title)
        return
    doc.template_variables["hmi_skip_tables"] = True  # no DataTable on this page
    ids = [b.id for b in session.services.site.buildings]
    if not ids:
        page_frame(session, doc, "building", denied_body(_("no buildings configured")), title)
        return
    wanted = session.arg("building") or ids[0]
    if wanted not in ids:
        text = _(
            "unknown building {wanted}; configured: {ids}", wanted=repr(wanted), ids=", ".join(ids)
        )
        page_frame(session, doc, "building", denied_body(text), title)
        return
    BuildingPage(session, doc, commands).build(wanted)
