"""The heat entry of a building mimic: heat meter, and the substation when the site has one.

Drawn in the mimic's figure left of the building (see :mod:`hmi.mimic_geometry`): the
incoming supply and return pipes with flow arrows, the heat meter on the supply pipe and,
upstream, the substation's heat exchanger and circulation pump. Above them, one text
column each: a heading and one row per value (temperatures, flow, power, energy; outdoor
temperature, supply setpoint against supply, pump state). Values are drawn by quality as
everywhere: an uncertain value dim with "?", a bad one in the comm-lost colour with "✕",
never like a fresh value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from alarms.text import unit_symbol
from hmi.mimic_geometry import RETURN_Y, SUPPLY_Y, Geometry
from hmi.model import tag_or_none
from hmi.theme import COMM_LOST, EQUIPMENT, EQUIPMENT_DARK, PANEL, TEXT, TEXT_DIM
from i18n import _
from i18n.formats import energy_text, number_text
from tags.bus import ChangeBatch
from tags.database import TagDatabase
from tags.model import Quality

__all__ = ["EntryRow", "HeatEntry", "entry_text"]


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One value of the entry: its object (``hm`` or ``sub``), label, tag and format."""

    obj: str
    label: str
    tag: str
    digits: int = 1
    kind: str = "number"  # ``number``, ``pump`` (a running bool) or ``energy`` (heat, kWh)


def entry_text(
    row: EntryRow, value: Any, quality: int, unit: str, energy_unit: str = "kWh"
) -> tuple[str, str]:
    """Return ``(text, colour)`` of an entry row for a value and its quality.

    Heat energy in kWh is shown in ``energy_unit`` (``site.energy_unit``: kWh, GJ, Gcal).
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        shown = "—"
    elif row.kind == "pump":
        shown = _("running") if value else _("stopped")
    elif row.kind == "energy" and unit == "kWh" and energy_unit != "kWh" and _number(value):
        amount, shown_unit = energy_text(float(value), energy_unit)
        shown = f"{amount} {shown_unit}"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        shown = f"{number_text(float(value), row.digits)} {unit_symbol(unit)}".rstrip()
    else:
        shown = str(value)
    text = f"{row.label} {shown}"
    if quality == int(Quality.BAD) or value is None:
        return f"✕ {text}", COMM_LOST
    if quality == int(Quality.UNCERTAIN):
        return f"{text} ?", TEXT_DIM
    return text, TEXT


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class HeatEntry:
    """The drawn heat entry of one building: sources, glyphs and live updates."""

    def __init__(
        self,
        db: TagDatabase,
        geometry: Geometry,
        *,
        meter: dict[str, str | None],
        meter_device: str | None,
        substation: dict[str, str | None] | None,
        substation_name: str = "",
        energy_unit: str = "kWh",
    ) -> None:
        self.db = db
        self.geo = geometry
        self.energy_unit = energy_unit  # heat energy shown in the site's unit (kWh tags)
        self.meter_device = meter_device
        self.rows: list[EntryRow] = []
        self.heads: dict[str, str] = {}
        self.head_rows: dict[str, int] = {}
        self._add_meter(meter, meter_device)
        if substation is not None:
            self._add_substation(substation, substation_name)
        self.row_of = {r.tag: i for i, r in enumerate(self.rows)}
        self.source = ColumnDataSource(self._data(), name="mimic-entry")
        self.objects = ColumnDataSource(self._objects(), name="mimic-objects")

    # ------------------------------------------------------------------ rows
    def _add_meter(self, tags: dict[str, str | None], device: str | None) -> None:
        self.heads["hm"] = _("Heat meter {device}", device=device) if device else _("Heat meter")
        for key, label, digits in (
            ("supply", _("supply"), 1),
            ("return", _("return"), 1),
            ("flow", _("flow"), 2),
            ("power", _("power"), 1),
            ("energy", _("energy"), 0),
        ):
            tag = tags.get(key)
            if tag and tag in self.db:
                kind = "energy" if key == "energy" else "number"
                self.rows.append(EntryRow("hm", label, tag, digits, kind))

    def _add_substation(self, tags: dict[str, str | None], name: str) -> None:
        self.heads["sub"] = name or _("Substation")
        for key, label, digits, kind in (
            ("outdoor", _("outdoor"), 1, "number"),
            ("setpoint", _("setpoint"), 1, "number"),
            ("supply", _("supply"), 1, "number"),
            ("return", _("return"), 1, "number"),
            ("pump", _("pump"), 0, "pump"),
            ("pump_speed", _("pump speed"), 0, "number"),
        ):
            tag = tag_or_none(self.db, tags.get(key))
            if tag:
                self.rows.append(EntryRow("sub", label, tag, digits, kind))

    @property
    def tags(self) -> list[str]:
        """Every tag the entry draws."""
        return [r.tag for r in self.rows] + ([self.pump_tag] if self.pump_tag else [])

    @property
    def pump_tag(self) -> str | None:
        """The substation pump's running tag, if drawn."""
        return next((r.tag for r in self.rows if r.kind == "pump"), None)

    def column_of(self, obj: str) -> int:
        """Return the text column of ``hm`` (0, next to the building) or ``sub`` (1)."""
        return 0 if obj == "hm" else 1

    def anchor(self, tag: str) -> tuple[float, float] | None:
        """Return where an alarm mark of ``tag`` goes (left of its row), or None."""
        i = self.row_of.get(tag)
        if i is None:
            return None
        x, y = self._row_xy(i)
        return x - 0.08 * self.geo.entry_width / self.geo.columns, y

    def object_anchor(self, obj: str) -> tuple[float, float]:
        """Return where an alarm mark of the object (its device) goes: at its symbol."""
        col = self.column_of(obj)
        return self.geo.symbol_x(col) - 0.3, SUPPLY_Y + 0.22

    def _row_xy(self, i: int) -> tuple[float, float]:
        row = self.rows[i]
        col = self.column_of(row.obj)
        left, right = self.geo.column_span(col)
        index = 1 + sum(1 for r in self.rows[:i] if r.obj == row.obj)
        return left + 0.14 * (right - left), self.geo.row_y(index)

    # ------------------------------------------------------------------ data
    def _data(self) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = {"x": [], "y": [], "text": [], "color": [], "tag": []}
        for i, row in enumerate(self.rows):
            x, y = self._row_xy(i)
            text, colour = self._text(row)
            data["x"].append(x)
            data["y"].append(y)
            data["text"].append(text)
            data["color"].append(colour)
            data["tag"].append(row.tag)
        return data

    def _text(self, row: EntryRow) -> tuple[str, str]:
        tv = self.db.read(row.tag)
        unit = self.db.definition(row.tag).unit
        return entry_text(row, tv.value, int(tv.quality), unit, self.energy_unit)

    def _objects(self) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = {"x": [], "y": [], "w": [], "h": [], "obj": [], "label": []}
        data.update({"fill": [], "line": []})
        for obj in self.heads:
            col = self.column_of(obj)
            span = self.geo.column_span(col)
            w = min(0.5 * (span[1] - span[0]), 0.9)
            if obj == "hm":
                xy, h, label = (self.geo.symbol_x(col), SUPPLY_Y), 0.2, "HM"
            else:
                xy, h, label = (self.geo.symbol_x(col), (SUPPLY_Y + RETURN_Y) / 2), 0.5, "HX"
            data["x"].append(xy[0])
            data["y"].append(xy[1])
            data["w"].append(w)
            data["h"].append(h)
            data["obj"].append(obj)
            data["label"].append(label)
            data["fill"].append(PANEL)
            data["line"].append(EQUIPMENT_DARK)
        return data

    # ------------------------------------------------------------------ drawing
    def draw(self, p: figure, on_tap: Callable[[str], None]) -> dict[str, list[Any]]:
        """Add the entry's glyphs to ``p``; return the text renderers and mark glyphs by font group."""
        objs = p.rect(
            "x", "y", "w", "h", source=self.objects, fill_color="fill", line_color="line",
            line_width=2, name="mimic-entry-objects",
        )  # fmt: skip
        objs.nonselection_glyph = objs.glyph
        objs.selection_glyph = objs.glyph.clone(line_color="#1E78C8", line_width=4)
        labels = p.text(
            "x", "y", text="label", source=self.objects, text_align="center",
            text_baseline="middle", text_color=TEXT, text_font_style="bold",
        )  # fmt: skip
        pump = self._draw_pump(p)
        heads = ColumnDataSource(self._heads(), name="mimic-entry-heads")
        head = p.text(
            "x", "y", text="text", source=heads, text_align="left", text_baseline="middle",
            text_color=TEXT, text_font_style="bold",
        )  # fmt: skip
        values = p.text(
            "x", "y", text="text", source=self.source, text_align="left",
            text_baseline="middle", text_color="color", name="mimic-entry-values",
        )  # fmt: skip

        def tapped(_a: str, _o: list[int], new: list[int]) -> None:
            if new:
                on_tap(self.objects.data["obj"][new[0]])

        self.objects.selected.on_change("indices", tapped)
        self.objects_renderer = objs
        return {"entry": [values, head, labels], "marks": pump}

    def _heads(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
        for obj, text in self.heads.items():
            left, right = self.geo.column_span(self.column_of(obj))
            out["x"].append(left + 0.05 * (right - left))
            out["y"].append(self.geo.row_y(0))
            out["text"].append(text)
        return out

    def _draw_pump(self, p: figure) -> list[Any]:
        """Draw the circulation pump (a circle with a flow triangle) on the supply pipe."""
        if "sub" not in self.heads:
            return []
        left, right = self.geo.column_span(1)
        self.pump_source = ColumnDataSource(
            {"x": [right - 0.12 * (right - left)], "y": [SUPPLY_Y], "fill": [self._pump_fill()]},
            name="mimic-pump",
        )
        ring = p.scatter(
            "x", "y", source=self.pump_source, marker="circle", size=24, fill_color="fill",
            line_color=EQUIPMENT_DARK, line_width=2,
        )  # fmt: skip
        tri = p.scatter(
            "x", "y", source=self.pump_source, marker="triangle", size=12, angle=-math.pi / 2,
            fill_color=EQUIPMENT, line_color=EQUIPMENT_DARK,
        )  # fmt: skip
        return [ring.glyph, tri.glyph]

    def _pump_fill(self) -> str:
        tag = self.pump_tag
        if tag is None:
            return PANEL
        tv = self.db.read(tag)
        if tv.quality is Quality.BAD or tv.value is None:
            return COMM_LOST
        return EQUIPMENT_DARK if tv.value else "#FFFFFF"

    # ------------------------------------------------------------------ updates
    def apply(self, batch: ChangeBatch) -> int:
        """Patch the rows whose tags changed; return how many changed."""
        return self._patch([self.row_of[n] for n in batch.names if n in self.row_of], batch)

    def refresh(self) -> int:
        """Re-read every row (and the pump) from the database; patch what differs."""
        return self._patch(range(len(self.rows)), None)

    def _patch(self, rows: Iterable[int], batch: ChangeBatch | None) -> int:
        patches: dict[str, list[tuple[int, Any]]] = {"text": [], "color": []}
        data = self.source.data
        for i in rows:
            text, colour = self._text(self.rows[i])
            if data["text"][i] != text:
                patches["text"].append((i, text))
            if data["color"][i] != colour:
                patches["color"].append((i, colour))
        if self.pump_tag is not None and (batch is None or self.pump_tag in batch):
            fill = self._pump_fill()
            if self.pump_source.data["fill"][0] != fill:
                self.pump_source.patch({"fill": [(0, fill)]})
        patches = {k: v for k, v in patches.items() if v}
        if patches:
            self.source.patch(patches)
        return len(patches.get("text", []))
