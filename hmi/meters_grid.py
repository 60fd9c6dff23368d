"""The meter tiles: a Bokeh canvas of one tile per meter, grouped by building, reflowed in the browser.

A tile is one unit wide and one tall in data space; the browser lays the tiles out (a
``CustomJS`` run when the document is ready and whenever the canvas changes width): as many
columns as fit ``TILE_W_EM`` wide tiles, ``TILE_H_EM`` tall, with the page's font size
(``--hmi-font-size`` / ``clamp(13px, 0.95vw, 40px)``, see ``hmi.theme.PAGE_CSS``) as the em;
the canvas then takes the height of its rows and the texts follow the em. So a phone gets
one or two columns it can read, a 4K wall screen large tiles. The layout writes only the
``x`` / ``y`` columns; the server patches the others when tags change. Selection: tap
(toggles) everywhere, box-drag on screens wide enough not to need the drag for scrolling.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bokeh.models import (
    BoxSelectTool,
    ColumnDataSource,
    CustomJS,
    HoverTool,
    Range1d,
    TapTool,
)
from bokeh.plotting import figure
from bokeh.transform import dodge

from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.theme import ACCOUNT_COLOURS, TEXT
from i18n import _, pick

if TYPE_CHECKING:
    from hmi.meters import MeterInfo

__all__ = ["RELAY_TRIPPED", "TILE_H_EM", "TILE_W_EM", "MeterGrid", "grid_layout", "state_label"]

#: A tripped (open) relay: the band under the open-switch symbol. Teal is used for nothing else.
RELAY_TRIPPED = "#00796B"

#: The open-switch symbol of the legend (the same drawing as on the tiles).
OPEN_SWITCH_SVG = (
    '<svg width="2.2em" height="0.9em" viewBox="0 0 44 18" style="vertical-align:middle" '
    'aria-hidden="true"><g stroke="currentColor" stroke-width="3" fill="currentColor">'
    '<line x1="0" y1="13" x2="12" y2="13"/><line x1="12" y1="13" x2="30" y2="2"/>'
    '<line x1="32" y1="13" x2="44" y2="13"/><circle cx="12" cy="13" r="2.5"/>'
    '<circle cx="32" cy="13" r="2.5"/></g></svg>'
)

TILE_W_EM = 12.5
NAME_CHARS = 17  # longer names are cut with "…" on the tile (the tooltip has them whole)
TILE_H_EM = 6.6
HEADER_UNITS = 0.42  # a building's title row, in tile heights
GAP_UNITS = 0.18  # between two buildings
INITIAL_COLUMNS = 8

#: The browser's layout; mirrors :func:`grid_layout` (kept beside it: change both together).
RUN_JS = """
const run = () => {
  const view = Bokeh.index.query_one((v) => v.model === fig);
  if (view == null) return;
  const root = document.documentElement;
  const em = root.classList.contains("wall")
    ? Math.max(13, 0.02 * window.innerHeight)
    : Math.min(40, Math.max(13, 0.0095 * window.innerWidth));
  const width = view.el.getBoundingClientRect().width;
  if (width <= 0) return;
  const cols = Math.max(1, Math.floor(width / (tile_w * em)));
  const b = src.data.building;
  const dev = src.data.device;
  const key = [cols, em, b.length, dev[0], dev[b.length - 1]];
  if (fig.tags.length === key.length && key.every((k, i) => fig.tags[i] === k)) return;
  const x = [], y = [], hx = [], hy = [], ht = [];
  let top = 0, col = 0, row_y = 0, cur = null;
  for (let i = 0; i < b.length; i++) {
    if (i === 0 || b[i] !== cur) {
      if (i > 0) top = row_y - 0.5 - gap;
      cur = b[i];
      hx.push(-0.47); hy.push(top - header / 2); ht.push(src.data.building_name[i]);
      row_y = top - header - 0.5; col = 0;
    } else if (col === cols) {
      col = 0; row_y -= 1;
    }
    x.push(col); y.push(row_y); col += 1;
  }
  const bottom = b.length ? row_y - 0.5 : -1;
  src.data = Object.assign({}, src.data, {x: x, y: y});
  heads.data = {x: hx, y: hy, text: ht};
  fig.x_range.setv({start: -0.5, end: cols - 0.5});
  fig.y_range.setv({start: bottom, end: 0});
  fig.height = Math.max(1, Math.round(-bottom * tile_h * em));
  for (const [r, f] of fonts) {
    r.glyph.text_font_size = {value: `${Math.round(f * em)}px`};
  }
  for (const r of strokes) {  // the switch symbol's lines and contacts follow the em too
    if (r.glyph.type === "Scatter") r.glyph.size = {value: Math.round(em * 0.35)};
    else r.glyph.line_width = {value: Math.max(2, Math.round(em / 8))};
  }
  box.active = cols > 2;  // on a phone a drag scrolls the page
  fig.tags = key;
};
"""

#: When the document is ready: lay out, and again whenever the canvas changes width.
READY_JS = (
    RUN_JS
    + """
run();
const view = Bokeh.index.query_one((v) => v.model === fig);
if (view != null && window.ResizeObserver) {
  new ResizeObserver(() => run()).observe(view.el);
}
"""
)

#: When the server replaces the tiles (another building): lay out again.
DATA_JS = RUN_JS + "run();\n"


def grid_layout(
    buildings: Sequence[str], columns: int
) -> tuple[list[float], list[float], list[int], list[float], float]:
    """Return tile ``x``, ``y``, the first tile of each building, the title ``y`` and the bottom.

    Tiles fill rows of ``columns`` per building; each building starts with a title row.
    """
    xs: list[float] = []
    ys: list[float] = []
    firsts: list[int] = []
    heads: list[float] = []
    top = row_y = 0.0
    col = 0
    for i, b in enumerate(buildings):
        if i == 0 or b != buildings[i - 1]:
            if i > 0:
                top = row_y - 0.5 - GAP_UNITS
            firsts.append(i)
            heads.append(top - HEADER_UNITS / 2)
            row_y, col = top - HEADER_UNITS - 0.5, 0
        elif col == columns:
            col, row_y = 0, row_y - 1
        xs.append(float(col))
        ys.append(row_y)
        col += 1
    return xs, ys, firsts, heads, (row_y - 0.5 if buildings else -1.0)


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1].rstrip() + "…"


def state_label(key: str) -> str:
    """Return the legend text of an account state key (``hmi.theme.ACCOUNT_COLOURS``)."""
    labels = {
        "open": _("open account"),
        "alarm1": _("balance alarm 1"),
        "alarm2": _("balance alarm 2"),
        "arrears": _("arrears"),
        "no_account": _("no account"),
        "lost": _("lost contact"),
    }
    return labels.get(key, key)


class MeterGrid:
    """The tiles (``meter-grid`` source, ``meters`` figure) and the state legend above them.

    ``rows`` holds every meter's tile values (:func:`hmi.meters.tile_row`); the source shows
    the meters of one building (:meth:`show`) or all. Indices given out (``selected``) and
    taken (``update``) are positions in ``meters``.
    """

    def __init__(
        self, session: HmiSession, meters: Sequence[MeterInfo], rows: list[dict[str, Any]]
    ) -> None:
        self.session = session
        self.meters = list(meters)
        self.rows = list(rows)
        names = {b.id: pick(b.name) or b.id for b in session.services.site.buildings}
        self.building_names = [names.get(m.building, m.building) for m in self.meters]
        self.visible = list(range(len(self.meters)))
        self.source = ColumnDataSource(self._data(), name="meter-grid")
        self.heads = ColumnDataSource(self._heads(), name="meter-buildings")
        self.figure = self._figure(self._bottom())
        self.legend = html_div("", name="meter-legend", sizing_mode="stretch_width", min_width=300)
        self._render_legend()

    def _layout(self) -> tuple[list[float], list[float], list[int], list[float], float]:
        return grid_layout([self.meters[i].building for i in self.visible], INITIAL_COLUMNS)

    def _bottom(self) -> float:
        return self._layout()[4]

    def _data(self) -> dict[str, list[Any]]:
        """The source's columns for the visible meters (``x``/``y`` until the browser lays out)."""
        xs, ys, _f, _h, _b = self._layout()
        shown = [self.meters[i] for i in self.visible]
        data: dict[str, list[Any]] = {
            "x": xs,
            "y": ys,
            "device": [m.device for m in shown],
            "name": [m.name for m in shown],
            "title": [_short(m.name) for m in shown],
            "account": [m.account or "" for m in shown],
            "building": [m.building for m in shown],
            "building_name": [self.building_names[i] for i in self.visible],
        }
        for key in self.rows[0]:
            data[key] = [self.rows[i][key] for i in self.visible]
        return data

    def _heads(self) -> dict[str, list[Any]]:
        _x, _y, firsts, heads, _b = self._layout()
        titles = [self.building_names[self.visible[i]] for i in firsts]
        return {"x": [-0.47] * len(firsts), "y": heads, "text": titles}

    def show(self, building: str | None) -> None:
        """Show the meters of ``building`` (None: all); clears the selection."""
        self.visible = [
            i for i, m in enumerate(self.meters) if building is None or m.building == building
        ]
        self.source.selected.indices = []
        self.source.data = self._data()
        self.heads.data = self._heads()

    def _figure(self, bottom: float) -> Any:
        fig = figure(
            name="meters",
            width_policy="max",
            height_policy="fixed",  # the rows' height, even past the screen (the tiles scroll)
            height=int(-bottom * TILE_H_EM * 14),
            tools="",
            toolbar_location=None,
            x_range=Range1d(start=-0.5, end=INITIAL_COLUMNS - 0.5),
            y_range=Range1d(start=bottom, end=0),
            background_fill_color="#DADADA",
            border_fill_color=None,
            outline_line_color=None,
            min_border=0,
        )
        fig.axis.visible = False
        fig.grid.visible = False
        src = self.source
        cells = fig.rect(
            "x", "y", 0.95, 0.92, source=src, fill_color="fill", line_color="line", line_width=2
        )
        cells.nonselection_glyph = cells.glyph
        cells.selection_glyph = cells.glyph.clone(line_color="#1E78C8", line_width=5)
        switch = self._switch(fig)
        fixed = [self._band(fig), *switch]
        fonts = self._texts(fig, fixed)
        for r in fixed:  # the drawing never fades with the selection
            r.selection_glyph = r.nonselection_glyph = r.glyph
        box = BoxSelectTool(renderers=[cells])
        fig.add_tools(TapTool(renderers=[cells], mode="xor"), box)
        fig.add_tools(HoverTool(renderers=[cells], tooltips=self._tooltips()))
        args = {
            "fig": fig,
            "src": src,
            "heads": self.heads,
            "box": box,
            "fonts": fonts,
            "strokes": switch,
            "tile_w": TILE_W_EM,
            "tile_h": TILE_H_EM,
            "header": HEADER_UNITS,
            "gap": GAP_UNITS,
        }
        self.session.doc.js_on_event("document_ready", CustomJS(args=args, code=READY_JS))
        src.js_on_change("data", CustomJS(args=args, code=DATA_JS))
        return fig

    def _band(self, fig: Any) -> Any:
        """The band at the bottom of a tile: teal when the relay is tripped, invisible else."""
        return fig.rect(
            "x",
            dodge("y", -0.335, range=fig.y_range),
            0.95,
            0.25,
            source=self.source,
            fill_color="band_fill",
            fill_alpha="band_alpha",
            line_alpha=0.0,
        )

    def _switch(self, fig: Any) -> list[Any]:
        """The relay as a schematic switch: two contacts, a blade closed or lifted (open)."""
        src, yr = self.source, -0.335
        x_range, y_range = fig.x_range, fig.y_range

        def dx(v: float) -> Any:
            return dodge("x", v, range=x_range)

        def dy(v: float) -> Any:
            return dodge("y", v, range=y_range)

        common = {"source": src, "line_color": "relay_ink", "line_width": 2}
        leads = fig.segment(
            dx(-0.44), dy(yr), dx(-0.37), dy(yr), line_alpha="switch_alpha", **common
        )
        tail = fig.segment(
            dx(-0.25), dy(yr), dx(-0.19), dy(yr), line_alpha="switch_alpha", **common
        )
        closed = fig.segment(
            dx(-0.37), dy(yr), dx(-0.25), dy(yr), line_alpha="closed_alpha", **common
        )
        lifted = fig.segment(
            dx(-0.37), dy(yr), dx(-0.27), dy(yr + 0.1), line_alpha="open_alpha", **common
        )
        contacts = [
            fig.scatter(
                dx(x),
                dy(yr),
                size=5,
                source=src,
                fill_color="relay_ink",
                line_color="relay_ink",
                fill_alpha="switch_alpha",
                line_alpha="switch_alpha",
            )
            for x in (-0.37, -0.25)
        ]
        return [leads, tail, closed, lifted, *contacts]

    def _texts(self, fig: Any, fixed: list[Any]) -> list[tuple[Any, float]]:
        """Name, balance, level and relay lines; return ``(renderer, size in em)`` for the layout."""
        src = self.source
        x_range, y_range = fig.x_range, fig.y_range
        lines = [  # column, x offset, y offset, size (em), bold, colour, alpha column
            ("title", -0.44, 0.29, 1.05, True, "ink", None),
            ("balance", -0.44, 0.09, 1.0, False, "ink", None),
            ("level", -0.44, -0.11, 0.9, False, "ink", None),
            ("relay", -0.16, -0.335, 0.9, True, "relay_ink", "switch_alpha"),
            ("relay", -0.44, -0.335, 0.9, True, "relay_ink", "plain_alpha"),  # no symbol
        ]
        out = []
        for col, x_off, y_off, size, bold, ink, alpha in lines:
            r = fig.text(
                dodge("x", x_off, range=x_range),
                dodge("y", y_off, range=y_range),
                text=col,
                source=src,
                text_align="left",
                text_baseline="middle",
                text_font_size=f"{round(size * 14)}px",
                text_font_style="bold" if bold else "normal",
                text_color=ink,
                text_alpha=alpha or 1.0,
            )
            fixed.append(r)
            out.append((r, size))
        heads = fig.text(
            "x",
            "y",
            text="text",
            source=self.heads,
            text_align="left",
            text_baseline="middle",
            text_font_size="16px",
            text_font_style="bold",
            text_color=TEXT,
        )
        out.append((heads, 1.15))
        return out

    @staticmethod
    def _tooltips() -> list[tuple[str, str]]:
        return [
            (_("meter"), "@device"),
            (_("tenant"), "@name"),
            (_("account"), "@account"),
            (_("state"), "@state_label"),
            (_("balance"), "@balance"),
            (_("relay"), "@relay"),
        ]

    # ------------------------------------------------------------------ updates
    def update(self, rows: dict[int, dict[str, Any]]) -> None:
        """Take new tile values ``{meter index: tile_row(...)}``, patch the visible ones."""
        at = {m: pos for pos, m in enumerate(self.visible)}
        patches: dict[str, list[tuple[int, Any]]] = {}
        changed = False
        for i, values in rows.items():
            if values == self.rows[i]:
                continue
            changed = True
            old, self.rows[i] = self.rows[i], values
            pos = at.get(i)
            if pos is None:
                continue
            for key, value in values.items():
                if old[key] != value:
                    patches.setdefault(key, []).append((pos, value))
        if patches:
            self.source.patch(patches)
        if changed:
            self._render_legend()

    @property
    def selected(self) -> list[int]:
        """The selected tiles, as indices into ``meters``."""
        return [self.visible[i] for i in self.source.selected.indices if i < len(self.visible)]

    def _render_legend(self) -> None:
        states = [r["state"] for r in self.rows]
        tripped = sum(r["relay_state"] == "tripped" for r in self.rows)
        pills = [
            f'<span class="pill" style="background:{ACCOUNT_COLOURS[k]};color:#000" '
            f'data-state-key="{k}">{html.escape(state_label(k))} '
            f'<b data-count-of="{k}">{states.count(k)}</b></span>'
            for k in ACCOUNT_COLOURS
        ]
        pills.append(
            f'<span class="pill" style="background:{RELAY_TRIPPED};color:#FFF" '
            f'data-state-key="tripped">{OPEN_SWITCH_SVG} {html.escape(_("relay tripped"))} '
            f'<b data-count-of="tripped">{tripped}</b></span>'
        )
        self.legend.text = "".join(pills)
