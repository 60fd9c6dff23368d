"""The building mimic: a cross-section of floors x units generated from the configuration.

Each unit is a cell drawn from its tags: the valve marker (open: filled dark grey; closed:
white; commanded: blue outline while a command waits for read-back; fault: priority-1
colour), the room temperature against its setpoint (a pale blue fill when the room is more
than ``COLD_DELTA_C`` below setpoint), and the data quality: a stale value is hatched, a unit
whose device lost contact is crossed and outlined in magenta, never drawn as fresh.

Updates are vectorised over the tag ids of a change batch and sent with
``ColumnDataSource.patch`` for the changed cells and columns only: one patch per flush,
a busy column as one slice. Everything drawn per cell is a plain colour, number or text;
the quality hatches are two overlays with one scalar pattern each (see ``_figure``), as
per-cell hatch patterns cost BokehJS a canvas per cell on every update.
"""

from __future__ import annotations

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
    Range1d,
    TapTool,
)
from bokeh.plotting import figure
from bokeh.transform import dodge

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
from tags.bus import ChangeBatch
from tags.database import TagDatabase
from tags.model import Quality

__all__ = ["COLD_DELTA_C", "Mimic", "column_patch", "unit_state"]

COLD_DELTA_C = 2.0
#: Above this many units the cells carry only the room temperature (labels go to the axes).
DENSE_UNITS = 300
ROLES = ("valve", "room", "setpoint", "fault", "online")
_GOOD, _UNC, _BAD = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)

#: Resize the cell texts with the plot so they stay readable from 1080p to 4K.
FONT_JS = """
setTimeout(() => {
  const nx = Math.max(1, xr.end - xr.start);
  const ny = Math.max(1, yr.end - yr.start);
  const cw = plot.inner_width / nx;
  const ch = plot.inner_height / ny;
  const big = Math.max(6, Math.min(cw / 3.6, ch / 2.4, 44));
  const size = Math.max(5, Math.min(cw / 6, ch / 4.5, 22));
  room.text_font_size = `${big.toFixed(0)}px`;
  for (const g of small) {
    g.text_font_size = `${size.toFixed(0)}px`;
    g.text_alpha = size < 7 ? 0 : 1;
  }
}, 0);
"""


def unit_state(
    valve: tuple[Any, int, int] | None,
    room: tuple[Any, int, int] | None,
    setpoint: tuple[Any, int, int] | None,
    fault: tuple[Any, int, int] | None,
    online: tuple[Any, int, int] | None,
    commanded: bool,
) -> dict[str, Any]:
    """Return the drawn columns of one unit from its (value, quality, reason) inputs.

    ``valve_state`` is one of ``open``, ``closed``, ``commanded``, ``fault``, ``unknown`` (no
    value yet) or ``none`` (the unit has no valve);
    ``comm`` is ``ok``, ``stale`` or ``lost``.
    """

    def val(x: tuple[Any, int, int] | None) -> Any:
        return None if x is None else x[0]

    qualities = [x[1] for x in (valve, room, setpoint) if x is not None]
    lost = any(q == _BAD for q in qualities) or (
        online is not None and (online[0] is False or online[1] == _BAD)
    )
    stale = not lost and any(q == _UNC for q in qualities)
    comm = "lost" if lost else "stale" if stale else "ok"
    v = val(valve)
    if valve is None and fault is None:
        state = "none"
    elif val(fault) is True:
        state = "fault"
    elif commanded:
        state = "commanded"
    elif v is None:
        state = "unknown"
    else:
        state = "open" if v else "closed"
    r, s = val(room), val(setpoint)
    fill = UNIT_FILL
    if r is not None and s is not None and not lost and r < s - COLD_DELTA_C:
        fill = COLD
    valve_fill = {
        "open": VALVE_OPEN,
        "closed": VALVE_CLOSED,
        "commanded": COMMANDED,
        "fault": PRIORITY_COLOURS[1],
        "unknown": PANEL,
        "none": UNIT_FILL,
    }[state]
    return {
        "valve_state": state,
        "comm": comm,
        "fill": fill,
        "line": COMM_LOST if lost else EQUIPMENT,
        "line_width": 3 if lost else 1,
        "hatch": "x" if lost else "/" if stale else " ",
        "valve_fill": valve_fill,
        "valve_line": COMMANDED if state == "commanded" else EQUIPMENT_DARK,
        "valve_alpha": 0.0 if state == "none" else 1.0,
        "room": ("—" if room is not None else "") if r is None else f"{r:.1f}",
        "sp": "" if s is None else f"/{s:.1f}",
        "text_color": TEXT_DIM if lost or stale else TEXT,
    }


class Mimic:
    """The mimic figure of one building for one session.

    ``on_select(household_id)`` is called when a unit is clicked. Call ``apply(batch)``
    with tag changes (inside a document callback) and ``set_commanded`` when a command on
    a unit starts or ends.
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
        "room",
        "sp",
        "text_color",
    )

    def __init__(
        self, db: TagDatabase, cells: Sequence[UnitCell], on_select: Callable[[str], None]
    ) -> None:
        self.db = db
        self.cells = list(cells)
        self.on_select = on_select
        self.commanded: set[str] = set()
        self.row_of = {c.household: i for i, c in enumerate(self.cells)}
        # tag id -> [(row, role)] for the vectorised update
        self._by_id: dict[int, list[tuple[int, str]]] = {}
        self.tag_names: list[str] = []
        for i, c in enumerate(self.cells):
            for role, tag in zip(
                ROLES,
                (c.valve_tag, c.room_tag, c.setpoint_tag, c.fault_tag, c.online_tag),
                strict=True,
            ):
                if tag is None:
                    continue
                self._by_id.setdefault(db.id_of(tag), []).append((i, role))
                self.tag_names.append(tag)
        self.source = ColumnDataSource(self._initial(), name="mimic-units")
        self.figure = self._figure()

    # ------------------------------------------------------------------ data
    def _inputs(self, c: UnitCell) -> dict[str, tuple[Any, int, int] | None]:
        out: dict[str, tuple[Any, int, int] | None] = {}
        for role, tag in zip(
            ROLES, (c.valve_tag, c.room_tag, c.setpoint_tag, c.fault_tag, c.online_tag), strict=True
        ):
            if tag is None:
                out[role] = None
            else:
                tv = self.db.read(tag)
                out[role] = (tv.value, int(tv.quality), int(tv.reason))
        return out

    def _row(self, c: UnitCell) -> dict[str, Any]:
        return unit_state(**self._inputs(c), commanded=c.household in self.commanded)

    def _initial(self) -> dict[str, Any]:
        # fixed numeric columns as arrays: sent as binary buffers, not JSON number lists
        x = np.array([c.position for c in self.cells], dtype=float)
        y = np.array([c.floor for c in self.cells], dtype=float)
        data: dict[str, Any] = {
            "x": x,
            "y": y,
            "valve_x": x - 0.38,
            "valve_y": y + 0.05,
            "household": [c.household for c in self.cells],
            "label": [c.label for c in self.cells],
            "name": [c.name for c in self.cells],
            "area": np.array([c.area_m2 for c in self.cells], dtype=float),
        }
        for col in self.COLUMNS:
            data[col] = []
        for c in self.cells:
            row = self._row(c)
            for col in self.COLUMNS:
                data[col].append(row[col])
        return data

    def _figure(self) -> figure:
        floors = sorted({c.floor for c in self.cells}) or [0]
        width = max((c.position for c in self.cells), default=0) + 1
        p = figure(
            name="mimic",
            sizing_mode="stretch_both",
            tools="",
            toolbar_location=None,
            x_range=Range1d(start=-0.55, end=width - 0.45),
            y_range=Range1d(start=floors[0] - 0.55, end=floors[-1] + 0.55),
            background_fill_color="#DADADA",
            border_fill_color=None,
            outline_line_color=None,
            min_border=4,
        )
        p.xaxis.visible = False
        p.grid.visible = False
        p.yaxis.ticker = FixedTicker(ticks=floors)
        p.yaxis.major_label_text_font_size = "14px"
        p.yaxis.major_label_text_color = TEXT_DIM
        p.yaxis.axis_line_color = None
        p.yaxis.major_tick_line_color = None
        p.yaxis.minor_tick_line_color = None
        src = self.source
        units = p.rect(
            "x",
            "y",
            0.94,
            0.88,
            source=src,
            fill_color="fill",
            line_color="line",
            line_width="line_width",
            name="units",
        )
        units.nonselection_glyph = units.glyph
        units.selection_glyph = units.glyph.clone(line_color=COMMANDED, line_width=4)
        # Quality hatches: one overlay per pattern with *scalar* hatch properties, filtered in
        # the browser on the ``hatch`` column. A per-cell (vectorised) hatch_pattern makes
        # BokehJS create one canvas per cell on every data change: seconds per update at
        # 1,000 units. Here each overlay has one pattern image, whatever the cell count.
        for pattern, colour, kind in (("/", STALE, "stale"), ("x", COMM_LOST, "lost")):
            overlay = p.rect(
                "x",
                "y",
                0.94,
                0.88,
                source=src,
                view=CDSView(filter=GroupFilter(column_name="hatch", group=pattern)),
                fill_color=None,
                line_color=None,
                hatch_pattern=pattern,
                hatch_color=colour,
                hatch_alpha=0.6,
                hatch_scale=8,
                name=f"units-{kind}",
            )
            overlay.nonselection_glyph = overlay.glyph
            overlay.selection_glyph = overlay.glyph
        valves = p.rect(
            "valve_x",
            "valve_y",
            0.1,
            0.4,
            source=src,
            fill_color="valve_fill",
            line_color="valve_line",
            fill_alpha="valve_alpha",
            line_alpha="valve_alpha",
            line_width=2,
        )
        room = p.text(
            "x",
            "y",
            text="room",
            source=src,
            x_offset=4,
            text_align="center",
            text_baseline="middle",
            text_color="text_color",
            text_font_style="bold",
            text_font_size="14px",
        )
        small: list[Any] = []
        texts = [room]
        if len(self.cells) <= DENSE_UNITS:
            label = p.text(
                "x",
                dodge("y", 0.42, range=p.y_range),
                text="label",
                source=src,
                text_align="right",
                text_baseline="top",
                text_color=TEXT_DIM,
                text_font_size="10px",
            )
            label.glyph.x = dodge("x", 0.44, range=p.x_range)  # top right of the cell
            sp = p.text(
                "x",
                dodge("y", -0.2, range=p.y_range),  # under the room temperature
                text="sp",
                source=src,
                text_align="center",
                text_baseline="top",
                text_color=TEXT_DIM,
                text_font_size="10px",
            )
            texts += [label, sp]
            small = [label.glyph, sp.glyph]
        else:
            # a dense building: unit numbers on the axis, setpoints in the hover and detail;
            # two thousand fewer texts to lay out on every update
            p.xaxis.visible = True
            p.xaxis.ticker = FixedTicker(ticks=list(range(width)))
            p.xaxis.major_label_overrides = {i: str(i + 1) for i in range(width)}
            p.xaxis.major_label_text_color = TEXT_DIM
            p.xaxis.axis_line_color = None
            p.xaxis.major_tick_line_color = None
        # the same glyph whatever the selection, so the font resizing below applies to all
        for r in texts:
            r.nonselection_glyph = r.glyph
            r.selection_glyph = r.glyph
        valves.nonselection_glyph = valves.glyph
        valves.selection_glyph = valves.glyph
        font = CustomJS(
            args={"plot": p, "xr": p.x_range, "yr": p.y_range, "room": room.glyph, "small": small},
            code=FONT_JS,
        )
        p.js_on_change("inner_width", font)
        p.js_on_change("inner_height", font)
        tap = TapTool(renderers=[units], mode="replace")
        p.add_tools(tap)
        p.add_tools(
            HoverTool(
                renderers=[units],
                tooltips=[
                    ("unit", "@household @name"),
                    ("room", "@room @sp °C"),
                    ("valve", "@valve_state"),
                    ("comm", "@comm"),
                    ("area", "@area m²"),
                ],
            )
        )
        src.selected.on_change("indices", self._on_tap)
        return p

    def _on_tap(self, _attr: str, _old: list[int], new: list[int]) -> None:
        if new:
            self.on_select(self.cells[new[0]].household)

    # ------------------------------------------------------------------ updates
    def apply(self, batch: ChangeBatch) -> int:
        """Patch the cells whose tags are in ``batch``; return the number of patched cells."""
        rows: set[int] = set()
        by_id = self._by_id
        for tid in batch.ids.tolist():
            for row, _role in by_id.get(tid, ()):
                rows.add(row)
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

    def refresh(self) -> int:
        """Re-read every cell from the database and patch what differs."""
        return self._patch(list(range(len(self.cells))))

    def _patch(self, rows: Sequence[int]) -> int:
        if not rows:
            return 0
        data = self.source.data
        patches: dict[str, list[tuple[int, Any]]] = {}
        changed = 0
        for i in rows:
            new = self._row(self.cells[i])
            hit = False
            for col in self.COLUMNS:
                if data[col][i] != new[col]:
                    patches.setdefault(col, []).append((i, new[col]))
                    hit = True
            changed += hit
        if patches:
            self.source.patch({col: column_patch(data[col], p) for col, p in patches.items()})
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
