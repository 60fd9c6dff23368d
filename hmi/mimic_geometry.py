"""Where everything of a building mimic is drawn: data coordinates, no Bokeh, no tags.

The mimic is one Bokeh figure in data units. Floors are stacked by rank (``y`` = 0 for the
lowest configured floor), units sit at ``x`` = their position on the floor. Left of the
building lies the *heat entry*: the supply and return pipes come in at the bottom, run
through the heat meter (and, when the site configures one, the substation's heat exchanger
and circulation pump before it) and rise in two risers at the building's left wall; every
floor has a supply branch under its units and a drop to each unit's valve.

The entry region is a fixed share of the width whatever the building's width, so its texts
stay the same size on a two-flat house and a forty-flat block; its texts are laid out in
rows from the top of the region. Everything here is plain numbers so it is tested without
a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hmi.model import UnitCell

__all__ = ["DENSE_UNITS", "Geometry"]

#: Above this many units the cells carry only the room temperature (labels go to the axes).
DENSE_UNITS = 300
#: Pipes: supply and return levels under the lowest floor, the two risers' x.
SUPPLY_Y = -0.78
RETURN_Y = -1.08
RISER_S = -0.78
RISER_R = -0.66
#: A unit's valve sits at the lower left of its cell; the drop comes from the floor's branch.
VALVE_DX = -0.3
VALVE_DY = -0.2
BRANCH_DY = -0.45


@dataclass(frozen=True, slots=True)
class Geometry:
    """The layout of one building's mimic (see the module docstring)."""

    floors: tuple[int, ...]  # configured floor numbers, lowest first
    width: int  # units on the widest floor
    entry_width: float  # data units of the heat entry region
    columns: int  # text columns of the entry region (heat meter; and substation)
    dense: bool

    @classmethod
    def of(cls, cells: Sequence[UnitCell], *, substation: bool) -> Geometry:
        """Return the geometry of ``cells`` (one column more when a substation is drawn)."""
        floors = tuple(sorted({c.floor for c in cells})) or (0,)
        width = max((c.position for c in cells), default=0) + 1
        dense = len(cells) > DENSE_UNITS
        share = 0.25 if dense else (0.75 if substation else 0.45)
        minimum = 3.4 if substation else 2.0
        return cls(floors, width, max(minimum, share * width), 2 if substation else 1, dense)

    # ------------------------------------------------------------------ ranges
    @property
    def x_range(self) -> tuple[float, float]:
        """(start, end) of the x axis."""
        return (RISER_S - 0.25 - self.entry_width, self.width - 0.45)

    @property
    def y_range(self) -> tuple[float, float]:
        """(start, end) of the y axis."""
        return (RETURN_Y - 0.3, len(self.floors) - 0.45)

    def rank(self, floor: int) -> int:
        """Return the drawing row (0 = lowest floor) of a configured floor number."""
        return self.floors.index(floor)

    def cell_xy(self, cell: UnitCell) -> tuple[float, float]:
        """Return the centre of a unit's cell."""
        return float(cell.position), float(self.rank(cell.floor))

    # ------------------------------------------------------------------ entry region
    @property
    def entry_left(self) -> float:
        """The x where the pipes enter the drawing."""
        return self.x_range[0]

    def column_span(self, column: int) -> tuple[float, float]:
        """Return (left, right) of entry text column ``column`` (0 = next to the building)."""
        right_edge = RISER_S - 0.12
        w = self.entry_width / self.columns
        right = right_edge - column * w
        return right - w, right

    @property
    def row_step(self) -> float:
        """Vertical distance of two entry text rows."""
        top, bottom = self.y_range[1] - 0.2, SUPPLY_Y + 0.45
        # a dense (tall, wide) building's floors are thin: its entry rows may span more than
        # half a floor each, or the heat meter's values would be too small for a wall
        return max(0.2, min(1.2 if self.dense else 0.5, (top - bottom) / 7.5))

    def row_y(self, row: int) -> float:
        """Return the y of entry text row ``row`` (0 = the heading at the top)."""
        return self.y_range[1] - 0.3 - row * self.row_step

    def symbol_x(self, column: int) -> float:
        """Return the x of the symbol (meter, heat exchanger) of entry column ``column``."""
        left, right = self.column_span(column)
        return (left + right) / 2

    # ------------------------------------------------------------------ pipes
    def pipes(self) -> dict[str, tuple[list[list[float]], list[list[float]]]]:
        """Return ``{"supply": (xs, ys), "return": (xs, ys)}`` polylines of the network."""
        x0 = self.entry_left
        top = len(self.floors) - 1
        xs_s: list[list[float]] = [[x0, RISER_S, RISER_S]]
        ys_s: list[list[float]] = [[SUPPLY_Y, SUPPLY_Y, top + BRANCH_DY]]
        xs_r: list[list[float]] = [[x0, RISER_R, RISER_R]]
        ys_r: list[list[float]] = [[RETURN_Y, RETURN_Y, top + BRANCH_DY - 0.06]]
        end = self.width - 0.55
        for r in range(len(self.floors)):
            xs_s.append([RISER_S, end])
            ys_s.append([r + BRANCH_DY, r + BRANCH_DY])
            xs_r.append([RISER_R, end])
            ys_r.append([r + BRANCH_DY - 0.06, r + BRANCH_DY - 0.06])
        return {"supply": (xs_s, ys_s), "return": (xs_r, ys_r)}

    def arrows(self) -> list[tuple[float, float, float, str]]:
        """Return flow-direction arrows ``(x, y, angle_rad, pipe)`` on the entry pipes and risers."""
        x0, x1 = self.entry_left, RISER_S
        out: list[tuple[float, float, float, str]] = []
        for f in (0.12, 0.5):
            out.append((x0 + f * (x1 - x0), SUPPLY_Y, -1.5708, "supply"))  # points right
            out.append((x0 + f * (x1 - x0), RETURN_Y, 1.5708, "return"))  # points left
        if len(self.floors) > 1:
            out.append((RISER_S, 0.0, 0.0, "supply"))  # up the supply riser
            out.append((RISER_R, 0.0, 3.1416, "return"))  # down the return riser
        return out
