"""The building mimic: a plant schematic generated from the configuration.

Left, the heat entry (:mod:`hmi.mimic_entry`): supply and return pipes with flow arrows,
the heat meter and, when configured, the substation. Right, the building: one supply riser
and one return riser at its wall, a branch along every floor and, per unit, a drop to its
valve (a bowtie symbol: filled open, hollow closed, blue outline and "…" while a command
waits for read-back, red with "✕" on a fault, "?" without a value). Each flat shows its
room temperature (large) against its setpoint ("sp 20.0"); a room more than
``COLD_DELTA_C`` below setpoint is filled pale blue. Shops and other units off the heating
loop show their name and electricity meter: power, energy today, relay (a tripped relay has
its own fill, symbol and word) and the prepaid level. Quality is never drawn as fresh: a
stale unit is hatched, a unit whose device lost contact is crossed and outlined in magenta.
Alarms are drawn on the objects (:mod:`hmi.mimic_alarms`). A legend under the figure
explains every symbol (:func:`hmi.mimic_legend.legend_html`).

Updates are vectorised over the tag ids of a change batch and sent with
``ColumnDataSource.patch`` for the changed cells and columns only: one patch per flush,
a busy column as one slice. Everything drawn per cell is a plain colour, number or text;
the quality hatches are two overlays with one scalar pattern each (see ``_figure``), as
per-cell hatch patterns cost BokehJS a canvas per cell on every update.

Texts are sized in the browser from the cell size (``FONT_JS``), so the drawing reads the
same from a phone to a 4K wall; in wall mode (``?wall=1``) no text is drawn smaller than
1/60 of the screen height: a text that would be is hidden (the cell's colours and symbols
still show its state) until the operator zooms in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from bokeh.models import (
    CDSView,
    ColumnDataSource,
    CustomJS,
    FixedTicker,
    GroupFilter,
    HoverTool,
    IndexFilter,
    Range1d,
    TapTool,
)
from bokeh.plotting import figure

from hmi.mimic_alarms import AlarmMarks
from hmi.mimic_entry import HeatEntry
from hmi.mimic_geometry import BRANCH_DY, VALVE_DX, VALVE_DY, Geometry
from hmi.model import UnitCell
from hmi.theme import (
    COLD,
    COMM_LOST,
    COMMANDED,
    EQUIPMENT,
    EQUIPMENT_DARK,
    PANEL,
    PRIORITY_COLOURS,
    STALE,
    TEXT,
    TEXT_DIM,
    UNIT_FILL,
    VALVE_CLOSED,
    VALVE_OPEN,
)
from i18n import N_, _
from tags.bus import ChangeBatch
from tags.database import TagDatabase
from tags.model import Quality

__all__ = ["COLD_DELTA_C", "Mimic", "column_patch", "unit_state"]

COLD_DELTA_C = 2.0
TRIPPED_FILL = "#B8B8B8"
ROLES = (
    "valve",
    "room",
    "setpoint",
    "fault",
    "online",
    "power",
    "relay",
    "meter_online",
    "level",
)
#: Columns of the valve symbols' own source (``mimic-valves``); the rest are in ``mimic-units``.
VALVE_COLUMNS = ("valve_fill", "valve_line", "valve_alpha")
_GOOD, _UNC, _BAD = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)
_LEVEL_WORDS = {1: N_("balance alarm 1"), 2: N_("balance alarm 2"), 3: N_("arrears")}

#: Resize texts and symbols with the plot so they stay readable from a phone to a 4K wall.
FONT_JS = """
// One run per layout change (inner width, height and the x range all move together), and
// nothing set that would not change what is drawn: every text size set makes BokehJS
// recompute that glyph's visuals for every cell and repaint the whole canvas (at 1,000
// units and 4K, ~0.25 s each). A size within 10 % of the one applied is kept, so the few
// pixels the axis labels take from the plot after the first sizing do not resize twice.
const state = (window.hmiMimicFontState = window.hmiMimicFontState || {});
const mine = (state[plot.id] = state[plot.id] || {pending: false, applied: {}});
if (mine.pending) { return; }
mine.pending = true;
setTimeout(() => {
  mine.pending = false;
  const wall = document.documentElement.classList.contains("wall");
  const minpx = wall ? window.innerHeight / 60 : 7;
  const xs = plot.inner_width / Math.max(1e-9, xr.end - xr.start);
  const ys = plot.inner_height / Math.max(1e-9, yr.end - yr.start);
  const cw = xs * 0.94, ch = ys * 0.82;
  const cap = wall ? 400 : Math.max(44, window.innerHeight / 24);
  const sizes = {
    room: Math.min(cw / 3.4, ch / 2.6, cap),
    title: Math.min(cw / 6.5, ch / 3.6, cap * 0.7),
    small: Math.min(cw / 8.5, ch / 5.5, cap * 0.5),
    info: Math.min(cw / 13.5, ch / 4.4, cap * 0.55),
    entry: Math.min(entry_w * xs / 12.5, row_h * ys * 0.78, cap * 0.8),
  };
  sizes.mark = Math.max(10, Math.min(sizes.small * 2.0, ch / 3.2));
  sizes.nums = Math.max(minpx, sizes.mark * 0.62);
  sizes.axis = Math.max(minpx, Math.min(ch / 3, cap * 0.6));
  const applied = mine.applied;
  const settle = (key, want) => {
    const had = applied[key];
    const keep = had !== undefined && Math.abs(want - had) <= 0.1 * had
      && (had >= minpx) === (want >= minpx);
    applied[key] = keep ? had : want;
    return applied[key];
  };
  const px = (size) => `${Math.max(1, size).toFixed(0)}px`;
  const spec = (v) => (v !== null && typeof v === "object" && "value" in v ? v.value : v);
  const shown = {};
  for (const [group, glyphs] of Object.entries(groups)) {
    if (group === "marks" || group === "nums") { continue; }
    const size = settle(group, sizes[group]);
    const visible = size >= minpx;
    shown[group] = visible ? size : 0;
    // text renderers: a text too small to read is not drawn at all (an invisible renderer
    // costs nothing per update; a transparent one is still measured and laid out)
    for (const r of glyphs) {
      if (spec(r.glyph.text_font_size) !== px(size)) { r.glyph.text_font_size = px(size); }
      if (r.visible !== visible) { r.visible = visible; }
      if (r.tags.includes("lazy")) {  // the unit texts: laid out only while shown
        const f = r.view.filter;
        if (visible && f.indices !== null) { f.indices = null; }
        if (!visible && (f.indices === null || f.indices.length > 0)) { f.indices = []; }
      }
    }
  }
  const mark = settle("mark", sizes.mark);
  for (const g of groups.marks || []) { if (spec(g.size) !== mark) { g.size = mark; } }
  const num = settle("nums", sizes.nums);
  for (const g of groups.nums || []) {
    if (spec(g.text_font_size) !== px(num)) { g.text_font_size = px(num); }
  }
  shown.nums = num;
  const axis = settle("axis", sizes.axis);
  for (const a of axes) {
    if (a.major_label_text_font_size !== px(axis)) { a.major_label_text_font_size = px(axis); }
  }
  shown.axis = axis;
  window.hmiMimicFonts = {minpx: minpx, wall: wall, sizes: shown};
}, 0);
"""


def _val(x: tuple[Any, int, int] | None) -> Any:
    return None if x is None else x[0]


def _comm(
    inputs: Sequence[tuple[Any, int, int] | None], online: tuple[Any, int, int] | None
) -> str:
    qualities = [x[1] for x in inputs if x is not None]
    lost = any(q == _BAD for q in qualities) or (
        online is not None and (online[0] is False or online[1] == _BAD)
    )
    if lost:
        return "lost"
    return "stale" if any(q == _UNC for q in qualities) else "ok"


def _valve_state(
    valve: tuple[Any, int, int] | None, fault: tuple[Any, int, int] | None, commanded: bool
) -> str:
    if valve is None and fault is None:
        return "none"
    if _val(fault) is True:
        return "fault"
    if commanded:
        return "commanded"
    v = _val(valve)
    if v is None:
        return "unknown"
    return "open" if v else "closed"


_VALVE_FILL = {
    "open": VALVE_OPEN,
    "closed": VALVE_CLOSED,
    "commanded": VALVE_CLOSED,
    "fault": PRIORITY_COLOURS[1],
    "unknown": PANEL,
    "none": UNIT_FILL,
}
_VALVE_MARK = {"commanded": "…", "fault": "✕", "unknown": "?"}


def unit_state(
    valve: tuple[Any, int, int] | None,
    room: tuple[Any, int, int] | None,
    setpoint: tuple[Any, int, int] | None,
    fault: tuple[Any, int, int] | None,
    online: tuple[Any, int, int] | None,
    commanded: bool,
    **meter: Any,
) -> dict[str, Any]:
    """Return the drawn columns of one unit from its (value, quality, reason) inputs.

    ``valve_state`` is one of ``open``, ``closed``, ``commanded``, ``fault``, ``unknown`` (no
    value yet) or ``none`` (the unit has no valve); ``comm`` is ``ok``, ``stale`` or ``lost``.
    A unit without valve, room and setpoint is a shop: ``meter`` gives its electricity
    meter's inputs (``power``, ``relay``, ``meter_online``, ``level`` as (value, quality,
    reason), ``energy_today`` a number, ``title`` its name).
    """
    heated = valve is not None or room is not None or setpoint is not None or fault is not None
    if heated:
        comm = _comm((valve, room, setpoint), online)
    else:
        comm = _comm((meter.get("power"), meter.get("relay")), meter.get("meter_online"))
    lost = comm == "lost"
    state = _valve_state(valve, fault, commanded)
    r, s = _val(room), _val(setpoint)
    fill = UNIT_FILL
    if r is not None and s is not None and not lost and r < s - COLD_DELTA_C:
        fill = COLD
    out = {
        "valve_state": state,
        "comm": comm,
        "fill": fill,
        "line": COMM_LOST if lost else EQUIPMENT,
        "line_width": 3 if lost else 1,
        "hatch": "x" if lost else "/" if comm == "stale" else " ",
        "valve_fill": _VALVE_FILL[state],
        "valve_line": COMMANDED if state == "commanded" else EQUIPMENT_DARK,
        "valve_alpha": 0.0 if state == "none" else 1.0,
        "mark": _VALVE_MARK.get(state, ""),
        "room": ("—" if room is not None else "") if r is None else f"{r:.1f}",
        "sp": "" if s is None else _("sp {value}", value=f"{s:.1f}"),
        "text_color": TEXT_DIM if comm != "ok" else TEXT,
        "title": "",
        "info1": "",
        "info2": "",
        "relay_state": "none",
    }
    if not heated:
        out.update(_shop_columns(meter, lost))
    return out


def _shop_columns(meter: dict[str, Any], lost: bool) -> dict[str, Any]:
    """The drawn columns of a unit off the heating loop (a shop with its meter)."""
    power, relay, level = (
        _val(meter.get("power")),
        _val(meter.get("relay")),
        _val(meter.get("level")),
    )
    parts = []
    if isinstance(power, int | float) and math.isfinite(float(power)):
        parts.append(f"{float(power):.2f} kW")
    today = meter.get("energy_today")
    if isinstance(today, int | float) and math.isfinite(float(today)):
        parts.append(_("{value} kWh today", value=f"{float(today):.1f}"))
    relay_state = "none" if meter.get("relay") is None else (
        "unknown" if relay is None else "closed" if relay else "tripped"
    )  # fmt: skip
    words = {
        "closed": "● " + _("supply on"),
        "tripped": "⊘ " + _("TRIPPED"),
        "unknown": "? " + _("relay"),
    }
    info2 = [words[relay_state]] if relay_state in words else []
    if isinstance(level, int) and level in _LEVEL_WORDS:
        info2.append(_(_LEVEL_WORDS[level]))
    out: dict[str, Any] = {
        "title": str(meter.get("title") or ""),
        "info1": " · ".join(parts),
        "info2": " · ".join(info2),
        "relay_state": relay_state,
    }
    if relay_state == "tripped" and not lost:
        out["fill"] = TRIPPED_FILL
    return out


class Mimic:
    """The mimic figure of one building for one session.

    ``on_select(object_id)`` is called when a unit (its household id) or an entry object
    (``hm``, ``sub``) is clicked. Call ``apply(batch)`` with tag changes (inside a document
    callback), ``set_commanded`` when a command on a unit starts or ends, and
    ``set_alarms`` with the engine's alarms.
    """

    COLUMNS = (
        "valve_state",
        "comm",
        "fill",
        "line",
        "line_width",
        "hatch",
        "valve_fill",
        "valve_line",
        "valve_alpha",
        "mark",
        "room",
        "sp",
        "text_color",
        "title",
        "info1",
        "info2",
        "relay_state",
    )

    def __init__(
        self,
        db: TagDatabase,
        cells: Sequence[UnitCell],
        on_select: Callable[[str], None],
        *,
        building: str = "",
        heat: dict[str, str | None] | None = None,
        meter_device: str | None = None,
        substation: dict[str, str | None] | None = None,
        substation_name: str = "",
        energy_unit: str = "kWh",
    ) -> None:
        self.db = db
        self.cells = list(cells)
        self.on_select = on_select
        self.commanded: set[str] = set()
        self.energy_base: dict[str, float] = {}
        self.row_of = {c.household: i for i, c in enumerate(self.cells)}
        self.geo = Geometry.of(self.cells, substation=substation is not None)
        self.entry = HeatEntry(
            db,
            self.geo,
            meter=heat or {},
            meter_device=meter_device,
            substation=substation,
            substation_name=substation_name,
            energy_unit=energy_unit,
        )
        self.alarms = AlarmMarks(self.geo, self.cells, self.entry, building)
        # tag id -> rows for the vectorised update
        self._by_id: dict[int, list[int]] = {}
        self.tag_names: list[str] = []
        for i, c in enumerate(self.cells):
            for tag in c.tags:
                self._by_id.setdefault(db.id_of(tag), []).append(i)
                self.tag_names.append(tag)
        self.tag_names += [t for t in self.entry.tags if t not in self.tag_names]
        data = self._initial()
        # valves and drops in sources of their own: a change of room temperatures (the
        # common update) then does not make the browser recompute a thousand valve polygons
        self.drops = ColumnDataSource(
            {k: data.pop(k) for k in ("drop_xs", "drop_ys")}, name="mimic-drops"
        )
        self.valves = ColumnDataSource(
            {k: data.pop(k) for k in ("valve_xs", "valve_ys", *VALVE_COLUMNS)},
            name="mimic-valves",
        )
        self.source = ColumnDataSource(data, name="mimic-units")
        self.figure = self._figure()

    # ------------------------------------------------------------------ data
    def _inputs(self, c: UnitCell) -> dict[str, tuple[Any, int, int] | None]:
        tags = (
            c.valve_tag,
            c.room_tag,
            c.setpoint_tag,
            c.fault_tag,
            c.online_tag,
            c.power_tag,
            c.relay_tag,
            c.meter_online_tag,
            c.level_tag,
        )
        out: dict[str, tuple[Any, int, int] | None] = {}
        for role, tag in zip(ROLES, tags, strict=True):
            if tag is None:
                out[role] = None
            else:
                tv = self.db.read(tag)
                out[role] = (tv.value, int(tv.quality), int(tv.reason))
        return out

    def _row(self, c: UnitCell) -> dict[str, Any]:
        inputs = self._inputs(c)
        today: float | None = None
        if c.energy_tag is not None and c.household in self.energy_base:
            v = self.db.read(c.energy_tag).value
            if isinstance(v, int | float):
                today = max(0.0, float(v) - self.energy_base[c.household])
        return unit_state(
            inputs.pop("valve"),
            inputs.pop("room"),
            inputs.pop("setpoint"),
            inputs.pop("fault"),
            inputs.pop("online"),
            c.household in self.commanded,
            energy_today=today,
            title=c.name or c.label,
            **inputs,
        )

    def _initial(self) -> dict[str, Any]:
        # fixed numeric columns as arrays: sent as binary buffers, not JSON number lists
        x = np.array([c.position for c in self.cells], dtype=float)
        y = np.array([self.geo.rank(c.floor) for c in self.cells], dtype=float)
        vx, vy = x + VALVE_DX, y + VALVE_DY
        w, h = 0.07, 0.1
        data: dict[str, Any] = {
            "x": x,
            "y": y,
            "valve_x": vx,
            "valve_y": vy,
            "valve_xs": [[a - w, a + w, a - w, a + w] for a in vx.tolist()],
            "valve_ys": [[b + h, b + h, b - h, b - h] for b in vy.tolist()],
            "drop_xs": [[a, a] for a in vx.tolist()],
            "drop_ys": [[b + BRANCH_DY - VALVE_DY, b - h] for b in vy.tolist()],
            "household": [c.household for c in self.cells],
            "label": [c.label for c in self.cells],
            "name": [c.name for c in self.cells],
            "kind": [c.kind for c in self.cells],
            "area": np.array([c.area_m2 for c in self.cells], dtype=float),
        }
        for col in self.COLUMNS:
            data[col] = []
        for c in self.cells:
            row = self._row(c)
            for col in self.COLUMNS:
                data[col].append(row[col])
        return data

    # ------------------------------------------------------------------ drawing
    def _figure(self) -> figure:
        x0, x1 = self.geo.x_range
        y0, y1 = self.geo.y_range
        tools = "xpan,xwheel_zoom,reset" if self.geo.dense else ""
        p = figure(
            name="mimic",
            sizing_mode="stretch_both",
            tools=tools,
            toolbar_location=None,
            x_range=Range1d(start=x0, end=x1, bounds=(x0, x1)),
            y_range=Range1d(start=y0, end=y1),
            background_fill_color="#DADADA",
            border_fill_color=None,
            outline_line_color=None,
            min_border=4,
        )
        self._axes(p)
        self._draw_network(p)
        units = self._draw_units(p)
        groups = self._draw_texts(p)
        entry = self.entry.draw(p, self.on_select)
        groups["entry"] = entry["entry"]
        marks = self.alarms.draw(p)
        groups["marks"] = entry["marks"] + marks["marks"]
        groups["nums"] = marks["nums"]
        font = CustomJS(
            args={
                "plot": p,
                "xr": p.x_range,
                "yr": p.y_range,
                "groups": groups,
                "axes": list(p.yaxis) + (list(p.xaxis) if self.geo.dense else []),
                "entry_w": self.geo.entry_width / self.geo.columns,
                "row_h": self.geo.row_step,
            },
            code=FONT_JS,
        )
        for model, attr in ((p, "inner_width"), (p, "inner_height")):
            model.js_on_change(attr, font)
        p.x_range.js_on_change("end", font)
        p.add_tools(TapTool(renderers=[units, self.entry.objects_renderer], mode="replace"))
        p.add_tools(
            HoverTool(
                renderers=[units],
                tooltips=[
                    (_("unit"), "@household @name"),
                    (_("room"), "@room @sp °C"),
                    (_("valve"), "@valve_state"),
                    (_("comm"), "@comm"),
                    (_("area"), "@area m²"),
                ],
            )
        )
        self.source.selected.on_change("indices", self._on_tap)
        return p

    def _axes(self, p: figure) -> None:
        p.xaxis.visible = False
        p.grid.visible = False
        ranks = list(range(len(self.geo.floors)))
        p.yaxis.ticker = FixedTicker(ticks=ranks)
        p.yaxis.major_label_overrides = {
            r: _("floor {n}", n=f) if f else _("ground")
            for r, f in zip(ranks, self.geo.floors, strict=True)
        }
        p.yaxis.major_label_text_font_size = "14px"
        p.yaxis.major_label_text_color = TEXT_DIM
        p.yaxis.axis_line_color = None
        p.yaxis.major_tick_line_color = None
        p.yaxis.minor_tick_line_color = None
        if self.geo.dense:
            # a dense building: unit numbers on the axis, setpoints in the hover and detail
            p.xaxis.visible = True
            p.xaxis.ticker = FixedTicker(ticks=list(range(self.geo.width)))
            p.xaxis.major_label_overrides = {i: str(i + 1) for i in range(self.geo.width)}
            p.xaxis.major_label_text_color = TEXT_DIM
            p.xaxis.axis_line_color = None
            p.xaxis.major_tick_line_color = None

    def _draw_network(self, p: figure) -> None:
        pipes = self.geo.pipes()
        xs, ys = pipes["return"]
        p.multi_line(
            xs, ys, line_color=EQUIPMENT, line_width=3, line_dash="dashed", name="pipes-return"
        )
        xs, ys = pipes["supply"]
        p.multi_line(xs, ys, line_color=EQUIPMENT_DARK, line_width=4, name="pipes-supply")
        p.multi_line(
            "drop_xs", "drop_ys", source=self.drops, line_color=EQUIPMENT_DARK, line_width=2
        )
        arrows = self.geo.arrows()
        p.scatter(
            [a[0] for a in arrows], [a[1] for a in arrows], angle=[a[2] for a in arrows],
            marker="triangle", size=14, fill_color=[EQUIPMENT_DARK if a[3] == "supply" else EQUIPMENT for a in arrows],
            line_color=None, name="flow-arrows",
        )  # fmt: skip

    def _draw_units(self, p: figure) -> Any:
        src = self.source
        units = p.rect(
            "x", "y", 0.94, 0.82, source=src, fill_color="fill", line_color="line",
            line_width="line_width", name="units",
        )  # fmt: skip
        units.nonselection_glyph = units.glyph
        units.selection_glyph = units.glyph.clone(line_color=COMMANDED, line_width=4)
        # Quality hatches: one overlay per pattern with *scalar* hatch properties, filtered in
        # the browser on the ``hatch`` column. A per-cell (vectorised) hatch_pattern makes
        # BokehJS create one canvas per cell on every data change: seconds per update at
        # 1,000 units. Here each overlay has one pattern image, whatever the cell count.
        for pattern, colour, kind in (("/", STALE, "stale"), ("x", COMM_LOST, "lost")):
            overlay = p.rect(
                "x", "y", 0.94, 0.82, source=src,
                view=CDSView(filter=GroupFilter(column_name="hatch", group=pattern)),
                fill_color=None, line_color=None, hatch_pattern=pattern, hatch_color=colour,
                hatch_alpha=0.6, hatch_scale=8, name=f"units-{kind}",
            )  # fmt: skip
            overlay.nonselection_glyph = overlay.glyph
            overlay.selection_glyph = overlay.glyph
        valves = p.patches(
            "valve_xs", "valve_ys", source=self.valves, fill_color="valve_fill", line_color="valve_line",
            fill_alpha="valve_alpha", line_alpha="valve_alpha", line_width=2, name="valves",
        )  # fmt: skip
        valves.nonselection_glyph = valves.glyph
        valves.selection_glyph = valves.glyph
        return units

    def _text(self, p: figure, field: str, x: Any, y: Any, **kw: Any) -> Any:
        # Drawn from no cell until FONT_JS has sized it (it then lifts the filter when the text
        # is big enough to read): BokehJS lays out every text of a renderer, visible or not,
        # on each change of its data, ~0.1 s per 1,000 cells.
        r = p.text(
            x, y, text=field, source=self.source, text_baseline="middle",
            view=CDSView(filter=IndexFilter(indices=[])), **kw,
        )  # fmt: skip
        r.tags = ["lazy"]
        r.nonselection_glyph = r.glyph
        r.selection_glyph = r.glyph
        return r

    def _draw_texts(self, p: figure) -> dict[str, list[Any]]:
        from bokeh.transform import dodge

        def dx(d: float) -> Any:
            return dodge("x", d, range=p.x_range)

        def dy(d: float) -> Any:
            return dodge("y", d, range=p.y_range)

        room = self._text(
            p, "room", dx(0.08), dy(0.06), text_align="center", text_color="text_color",
            text_font_style="bold",
        )  # fmt: skip
        groups: dict[str, list[Any]] = {"room": [room], "small": [], "title": []}
        if self.geo.dense:
            return groups
        groups["small"] = [
            self._text(p, "label", dx(0.44), dy(0.3), text_align="right", text_color=TEXT_DIM),
            self._text(p, "sp", dx(0.08), dy(-0.24), text_align="center", text_color=TEXT_DIM),
            self._text(p, "mark", dx(VALVE_DX + 0.1), dy(VALVE_DY), text_align="left", text_color=TEXT, text_font_style="bold"),
        ]  # fmt: skip
        groups["info"] = [
            self._text(p, "info1", "x", dy(-0.1), text_align="center", text_color="text_color"),
            self._text(p, "info2", "x", dy(-0.27), text_align="center", text_color="text_color", text_font_style="bold"),
        ]  # fmt: skip
        groups["title"] = [
            self._text(p, "title", "x", dy(0.12), text_align="center", text_color="text_color", text_font_style="bold")
        ]  # fmt: skip
        return groups

    def _on_tap(self, _attr: str, _old: list[int], new: list[int]) -> None:
        if new:
            self.on_select(self.cells[new[0]].household)

    # ------------------------------------------------------------------ updates
    def apply(self, batch: ChangeBatch) -> int:
        """Patch the cells (and entry values) whose tags are in ``batch``; return patched cells."""
        rows: set[int] = set()
        by_id = self._by_id
        for tid in batch.ids.tolist():
            rows.update(by_id.get(tid, ()))
        self.entry.apply(batch)
        return self._patch(sorted(rows))

    def set_commanded(self, household: str, on: bool) -> None:
        """Mark a unit's valve as commanded (a command waits for its read-back) or not."""
        if on:
            self.commanded.add(household)
        else:
            self.commanded.discard(household)
        row = self.row_of.get(household)
        if row is not None:
            self._patch([row])

    def set_energy_bases(self, bases: dict[str, float]) -> None:
        """Set the energy readings at local midnight (household -> kWh) and redraw "today"."""
        self.energy_base.update(bases)
        self._patch([self.row_of[h] for h in bases if h in self.row_of])

    def set_alarms(self, alarms: Any) -> int:
        """Draw the priority indicators of ``alarms`` on their objects; return how many."""
        return self.alarms.update(alarms)

    def refresh(self) -> int:
        """Re-read every cell from the database and patch what differs."""
        return self._patch(list(range(len(self.cells))))

    def _patch(self, rows: Sequence[int]) -> int:
        if not rows:
            return 0
        units, valves = self.source.data, self.valves.data
        patches: dict[str, list[tuple[int, Any]]] = {}
        changed = 0
        for i in rows:
            new = self._row(self.cells[i])
            hit = False
            for col in self.COLUMNS:
                data = valves if col in VALVE_COLUMNS else units
                if data[col][i] != new[col]:
                    patches.setdefault(col, []).append((i, new[col]))
                    hit = True
            changed += hit
        for source in (self.source, self.valves):
            data = source.data
            mine = {c: column_patch(data[c], p) for c, p in patches.items() if c in data}
            if mine:
                source.patch(mine)
        return changed


#: A column with at least this many changed cells is patched as one slice (see ``column_patch``).
SLICE_MIN = 32


def column_patch(
    column: Sequence[Any] | npt.NDArray[Any], changes: list[tuple[int, Any]]
) -> list[tuple[Any, Any]]:
    """Return the patch of one column: per-cell pairs, or one slice when most cells changed.

    At 1 Hz every room of a building changes: one ``(slice(a, b), [values])`` is half the
    bytes of a thousand ``(i, value)`` pairs and one splice in the browser. Unchanged cells
    inside the slice are sent with their current value.
    """
    if len(changes) < SLICE_MIN:
        return list(changes)
    lo, hi = changes[0][0], changes[-1][0] + 1
    if len(changes) * 2 < hi - lo:
        return list(changes)
    values = list(column[lo:hi])
    for i, v in changes:
        values[i - lo] = v
    return [(slice(lo, hi), values)]
