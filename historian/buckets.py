"""Bucket edges of a counter query: fixed widths from ``start``, or calendar units in a time zone.

``Buckets.fixed(start, end, every_s)`` cuts ``[start, end)`` into ``[start + k*every_s, ...)``,
the last one clipped to ``end`` (the buckets of ``query_agg``). ``Buckets.calendar(start, end,
every, tz)`` cuts it at the calendar boundaries of ``tz``: ``1h`` buckets run from one local
whole hour to the next, ``1d`` from local midnight to local midnight (23 or 25 hours on the
days clocks change), ``1mo`` over calendar months, ``1y`` over calendar years; the first and
last bucket are clipped to ``start`` and ``end``. A unit below a day must divide the day
(``15m``, ``2h``; not ``7h``): its grid restarts at every local midnight. On the day clocks go
back the repeated wall-clock hour is its own bucket; on the day they go forward the missing
one has none.

``parse_every(text)`` reads the ``every`` of the API and the CLI: plain seconds (``3600``, a
fixed width) or a count and a calendar unit (``1h``, ``15m``, ``1d``, ``1mo``, ``1y``).
Every bucket keeps its *nominal* width (the whole calendar bucket, also for a clipped one):
the counter rule compares gaps with it (``historian.counter``).
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

__all__ = ["Buckets", "Every", "Unit", "floor", "parse_every"]

DAY_S = 86400


class Unit(enum.StrEnum):
    """A calendar unit of ``every``."""

    SECOND = "s"
    MINUTE = "m"
    HOUR = "h"
    DAY = "d"
    MONTH = "mo"
    YEAR = "y"


#: Seconds of the units below a day.
_CLOCK_S = {Unit.SECOND: 1, Unit.MINUTE: 60, Unit.HOUR: 3600}
#: The shortest a bucket of one unit can be (a day that loses an hour, February): bucket counts.
_MIN_S = {**_CLOCK_S, Unit.DAY: 23 * 3600, Unit.MONTH: 28 * DAY_S, Unit.YEAR: 365 * DAY_S}
_EVERY = re.compile(r"^([1-9][0-9]{0,3})(s|m|h|d|mo|y)$")
_SECONDS = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class Every:
    """A bucket width in calendar units: ``count`` times ``unit`` (``1d``, ``15m``, ``1mo``)."""

    count: int
    unit: Unit

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", Unit(self.unit))  # also from its text ("d")
        if self.count < 1:
            raise ValueError(f"every: the count must be at least 1, got {self.count}")
        step = _CLOCK_S.get(self.unit)
        if step is not None and DAY_S % (self.count * step):
            raise ValueError(
                f"every={self}: a bucket below a day must divide the day "
                "(e.g. 15m, 30m, 1h, 2h, 3h, 4h, 6h, 8h, 12h)"
            )

    def __str__(self) -> str:
        return f"{self.count}{self.unit.value}"

    @property
    def min_s(self) -> float:
        """The shortest one bucket can be (seconds): what a bucket count is estimated with."""
        return float(self.count * _MIN_S[self.unit])


def parse_every(text: str) -> float | Every:
    """Return ``every`` as seconds (``"3600"``: a fixed width) or an ``Every`` (``"1d"``).

    Raises ``ValueError`` naming the accepted forms.
    """
    t = text.strip()
    m = _EVERY.match(t)
    if m is not None:
        return Every(int(m.group(1)), Unit(m.group(2)))
    if _SECONDS.match(t):
        seconds = float(t)
        if 0 < seconds < math.inf:
            return seconds
    raise ValueError(
        f"every: {text!r} is neither seconds (3600) nor a count and a unit "
        "(15m, 1h, 1d, 1mo, 1y; s, m, h, d, mo, y)"
    )


@dataclass(frozen=True, slots=True)
class Buckets:
    """Buckets ``[edges[k], edges[k+1])`` and the nominal width of each (seconds).

    For a counter, bucket ``k`` holds the steps at ``edges[k] < t <= edges[k+1]``
    (``historian.counter``).
    """

    edges: np.ndarray
    widths: np.ndarray

    def __len__(self) -> int:
        return len(self.widths)

    @property
    def starts(self) -> list[float]:
        """The start of each bucket."""
        return [float(x) for x in self.edges[:-1]]

    @property
    def ends(self) -> list[float]:
        """The end of each bucket (the last one is the query's end)."""
        return [float(x) for x in self.edges[1:]]

    @classmethod
    def span(cls, start: float, end: float) -> Buckets:
        """Return the one bucket ``[start, end]`` (``Historian.delta``)."""
        return cls(np.array([start, end], dtype=np.float64), np.array([max(end - start, 0.0)]))

    @classmethod
    def fixed(cls, start: float, end: float, every_s: float) -> Buckets:
        """Return buckets of ``every_s`` seconds from ``start``, the last clipped to ``end``."""
        if not (math.isfinite(every_s) and every_s > 0):
            raise ValueError(f"bucket width must be > 0 seconds, got {every_s!r}")
        n = math.ceil((end - start) / every_s) if end > start else 0
        starts = start + every_s * np.arange(n, dtype=np.float64)
        starts = starts[starts < end]
        edges = np.append(starts, end) if len(starts) else np.array([start], dtype=np.float64)
        return cls(edges, np.full(len(starts), float(every_s)))

    @classmethod
    def calendar(cls, start: float, end: float, every: Every, tz: str | ZoneInfo) -> Buckets:
        """Return the calendar buckets of ``every`` in time zone ``tz`` over ``[start, end)``."""
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        if end <= start:
            return cls(np.array([start], dtype=np.float64), np.zeros(0))
        grid = _grid(start, end, every, zone)
        # the grid covers [start, end]: keep the buckets that overlap it, clipped
        lo = int(np.searchsorted(grid, start, side="right")) - 1
        hi = int(np.searchsorted(grid, end, side="left"))
        full = grid[lo : hi + 1]
        widths = np.diff(full)
        edges = full.copy()
        edges[0], edges[-1] = start, end
        return cls(edges, widths)

    @classmethod
    def of(cls, start: float, end: float, every: float | Every, tz: str | ZoneInfo) -> Buckets:
        """Return ``fixed`` buckets for seconds, ``calendar`` ones for an ``Every``."""
        if isinstance(every, Every):
            return cls.calendar(start, end, every, tz)
        return cls.fixed(start, end, every)


def floor(ts: float, every: Every, tz: str | ZoneInfo) -> float:
    """Return the start of the calendar bucket of ``every`` in ``tz`` that holds ``ts``."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    grid = _grid(ts, ts, every, zone)
    return float(grid[int(np.searchsorted(grid, ts, side="right")) - 1])


def _midnight(d: date, zone: ZoneInfo) -> float:
    # a midnight that does not exist (clocks go forward at 00:00) is the instant they jump
    return datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()


def _local_date(ts: float, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts, zone).date()


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _grid(start: float, end: float, every: Every, zone: ZoneInfo) -> np.ndarray:
    """Return calendar edges (sorted) with the first at or before ``start``, the last at or after ``end``."""
    first = _local_date(start, zone)
    last = _local_date(end, zone)
    if every.unit in (Unit.MONTH, Unit.YEAR):
        months = every.count * (12 if every.unit is Unit.YEAR else 1)
        d = date(first.year, 1 if every.unit is Unit.YEAR else first.month, 1)
        out = [_midnight(d, zone)]
        while out[-1] < end:
            if d.year * 12 + d.month - 1 + months >= 10000 * 12:  # past what ``date`` holds
                out.append(math.inf)
                break
            d = _add_months(d, months)
            out.append(_midnight(d, zone))
        return np.array(out)
    if every.unit is Unit.DAY:
        days = [first + timedelta(days=i) for i in range(0, (last - first).days + 2, every.count)]
        out = [_midnight(d, zone) for d in days]
        while out[-1] < end:  # a count of days past the last date
            days.append(days[-1] + timedelta(days=every.count))  # 9999 days: far below 9999-12-31
            out.append(_midnight(days[-1], zone))
        return np.array(out)
    step = every.count * _CLOCK_S[every.unit]
    pieces = []
    for i in range((last - first).days + 1):
        d = first + timedelta(days=i)
        m0, m1 = _midnight(d, zone), _midnight(d + timedelta(days=1), zone)
        if m1 - m0 == DAY_S:
            pieces.append(m0 + np.arange(0, DAY_S, step, dtype=np.float64))
        else:  # clocks change this day: the wall-clock grid, each time that exists (both folds)
            pieces.append(_wall_grid(d, step, zone))
    pieces.append(np.array([_midnight(last + timedelta(days=1), zone)]))
    return np.unique(np.concatenate(pieces))


def _wall_grid(d: date, step: int, zone: ZoneInfo) -> np.ndarray:
    """Return the instants of day ``d`` whose local wall clock is a multiple of ``step``."""
    out: set[float] = set()
    for w in range(0, DAY_S, step):
        wall = datetime.combine(d, time(w // 3600, w // 60 % 60, w % 60))
        for fold in (0, 1):
            t = wall.replace(tzinfo=zone, fold=fold).timestamp()
            back = datetime.fromtimestamp(t, zone).replace(tzinfo=None)
            if back == wall:  # skips a wall time the clocks jump over
                out.add(t)
    if not out:  # pragma: no cover - a day has a midnight or the instant clocks jump at it
        out.add(_midnight(d, zone))
    return np.array(sorted(out))
