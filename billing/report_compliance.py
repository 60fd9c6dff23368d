"""The ``room_compliance`` report: share of flats warm enough, per building and day.

For every heated building (``heat:``) and every flat with a ``room_tag``, each local day of
the period is cut to the building's heating hours (``heat.room_hours``, ``"06:00-22:00"``;
default the whole day) and the room temperature is read from the historian with the
historian's ``twa`` rule: step hold (a value holds until the next sample, the value in force
at the window's start counts), bad or non-numeric samples and the time before the first
sample are *unknown* and count in nothing. A flat is **compliant** on a day when its
time-weighted mean over the known part of the heating hours is ``>= heat.room_min_c``
(default 18.0 degC). **Hours below** are the known heating hours with a temperature below the
minimum. A flat without any known value on a day is counted under ``no data``, not in the
share (share = compliant / flats with data).

Sheets: ``compliance`` (building x day: flats, with data, compliant, share in %),
``under-heated`` (the flats with hours below the minimum or a non-compliant day, most hours
first) and ``flats`` (flat x day: mean, hours below, compliant).

Raises ``ValueError`` when no heated building has a flat with a room tag, and when no flat has
a known room temperature in the period (it lies outside the stored history).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from historian.buckets import Buckets, Every, Unit

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Sheet
    from billing.service import Billing
    from historian.base import Historian

__all__ = ["FlatDay", "heating_window", "parse_hours", "room_compliance", "room_day"]


@dataclass(frozen=True, slots=True)
class FlatDay:
    """A flat's room temperature over one day's heating hours.

    ``mean_c``: time-weighted mean of the known time (None: nothing known); ``below_s``: known
    seconds below the minimum; ``known_s``: seconds with a known value.
    """

    mean_c: float | None
    below_s: float
    known_s: float


def parse_hours(text: str | None) -> tuple[time, time | None]:
    """Return the heating hours ``"HH:MM-HH:MM"`` as (start, end); end None means midnight.

    ``None`` is the whole day. ``ValueError`` when the end is not after the start.
    """
    if not text:
        return time(0, 0), None
    a, b = text.split("-")
    start = time.fromisoformat(a)
    end = None if b == "24:00" else time.fromisoformat(b)
    if end is not None and end <= start:
        raise ValueError(f"room_hours {text!r}: the end must be after the start (no overnight)")
    return start, end


def heating_window(
    day: date, hours: tuple[time, time | None], zone: ZoneInfo
) -> tuple[float, float]:
    """Return the heating hours of local ``day`` as epoch seconds ``(start, end)``."""
    a = datetime.combine(day, hours[0], zone).timestamp()
    end = hours[1]
    if end is None:
        b = datetime.combine(day + timedelta(days=1), time(0, 0), zone).timestamp()
    else:
        b = datetime.combine(day, end, zone).timestamp()
    return a, b


def _steps(h: Historian, tag: str, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the step function of ``tag`` over ``[start, end)``: times and values (NaN: unknown)."""
    samples = h.query_raw(tag, start, end, include_bad=True)
    prior = h.value_at(tag, start)
    if prior is not None and prior.ts < start:
        samples = [prior, *samples]
    t = np.array([s.ts for s in samples], dtype=np.float64)
    v = np.array([s.numeric if s.known else math.nan for s in samples], dtype=np.float64)
    return t, v


def room_day(t: np.ndarray, v: np.ndarray, a: float, b: float, min_c: float) -> FlatDay:
    """Return the room temperature of the step function ``(t, v)`` over ``[a, b)``."""
    nxt = np.append(t[1:], math.inf)
    overlap = np.clip(np.minimum(nxt, b) - np.maximum(t, a), 0.0, None)
    known = np.isfinite(v) & (overlap > 0)
    known_s = float(overlap[known].sum())
    if known_s <= 0:
        return FlatDay(None, 0.0, 0.0)
    mean = float((overlap[known] * v[known]).sum() / known_s)
    below = float(overlap[known & (v < min_c)].sum())
    return FlatDay(mean, below, known_s)


def room_compliance(b: Billing, p: Period, *, historian: Historian | None = None) -> list[Sheet]:
    """Return the sheets of the ``room_compliance`` report of period ``p`` (module docstring).

    Blocking (reads the historian): run it in a worker thread from the event loop.
    """
    from billing.reports import Column, Sheet

    zone = ZoneInfo(b.tz)
    h = historian if historian is not None else b._hist()
    days = Buckets.calendar(p.start, p.end, Every(1, Unit.DAY), zone)
    summary = Sheet(
        "compliance",
        [
            Column("building"),
            Column("day"),
            Column("flats"),
            Column("with data"),
            Column("compliant"),
            Column("share", "%"),
            Column("min", "degC"),
        ],
        chart=(1, [5]),
    )
    flats = Sheet(
        "flats",
        [
            Column("building"),
            Column("flat"),
            Column("day"),
            Column("mean", "degC"),
            Column("below", "h", True),
            Column("compliant"),
        ],
    )
    ranked: list[tuple[str, str, float, int, float]] = []
    n_flats = 0
    n_known = 0
    for bld in b.site.buildings:
        heat = bld.heat
        rooms = [hh for hh in bld.households if hh.room_tag]
        if heat is None or not rooms:
            continue
        n_flats += len(rooms)
        hours = parse_hours(heat.room_hours)
        min_c = heat.room_min_c
        per_day: list[list[FlatDay]] = [[] for _ in range(len(days))]
        for hh in rooms:
            assert hh.room_tag is not None
            t, v = _steps(h, hh.room_tag, p.start, p.end)
            below_s, bad_days, means = 0.0, 0, []
            for i, (ds, de) in enumerate(zip(days.starts, days.ends, strict=True)):
                day = datetime.fromtimestamp(ds, zone).date()
                wa, wb = heating_window(day, hours, zone)
                fd = room_day(t, v, max(wa, ds), min(wb, de), min_c)
                per_day[i].append(fd)
                ok = None if fd.mean_c is None else fd.mean_c >= min_c
                flats.rows.append(
                    [
                        bld.id,
                        hh.id,
                        day.isoformat(),
                        None if fd.mean_c is None else round(fd.mean_c, 2),
                        round(fd.below_s / 3600, 4),
                        "" if ok is None else ("yes" if ok else "no"),
                    ]
                )
                below_s += fd.below_s
                if fd.mean_c is not None:
                    n_known += 1
                    means.append(fd.mean_c)
                    bad_days += not ok
            if below_s > 0 or bad_days:
                ranked.append(
                    (bld.id, hh.id, round(below_s / 3600, 4), bad_days, round(min(means), 2))
                )
        for i, ds in enumerate(days.starts):
            known = [fd for fd in per_day[i] if fd.mean_c is not None]
            n_ok = sum(1 for fd in known if fd.mean_c is not None and fd.mean_c >= min_c)
            summary.rows.append(
                [
                    bld.id,
                    datetime.fromtimestamp(ds, zone).date().isoformat(),
                    len(rooms),
                    len(known),
                    n_ok,
                    round(100.0 * n_ok / len(known), 2) if known else None,
                    min_c,
                ]
            )
    if not n_flats:
        raise ValueError("no heated building has a flat with a room_tag: nothing to report")
    if not n_known:
        raise ValueError(
            f"no room temperature of any of the {n_flats} flats in {p.label}: "
            "the period lies outside the stored history"
        )
    ranked.sort(key=lambda r: (-r[2], -r[3], r[1]))
    under = Sheet(
        "under-heated",
        [
            Column("building"),
            Column("flat"),
            Column("below", "h", True),
            Column("days below minimum"),
            Column("lowest day mean", "degC"),
        ],
        rows=[list(r) for r in ranked],
        chart=(1, [2]),
    )
    return [summary, under, flats]
