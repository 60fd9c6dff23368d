"""On-time of many boolean tags at once from the SQLite historian (billing's hot path).

``on_time_many(path, ids, start, end, split)`` answers ``on_time_detail`` for thousands of tags
with a handful of aggregate SQL queries per window segment instead of one query per tag: the
raw head and tail of the window come from the samples, whole hours and days from the
rollups. Each row (a sample, or a rollup row) accounts for its own inside time plus the gap
to the next row of its segment (the value it leaves in force), found by a join on the next
bucket (an index seek) and, only when that bucket is empty, a correlated sub-query. The value
in force at each segment start chains from the previous segment. Same rules as
``historian.compute.on_time``: bad samples and the time before the first sample are unknown.

The queries run on their own read-only connections (WAL readers), split by tag over a few
threads: sqlite3 releases the GIL while a query runs.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["on_time_many"]

_TABLE = {3600: "rollup_1h", 86400: "rollup_1d"}

_ROLLUP_SQL = """
SELECT tag_id, MIN(first_ts),
  SUM(on_s + CASE WHEN carry != 0 THEN COALESCE(nf, :b) - last_ts ELSE 0 END),
  SUM(known_s + CASE WHEN carry IS NOT NULL THEN COALESCE(nf, :b) - last_ts ELSE 0 END),
  SUM(CASE WHEN nf IS NULL THEN carry END)
FROM (
  SELECT r.tag_id AS tag_id, r.first_ts AS first_ts, r.last_ts AS last_ts, r.carry AS carry,
    COALESCE(r.known_s, 0) AS known_s, COALESCE(r.on_s, 0) AS on_s,
    CASE WHEN n.tag_id IS NOT NULL THEN n.first_ts ELSE
      (SELECT x.first_ts FROM {t} x WHERE x.tag_id = r.tag_id AND x.bucket > r.bucket
       AND x.bucket < :b ORDER BY x.bucket LIMIT 1) END AS nf
  FROM {t} r LEFT JOIN {t} n ON n.tag_id = r.tag_id AND n.bucket = r.bucket + :level
    AND n.bucket < :b
  WHERE r.tag_id IN (SELECT value FROM json_each(:ids)) AND r.bucket >= :a AND r.bucket < :b
) GROUP BY tag_id
"""

_RAW_SQL = """
SELECT tag_id, MIN(ts),
  SUM(CASE WHEN c != 0 THEN COALESCE(nf, :b) - ts ELSE 0 END),
  SUM(CASE WHEN c IS NOT NULL THEN COALESCE(nf, :b) - ts ELSE 0 END),
  SUM(CASE WHEN nf IS NULL THEN c END)
FROM (
  SELECT s.tag_id AS tag_id, s.ts AS ts, CASE WHEN s.quality < 2 THEN s.value END AS c,
    (SELECT MIN(x.ts) FROM samples x WHERE x.tag_id = s.tag_id AND x.ts > s.ts AND x.ts < :b) AS nf
  FROM samples s
  WHERE s.tag_id IN (SELECT value FROM json_each(:ids)) AND s.ts >= :a AND s.ts < :b
) GROUP BY tag_id
"""

_CARRY_SQL = """
SELECT j.value, (SELECT CASE WHEN s.quality < 2 THEN s.value END FROM samples s
                 WHERE s.tag_id = j.value AND s.ts < :t ORDER BY s.ts DESC LIMIT 1)
FROM json_each(:ids) j
"""


def _chunk(
    path: Path,
    ids: list[int],
    start: float,
    end: float,
    split: Sequence[tuple[float, float, int | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """Return (on seconds, known seconds) per id of ``ids`` (in order) on a new read connection."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        con.execute("PRAGMA busy_timeout=10000")
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
    for tid, value in con.execute(_CARRY_SQL, {"ids": ids_json, "t": float(start)}):
        if value is not None:
            cur[pos[tid]] = float(value)
    on = np.zeros(n)
    known = np.zeros(n)
    for a, b, level in split:
        sql = _RAW_SQL if level is None else _ROLLUP_SQL.format(t=_TABLE[level])
        params = {"ids": ids_json, "a": float(a), "b": float(b), "level": level or 0}
        if level is not None:
            params["a"], params["b"] = int(a), int(b)
        rows = con.execute(sql, params).fetchall()
        has = np.zeros(n, dtype=bool)
        first = np.zeros(n)
        s_on = np.zeros(n)
        s_known = np.zeros(n)
        last = np.full(n, math.nan)
        for tid, f, o, k, c in rows:
            i = pos[tid]
            has[i] = True
            first[i] = f
            s_on[i] = o or 0.0
            s_known[i] = k or 0.0
            if c is not None:
                last[i] = c
        ok = np.isfinite(cur)
        lit = ok & (np.where(ok, cur, 0.0) != 0)
        head = np.where(has, first - a, b - a)
        on += np.where(lit, head, 0.0) + s_on
        known += np.where(ok, head, 0.0) + s_known
        cur = np.where(has, last, cur)
    return on, known


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
