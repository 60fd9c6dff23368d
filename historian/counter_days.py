"""Stored counter buckets: the counter rule's result of each closed day (or month), kept per tag.

A meter x day report of 10,000 meters over a month read 7.46M raw samples through the counter
rule (``historian.counter``) each time: 18.7 s. This module keeps the rule's *result* of every
closed bucket it has computed (value, ``GapReason``) in the table ``counter_bucket`` of the
SQLite historian, so the next report reads one row per meter and bucket.

**Same numbers by construction.** A stored row is what ``counter.delta_buckets`` returned for
that bucket (the one implementation); nothing is recomputed from rollups. A bucket's result
depends only on the samples from the last one at or before its start (any quality; and the
last good one, the counter's base) to the first one at or after its end (``dep_lo`` ..
``dep_hi``), on the replacements in that span, and on ``rollover`` / ``max_gap_s`` (part of the
key). So a row is:

- stored only for a *closed* bucket: one with a sample at or after its end (``dep_hi``); the
  open bucket (today, a silent meter's stale days) is always computed from raw samples, from
  the tag's first bucket without a row on (a bucket's result does not depend on where the
  window starts, so a month-to-date report reads the stored days and today's samples);
- dropped when a write (sample or replacement) lands in ``[dep_lo, dep_hi]`` of it:
  ``invalidate`` runs inside the write's transaction. A live write is newer than every
  stored ``dep_hi`` (kept in ``meta``), so the recorder's path costs one point lookup;
- served only for whole buckets (not clipped to the query window) of at least
  ``MIN_WIDTH_S`` (days, months: hourly rows would outgrow the samples), and not for the
  window's last bucket when a replacement lies in ``(end, dep_hi]``: the raw path reads the
  replacements up to the window's end only, so there it may differ and the tag is computed raw.

A purge keeps the stored rows (they keep the figures the purged samples gave). Rows are
computed on the first query of a bucket (chunks of ``CHUNK`` tags, each under the lock for a
short while, so the recorder is not held up) in a read transaction; they are stored only if
nothing was written in between (SQLite refuses to upgrade a stale snapshot), else just
returned.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from historian import counter
from historian.buckets import Buckets
from historian.counter import CounterData, DeltaBucket, GapReason
from tags.model import Quality, TagDef

if TYPE_CHECKING:
    import threading

    from historian.base import Historian

__all__ = [
    "CHUNK",
    "MIN_WIDTH_S",
    "SCHEMA",
    "DeltaTable",
    "cacheable",
    "consumption_table",
    "delta_table",
    "invalidate",
    "invalidate_one",
]

log = logging.getLogger(__name__)

#: The narrowest bucket (nominal seconds) whose results are stored: a day that loses an hour.
MIN_WIDTH_S = 23 * 3600.0
#: Tags computed per lock hold / transaction on a cold query.
CHUNK = 250
_NONE = -1.0  # rollover / max_gap_s None in the key
_HI_KEY = "counter_bucket_hi"
SCHEMA = """
CREATE TABLE IF NOT EXISTS counter_bucket (rollover REAL NOT NULL, max_gap REAL NOT NULL,
    start REAL NOT NULL, tag_id INTEGER NOT NULL, end REAL NOT NULL, value REAL,
    reason INTEGER NOT NULL, dep_lo REAL NOT NULL, dep_hi REAL NOT NULL,
    PRIMARY KEY (rollover, max_gap, start, tag_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counter_bucket_tag ON counter_bucket (tag_id, dep_hi);
"""
_NULL = 8  # in the code of a read: reason + 1, plus this when the value is NULL
# two columns, the tag id and the code in one integer: each column of each row costs Python time
_SELECT = (
    "SELECT tag_id * 16 + reason + 1 + 8 * (value IS NULL), IFNULL(value, 0.0) "
    "FROM counter_bucket WHERE rollover = ? AND max_gap = ? AND start = ? AND end = ?"
)
_INSERT = "INSERT OR REPLACE INTO counter_bucket VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM counter_bucket WHERE tag_id = ? AND dep_hi >= ? AND dep_lo <= ?"
_REASONS = list(GapReason)

Fetch = Callable[[str, float, float], CounterData]


def _key(x: float | None) -> float:
    return _NONE if x is None else float(x)


def cacheable(buckets: Buckets) -> bool:
    """Return whether ``buckets`` are served from stored rows: whole, each ``MIN_WIDTH_S`` or more."""
    if len(buckets) == 0:
        return False
    widths = buckets.widths
    return bool(np.all(widths >= MIN_WIDTH_S) and np.array_equal(np.diff(buckets.edges), widths))


def stored_hi(con: sqlite3.Connection) -> float:
    """Return the newest ``dep_hi`` ever stored (-inf when none): writes after it change nothing."""
    row = con.execute("SELECT value FROM meta WHERE key = ?", (_HI_KEY,)).fetchone()
    return -math.inf if row is None else float(row[0])


def invalidate(con: sqlite3.Connection, tid: np.ndarray, ts: np.ndarray) -> int:
    """Drop the stored buckets that samples ``(tid[i], ts[i])`` may change; return the rows dropped.

    Call inside the write's transaction. Costs one point lookup when every sample is newer
    than every stored bucket's ``dep_hi`` (the recorder's case).
    """
    if not len(ts) or float(np.min(ts)) > stored_hi(con):
        return 0
    order = np.argsort(tid, kind="stable")
    t, s = tid[order], ts[order]
    cut = np.flatnonzero(np.diff(t)) + 1
    starts = np.concatenate([[0], cut])
    lo = np.minimum.reduceat(s, starts)
    hi = np.maximum.reduceat(s, starts)
    args = zip(t[starts].tolist(), lo.tolist(), hi.tolist(), strict=True)
    before = con.total_changes
    con.executemany(_DELETE, args)
    return con.total_changes - before


def invalidate_one(con: sqlite3.Connection, tid: int, ts: float) -> int:
    """Drop the stored buckets of tag ``tid`` a replacement at ``ts`` may change (in a transaction)."""
    return invalidate(con, np.array([tid], dtype=np.int64), np.array([float(ts)]))


def _dependencies(d: CounterData, buckets: Buckets) -> tuple[np.ndarray, np.ndarray]:
    """Return per bucket ``dep_lo`` (-inf: none) and ``dep_hi`` (NaN: the bucket is open)."""
    starts, ends = buckets.edges[:-1], buckets.edges[1:]
    every = np.concatenate(
        [[] if d.prior is None else [d.prior[0]], d.ts, [] if d.after is None else [d.after[0]]]
    )
    good = np.concatenate([[] if d.base is None else [d.base[0]], d.ts[d.good]])
    lo = np.full(len(starts), -math.inf)
    if len(good):  # then ``every`` holds them too
        i = np.searchsorted(every, starts, side="right") - 1  # last sample at or before start
        j = np.searchsorted(good, starts, side="right") - 1  # the counter's base
        both = (i >= 0) & (j >= 0)  # else an earlier sample would change the bucket
        first = np.minimum(every[np.maximum(i, 0)], good[np.maximum(j, 0)])
        lo = np.where(both, first, -math.inf)
    k = np.searchsorted(every, ends, side="left")  # first sample at or after the end
    hi = np.where(k < len(every), np.append(every, math.nan)[k], math.nan)
    return lo.astype(np.float64), hi.astype(np.float64)


def _rows_of(
    tid: int,
    d: CounterData,
    buckets: Buckets,
    out: list[DeltaBucket],
    later_reps: np.ndarray,
    key: tuple[float, float],
) -> list[tuple]:
    """Return the rows to store of the closed buckets of one tag computed from ``d``."""
    lo, hi = _dependencies(d, buckets)
    end = float(buckets.edges[-1])
    rows = []
    for b, dl, dh in zip(out, lo.tolist(), hi.tolist(), strict=True):
        if dh != dh:  # open: no sample at or after its end
            continue
        if dh > end and np.any((later_reps > end) & (later_reps <= dh)):
            continue  # a replacement after the window that this computation did not read
        reason = -1 if b.gap is None else _REASONS.index(b.gap)
        rows.append((*key, b.start, tid, b.end, b.value, reason, dl, dh))
    return rows


@dataclass(frozen=True, slots=True)
class DeltaTable:
    """``delta_buckets`` of many tags as arrays: row ``i`` is ``tags[i]``, column ``k`` bucket ``k``.

    ``value`` is NaN where the bucket's value is None; ``gap`` the index of the
    ``GapReason`` in ``list(GapReason)``, -1 for a good bucket.
    """

    tags: list[str]
    buckets: Buckets
    value: np.ndarray
    gap: np.ndarray

    @classmethod
    def of(cls, series: Mapping[str, list[DeltaBucket]], buckets: Buckets) -> DeltaTable:
        """Return the table of per-tag ``DeltaBucket`` lists (a backend without stored rows)."""
        names = list(series)
        n = len(buckets)
        value = np.full((len(names), n), math.nan)
        gap = np.full((len(names), n), -1, dtype=np.int64)
        for i, name in enumerate(names):
            for k, b in enumerate(series[name]):
                if b.value is not None:
                    value[i, k] = b.value
                if b.gap is not None:
                    gap[i, k] = _REASONS.index(b.gap)
        return cls(names, buckets, value, gap)

    def reason(self, i: int, k: int) -> GapReason | None:
        """Return why bucket ``k`` of tag ``i`` is uncertain (None: it is good)."""
        g = int(self.gap[i, k])
        return None if g < 0 else _REASONS[g]

    def series(self) -> dict[str, list[DeltaBucket]]:
        """Return ``{tag: [DeltaBucket]}`` (the shape of ``Historian.delta_buckets``)."""
        starts, ends = self.buckets.starts, self.buckets.ends
        good, uncertain = Quality.GOOD, Quality.UNCERTAIN
        out = {}
        for name, vs, gs in zip(self.tags, self.value.tolist(), self.gap.tolist(), strict=True):
            out[name] = [
                DeltaBucket(a, e, None if v != v else v, good, None)
                if g < 0
                else DeltaBucket(a, e, None if v != v else v, uncertain, _REASONS[g])
                for a, e, v, g in zip(starts, ends, vs, gs, strict=True)
            ]
        return out


def consumption_table(
    historian: Historian, defs: Iterable[TagDef], buckets: Buckets, *, rollover: float | None = None
) -> DeltaTable:
    """Return ``counter.consumption`` of ``defs`` as a ``DeltaTable``: the same figures.

    From the backend's ``delta_table`` when it has one (SQLite), else from ``consumption``.
    """
    ds = list({d.name: d for d in defs}.values())
    table = getattr(historian, "delta_table", None)
    if table is not None:
        result: DeltaTable = table(
            {d.name: counter.gap_limit_s(d) for d in ds}, buckets, rollover=rollover
        )
        return result
    return DeltaTable.of(counter.consumption(historian, ds, buckets, rollover=rollover), buckets)


def delta_table(
    con: sqlite3.Connection,
    lock: threading.RLock,
    catch_up: Callable[[], None],
    tag_id: Callable[[str], int | None],
    fetch: Fetch,
    tags: Mapping[str, float | None],
    buckets: Buckets,
    *,
    rollover: float | None = None,
) -> DeltaTable:
    """Return ``delta_buckets`` of every tag (``{tag: max_gap_s}``), stored rows where they hold.

    ``buckets`` must be ``cacheable``. ``fetch(tag, start, end)`` is the backend's read of one
    tag for the counter rule (call with ``lock`` held, after ``catch_up``).
    """
    names = list(tags)
    edges = buckets.edges
    end = float(edges[-1])
    n = len(buckets)
    value = np.full((len(names), n), math.nan)
    gap = np.full((len(names), n), -1, dtype=np.int64)
    row_of = {name: i for i, name in enumerate(names)}
    groups: dict[float, list[str]] = {}
    for name in names:
        groups.setdefault(_key(tags[name]), []).append(name)
    with lock:
        catch_up()
        ids = {name: tag_id(name) for name in names}
        reps = _later_replacements(con, end)
    for gap_key, group in groups.items():
        key = (_key(rollover), gap_key)
        rows = np.array([row_of[name] for name in group], dtype=np.int64)
        tids = np.array([ids[name] or -1 for name in group], dtype=np.int64)
        with lock:
            catch_up()
            sub_v, sub_g, have = _read(con, key, edges, tids, value[rows], gap[rows])
        value[rows], gap[rows] = sub_v, sub_g
        # from the first bucket without a stored row on, computed raw (a bucket's result does
        # not depend on where the window starts): today's open bucket costs one day's samples
        first = np.where(have.all(axis=1), n, np.argmin(have, axis=1))
        todo: dict[int, list[str]] = {}
        for name, tid, k0 in zip(group, tids.tolist(), first.tolist(), strict=True):
            if k0 == n and tid in reps and _last_hi(con, lock, key, tid, edges) >= reps[tid].min():
                k0 = n - 1  # a replacement after the window may touch its last bucket
            if k0 < n:
                todo.setdefault(k0, []).append(name)
        for k0, todo_names in todo.items():
            sub = Buckets(edges[k0:], buckets.widths[k0:])
            for c in range(0, len(todo_names), CHUNK):
                chunk = todo_names[c : c + CHUNK]
                got = _compute(con, lock, catch_up, fetch, ids, chunk, tags, sub, rollover)
                part = DeltaTable.of(got, sub)
                idx = [row_of[name] for name in part.tags]
                value[idx, k0:], gap[idx, k0:] = part.value, part.gap
    return DeltaTable(names, buckets, value, gap)


def _last_hi(
    con: sqlite3.Connection,
    lock: threading.RLock,
    key: tuple[float, float],
    tid: int,
    edges: np.ndarray,
) -> float:
    """Return ``dep_hi`` of the stored last bucket of ``edges`` of tag ``tid``."""
    with lock:
        row = con.execute(
            "SELECT dep_hi FROM counter_bucket WHERE rollover = ? AND max_gap = ? AND start = ? "
            "AND tag_id = ?",
            (*key, float(edges[-2]), tid),
        ).fetchone()
    return math.inf if row is None else float(row[0])


def _compute(
    con: sqlite3.Connection,
    lock: threading.RLock,
    catch_up: Callable[[], None],
    fetch: Fetch,
    ids: Mapping[str, int | None],
    names: Iterable[str],
    tags: Mapping[str, float | None],
    buckets: Buckets,
    rollover: float | None,
) -> dict[str, list[DeltaBucket]]:
    """Return ``names`` computed from raw samples; store their closed buckets (module docstring)."""
    end = float(buckets.edges[-1])
    result: dict[str, list[DeltaBucket]] = {}
    rows: list[tuple] = []
    with lock:
        catch_up()
        con.execute("BEGIN")  # one snapshot for the reads and the rows stored from them
        try:
            reps = _later_replacements(con, end)
            for name in names:
                d = fetch(name, float(buckets.edges[0]), end)
                max_gap = tags[name]
                got = counter.delta_buckets(d, buckets, rollover=rollover, max_gap_s=max_gap)
                result[name] = got
                tid = ids.get(name)
                if tid is not None:
                    later = reps.get(tid, np.zeros(0))
                    rows += _rows_of(tid, d, buckets, got, later, (_key(rollover), _key(max_gap)))
            _store(con, rows)
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    return result


def _store(con: sqlite3.Connection, rows: list[tuple]) -> None:
    """Store ``rows`` and commit the read transaction; skip them if the snapshot went stale.

    A read error before this point propagates (no partial answers); only the write is optional.
    """
    try:
        if rows:
            con.executemany(_INSERT, rows)
            hi = max(r[-1] for r in rows)
            if hi > stored_hi(con):
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_HI_KEY, repr(hi)))
        con.execute("COMMIT")
    except sqlite3.OperationalError as exc:  # written in between (stale snapshot), locked
        if con.in_transaction:
            con.execute("ROLLBACK")
        log.info("counter buckets not stored this time: %s", exc)


def _later_replacements(con: sqlite3.Connection, end: float) -> dict[int, np.ndarray]:
    """Return the times of the replacements after ``end`` per tag id (there are few)."""
    out: dict[int, list[float]] = {}
    for tid, ts in con.execute("SELECT tag_id, ts FROM replacements WHERE ts > ?", (end,)):
        out.setdefault(int(tid), []).append(float(ts))
    return {k: np.array(v) for k, v in out.items()}


def _read(
    con: sqlite3.Connection,
    key: tuple[float, float],
    edges: np.ndarray,
    tids: np.ndarray,
    value: np.ndarray,
    gap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill ``value`` / ``gap`` (rows: ``tids``) from the stored buckets; return them and which are stored.

    One statement per bucket (its key prefix and its end), three columns per row: each
    column of each row costs Python time.
    """
    n = len(edges) - 1
    have = np.zeros(value.shape, dtype=bool)
    pos = np.full(int(tids.max(initial=0)) + 1, -1, dtype=np.int64)
    pos[tids[tids >= 0]] = np.flatnonzero(tids >= 0)
    for k in range(n):
        cur = con.execute(_SELECT, (*key, float(edges[k]), float(edges[k + 1])))
        flat = np.fromiter(chain.from_iterable(cur), dtype=np.float64).reshape(-1, 2)
        packed = flat[:, 0].astype(np.int64)
        t = packed >> 4
        inside = t < len(pos)
        t, flat, packed = t[inside], flat[inside], packed[inside]
        r = pos[t]
        mine = r >= 0
        r, flat, code = r[mine], flat[mine], packed[mine] & 15
        value[r, k] = np.where(code >= _NULL, math.nan, flat[:, 1])
        gap[r, k] = code % _NULL - 1
        have[r, k] = True
    return value, gap, have
