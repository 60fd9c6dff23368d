"""Meter readings as a cumulative-energy curve, from the historian or from billing readings.

A meter's readings ``(ts, value)`` become a piecewise-linear curve of energy used since the
first reading: each step adds ``new - prev``; a decrease is a counter reset (adds ``new``, the
rule of ``historian.base``); a meter replacement at ``r`` between two readings adds
``old_final - prev`` at ``r`` and ``new - new_initial`` after it. The energy of any interval is
the difference of the curve at its ends (``np.interp``), so an interval between two readings
is split across tariff bands, months and billing periods in proportion to time, and bills of
adjacent periods add up exactly. Outside the readings the curve is flat: no data, no energy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from historian.base import Replacement

if TYPE_CHECKING:
    from billing.ledger import Ledger
    from historian.base import Historian

__all__ = [
    "Curve",
    "HistorianReadings",
    "LedgerReadings",
    "ReadingSource",
    "build_curve",
    "step_increments",
]

#: How far past a window's end a source looks for the next reading (interpolation partner).
LOOKAHEAD_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class Curve:
    """Cumulative energy (kWh) at times ``ts`` (sorted); linear in between, flat outside."""

    ts: np.ndarray
    cum: np.ndarray

    def at(self, t: np.ndarray | float) -> np.ndarray:
        """Return the cumulative energy at time(s) ``t``."""
        if len(self.ts) == 0:
            return np.zeros(np.shape(t))
        return np.interp(t, self.ts, self.cum)

    def energy(self, start: float, end: float) -> float:
        """Return the energy used in ``[start, end)`` (kWh)."""
        if len(self.ts) < 2:
            return 0.0
        a, b = np.interp([start, end], self.ts, self.cum)
        return float(b - a)

    @property
    def last_ts(self) -> float | None:
        """Time of the last reading (None without readings)."""
        return float(self.ts[-1]) if len(self.ts) else None


def step_increments(v: np.ndarray) -> np.ndarray:
    """Return the increase of each step of counter values ``v`` (reset: the new value)."""
    if len(v) < 2:
        return np.zeros(0)
    d = np.diff(v)
    return np.where(d >= 0, d, v[1:])


def build_curve(
    ts: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    replacements: Sequence[Replacement] = (),
) -> Curve:
    """Return the cumulative curve of readings (sorted by time, good values only)."""
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v) & np.isfinite(t)
    t, v = t[keep], v[keep]
    if len(t) == 0:
        return Curve(t, v)
    inc = step_increments(v)
    reps = sorted((r for r in replacements if t[0] < r.ts <= t[-1]), key=lambda r: r.ts)
    if not reps:
        return Curve(t, np.concatenate([[0.0], np.cumsum(inc)]))
    # steps holding a replacement: rebuilt with a curve point at each replacement
    pts_t: list[float] = [float(t[0])]
    pts_c: list[float] = [0.0]
    pair = np.searchsorted(t, [r.ts for r in reps], side="left")  # step (pair-1, pair)
    by_step: dict[int, list[Replacement]] = {}
    for r, p in zip(reps, pair.tolist(), strict=True):
        by_step.setdefault(p, []).append(r)
    cum = 0.0
    for i in range(1, len(t)):
        step_reps = by_step.get(i)
        if step_reps:
            cur = float(v[i - 1])
            for r in step_reps:
                cum += max(0.0, r.old_final - cur)
                cur = r.new_initial
                pts_t.append(float(r.ts))
                pts_c.append(cum)
            cum += max(0.0, float(v[i]) - cur)
        else:
            cum += float(inc[i - 1])
        pts_t.append(float(t[i]))
        pts_c.append(cum)
    tt = np.array(pts_t)
    cc = np.array(pts_c)
    # a replacement exactly at a reading time duplicates it: keep the later point
    keep2 = np.append(tt[1:] != tt[:-1], True)
    return Curve(tt[keep2], cc[keep2])


class ReadingSource(Protocol):
    """Where meter readings come from: ``curve(tag, start, end)`` covering ``[start, end)``.

    The curve holds the last reading at or before ``start`` and the first after ``end`` (when
    they exist), so the edges interpolate.
    """

    def curve(self, tag: str, start: float, end: float) -> Curve: ...


class HistorianReadings:
    """Readings from the historian: every good sample of the meter's energy tag.

    ``replacements(tag)`` returns the meter replacements of a tag (the ledger records them;
    the historian only applies them inside ``delta``).
    """

    def __init__(
        self,
        historian: Historian,
        replacements: Callable[[str], Sequence[Replacement]] | None = None,
    ) -> None:
        self.historian = historian
        self._replacements = replacements

    def curve(self, tag: str, start: float, end: float) -> Curve:
        """Return the curve of ``tag`` over ``[start, end)`` (see ``ReadingSource``)."""
        h = self.historian
        ts: list[float] = []
        vs: list[float] = []
        before = h.value_at(tag, start, include_bad=False)
        if before is not None and before.numeric is not None:
            ts.append(before.ts)
            vs.append(before.numeric)
        for s in h.query_raw(tag, start, end, include_bad=False):
            x = s.numeric
            if x is not None and math.isfinite(x) and (not ts or s.ts > ts[-1]):
                ts.append(s.ts)
                vs.append(x)
        for s in h.query_raw(tag, end, end + LOOKAHEAD_S, include_bad=False):
            x = s.numeric
            if x is not None and math.isfinite(x):
                ts.append(s.ts)
                vs.append(x)
                break
        reps = self._replacements(tag) if self._replacements is not None else ()
        return build_curve(ts, vs, reps)


class LedgerReadings:
    """Readings from the billing readings table (taken by the scheduler every 30 minutes)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def curve(self, tag: str, start: float, end: float) -> Curve:
        """Return the curve of ``tag`` over ``[start, end)`` (see ``ReadingSource``)."""
        ts, vs = self.ledger.readings_around(tag, start, end)
        return build_curve(ts, vs, self.ledger.replacements(tag))
