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

import numpy as np

from historian.base import AggFn, AggSeries
from historian.compute import BAD

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


def aligned_level(start: float, end: float, every_s: float | None) -> int | None:
    """Return the rollup level (bucket seconds) that can answer this window, or None."""
    for level in LEVELS:
        if start % level == 0 and end % level == 0 and (every_s is None or every_s % level == 0):
            return level
    return None


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


def dense(
    buckets: np.ndarray,
    rows: np.ndarray,
    carry0: float,
    start: float,
    end: float,
    level: int,
    columns: Sequence[str] = COLUMNS,
) -> dict[str, np.ndarray]:
    """Spread rollup rows over every level bucket of ``[start, end)`` with the carried-in values.

    ``buckets`` are the row bucket starts (sorted, inside the window) and ``rows`` the matching
    2-D array of ``columns`` (a subset of ``COLUMNS``; what is left out comes back as NaN);
    ``carry0`` is the value in force at ``start`` (NaN if unknown). Returns arrays per level
    bucket: n, sum, min, max, first, last and, when the step columns were given, integral,
    known, on.
    """
    h = int((end - start) // level)
    idx = ((buckets - start) // level).astype(np.int64)
    has = np.zeros(h, dtype=bool)
    has[idx] = True
    full = np.full((h, len(COLUMNS)), math.nan)
    full[:, N] = 0.0
    if len(idx):
        full[np.ix_(idx, [COLUMNS.index(c) for c in columns])] = rows
    out = {
        "n": full[:, N],
        "sum": full[:, SUM],
        "min": full[:, MIN],
        "max": full[:, MAX],
        "first": full[:, FIRST],
        "last": full[:, LAST],
    }
    if "carry" not in columns:
        return out
    last_nonempty = np.maximum.accumulate(np.where(has, np.arange(h), -1))
    prev = np.concatenate([[-1], last_nonempty[:-1]])
    carries = np.append(full[:, CARRY], carry0)  # index -1 picks carry0
    cin = carries[prev]
    cin_k = ~np.isnan(cin)
    cin0 = np.where(cin_k, cin, 0.0)
    b_start = start + level * np.arange(h, dtype=np.float64)
    head = full[:, FIRST_TS] - b_start
    tail = (b_start + level) - full[:, LAST_TS]
    c = full[:, CARRY]
    c_k = ~np.isnan(c)
    c0 = np.where(c_k, c, 0.0)
    with np.errstate(invalid="ignore"):
        integral = np.where(
            has,
            cin0 * np.where(has, head, 0)
            + np.nan_to_num(full[:, INTEGRAL])
            + c0 * np.where(has, tail, 0),
            cin0 * level,
        )
        known = np.where(
            has,
            np.where(cin_k, head, 0) + np.nan_to_num(full[:, KNOWN]) + np.where(c_k, tail, 0),
            np.where(cin_k, level, 0),
        )
        on = np.where(
            has,
            np.where(cin_k & (cin0 != 0), head, 0)
            + np.nan_to_num(full[:, ON])
            + np.where(c_k & (c0 != 0), tail, 0),
            np.where(cin_k & (cin0 != 0), level, 0),
        )
    out["integral"] = integral.astype(np.float64)
    out["known"] = known.astype(np.float64)
    out["on"] = on.astype(np.float64)
    return out


def aggregate_dense(
    d: dict[str, np.ndarray], start: float, every_s: float, level: int, fn: AggFn
) -> AggSeries:
    """Group dense level buckets into query buckets of ``every_s`` and apply ``fn``."""
    h = len(d["n"])
    k = int(every_s // level)
    nq = -(-h // k)
    pad = nq * k - h

    def grid(name: str, fill: float) -> np.ndarray:
        return np.concatenate([d[name], np.full(pad, fill)]).reshape(nq, k)

    starts = (start + every_s * np.arange(nq, dtype=np.float64)).tolist()
    n = grid("n", 0.0)
    nq_n = n.sum(axis=1)
    if fn is AggFn.COUNT:
        return list(zip(starts, nq_n.tolist(), strict=True))
    if fn is AggFn.TWA:
        integral = grid("integral", 0.0).sum(axis=1)
        known = grid("known", 0.0).sum(axis=1)
        return [
            (b, (i / kn) if kn > 0 else None)
            for b, i, kn in zip(starts, integral.tolist(), known.tolist(), strict=True)
        ]
    has = n > 0
    if fn is AggFn.SUM or fn is AggFn.MEAN:
        total = np.where(has, grid("sum", 0.0), 0.0).sum(axis=1)
        out = total if fn is AggFn.SUM else total / np.maximum(nq_n, 1)
    elif fn is AggFn.MIN:
        out = np.where(has, grid("min", np.inf), np.inf).min(axis=1)
    elif fn is AggFn.MAX:
        out = np.where(has, grid("max", -np.inf), -np.inf).max(axis=1)
    elif fn is AggFn.FIRST:
        pos = np.argmax(has, axis=1)
        out = grid("first", math.nan)[np.arange(nq), pos]
    elif fn is AggFn.LAST:
        pos = k - 1 - np.argmax(has[:, ::-1], axis=1)
        out = grid("last", math.nan)[np.arange(nq), pos]
    else:  # pragma: no cover - AggFn is closed
        raise ValueError(fn)
    return [
        (b, float(x) if c > 0 else None)
        for b, x, c in zip(starts, out.tolist(), nq_n.tolist(), strict=True)
    ]
