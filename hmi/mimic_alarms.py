"""Alarms on the graphics: an ISA-101 priority indicator on every drawn object in alarm.

The indicator is a shape per priority (1 square, 2 diamond, 3 triangle, 4 inverted
triangle) in the priority's colour with the priority's number in it, so it reads without
colour. Unacknowledged alarms are drawn filled, acknowledged ones hollow (outline in the
priority colour, number in dark text). An object with several alarms shows its most urgent
one (unacknowledged first at equal priority). Marks sit at the top left of a unit's cell,
left of an entry value, or on the heat meter / substation symbol for device alarms (comm
loss); alarms of this building that have no drawn object are not lost: the banner and the
alarm list show every alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from alarms.model import Alarm
from hmi.mimic_entry import HeatEntry
from hmi.mimic_geometry import Geometry
from hmi.model import UnitCell
from hmi.theme import PRIORITY_COLOURS, PRIORITY_NAMES, PRIORITY_TEXT, TEXT

__all__ = ["MARKERS", "AlarmMarks"]

#: Priority -> marker shape (never colour alone).
MARKERS: dict[int, str] = {1: "square", 2: "diamond", 3: "triangle", 4: "inverted_triangle"}
_COLUMNS = ("x", "y", "marker", "fill", "line", "fill_alpha", "num", "num_color", "key", "tip")


class AlarmMarks:
    """The alarm indicators of one building mimic."""

    def __init__(
        self,
        geometry: Geometry,
        cells: Sequence[UnitCell],
        entry: HeatEntry | None,
        building: str,
    ) -> None:
        self.building = building
        self.by_tag: dict[str, tuple[float, float, str]] = {}
        self.by_device: dict[str, tuple[float, float, str]] = {}
        for c in cells:
            x, y = geometry.cell_xy(c)
            anchor = (x - 0.36, y + 0.28, c.household)
            for t in c.tags:
                self.by_tag[t] = anchor
            for d in c.devices:
                self.by_device[d] = anchor
        if entry is not None:
            for row in entry.rows:
                a = entry.anchor(row.tag)
                if a is not None:
                    self.by_tag[row.tag] = (a[0], a[1], row.obj)
            if entry.meter_device:
                ax, ay = entry.object_anchor("hm")
                self.by_device[entry.meter_device] = (ax, ay, "hm")
        self.source = ColumnDataSource({c: [] for c in _COLUMNS}, name="mimic-alarms")

    def anchor_of(self, alarm: Alarm) -> tuple[float, float, str] | None:
        """Return where ``alarm`` is drawn (x, y, object), or None when not on this mimic."""
        if alarm.tag is not None and alarm.tag in self.by_tag:
            return self.by_tag[alarm.tag]
        if alarm.device is not None and alarm.device in self.by_device:
            return self.by_device[alarm.device]
        return None

    def update(self, alarms: Iterable[Alarm]) -> int:
        """Redraw the marks for the alarms now active or unacknowledged; return how many."""
        worst: dict[tuple[float, float], Alarm] = {}
        objects: dict[tuple[float, float], str] = {}
        for a in alarms:
            if not (a.active or a.unacked) or a.occurrence is None:
                continue
            anchor = self.anchor_of(a)
            if anchor is None:
                continue
            key = (anchor[0], anchor[1])
            cur = worst.get(key)
            if cur is None or (a.priority, not a.unacked) < (cur.priority, not cur.unacked):
                worst[key] = a
                objects[key] = anchor[2]
        data: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
        for (x, y), a in sorted(worst.items(), key=lambda kv: kv[1].priority, reverse=True):
            prio = a.priority if a.priority in MARKERS else 4
            data["x"].append(x)
            data["y"].append(y)
            data["marker"].append(MARKERS[prio])
            data["fill"].append(PRIORITY_COLOURS[prio])
            data["line"].append(PRIORITY_COLOURS[prio])
            data["fill_alpha"].append(1.0 if a.unacked else 0.0)
            data["num"].append(str(prio))
            data["num_color"].append(PRIORITY_TEXT[prio] if a.unacked else TEXT)
            data["key"].append(a.key)
            state = "unacknowledged" if a.unacked else "acknowledged"
            data["tip"].append(f"{PRIORITY_NAMES[prio]} · {state} · {a.message}")
        if data != self.source.data:
            self.source.data = data
        return len(data["x"])

    def draw(self, p: figure) -> dict[str, list[Any]]:
        """Add the marks to ``p``; return the glyphs whose size follows the cell size."""
        marks = p.scatter(
            "x", "y", source=self.source, marker="marker", size=26, fill_color="fill",
            fill_alpha="fill_alpha", line_color="line", line_width=3, name="mimic-alarm-marks",
        )  # fmt: skip
        nums = p.text(
            "x", "y", text="num", source=self.source, text_align="center", text_baseline="middle",
            text_color="num_color", text_font_style="bold", name="mimic-alarm-nums",
        )  # fmt: skip
        for r in (marks, nums):
            r.nonselection_glyph = r.glyph
            r.selection_glyph = r.glyph
        return {"marks": [marks.glyph], "nums": [nums.glyph]}
