"""The counter rule: the increase of a cumulative counter per bucket, and how sure each bucket is.

One implementation for every backend and for both ``Historian.delta`` (one bucket) and
``Historian.delta_buckets``; a backend only fetches ``CounterData``.

**Readings.** The counter is read from the good numeric samples and from the recorded meter
replacements, each of which is two readings at its time: the old meter's final reading, then
the new meter's initial one (a sample at the same time comes after them: it is the new
meter's). The sequence starts at the reading in force at the window's start (the last one at
or before it; if there is none, the first one after it). Each step from ``prev`` to ``new``
adds:

- ``new - prev`` when the counter went up (or stayed); on a decrease ``new`` (a reset: the
  counter restarted from 0), or ``rollover - prev + new`` when the register's ``rollover`` is
  given;
- into an old meter's final reading ``max(0, old_final - prev)``; from the old meter to the new
  one nothing; from a new meter's initial reading ``max(0, new - new_initial)`` (the clamps
  are billing's, ``billing.readings.build_curve``).

A step belongs to the bucket ``edges[k] < t <= edges[k+1]`` holding its time ``t``, so the
value of a bucket is the counter at its end minus the counter at its start, each the reading
in force there (no interpolation: a step between two readings counts where the later one
is), and the buckets of a window add up to the delta of the window. A bucket that ends
before the first reading, or at it, has no value (None): the counter at its start is unknown.

**Quality.** A bucket is ``UNCERTAIN`` (with the ``GapReason``) when part of it is not known:

- ``no_data``: before the tag's first sample;
- ``comm_lost``: from a sample that is not good (bad, or not a number) to the next good one;
- ``gap``: the counter moved between two readings further apart than ``max_gap_s`` (the
  tag's expected interval, ``gap_limit_s``), or further apart than the bucket's nominal width
  across one of its edges (so a bucket without a reading inside, across which the counter
  moved, is uncertain). A stretch without samples across which the value did not change is
  *not* a gap: the recorder stores changes only, and an idle counter writes nothing;
- ``stale``: the bucket ends after the newest sample by more than ``max_gap_s`` or its
  nominal width, whichever is less: its end value is carried, and an idle counter and a silent
  one look the same.

Otherwise it is ``GOOD``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from historian.base import Replacement
from historian.buckets import Buckets
from tags.model import Quality, TagDef

if TYPE_CHECKING:
    from historian.base import Historian

__all__ = [
    "CounterData",
    "DeltaBucket",
    "GapReason",
    "consumption",
    "delta_buckets",
    "gap_limit_s",
]

# kinds of readings, in their order at equal times
_OLD, _NEW, _SAMPLE = 0, 1, 2


class GapReason(enum.StrEnum):
    """Why a delta bucket is uncertain (module docstring), most serious first."""

    NO_DATA = "no_data"
    COMM_LOST = "comm_lost"
    GAP = "gap"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class DeltaBucket:
    """The increase of a counter from ``start`` to ``end`` (None: unknown) and how sure it is."""

    start: float
    end: float
    value: float | None
    quality: Quality = Quality.GOOD
    gap: GapReason | None = None

    @property
    def reason(self) -> str | None:
        """Why the bucket is uncertain (``GapReason`` value), None when it is good."""
        return None if self.gap is None else self.gap.value


@dataclass(frozen=True, slots=True)
class CounterData:
    """What a backend fetches of one tag for the window ``[start, end]``.

    ``prior``: the last sample of any quality at or before ``start`` as ``(ts, value, good)``;
    ``base``: the last good numeric sample at or before ``start`` as ``(ts, value)``; ``ts``,
    ``v``, ``good``: every sample in ``(start, end]`` (``v`` NaN where not a number; ``good``:
    quality not bad and ``v`` finite); ``after``: the first sample after ``end``;
    ``replacements``: those at or before ``end``.
    """

    start: float
    end: float
    prior: tuple[float, float, bool] | None
    base: tuple[float, float] | None
    ts: np.ndarray
    v: np.ndarray
    good: np.ndarray
    after: tuple[float, float, bool] | None
    replacements: Sequence[Replacement] = ()

    @classmethod
    def empty(cls, start: float, end: float) -> CounterData:
        """Return the data of a tag without history."""
        z = np.zeros(0)
        return cls(start, end, None, None, z, z, np.zeros(0, dtype=bool), None)


def gap_limit_s(d: TagDef) -> float | None:
    """Return the longest stretch between two stored samples of moving counter ``d`` that is no gap.

    The recorder stores a moving value at least every ``history_max_interval_s`` (at the first
    change after it: three polls more are allowed, the stale rule). Nothing else bounds the
    stretch: the recorder stores changes only, and a counter's register moves in steps of its
    resolution (0.01 kWh at 1 kW: every 36 s, whatever the poll), so without that setting
    there is no expected interval (None: each bucket's width is the limit).
    """
    if not d.history_max_interval_s:
        return None
    return d.history_max_interval_s + (3.0 * d.poll_s if d.poll_s else 0.0)


def consumption(
    historian: Historian,
    defs: Iterable[TagDef],
    buckets: Buckets,
    *,
    rollover: float | None = None,
) -> dict[str, list[DeltaBucket]]:
    """Return ``historian.delta_buckets`` of every counter in ``defs``, each with its gap limit.

    What the API (``fn=delta``), ``scada history query --fn delta`` and the trends page call.
    Blocking: run it in a worker thread from the event loop. A backend with a
    ``delta_buckets_many`` (SQLite: stored results of closed days, ``historian.counter_days``)
    answers all of them at once, with the same figures.
    """
    many = getattr(historian, "delta_buckets_many", None)
    if many is not None:
        result: dict[str, list[DeltaBucket]] = many(
            {d.name: gap_limit_s(d) for d in defs}, buckets, rollover=rollover
        )
        return result
    return {
        d.name: historian.delta_buckets(
            d.name, buckets, rollover=rollover, max_gap_s=gap_limit_s(d)
        )
        for d in defs
    }


def _readings(d: CounterData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the readings (times, values, kinds) in order: base, replacements, good samples."""
    after_base = -math.inf if d.base is None else d.base[0]
    reps = sorted((r for r in d.replacements if after_base < r.ts <= d.end), key=lambda r: r.ts)
    gt, gv = d.ts[d.good], d.v[d.good]
    t = np.concatenate(
        [
            [] if d.base is None else [d.base[0]],
            [r.ts for r in reps],
            [r.ts for r in reps],
            gt,
        ]
    ).astype(np.float64)
    v = np.concatenate(
        [
            [] if d.base is None else [d.base[1]],
            [r.old_final for r in reps],
            [r.new_initial for r in reps],
            gv,
        ]
    ).astype(np.float64)
    k = np.concatenate(
        [
            [] if d.base is None else [_SAMPLE],
            np.full(len(reps), _OLD),
            np.full(len(reps), _NEW),
            np.full(len(gt), _SAMPLE),
        ]
    ).astype(np.int64)
    if reps:  # else already in order: the base, then the samples after start
        order = np.lexsort((k, t))
        t, v, k = t[order], v[order], k[order]
    return t, v, k


def _steps(v: np.ndarray, k: np.ndarray, rollover: float | None) -> np.ndarray:
    """Return the increase of each step between consecutive readings (module docstring)."""
    if len(v) < 2:
        return np.zeros(0)
    prev, new = v[:-1], v[1:]
    d = new - prev
    wrapped = new if rollover is None else rollover - prev + new
    step = np.where(d >= 0, d, wrapped)
    meter = (k[1:] == _OLD) | (k[:-1] == _NEW)  # into an old final / from a new initial
    step = np.where(meter, np.maximum(d, 0.0), step)
    return np.where(k[1:] == _NEW, 0.0, step)


def delta_buckets(
    d: CounterData,
    buckets: Buckets,
    *,
    rollover: float | None = None,
    max_gap_s: float | None = None,
) -> list[DeltaBucket]:
    """Return the increase and quality of every bucket (module docstring)."""
    n = len(buckets)
    if n == 0:
        return []
    edges = buckets.edges
    t, v, k = _readings(d)
    step = _steps(v, k, rollover)
    # each step in the bucket holding its time: edges[b] < t <= edges[b+1]
    b = np.searchsorted(edges, t[1:], side="left") - 1
    inside = (b >= 0) & (b < n)
    values = np.bincount(b[inside], weights=step[inside], minlength=n)[:n]
    known_from = t[0] if len(t) else math.inf
    reasons = _reasons(d, buckets, max_gap_s)
    out = []
    for i, (a, e, x) in enumerate(zip(buckets.starts, buckets.ends, values.tolist(), strict=True)):
        r = reasons[i]
        gap = None if r < 0 else _REASONS[r]
        value = None if known_from > a and known_from >= e else float(x)
        out.append(
            DeltaBucket(a, e, value, Quality.GOOD if gap is None else Quality.UNCERTAIN, gap)
        )
    return out


_REASONS = list(GapReason)


def _timeline(d: CounterData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return every sample and replacement reading around the window: (times, values, good)."""
    lo = -math.inf if d.prior is None else d.prior[0]
    reps = sorted((r for r in d.replacements if lo < r.ts), key=lambda r: r.ts)
    ends = [p for p in (d.prior, d.after) if p is not None]
    t = np.concatenate([[p[0] for p in ends], d.ts])
    v = np.concatenate([[p[1] for p in ends], d.v])
    g = np.concatenate([np.array([p[2] for p in ends], dtype=bool), d.good])
    if d.prior is None and d.after is None and not reps:
        return t, v, g
    kind = np.full(len(t), _SAMPLE)
    if reps:
        rt = [r.ts for r in reps]
        t = np.concatenate([t, rt, rt])
        v = np.concatenate([v, [r.old_final for r in reps], [r.new_initial for r in reps]])
        g = np.concatenate([g, np.ones(2 * len(reps), dtype=bool)])
        kind = np.concatenate([kind, np.full(len(reps), _OLD), np.full(len(reps), _NEW)])
    o = np.lexsort((kind, t))
    return t[o], v[o], g[o]


def _reasons(d: CounterData, buckets: Buckets, max_gap_s: float | None) -> np.ndarray:
    """Return per bucket the index of its most serious ``GapReason``, or -1 when it is known."""
    edges, widths = buckets.edges, buckets.widths
    n = len(widths)
    starts, ends = edges[:-1], edges[1:]
    worst = np.full(n, len(_REASONS))
    t, v, g = _timeline(d)

    def mark(lo: np.ndarray, hi: np.ndarray, reason: GapReason) -> None:
        """Mark the buckets overlapping the open intervals ``(lo, hi)``."""
        if not len(lo):
            return
        first = np.searchsorted(ends, lo, side="right")  # first bucket ending after lo
        last = np.searchsorted(starts, hi, side="left") - 1  # last bucket starting before hi
        ok = first <= last
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, first[ok], 1)
        np.add.at(cover, last[ok] + 1, -1)
        hit = np.cumsum(cover[:n]) > 0
        worst[hit] = np.minimum(worst[hit], _REASONS.index(reason))

    if len(t) == 0:
        mark(np.array([-math.inf]), np.array([math.inf]), GapReason.NO_DATA)
    else:
        mark(np.array([-math.inf]), t[:1], GapReason.NO_DATA)
        # comm lost: from a sample that is not good to the next one (to the end if none)
        nxt = np.append(t[1:], math.inf)
        bad = ~g
        mark(t[bad], nxt[bad], GapReason.COMM_LOST)
        # the counter moved between two good readings: longer than the expected interval...
        both = g[:-1] & g[1:]
        moved = both & (v[1:] != v[:-1])
        lo, hi = t[:-1][moved], t[1:][moved]
        long = (hi - lo) > (math.inf if max_gap_s is None else max_gap_s)
        mark(lo[long], hi[long], GapReason.GAP)
        # ... or longer than a bucket whose edge it spans
        j = np.searchsorted(t, edges, side="right") - 1  # reading at or before each edge
        has = (j >= 0) & (j < len(t) - 1)
        jj = np.where(has, j, 0)
        spans = has & (t[jj] < edges) & (t[np.minimum(jj + 1, len(t) - 1)] > edges)
        spans &= np.where(has, np.append(moved, False)[jj], False)
        length = np.where(spans, t[np.minimum(jj + 1, len(t) - 1)] - t[jj], 0.0)
        wide = np.zeros(n, dtype=bool)
        wide |= spans[:-1] & (length[:-1] > widths)  # the edge is the bucket's start
        wide |= spans[1:] & (length[1:] > widths)  # the edge is the bucket's end
        worst[wide] = np.minimum(worst[wide], _REASONS.index(GapReason.GAP))
        # the end value carried from the newest sample further than the limit
        if g[-1]:
            limit = widths if max_gap_s is None else np.minimum(widths, max_gap_s)
            stale = ends - t[-1] > limit
            worst[stale] = np.minimum(worst[stale], _REASONS.index(GapReason.STALE))
    return np.where(worst == len(_REASONS), -1, worst)
