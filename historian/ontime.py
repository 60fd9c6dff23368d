"""On-time of many boolean tags at once from the SQLite historian (billing's hot path).

``on_time_many(path, ids, start, end, split)`` answers ``on_time_detail`` for thousands of tags
with one aggregate SQL query per window segment instead of one query per tag: the raw head and
tail of the window come from the samples, whole hours and days from the rollups. Same rules as
``historian.compute.on_time``: bad samples and the time before the first sample are unknown.

Each row of a segment (a sample, or a rollup row) accounts for its own inside time plus the gap
to the next row of its segment, during which its last value (``carry``) is in force. For
samples, finding that next sample is an index seek, needed only for samples whose carry is
"on" or unknown. Day rows carry the link to their previous row (``carry_in``, ``gap_in``,
kept by ``historian.merge``), so the gaps of a day segment are plain sums: the caller takes
out the first row's gap (the segment head covers it) and adds the last row's gap to the
segment end, from the first and last rows (one seek each). An hour segment (at most 23 hours
at each end of the window) reads its stored hour rows and the samples of the hours without
one (an hour of a single sample has no row), ordered with a window function.

The value in force at each segment start chains from the previous segment; the value in force
at ``start`` is one seek per tag.

Billing's estimates: ``unknown_spans_many`` finds the spans where tags had no good value with
one query; ``on_time_windows`` answers many small ``(tags, start, end)`` windows at once. Both
take a historian (the SQLite one, also behind a spool; others are asked the slow way), have it
merge its pending batches first (``flush``), then read on connections of their own. Queries run
on read-only connections (WAL readers), split over a few threads: sqlite3 releases the GIL while
a query runs.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from historian.base import Historian, OnTime, check_range

if TYPE_CHECKING:
    from historian.sqlite import SqliteHistorian

__all__ = ["on_time_many", "on_time_windows", "sqlite_backend", "unknown_spans_many"]

_TABLE = {3600: "rollup_1h", 86400: "rollup_1d"}

#: The first / last row of ``{t}`` in the segment.
_EDGE_ROLLUP = (
    "(SELECT x.bucket FROM {t} x WHERE x.tag_id = g.tag_id AND x.bucket >= :a AND x.bucket < :b"
    " ORDER BY x.bucket {order} LIMIT 1)"
)

# Per tag: on seconds and known seconds of its rows, each with the gap from the previous row
# (``gap_in``) while its carry (``carry_in``) was in force; the caller takes out the first
# row's gap (the head of the segment covers it) and adds the last row's gap to the segment
# end, from the first and last rows (one seek each).
_ROLLUP_SQL = """
SELECT g.tag_id, f.first_ts, f.carry_in, f.gap_in, g.o, g.k, l.carry, l.last_ts FROM (
  SELECT r.tag_id AS tag_id,
    TOTAL(COALESCE(r.on_s, 0) + CASE WHEN r.carry_in != 0 THEN r.gap_in ELSE 0 END) AS o,
    TOTAL(COALESCE(r.known_s, 0) + CASE WHEN r.carry_in IS NOT NULL THEN r.gap_in ELSE 0 END)
      AS k
  FROM {t} r
  WHERE r.tag_id IN (SELECT value FROM json_each(:ids)) AND r.bucket >= :a AND r.bucket < :b
  GROUP BY r.tag_id
) g
JOIN {t} f ON f.tag_id = g.tag_id AND f.bucket = {first}
JOIN {t} l ON l.tag_id = g.tag_id AND l.bucket = {last}
"""


def _rollup_sql(table: str) -> str:
    return _ROLLUP_SQL.format(
        t=table,
        first=_EDGE_ROLLUP.format(t=table, order="ASC"),
        last=_EDGE_ROLLUP.format(t=table, order="DESC"),
    )


# Per tag: the hour segment's items (stored hour rows, and the samples of hours with no stored
# row, which hold one sample each) in time order; each adds its own on / known seconds and the
# time to the next item (or the segment end) while its carry is in force.
_HOUR_SQL = """
SELECT tag_id, MIN(f),
  TOTAL(o + CASE WHEN c != 0 THEN nx - l ELSE 0 END),
  TOTAL(k + CASE WHEN c IS NOT NULL THEN nx - l ELSE 0 END),
  MAX(CASE WHEN nx_row IS NULL THEN c END)
FROM (
  SELECT tag_id, f, l, c, o, k, LEAD(f, 1, :b) OVER w AS nx, LEAD(f) OVER w AS nx_row
  FROM (
    SELECT r.tag_id AS tag_id, r.first_ts AS f, r.last_ts AS l, r.carry AS c,
      COALESCE(r.on_s, 0) AS o, COALESCE(r.known_s, 0) AS k
    FROM rollup_1h r
    WHERE r.tag_id IN (SELECT value FROM json_each(:ids)) AND r.bucket >= :a AND r.bucket < :b
    UNION ALL
    SELECT s.tag_id, s.ts, s.ts, CASE WHEN {known} THEN s.value END, 0, 0
    FROM samples s
    WHERE s.tag_id IN (SELECT value FROM json_each(:ids)) AND s.ts >= :a AND s.ts < :b
      AND NOT EXISTS (SELECT 1 FROM rollup_1h x WHERE x.tag_id = s.tag_id
                      AND x.bucket <= s.ts AND x.bucket > s.ts - 3600)
  ) WINDOW w AS (PARTITION BY tag_id ORDER BY f)
) GROUP BY tag_id
"""

_NEXT_RAW = (
    "(SELECT MIN(x.ts) FROM samples x WHERE x.tag_id = s.tag_id AND x.ts > s.ts AND x.ts < :b)"
)
_CARRY_OF = "CASE WHEN {s}.quality < 2 THEN {s}.value END"

_RAW_SQL = f"""
SELECT g.tag_id, g.f, g.o, -g.u, {_CARRY_OF.format(s="l")} FROM (
  SELECT s.tag_id AS tag_id, MIN(s.ts) AS f, MAX(s.ts) AS mt,
    TOTAL(CASE WHEN {_CARRY_OF.format(s="s")} != 0 THEN COALESCE({_NEXT_RAW}, :b) - s.ts END) AS o,
    TOTAL(CASE WHEN {_CARRY_OF.format(s="s")} IS NULL THEN COALESCE({_NEXT_RAW}, :b) - s.ts END)
      AS u
  FROM samples s
  WHERE s.tag_id IN (SELECT value FROM json_each(:ids)) AND s.ts >= :a AND s.ts < :b
  GROUP BY s.tag_id
) g JOIN samples l ON l.tag_id = g.tag_id AND l.ts = g.mt
"""

# The value in force at :t: the last sample before it, or the carry of the last hour row before
# :t's hour (:h) when that row ends later (``purge`` dropped the samples; as
# ``historian.sqlite_query.carry_in``).
_CARRY_SQL = """
SELECT j.value, s.ts, CASE WHEN s.quality < 2 THEN s.value END, r.last_ts, r.carry
FROM json_each(:ids) j
LEFT JOIN samples s ON s.tag_id = j.value AND s.ts = (
  SELECT max(x.ts) FROM samples x WHERE x.tag_id = j.value AND x.ts < :t)
LEFT JOIN rollup_1h r ON r.tag_id = j.value AND r.bucket = (
  SELECT max(y.bucket) FROM rollup_1h y WHERE y.tag_id = j.value AND y.bucket < :h)
"""

#: A sample counts as known (``historian.base.Sample.known``): not bad, numeric and finite.
_KNOWN = "({s}.quality < 2 AND {s}.value IS NOT NULL AND abs({s}.value) < 1e999)"

_SPANS_SQL = f"""
SELECT s.tag_id, s.ts,
  (SELECT MIN(x.ts) FROM samples x WHERE x.tag_id = s.tag_id AND x.ts > s.ts AND x.ts < :b
     AND {_KNOWN.format(s="x")})
FROM samples s
WHERE s.tag_id IN (SELECT value FROM json_each(:ids)) AND s.ts >= :a AND s.ts < :b
  AND NOT {_KNOWN.format(s="s")}
ORDER BY s.tag_id, s.ts
"""

_HOUR_SQL = _HOUR_SQL.format(known=_KNOWN.format(s="s"))

_HEAD_SQL = f"""
SELECT j.value,
  (SELECT {_KNOWN.format(s="s")} FROM samples s WHERE s.tag_id = j.value AND s.ts <= :a
     ORDER BY s.ts DESC LIMIT 1),
  (SELECT MIN(x.ts) FROM samples x WHERE x.tag_id = j.value AND x.ts > :a AND x.ts < :b
     AND {_KNOWN.format(s="x")})
FROM json_each(:ids) j
"""


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    con.execute("PRAGMA busy_timeout=10000")
    return con


def _chunk(
    path: Path,
    ids: list[int],
    start: float,
    end: float,
    split: Sequence[tuple[float, float, int | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """Return (on seconds, known seconds) per id of ``ids`` (in order) on a new read connection."""
    con = _connect(path)
    try:
        return _query(con, ids, start, end, split)
    finally:
        con.close()


def _query(
    con: sqlite3.Connection,
    ids: list[int],
    start: float,
    end: float,
    split: Sequence[tuple[float, float, int | None]],
) -> tuple[np.ndarray, np.ndarray]:
    pos = {tid: i for i, tid in enumerate(ids)}
    n = len(ids)
    ids_json = json.dumps(ids)
    cur = np.full(n, math.nan)
    hour = math.floor(start / 3600) * 3600
    for tid, ts, value, row_ts, row_carry in con.execute(
        _CARRY_SQL, {"ids": ids_json, "t": float(start), "h": hour}
    ):
        if ts is None and row_ts is None:
            continue
        if row_ts is not None and (ts is None or row_ts > ts):
            value = row_carry
        if value is not None:
            cur[pos[tid]] = float(value)
    on = np.zeros(n)
    known = np.zeros(n)
    for a, b, level in split:
        has = np.zeros(n, dtype=bool)
        first = np.zeros(n)
        s_on = np.zeros(n)
        s_known = np.zeros(n)
        last = np.full(n, math.nan)
        if level is None:
            params: dict[str, Any] = {"ids": ids_json, "a": float(a), "b": float(b)}
            for tid, f, o, k, c in con.execute(_RAW_SQL, params):
                i = pos[tid]
                has[i] = True
                first[i] = f
                s_on[i] = o or 0.0
                s_known[i] = (k or 0.0) + (b - f)  # the gaps telescope (module docstring)
                if c is not None:
                    last[i] = c
        elif level == 3600:
            params = {"ids": ids_json, "a": int(a), "b": int(b)}
            for tid, f, o, k, c in con.execute(_HOUR_SQL, params):
                i = pos[tid]
                has[i] = True
                first[i] = f
                s_on[i] = o
                s_known[i] = k
                if c is not None:
                    last[i] = c
        else:
            params = {"ids": ids_json, "a": int(a), "b": int(b), "w": int(level)}
            _rollup_rows(con, _TABLE[level], params, pos, has, first, s_on, s_known, last)
        ok = np.isfinite(cur)
        lit = ok & (np.where(ok, cur, 0.0) != 0)
        head = np.where(has, first - a, b - a)
        on += np.where(lit, head, 0.0) + s_on
        known += np.where(ok, head, 0.0) + s_known
        cur = np.where(has, last, cur)
    return on, known


def _rollup_rows(
    con: sqlite3.Connection,
    table: str,
    params: dict[str, Any],
    pos: dict[int, int],
    has: np.ndarray,
    first: np.ndarray,
    s_on: np.ndarray,
    s_known: np.ndarray,
    last: np.ndarray,
) -> None:
    """Fill the per-tag arrays of one rollup segment from ``_ROLLUP_SQL`` (see its comment)."""
    rows = con.execute(_rollup_sql(table), params).fetchall()
    if not rows:
        return
    idx = np.fromiter((pos[r[0]] for r in rows), dtype=np.int64, count=len(rows))
    f1, cin, gap, o, k, c, lt = (
        np.array([r[j] for r in rows], dtype=np.float64) for j in range(1, 8)
    )  # None -> nan
    b = float(params["b"])
    cin_known = ~np.isnan(cin)
    cin_on = cin_known & (np.nan_to_num(cin) != 0)
    c_known = ~np.isnan(c)
    c_on = c_known & (np.nan_to_num(c) != 0)
    tail = b - lt  # the last row's carry is in force to the segment end
    has[idx] = True
    first[idx] = f1
    s_on[idx] = o - np.where(cin_on, gap, 0.0) + np.where(c_on, tail, 0.0)
    s_known[idx] = k - np.where(cin_known, gap, 0.0) + np.where(c_known, tail, 0.0)
    last[idx] = c


def on_time_many(
    path: str | os.PathLike[str],
    ids: Sequence[int],
    start: float,
    end: float,
    split: Sequence[tuple[float, float, int | None]],
    *,
    workers: int | None = None,
    con: sqlite3.Connection | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (on seconds, known seconds) arrays aligned with ``ids`` for ``[start, end)``.

    ``split`` is the window cut into raw (level None) and rollup (3600 / 86400) segments, in
    time order, covering ``[start, end)``. ``workers`` threads (default: up to 4, one per CPU)
    each take a slice of the tags on their own read-only connection; a small request (one
    worker) runs on ``con`` when given (the caller holds its lock).
    """
    ids = list(ids)
    if not ids:
        return np.zeros(0), np.zeros(0)
    if workers is None:  # a thread pays off from about 500 tags on
        workers = max(1, min(4, os.cpu_count() or 1, len(ids) // 500 + 1))
    workers = max(1, min(workers, len(ids)))
    p = Path(path)
    if workers == 1:
        if con is not None:
            return _query(con, ids, start, end, split)
        return _chunk(p, ids, start, end, split)
    bounds = np.linspace(0, len(ids), workers + 1).astype(int)
    parts = [ids[bounds[i] : bounds[i + 1]] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="on-time-many") as pool:
        results = list(pool.map(lambda part: _chunk(p, part, start, end, split), parts))
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def sqlite_backend(historian: object) -> SqliteHistorian | None:
    """Return the ``SqliteHistorian`` behind ``historian`` (itself, or a spool's backend), or None."""
    from historian.sqlite import SqliteHistorian

    h: object = historian
    for _ in range(3):
        if isinstance(h, SqliteHistorian):
            return h
        h = getattr(h, "backend", None)
        if h is None:
            return None
    return None


def _caught_up(h: object) -> None:
    """Have the historian merge batches still pending, so our own connections see every write."""
    flush = getattr(h, "flush", None)
    if flush is not None:
        flush()


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and merged[-1][1] >= a:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def unknown_spans_many(
    historian: Historian, tags: Iterable[str], start: float, end: float
) -> dict[str, list[tuple[float, float]]]:
    """Return, per tag, the merged spans of ``[start, end)`` where it had no good value.

    A span starts at ``start`` when the value in force there is unknown (no sample, or a bad
    one), or at a bad (or non-numeric) sample, and ends at the next good sample (or ``end``).
    The SQLite historian (also behind a spool) answers with two queries on a read-only
    connection; other backends are asked tag by tag (``value_at`` and ``query_raw``).
    """
    names = list(dict.fromkeys(tags))
    if end <= start or not names:
        return {n: [] for n in names}
    h = sqlite_backend(historian)
    if h is None:
        return {n: _spans_of(historian, n, start, end) for n in names}
    _caught_up(h)
    con = _connect(h.path)
    try:
        ids = dict(
            con.execute(
                "SELECT id, name FROM tags WHERE name IN (SELECT value FROM json_each(?))",
                (json.dumps(names),),
            ).fetchall()
        )
        params = {"ids": json.dumps(list(ids)), "a": float(start), "b": float(end)}
        spans: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for tid, in_force_known, first_good in con.execute(_HEAD_SQL, params):
            if not in_force_known:
                spans[ids[tid]].append((float(start), end if first_good is None else first_good))
        for tid, ts, next_good in con.execute(_SPANS_SQL, params):
            spans[ids[tid]].append((ts, end if next_good is None else next_good))
    finally:
        con.close()
    for n in names:
        if n not in ids.values():
            spans[n] = [(float(start), float(end))]
    return {n: _merge(s) for n, s in spans.items()}


def _spans_of(
    historian: Historian, tag: str, start: float, end: float
) -> list[tuple[float, float]]:
    """Return the unknown spans of one tag through the generic historian interface."""
    spans: list[tuple[float, float]] = []
    carry = historian.value_at(tag, start)
    t = start
    good = carry is not None and carry.known
    for s in historian.query_raw(tag, start, end):
        if s.ts > t and not good:
            spans.append((t, s.ts))
        t = max(t, s.ts)
        good = s.known
    if not good and end > t:
        spans.append((t, end))
    return _merge(spans)


def on_time_windows(
    historian: Historian,
    jobs: Sequence[tuple[Sequence[str], float, float]],
    *,
    workers: int | None = None,
) -> list[dict[str, OnTime]]:
    """Return ``on_time_many`` of each ``(tags, start, end)`` job, in order.

    The SQLite historian (also behind a spool) answers on read-only connections of its own,
    the jobs spread over ``workers`` threads (default: up to 2, one per CPU), with the same
    arithmetic as ``SqliteHistorian.on_time_many``; other backends are asked job by job.
    """
    from historian.base import on_time_many as generic

    h = sqlite_backend(historian)
    if h is None or not jobs:
        return [generic(historian, tags, a, b) for tags, a, b in jobs]
    from historian.rollup import split as split_window

    _caught_up(h)
    rollups = getattr(h, "_rollups", True)
    names = list(dict.fromkeys(t for tags, _, _ in jobs for t in tags))
    with closing(_connect(h.path)) as con:
        ids = dict(
            con.execute(
                "SELECT name, id FROM tags WHERE name IN (SELECT value FROM json_each(?))",
                (json.dumps(names),),
            ).fetchall()
        )

    def run(part: Sequence[tuple[Sequence[str], float, float]]) -> list[dict[str, OnTime]]:
        out: list[dict[str, OnTime]] = []
        with closing(_connect(h.path)) as con:
            for tags, a, b in part:
                check_range(a, b)
                known_tags = [t for t in dict.fromkeys(tags) if t in ids]
                split = split_window(a, b) if rollups else [(a, b, None)]
                on, known = _query(con, [ids[t] for t in known_tags], a, b, split)
                res = {t: OnTime(0.0, 0.0, b - a) for t in tags}
                for i, t in enumerate(known_tags):
                    res[t] = OnTime(float(on[i]), float(known[i]), b - a)
                out.append(res)
        return out

    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1, len(jobs) // 8))
    if workers == 1:
        return run(jobs)
    parts = [jobs[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="on-time-windows") as pool:
        results = list(pool.map(run, parts))
    merged: list[dict[str, OnTime]] = [{} for _ in jobs]
    for w, res in enumerate(results):
        for k, r in enumerate(res):
            merged[w + k * workers] = r
    return merged
