"""Merge columnar samples into the SQLite historian's ``samples`` table and hourly/daily rollups.

Called by ``SqliteHistorian`` inside its write transaction, with its lock held. The samples are
sorted by (tag, ts, arrival) and de-duplicated (the last arrival of a (tag, ts) wins), inserted
in key order, and grouped by (tag, bucket) in numpy so each touched rollup bucket costs one
upsert per merge, however many samples it got.

Row inserts are the cost (sparse tags such as valves, about one sample an hour, need a raw row
and an hour row per sample), so ``insert_rows`` puts 64 rows into each statement (stepping a
statement costs far more than binding a value) and binds only what varies: a good sample with
no reason binds (tag, ts, value), an hour of one good sample binds (tag, bucket, value, ts) and
spells the rest as SQL literals. Computing the rollups inside SQLite (``INSERT ... SELECT`` with
``LEAD`` over the new samples) was measured at twice the cost of binding them.

Each tag's newest bucket per level is cached (``RollupCache``). A group newer than the cached
bucket is a fresh row; a group in the cached bucket whose samples all come after the cached
row's last sample is merged with it (``rollup.combine_arrays``); anything else (a late or
out-of-order sample, a replaced value) is recomputed exactly: its hour from the raw samples
(one query for all such hours), its day from its hours.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable

import numpy as np

from historian import rollup
from historian.pending import Columns

__all__ = ["TABLE", "RollupCache", "insert_rows", "merge", "new_cache"]

TABLE = {rollup.HOUR_S: "rollup_1h", rollup.DAY_S: "rollup_1d"}
_COLS = ", ".join(rollup.COLUMNS)
#: the upsert of a rollup row keeps an existing row's ``carry_in`` and ``gap_in`` (only a new
#: row takes the bound ones): they depend on the previous row, and a row appended to keeps
#: its first sample
_UPSERT = {
    level: f"INSERT INTO {t} (tag_id, bucket, {_COLS}, carry_in, gap_in)"
    for level, t in TABLE.items()
}
_ON_CONFLICT = " ON CONFLICT (tag_id, bucket) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in rollup.COLUMNS
)
_PREV = (
    "(SELECT p.{c} FROM {t} p WHERE p.tag_id = {t}.tag_id AND p.bucket < {t}.bucket"
    " ORDER BY p.bucket DESC LIMIT 1)"
)
#: ``carry_in`` and ``gap_in`` of one tag's rows from ``?2`` through the first row after
#: ``?3``, re-read from the previous rows (after a late or out-of-order sample, which may sit
#: before other rows)
_FIX_LINKS = (
    "UPDATE {t} SET carry_in = "
    + _PREV.format(c="carry", t="{t}")
    + ", gap_in = first_ts - "
    + _PREV.format(c="last_ts", t="{t}")
    + " WHERE tag_id = ?1 AND bucket >= ?2 AND bucket <= COALESCE("
    "(SELECT MIN(x.bucket) FROM {t} x WHERE x.tag_id = ?1 AND x.bucket > ?3), ?3)"
)
#: rows per INSERT statement: a multi-row VALUES halves the per-row cost of ``executemany``
ROWS_PER_STATEMENT = 64

# newest bucket per tag and level: tag id -> (bucket, row), or None when the tag has no row
RollupCache = dict[int, dict[int, tuple[int, rollup.Row] | None]]


def new_cache() -> RollupCache:
    """Return an empty cache (also what to use after a rollback or another process's commit)."""
    return {rollup.HOUR_S: {}, rollup.DAY_S: {}}


def merge(con: sqlite3.Connection, cols: Columns, cache: RollupCache | None) -> int:
    """Store ``cols`` in ``samples`` and, unless ``cache`` is None, update the rollups.

    Runs inside the caller's transaction. Return the number of distinct (tag, ts) stored.
    """
    count = len(cols)
    if count == 0:
        return 0
    order = np.lexsort((np.arange(count), cols.ts, cols.tid))
    tid, ts, v, q, r = (x[order] for x in (cols.tid, cols.ts, cols.v, cols.q, cols.r))
    keep = np.ones(count, dtype=bool)
    keep[:-1] = (tid[1:] != tid[:-1]) | (ts[1:] != ts[:-1])
    if not keep.all():
        order, tid, ts, v, q, r = (x[keep] for x in (order, tid, ts, v, q, r))
    n = len(ts)
    if cols.texts is None:
        # one 2-D tolist is far cheaper than a list per column zipped; the INTEGER columns
        # take the integral floats back as integers (column affinity)
        head = "INSERT OR REPLACE INTO samples (tag_id, ts, value, quality, reason)"
        plain = (q == 0) & (r == 0)  # good, no reason: bind 3 values instead of 5
        if plain.all():
            insert_rows(con, head, np.column_stack((tid, ts, v)), "({0}, {1}, {2}, 0, 0)")
        else:
            insert_rows(con, head, np.column_stack((tid, ts, v, q, r)))
    else:
        get = cols.texts.get
        text_col: Iterable[str | None] = [get(i) for i in order.tolist()]
        con.executemany(
            "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?)",
            zip(
                tid.tolist(), ts.tolist(), v.tolist(), text_col, q.tolist(), r.tolist(), strict=True
            ),
        )
    if cache is not None:
        for level in (rollup.HOUR_S, rollup.DAY_S):
            _update_level(con, cache[level], level, tid, ts, v, q)
    return n


def insert_rows(
    con: sqlite3.Connection,
    head: str,
    rows: np.ndarray,
    template: str | None = None,
    tail: str = "",
) -> None:
    """Run ``head VALUES (...), (...), ...`` for the rows of 2-D float array ``rows``.

    ``ROWS_PER_STATEMENT`` rows go into one statement (the rest one by one): binding the
    values of one row costs far less than stepping a statement, so this halves the cost of a
    bulk insert. ``template`` is one row's VALUES tuple with ``{c}`` for column ``c`` of
    ``rows`` and SQL literals for the rest, e.g. ``"({0}, {1}, 0)"`` (default: every column in
    order); a column may appear more than once. ``tail`` follows the VALUES (an ON CONFLICT
    clause). NaN is stored as NULL; INTEGER columns take integral floats as integers.
    """
    count, width = rows.shape
    if count == 0:
        return
    if template is None:
        template = "(" + ", ".join(f"{{{c}}}" for c in range(width)) + ")"

    def values(k: int) -> str:
        return ", ".join(
            template.format(*(f"?{j * width + c + 1}" for c in range(width))) for j in range(k)
        )

    k = ROWS_PER_STATEMENT
    whole = count // k * k
    if whole:
        con.executemany(
            f"{head} VALUES {values(k)}{tail}", rows[:whole].reshape(-1, width * k).tolist()
        )
    if whole < count:
        con.executemany(f"{head} VALUES {values(1)}{tail}", rows[whole:].tolist())


#: a rollup row of one good sample, from (tag, bucket, value, ts, carry_in, gap_in): 6 values
#: bound instead of 16
_SINGLE = "({0}, {1}, 1, {2}, {2}, {2}, {2}, {2}, {3}, {3}, {2}, 0, 0, 0, {4}, {5})"


def _insert_rollups(
    con: sqlite3.Connection,
    level: int,
    gt: np.ndarray,
    gb: np.ndarray,
    rows: np.ndarray,
    links: np.ndarray,
) -> None:
    """Upsert rollup rows; a row of one good sample (most hours of sparse tags) binds 6 values.

    ``links`` (columns ``carry_in``, ``gap_in``) only go into new rows (an existing row keeps
    its own).
    """
    v = rows[:, rollup.CARRY]
    single = (
        (rows[:, rollup.N] == 1)
        & (rows[:, rollup.FIRST_TS] == rows[:, rollup.LAST_TS])
        & (rows[:, rollup.SUM] == v)
        & (rows[:, rollup.MIN] == v)
        & (rows[:, rollup.MAX] == v)
        & (rows[:, rollup.FIRST] == v)
        & (rows[:, rollup.LAST] == v)
        & (rows[:, rollup.INTEGRAL] == 0)
        & (rows[:, rollup.KNOWN] == 0)
        & (rows[:, rollup.ON] == 0)
    )
    if single.any():
        s = np.flatnonzero(single)
        insert_rows(
            con,
            _UPSERT[level],
            np.column_stack((gt[s], gb[s], v[s], rows[s, rollup.FIRST_TS], links[s])),
            _SINGLE,
            _ON_CONFLICT,
        )
        rest = np.flatnonzero(~single)
        gt, gb, rows, links = gt[rest], gb[rest], rows[rest], links[rest]
    insert_rows(con, _UPSERT[level], np.column_stack((gt, gb, rows, links)), None, _ON_CONFLICT)


def _update_level(
    con: sqlite3.Connection,
    cache: dict[int, tuple[int, rollup.Row] | None],
    level: int,
    tid: np.ndarray,
    ts: np.ndarray,
    v: np.ndarray,
    q: np.ndarray,
) -> None:
    bucket = (ts // level).astype(np.int64) * level
    change = np.ones(len(ts), dtype=bool)
    change[1:] = (tid[1:] != tid[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(change)
    rows = rollup.group_stats(ts, v, q, starts)
    gt = tid[starts]
    gb = bucket[starts]
    # one entry per tag (groups are sorted by tag, then bucket)
    tag_first = np.flatnonzero(np.concatenate([[True], gt[1:] != gt[:-1]]))
    utags = gt[tag_first].tolist()
    missing = [t for t in utags if t not in cache]
    if missing:
        _load_latest(con, cache, level, missing)
    cached = [cache[t] for t in utags]
    ng = len(gt)
    per_tag = np.diff(np.append(tag_first, ng))
    c_bucket = np.repeat([-1 if c is None else c[0] for c in cached], per_tag)
    newer = gb > c_bucket
    same = gb == c_bucket
    fixed = newer.copy()
    if same.any():
        # at most one group per tag is in the cached bucket
        gi = np.flatnonzero(same)
        old = np.array([cache[t][1] for t in gt[gi].tolist()])  # type: ignore[index]
        appendable = rows[gi, rollup.FIRST_TS] > old[:, rollup.LAST_TS]
        mi = gi[appendable]
        if len(mi):
            rows[mi] = rollup.combine_arrays(old[appendable], rows[mi])
            fixed[mi] = True
    redo = np.flatnonzero(~fixed)
    if len(redo):
        if level == rollup.HOUR_S:
            rows[redo] = _recompute_hours(con, gt[redo], gb[redo])
        else:
            for i in redo.tolist():
                rows[i] = _recompute_day(con, int(gt[i]), int(gb[i]))
    # carry_in / gap_in of a new row: from the tag's previous group here, or from its cached
    # newest row for its first group (a row appended to keeps its own: the upsert ignores it)
    prev = np.empty((ng, 2))
    prev[1:] = rows[:-1][:, [rollup.CARRY, rollup.LAST_TS]]
    prev[tag_first] = [
        (math.nan, math.nan) if c is None else (c[1][rollup.CARRY], c[1][rollup.LAST_TS])
        for c in cached
    ]
    links = np.column_stack((prev[:, 0], rows[:, rollup.FIRST_TS] - prev[:, 1]))
    # the newest group of each tag becomes its cached row when it is at least as new
    tag_last = np.append(tag_first[1:], ng) - 1
    last_rows = rows[tag_last].tolist()  # one conversion, not one per tag
    for t, c, b, row in zip(utags, cached, gb[tag_last].tolist(), last_rows, strict=True):
        if c is None or b >= c[0]:
            cache[t] = (b, tuple(row))
    _insert_rollups(con, level, gt, gb, rows, links)
    if len(redo):
        # a late group may sit before rows of its tag: re-read carry_in from the group on
        fix = _FIX_LINKS.format(t=TABLE[level])
        tag_of = np.searchsorted(tag_first, redo, side="right") - 1
        for k in np.unique(tag_of).tolist():
            con.execute(fix, (utags[k], int(gb[redo[tag_of == k]].min()), int(gb[tag_last[k]])))


def _load_latest(
    con: sqlite3.Connection,
    cache: dict[int, tuple[int, rollup.Row] | None],
    level: int,
    tags: list[int],
) -> None:
    """Fill the cache with the newest row of each tag (one query; SQLite's max() bare columns)."""
    for t in tags:
        cache[t] = None
    for chunk in range(0, len(tags), 50_000):
        sql = (
            f"SELECT tag_id, max(bucket), {_COLS} FROM {TABLE[level]} "
            "WHERE tag_id IN (SELECT value FROM json_each(?)) GROUP BY tag_id"
        )
        for row in con.execute(sql, (json.dumps(tags[chunk : chunk + 50_000]),)):
            cache[int(row[0])] = (int(row[1]), rollup.row_from_db(row[2:]))


def _recompute_hours(con: sqlite3.Connection, tids: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Return the rows of hours ``(tids[i], buckets[i])`` rebuilt from their raw samples."""
    ranges = json.dumps(
        [[t, b, b + rollup.HOUR_S] for t, b in zip(tids.tolist(), buckets.tolist(), strict=True)]
    )
    data = np.array(
        con.execute(
            "SELECT j.key, s.ts, s.value, s.quality FROM json_each(?) j CROSS JOIN samples s "
            "ON s.tag_id = json_extract(j.value, '$[0]') AND s.ts >= json_extract(j.value, '$[1]') "
            "AND s.ts < json_extract(j.value, '$[2]')",
            (ranges,),
        ).fetchall(),
        dtype=np.float64,
    ).reshape(-1, 4)
    data = data[np.lexsort((data[:, 1], data[:, 0]))]
    key = data[:, 0].astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else key
    out = rollup.empty_rows(len(tids))
    if len(key):
        stats = rollup.group_stats(data[:, 1], data[:, 2], data[:, 3].astype(np.int64), starts)
        out[key[starts]] = stats
    return out


def _recompute_day(con: sqlite3.Connection, tid: int, bucket: int) -> np.ndarray:
    """Return the row of one day rebuilt from its hour rows (written earlier in this merge)."""
    hours = con.execute(
        f"SELECT {_COLS} FROM rollup_1h WHERE tag_id = ? AND bucket >= ? AND bucket < ? "
        "ORDER BY bucket",
        (tid, bucket, bucket + rollup.DAY_S),
    ).fetchall()
    return np.array(rollup.combine_all([rollup.row_from_db(h) for h in hours]))
