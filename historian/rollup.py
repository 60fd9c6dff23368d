"""Hourly and daily rollup rows: build them from samples, merge them, answer queries from them.

A rollup row summarises the *good* numeric samples of one tag inside one bucket (bad samples
are unknown time, exactly as ``include_bad=False`` queries treat them). It depends only on the
samples inside its bucket, so a late sample recomputes one row per level and never its
neighbours. The step integral is kept *between* the bucket's first and last sample; the time
from the bucket start to the first sample (the value carried in) and from the last sample to
the bucket end (``carry``) is added at query time, which is what lets a row be merged with
later samples and lets empty buckets cost nothing.

Row tuple layout (``COLUMNS``): ``n, sum, min, max, first, last`` of the good samples (NaN when
``n == 0``); ``first_ts, last_ts`` of all samples; ``carry`` the last sample's value (NaN when it
is bad or not numeric); ``integral, known_s, on_s`` between ``first_ts`` and ``last_ts``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from historian.base import AggFn, AggSeries
from historian.compute import BAD, bucket_edges

HOUR_S = 3600
DAY_S = 86400
LEVELS = (DAY_S, HOUR_S)  # coarsest first

COLUMNS = (
    "n",
    "sum",
    "min",
    "max",
    "first",
    "last",
    "first_ts",
    "last_ts",
    "carry",
    "integral",
    "known_s",
    "on_s",
)
N, SUM, MIN, MAX, FIRST, LAST, FIRST_TS, LAST_TS, CARRY, INTEGRAL, KNOWN, ON = range(len(COLUMNS))

Row = tuple[float, ...]


def group_stats(ts: np.ndarray, v: np.ndarray, q: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Return one row per group (2-D array); groups are runs ``starts[i]:starts[i+1]``."""
    count = len(ts)
    if count == 0:
        return np.zeros((0, len(COLUMNS)))
    ends = np.append(starts[1:], count)
    g = np.repeat(np.arange(len(starts)), ends - starts)
    good = np.isfinite(v) & (q != BAD)
    vg = np.where(good, v, 0.0)
    nb = len(starts)
    n = np.bincount(g, weights=good.astype(np.float64), minlength=nb)
    total = np.bincount(g, weights=vg, minlength=nb)
    vmin = np.minimum.reduceat(np.where(good, v, np.inf), starts)
    vmax = np.maximum.reduceat(np.where(good, v, -np.inf), starts)
    idx = np.arange(count)
    first_i = np.minimum.reduceat(np.where(good, idx, count), starts)
    last_i = np.maximum.reduceat(np.where(good, idx, -1), starts)
    v_ext = np.append(v, math.nan)
    first = v_ext[first_i]
    last = v_ext[np.where(last_i < 0, count, last_i)]
    first_ts = ts[starts]
    last_ts = ts[ends - 1]
    carry = np.where(good[ends - 1], v[ends - 1], math.nan)
    # segments between consecutive samples of the same group
    same = g[1:] == g[:-1]
    dt = np.diff(ts)
    seg_good = good[:-1] & same
    gs = g[:-1]
    integral = np.bincount(gs, weights=np.where(seg_good, vg[:-1] * dt, 0.0), minlength=nb)
    known = np.bincount(gs, weights=np.where(seg_good, dt, 0.0), minlength=nb)
    on = np.bincount(gs, weights=np.where(seg_good & (vg[:-1] != 0), dt, 0.0), minlength=nb)
    empty = n == 0
    vmin = np.where(empty, math.nan, vmin)
    vmax = np.where(empty, math.nan, vmax)
    total = np.where(empty, math.nan, total)
    cols = (n, total, vmin, vmax, first, last, first_ts, last_ts, carry, integral, known, on)
    return np.column_stack(cols)


def _known(x: float) -> bool:
    return x == x  # not NaN (carry is never inf)


def combine(a: Row, b: Row) -> Row:
    """Merge row ``a`` with row ``b`` of the same bucket whose samples all come later."""
    gap = b[FIRST_TS] - a[LAST_TS]
    c = a[CARRY]
    ck = _known(c)
    na, nb = a[N], b[N]
    return (
        na + nb,
        _nsum(a[SUM], b[SUM]),
        _nmin(a[MIN], b[MIN]),
        _nmax(a[MAX], b[MAX]),
        a[FIRST] if na else b[FIRST],
        b[LAST] if nb else a[LAST],
        a[FIRST_TS],
        b[LAST_TS],
        b[CARRY],
        a[INTEGRAL] + b[INTEGRAL] + (c * gap if ck else 0.0),
        a[KNOWN] + b[KNOWN] + (gap if ck else 0.0),
        a[ON] + b[ON] + (gap if ck and c != 0 else 0.0),
    )


def combine_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised ``combine`` of 2-D row arrays (each ``a[i]`` earlier than ``b[i]``)."""
    out = np.empty_like(a)
    gap = b[:, FIRST_TS] - a[:, LAST_TS]
    c = a[:, CARRY]
    ck = ~np.isnan(c)
    c0 = np.where(ck, c, 0.0)
    out[:, N] = a[:, N] + b[:, N]
    sa, sb = a[:, SUM], b[:, SUM]
    out[:, SUM] = np.where(np.isnan(sa), sb, np.where(np.isnan(sb), sa, sa + sb))
    out[:, MIN] = np.fmin(a[:, MIN], b[:, MIN])
    out[:, MAX] = np.fmax(a[:, MAX], b[:, MAX])
    out[:, FIRST] = np.where(a[:, N] > 0, a[:, FIRST], b[:, FIRST])
    out[:, LAST] = np.where(b[:, N] > 0, b[:, LAST], a[:, LAST])
    out[:, FIRST_TS] = a[:, FIRST_TS]
    out[:, LAST_TS] = b[:, LAST_TS]
    out[:, CARRY] = b[:, CARRY]
    out[:, INTEGRAL] = a[:, INTEGRAL] + b[:, INTEGRAL] + c0 * gap
    out[:, KNOWN] = a[:, KNOWN] + b[:, KNOWN] + np.where(ck, gap, 0.0)
    out[:, ON] = a[:, ON] + b[:, ON] + np.where(ck & (c0 != 0), gap, 0.0)
    return out


def combine_all(rows: Sequence[Row]) -> Row:
    """Merge time-ordered rows of one coarser bucket (e.g. the hours of a day)."""
    out = rows[0]
    for r in rows[1:]:
        out = combine(out, r)
    return out


def _nsum(a: float, b: float) -> float:
    if a != a:
        return b
    if b != b:
        return a
    return a + b


def _nmin(a: float, b: float) -> float:
    return b if a != a else (a if b != b else min(a, b))


def _nmax(a: float, b: float) -> float:
    return b if a != a else (a if b != b else max(a, b))


def row_from_db(values: Sequence[float | None]) -> Row:
    """Return a row read from SQLite (NULL as NaN)."""
    return tuple(math.nan if x is None else float(x) for x in values)


STEP_COLUMNS = ("first_ts", "last_ts", "carry", "integral", "known_s", "on_s")
FN_COLUMNS: dict[AggFn, tuple[str, ...]] = {
    AggFn.TWA: STEP_COLUMNS,
    AggFn.COUNT: ("n",),
    AggFn.MEAN: ("n", "sum"),
    AggFn.SUM: ("n", "sum"),
    AggFn.MIN: ("n", "min"),
    AggFn.MAX: ("n", "max"),
    AggFn.FIRST: ("n", "first"),
    AggFn.LAST: ("n", "last"),
}


# -- answering windows from rollups -----------------------------------------------------------
#
# A query window is cut into *atoms*: whole days and whole hours (answered by rollup rows) and
# raw pieces at the unaligned edges (answered by the raw samples of those pieces, summarised
# into rows of the same layout with ``group_stats``). Every atom lies inside one query bucket,
# so whatever the start and bucket width, only the edge hours are read raw.


def split(start: float, end: float) -> list[tuple[float, float, int | None]]:
    """Split ``[start, end)`` into a raw head, whole hours/days (level seconds) and a raw tail."""
    parts: list[tuple[float, float, int | None]] = []
    h0 = math.ceil(start / HOUR_S) * HOUR_S
    h1 = math.floor(end / HOUR_S) * HOUR_S
    if h1 <= h0:
        return [(start, end, None)]
    d0 = math.ceil(h0 / DAY_S) * DAY_S
    d1 = math.floor(h1 / DAY_S) * DAY_S
    if start < h0:
        parts.append((start, float(h0), None))
    if d1 > d0:
        if h0 < d0:
            parts.append((float(h0), float(d0), HOUR_S))
        parts.append((float(d0), float(d1), DAY_S))
        if d1 < h1:
            parts.append((float(d1), float(h1), HOUR_S))
    else:
        parts.append((float(h0), float(h1), HOUR_S))
    if h1 < end:
        parts.append((float(h1), end, None))
    return parts


@dataclass(frozen=True, slots=True)
class Atoms:
    """The pieces of a query window, in time order, each inside one query bucket.

    ``level`` is 0 for a raw piece, else the rollup bucket seconds; ``first[k]`` is the index of
    the first atom of query bucket ``k`` (every bucket has at least one atom).
    """

    a: np.ndarray
    b: np.ndarray
    level: np.ndarray
    first: np.ndarray
    starts: list[float]

    def __len__(self) -> int:
        return len(self.a)


def plan(start: float, end: float, every_s: float) -> Atoms:
    """Cut the buckets ``[start + k*every_s, ...)`` of ``[start, end)`` into atoms."""
    edges = bucket_edges(start, end, every_s).tolist()
    bounds = [*edges, end]
    seg_a: list[float] = []
    seg_b: list[float] = []
    seg_l: list[int] = []
    seg_k: list[int] = []
    for k in range(len(edges)):
        for seg_start, seg_end, level in split(bounds[k], bounds[k + 1]):
            seg_a.append(seg_start)
            seg_b.append(seg_end)
            seg_l.append(level or 0)
            seg_k.append(k)
    sa = np.array(seg_a, dtype=np.float64)
    sb = np.array(seg_b, dtype=np.float64)
    sl = np.array(seg_l, dtype=np.int64)
    sk = np.array(seg_k, dtype=np.int64)
    counts = np.where(sl == 0, 1, ((sb - sa) // np.maximum(sl, 1)).astype(np.int64))
    total = int(counts.sum())
    seg_of = np.repeat(np.arange(len(sa)), counts)
    offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    a = sa[seg_of] + sl[seg_of] * offs
    b = np.where(sl[seg_of] == 0, sb[seg_of], a + sl[seg_of])
    k_of = sk[seg_of]
    first = np.searchsorted(k_of, np.arange(len(edges)), side="left")
    return Atoms(a, b, sl[seg_of], first, edges)


def empty_rows(count: int) -> np.ndarray:
    """Return ``count`` rows of empty atoms (no samples: n = 0, the rest NaN)."""
    full = np.full((count, len(COLUMNS)), math.nan)
    full[:, N] = 0.0
    return full


def step(full: np.ndarray, atoms: Atoms, carry0: float) -> tuple[np.ndarray, ...]:
    """Return per atom (integral of value·dt, known seconds, on seconds), step rule.

    ``full`` holds the atoms' rows (``empty_rows`` for atoms without samples); ``carry0`` is the
    value in force at the first atom's start (NaN if unknown). Inside a row the integrals are
    stored; the time from the atom start to its first sample takes the value carried in (the
    previous non-empty atom's ``carry``), the time after its last sample its own ``carry``.
    """
    h = len(full)
    has = ~np.isnan(full[:, FIRST_TS])
    last_nonempty = np.maximum.accumulate(np.where(has, np.arange(h), -1))
    prev = np.concatenate([[-1], last_nonempty[:-1]])
    carries = np.append(full[:, CARRY], carry0)  # index -1 picks carry0
    cin = carries[prev]
    cin_k = ~np.isnan(cin)
    cin0 = np.where(cin_k, cin, 0.0)
    length = atoms.b - atoms.a
    head = np.where(has, full[:, FIRST_TS] - atoms.a, 0.0)
    tail = np.where(has, atoms.b - full[:, LAST_TS], 0.0)
    c = full[:, CARRY]
    c_k = has & ~np.isnan(c)
    c0 = np.where(c_k, c, 0.0)
    integral = np.where(
        has, cin0 * head + np.nan_to_num(full[:, INTEGRAL]) + c0 * tail, cin0 * length
    )
    known = np.where(
        has,
        np.where(cin_k, head, 0.0) + np.nan_to_num(full[:, KNOWN]) + np.where(c_k, tail, 0.0),
        np.where(cin_k, length, 0.0),
    )
    lit_in = cin_k & (cin0 != 0)
    on = np.where(
        has,
        np.where(lit_in, head, 0.0)
        + np.nan_to_num(full[:, ON])
        + np.where(c_k & (c0 != 0), tail, 0.0),
        np.where(lit_in, length, 0.0),
    )
    return integral, known, on


def reduce(full: np.ndarray, atoms: Atoms, fn: AggFn, carry0: float = math.nan) -> AggSeries:
    """Return ``[(bucket_start, value or None)]`` of ``fn`` from the atoms' rows."""
    idx = atoms.first
    starts = atoms.starts
    if not starts:
        return []
    n_atom = full[:, N]
    n = np.add.reduceat(n_atom, idx)
    if fn is AggFn.COUNT:
        return list(zip(starts, n.tolist(), strict=True))
    if fn is AggFn.TWA:
        integral, known, _ = step(full, atoms, carry0)
        i_b = np.add.reduceat(integral, idx).tolist()
        k_b = np.add.reduceat(known, idx).tolist()
        return [(b, (i / k) if k > 0 else None) for b, i, k in zip(starts, i_b, k_b, strict=True)]
    has = n_atom > 0
    if fn is AggFn.SUM or fn is AggFn.MEAN:
        total = np.add.reduceat(np.where(has, full[:, SUM], 0.0), idx)
        out = total if fn is AggFn.SUM else total / np.maximum(n, 1)
    elif fn is AggFn.MIN:
        out = np.fmin.reduceat(np.where(has, full[:, MIN], math.nan), idx)
    elif fn is AggFn.MAX:
        out = np.fmax.reduceat(np.where(has, full[:, MAX], math.nan), idx)
    elif fn is AggFn.FIRST:
        pos = np.minimum.reduceat(np.where(has, np.arange(len(full)), len(full)), idx)
        out = np.append(full[:, FIRST], math.nan)[pos]
    elif fn is AggFn.LAST:
        pos = np.maximum.reduceat(np.where(has, np.arange(len(full)), -1), idx)
        out = np.append(full[:, LAST], math.nan)[np.where(pos < 0, len(full), pos)]
    else:  # pragma: no cover - AggFn is closed
        raise ValueError(fn)
    return [
        (b, float(x) if c > 0 else None)
        for b, x, c in zip(starts, out.tolist(), n.tolist(), strict=True)
    ]


def _sub_sum(r: np.ndarray, x: np.ndarray, n: np.ndarray) -> np.ndarray:
    total = np.where(r[:, N] > 0, r[:, SUM], 0.0) - np.where(x[:, N] > 0, x[:, SUM], 0.0)
    return np.where(n > 0, total, math.nan)


def later_part(r: np.ndarray, a: np.ndarray, next_ts: np.ndarray) -> np.ndarray:
    """Return the rows of the later parts B of buckets whose rows are ``r = combine(a, B)``.

    ``next_ts`` is B's first sample time (NaN when B is empty). Only the additive columns and
    the step columns are derived (min, max, first, last stay NaN): enough for count, sum,
    mean, twa and on-time.
    """
    out = empty_rows(len(r))
    b_has = ~np.isnan(next_ts)
    a_has = ~np.isnan(a[:, FIRST_TS])
    only_b = b_has & ~a_has
    out[only_b] = r[only_b]
    both = b_has & a_has
    n = r[:, N] - a[:, N]
    ck = ~np.isnan(a[:, CARRY])
    c0 = np.where(ck, a[:, CARRY], 0.0)
    gap = next_ts - a[:, LAST_TS]
    out[both, N] = n[both]
    out[both, SUM] = _sub_sum(r, a, n)[both]
    out[both, FIRST_TS] = next_ts[both]
    out[both, LAST_TS] = r[both, LAST_TS]
    out[both, CARRY] = r[both, CARRY]
    out[both, INTEGRAL] = (r[:, INTEGRAL] - a[:, INTEGRAL] - c0 * gap)[both]
    out[both, KNOWN] = (r[:, KNOWN] - a[:, KNOWN] - np.where(ck, gap, 0.0))[both]
    out[both, ON] = (r[:, ON] - a[:, ON] - np.where(ck & (c0 != 0), gap, 0.0))[both]
    return out


def earlier_part(
    r: np.ndarray, b: np.ndarray, prev_ts: np.ndarray, prev_carry: np.ndarray
) -> np.ndarray:
    """Return the rows of the earlier parts A of buckets whose rows are ``r = combine(A, b)``.

    ``prev_ts`` / ``prev_carry`` are A's last sample time (NaN when A is empty) and its good
    value (NaN when bad or not numeric). Same derived columns as ``later_part``.
    """
    out = empty_rows(len(r))
    a_has = ~np.isnan(prev_ts)
    b_has = ~np.isnan(b[:, FIRST_TS])
    only_a = a_has & ~b_has
    out[only_a] = r[only_a]
    both = a_has & b_has
    n = r[:, N] - b[:, N]
    ck = ~np.isnan(prev_carry)
    c0 = np.where(ck, prev_carry, 0.0)
    gap = b[:, FIRST_TS] - prev_ts
    out[both, N] = n[both]
    out[both, SUM] = _sub_sum(r, b, n)[both]
    out[both, FIRST_TS] = r[both, FIRST_TS]
    out[both, LAST_TS] = prev_ts[both]
    out[both, CARRY] = prev_carry[both]
    out[both, INTEGRAL] = (r[:, INTEGRAL] - b[:, INTEGRAL] - c0 * gap)[both]
    out[both, KNOWN] = (r[:, KNOWN] - b[:, KNOWN] - np.where(ck, gap, 0.0))[both]
    out[both, ON] = (r[:, ON] - b[:, ON] - np.where(ck & (c0 != 0), gap, 0.0))[both]
    return out
