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

An hour holding a single sample has no stored row (schema version 4): its row *is* that
sample, and readers summarise it from the raw sample (``hours_from_raw``). For sparse tags
(valves: about one event an hour) this saves most rollup rows, and with them about half the
bytes and B-tree inserts of a merge. The invariant readers rely on: every (tag, hour) holding
samples has a stored row, or exactly one raw sample and no row (``purge`` stores the row
before it deletes such a sample). Stored rows win; a row is never removed.

Each tag's newest bucket per level is cached (``LevelCache``; for hours also an unstored one,
found from the tag's last raw sample before this merge's samples go in). A group newer than
the cached bucket is a fresh row (not stored when it is one sample of an hour); a group in the
cached bucket whose samples all come after the cached row's last sample is merged with it
(``rollup.combine_arrays``); anything else (a late or out-of-order sample, a replaced value) is
recomputed exactly: its hour from the raw samples (one query for all such hours), its day from
its hours. Recomputed and merged hours are stored whatever their sample count.

Day rows carry the link to the tag's previous day row (``carry_in``, ``gap_in``) for
``historian.ontime``; hour rows leave them NULL (on-time reads hour segments with a window
query over the stored rows and the single samples instead).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable

import numpy as np

from historian import rollup
from historian.pending import Columns

__all__ = [
    "TABLE",
    "LevelCache",
    "RollupCache",
    "hours_from_raw",
    "insert_rows",
    "merge",
    "new_cache",
    "store_single_hours",
]

TABLE = {rollup.HOUR_S: "rollup_1h", rollup.DAY_S: "rollup_1d"}
_COLS = ", ".join(rollup.COLUMNS)
#: the upsert of a rollup row keeps an existing row's ``carry_in`` and ``gap_in`` (only a new
#: row takes the bound ones): they depend on the previous row, and a row appended to keeps
#: its first sample
_UPSERT = {
    rollup.HOUR_S: f"INSERT INTO rollup_1h (tag_id, bucket, {_COLS})",
    rollup.DAY_S: f"INSERT INTO rollup_1d (tag_id, bucket, {_COLS}, carry_in, gap_in)",
}
_ON_CONFLICT = " ON CONFLICT (tag_id, bucket) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in rollup.COLUMNS
)
_PREV = (
    "(SELECT p.{c} FROM {t} p WHERE p.tag_id = {t}.tag_id AND p.bucket < {t}.bucket"
    " ORDER BY p.bucket DESC LIMIT 1)"
)
#: ``carry_in`` and ``gap_in`` of one tag's day rows from ``?2`` through the first row after
#: ``?3``, re-read from the previous rows (after a late or out-of-order sample, which may sit
#: before other rows)
_FIX_LINKS = (
    "UPDATE rollup_1d SET carry_in = "
    + _PREV.format(c="carry", t="rollup_1d")
    + ", gap_in = first_ts - "
    + _PREV.format(c="last_ts", t="rollup_1d")
    + " WHERE tag_id = ?1 AND bucket >= ?2 AND bucket <= COALESCE("
    "(SELECT MIN(x.bucket) FROM rollup_1d x WHERE x.tag_id = ?1 AND x.bucket > ?3), ?3)"
)
#: rows per INSERT statement: a multi-row VALUES halves the per-row cost of ``executemany``
ROWS_PER_STATEMENT = 64


class LevelCache:
    """The newest bucket and row of each tag at one level, in arrays indexed by tag id.

    ``bucket[t]`` is ``UNKNOWN`` until loaded (``_prime``), ``NONE`` when the tag has no row,
    else the bucket of ``rows[t]``. Arrays rather than a dict of tuples: a large estate
    updates tens of thousands of tags a second, and a dict of fresh tuples was hundreds of
    thousands of references the garbage collector walked on every full pass, with the event
    loop stopped (100-150 ms at 100 buildings). Tag ids are the ``tags`` table's small dense
    integers.
    """

    UNKNOWN = -2
    NONE = -1

    def __init__(self) -> None:
        self.bucket = np.full(0, self.UNKNOWN, dtype=np.int64)
        self.rows = rollup.empty_rows(0)

    def _fit(self, top: int) -> None:
        size = len(self.bucket)
        if top < size:
            return
        grow = max(top + 1, 2 * size, 1024) - size
        self.bucket = np.concatenate((self.bucket, np.full(grow, self.UNKNOWN, dtype=np.int64)))
        self.rows = np.concatenate((self.rows, rollup.empty_rows(grow)))

    def missing(self, tags: np.ndarray) -> np.ndarray:
        """Return the tags of ``tags`` (int64 ids) not loaded yet."""
        if len(tags) == 0:
            return tags
        self._fit(int(tags.max()))
        return tags[self.bucket[tags] == self.UNKNOWN]

    def buckets(self, tags: np.ndarray) -> np.ndarray:
        """Return the newest bucket of each of ``tags`` (loaded ones), ``NONE`` (-1) for none."""
        return self.bucket[tags]

    def put(self, tags: np.ndarray, buckets: np.ndarray, rows: np.ndarray) -> None:
        """Set the newest bucket and row of ``tags`` (``buckets`` ``NONE``: no row)."""
        if len(tags) == 0:
            return
        self._fit(int(tags.max()))
        self.bucket[tags] = buckets
        self.rows[tags] = rows


# the newest bucket per tag and level
RollupCache = dict[int, LevelCache]


def new_cache() -> RollupCache:
    """Return an empty cache (also what to use after a rollback or another process's commit)."""
    return {rollup.HOUR_S: LevelCache(), rollup.DAY_S: LevelCache()}


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
    if cache is not None:
        # before the samples go in: the newest hour of a tag may be an unstored single sample
        _prime(con, cache, np.unique(tid))
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


#: a rollup row of one good sample, from (tag, bucket, value, ts[, carry_in, gap_in]): 4 or 6
#: values bound instead of 14 or 16
_SINGLE = "({0}, {1}, 1, {2}, {2}, {2}, {2}, {2}, {3}, {3}, {2}, 0, 0, 0"
_SINGLE_ROW = {rollup.HOUR_S: _SINGLE + ")", rollup.DAY_S: _SINGLE + ", {4}, {5})"}


def _insert_rollups(
    con: sqlite3.Connection,
    level: int,
    gt: np.ndarray,
    gb: np.ndarray,
    rows: np.ndarray,
    links: np.ndarray | None,
) -> None:
    """Upsert rollup rows; a row of one good sample binds 4 (hour) or 6 (day) values.

    ``links`` (columns ``carry_in``, ``gap_in``; None for hours) only go into new rows (an
    existing row keeps its own).
    """
    if links is None:
        links = np.zeros((len(rows), 0))
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
            _SINGLE_ROW[level],
            _ON_CONFLICT,
        )
        rest = np.flatnonzero(~single)
        gt, gb, rows, links = gt[rest], gb[rest], rows[rest], links[rest]
    insert_rows(con, _UPSERT[level], np.column_stack((gt, gb, rows, links)), None, _ON_CONFLICT)


def _update_level(
    con: sqlite3.Connection,
    cache: LevelCache,
    level: int,
    tid: np.ndarray,
    ts: np.ndarray,
    v: np.ndarray,
    q: np.ndarray,
) -> None:
    bucket = (ts // level).astype(np.int64) * level
    change = np.ones(len(ts), dtype=bool)
    change[1:] = (tid[1:] != tid[:-1]) | (bucket[1:] != bucket[:-1])
    if level == rollup.HOUR_S:
        keep = _not_single_hours(cache, tid, bucket, change)
        if keep is not None:
            tid, ts, v, q, bucket, change = (x[keep] for x in (tid, ts, v, q, bucket, change))
    starts = np.flatnonzero(change)
    rows = rollup.group_stats(ts, v, q, starts)
    gt = tid[starts]
    gb = bucket[starts]
    # one entry per tag (groups are sorted by tag, then bucket)
    tag_first = np.flatnonzero(np.concatenate([[True], gt[1:] != gt[:-1]]))
    uids = gt[tag_first]
    utags = uids.tolist()
    cached_b = cache.buckets(uids)  # loaded by ``_prime``; NONE (-1) for no row
    cached_rows = cache.rows[uids]
    ng = len(gt)
    per_tag = np.diff(np.append(tag_first, ng))
    c_bucket = np.repeat(cached_b, per_tag)
    newer = gb > c_bucket
    same = gb == c_bucket
    fixed = newer.copy()
    if same.any():
        # at most one group per tag is in the cached bucket
        gi = np.flatnonzero(same)
        old = cache.rows[gt[gi]]
        appendable = rows[gi, rollup.FIRST_TS] > old[:, rollup.LAST_TS]
        mi = gi[appendable]
        if len(mi):
            rows[mi] = rollup.combine_arrays(old[appendable], rows[mi])
            fixed[mi] = True
    redo = np.flatnonzero(~fixed)
    if len(redo):
        if level == rollup.HOUR_S:
            rows[redo] = hours_from_raw(con, gt[redo], gb[redo])
        else:
            for i in redo.tolist():
                rows[i] = _recompute_day(con, int(gt[i]), int(gb[i]))
    links = None
    if level == rollup.DAY_S:
        # carry_in / gap_in of a new row: from the tag's previous group here, or from its
        # cached newest row for its first group (a row appended to keeps its own)
        prev = np.empty((ng, 2))
        prev[1:] = rows[:-1][:, [rollup.CARRY, rollup.LAST_TS]]
        prev[tag_first] = np.where(
            (cached_b == LevelCache.NONE)[:, None],
            math.nan,
            cached_rows[:, [rollup.CARRY, rollup.LAST_TS]],
        )
        links = np.column_stack((prev[:, 0], rows[:, rollup.FIRST_TS] - prev[:, 1]))
    # the newest group of each tag becomes its cached row when it is at least as new
    tag_last = np.append(tag_first[1:], ng) - 1
    newest = gb[tag_last] >= cached_b  # NONE (-1) is older than any bucket
    cache.put(uids[newest], gb[tag_last][newest], rows[tag_last][newest])
    if level == rollup.HOUR_S:
        # a new hour of one sample stays unstored: readers summarise that sample
        keep = np.flatnonzero(~(newer & (rows[:, rollup.FIRST_TS] == rows[:, rollup.LAST_TS])))
        if len(keep) < ng:
            gt, gb, rows = gt[keep], gb[keep], rows[keep]
    _insert_rollups(con, level, gt, gb, rows, links)
    if len(redo) and level == rollup.DAY_S:
        # a late group may sit before rows of its tag: re-read carry_in from the group on
        tag_of = np.searchsorted(tag_first, redo, side="right") - 1
        for k in np.unique(tag_of).tolist():
            con.execute(
                _FIX_LINKS, (utags[k], int(gb[redo[tag_of == k]].min()), int(gb[tag_last[k]]))
            )


def _not_single_hours(
    cache: LevelCache,
    tid: np.ndarray,
    bucket: np.ndarray,
    change: np.ndarray,
) -> np.ndarray | None:
    """Return a mask of the samples to summarise, or None for all of them.

    Leaves out the samples of new hours holding just that one sample (they get no row), but
    not a tag's newest hour, whose row becomes the cached one. Saves the statistics of most
    groups of sparse tags.
    """
    starts = np.flatnonzero(change)
    size = np.diff(np.append(starts, len(tid)))
    gt = tid[starts]
    newest = np.append(gt[1:] != gt[:-1], True)
    drop = (size == 1) & ~newest
    if not drop.any():
        return None
    drop &= bucket[starts] > _cached_buckets(cache, gt)
    keep = np.ones(len(tid), dtype=bool)
    keep[starts[drop]] = False
    return keep


def _cached_buckets(cache: LevelCache, gt: np.ndarray) -> np.ndarray:
    """Return the cached newest bucket of each group's tag (-1 when none)."""
    return cache.buckets(gt)


def _prime(con: sqlite3.Connection, cache: RollupCache, tags: np.ndarray) -> None:
    """Load the newest bucket of each tag not yet cached, per level (call before inserting)."""
    for level in (rollup.HOUR_S, rollup.DAY_S):
        missing = cache[level].missing(tags)
        if len(missing):
            _load_latest(con, cache[level], level, missing.tolist())


def _load_latest(
    con: sqlite3.Connection,
    cache: LevelCache,
    level: int,
    tags: list[int],
) -> None:
    """Fill the cache with the newest row of each tag (one query; SQLite's max() bare columns).

    For hours, the hour of the tag's last raw sample wins when it is newer than the newest
    stored row (an unstored single-sample hour); its row is summarised from the raw samples.
    """
    ids = np.asarray(tags, dtype=np.int64)
    cache.put(ids, np.full(len(ids), LevelCache.NONE), rollup.empty_rows(len(ids)))
    for chunk in range(0, len(tags), 50_000):
        part = json.dumps(tags[chunk : chunk + 50_000])
        sql = (
            f"SELECT tag_id, max(bucket), {_COLS} FROM {TABLE[level]} "
            "WHERE tag_id IN (SELECT value FROM json_each(?)) GROUP BY tag_id"
        )
        found = con.execute(sql, (part,)).fetchall()
        if found:
            cache.put(
                np.array([r[0] for r in found], dtype=np.int64),
                np.array([r[1] for r in found], dtype=np.int64),
                np.array([rollup.row_from_db(r[2:]) for r in found], dtype=np.float64),
            )
        if level != rollup.HOUR_S:
            continue
        newer: list[tuple[int, int]] = []
        for t, last_ts in con.execute(
            "SELECT j.value, (SELECT max(s.ts) FROM samples s WHERE s.tag_id = j.value) "
            "FROM json_each(?) j",
            (part,),
        ):
            if last_ts is None:
                continue
            hour = math.floor(last_ts / level) * level
            if hour > int(cache.bucket[int(t)]):  # NONE (-1) is older than any hour
                newer.append((int(t), hour))
        if newer:
            tids = np.array([t for t, _ in newer], dtype=np.int64)
            hours = np.array([h for _, h in newer], dtype=np.int64)
            cache.put(tids, hours, hours_from_raw(con, tids, hours))


def hours_from_raw(con: sqlite3.Connection, tids: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Return the rows of hours ``(tids[i], buckets[i])`` summarised from their raw samples.

    An hour without samples gets an empty row (``rollup.empty_rows``). Used for late or
    replaced samples (the hour is rebuilt) and for hours with no stored row (one sample).
    """
    if len(tids) == 0:
        return rollup.empty_rows(0)
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


def store_single_hours(con: sqlite3.Connection, tid: int, before: float) -> int:
    """Store the rows of tag ``tid``'s unstored hours with samples before ``before``.

    ``purge`` calls this before deleting those samples, so an hour of a single sample keeps its
    rollup row once its sample is gone. Return the number of rows stored.
    """
    data = np.array(
        con.execute(
            "SELECT s.ts, s.value, s.quality FROM samples s WHERE s.tag_id = ?1 AND s.ts < ?2 "
            "AND NOT EXISTS (SELECT 1 FROM rollup_1h x WHERE x.tag_id = ?1 "
            "AND x.bucket <= s.ts AND x.bucket > s.ts - 3600) ORDER BY s.ts",
            (tid, float(before)),
        ).fetchall(),
        dtype=np.float64,
    ).reshape(-1, 3)
    if len(data) == 0:
        return 0
    ts = data[:, 0]
    bucket = np.floor(ts / rollup.HOUR_S) * rollup.HOUR_S
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    rows = rollup.group_stats(ts, data[:, 1], data[:, 2].astype(np.int64), starts)
    tids = np.full(len(starts), float(tid))
    insert_rows(con, _UPSERT[rollup.HOUR_S], np.column_stack((tids, bucket[starts], rows)))
    return len(starts)


def _recompute_day(con: sqlite3.Connection, tid: int, bucket: int) -> np.ndarray:
    """Return the row of one day rebuilt from its hours (stored rows written earlier in this
    merge, and the hours of a single sample summarised from it)."""
    stored = {
        int(h[0]): rollup.row_from_db(h[1:])
        for h in con.execute(
            f"SELECT bucket, {_COLS} FROM rollup_1h WHERE tag_id = ? AND bucket >= ? "
            "AND bucket < ?",
            (tid, bucket, bucket + rollup.DAY_S),
        )
    }
    missing = np.array(
        [h for h in range(bucket, bucket + rollup.DAY_S, rollup.HOUR_S) if h not in stored],
        dtype=np.int64,
    )
    rows = hours_from_raw(con, np.full(len(missing), tid, dtype=np.int64), missing)
    for h, row in zip(missing.tolist(), rows.tolist(), strict=True):
        if row[rollup.FIRST_TS] == row[rollup.FIRST_TS]:  # not NaN: the hour holds a sample
            stored[h] = tuple(row)
    return np.array(rollup.combine_all([stored[h] for h in sorted(stored)]))
