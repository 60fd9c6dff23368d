"""Embedded SQLite historian: one WAL-mode file, raw samples plus hourly and daily rollups.

Layout: ``tags(id, name)``; ``samples(tag_id, ts, value REAL, text, quality, reason)`` keyed by
``(tag_id, ts)`` WITHOUT ROWID so a tag's time range is one contiguous B-tree scan (numbers go to
``value``, strings to ``text``); ``rollup_1h`` / ``rollup_1d`` keyed by ``(tag_id, bucket)`` with the
columns of ``historian.rollup.COLUMNS`` plus the link to the tag's previous row (``carry_in``: its
carry, ``gap_in``: this row's first sample time minus its last; kept for day rows, NULL in new
hour rows); ``replacements(tag_id, ts, old_final, new_initial)``;
``pending(seq, n, data, texts)``, the log of written but not yet merged batches.

Writes: one transaction per batch. A small batch (fewer than ``defer_points`` samples, the
recorder's case) is merged at once; a large one (bulk import, a collector's backlog, a
benchmark) is appended to ``pending`` as one packed row (``historian.pending``) and merged
later in big sorted chunks (``historian.merge``): when ``merge_points`` samples are pending, on
``flush()``, on ``close()``, and before *every* read, so no query ever sees stale rollups or
misses a sample. A merge moves pending rows into ``samples`` and the rollups in one transaction,
so a crash leaves either the pending rows or their merged result, never both or neither; pending
rows left by a crash or by another process are merged by the next reader.

Schema version 4: an hour holding a single sample has no ``rollup_1h`` row; readers summarise
it from that sample (``historian.merge``). Older files (every hour stored) are read as they are:
a stored row always wins, so opening a version 3 file only updates the version number.

Queries: ``query_agg`` and ``on_time_detail`` cut the window into whole days and hours
(rollups) and raw pieces at the unaligned edges (``historian.rollup.plan``), so a trend costs
about one rollup row per hour plus the raw samples of the hours its bucket edges fall into,
whatever the start and bucket width. ``delta`` and ``delta_buckets`` read the raw samples of
the span with two statements whatever the bucket count (``historian.counter``). ``purge(before)`` drops raw samples (keeping each tag's
last one before the horizon, so the value in force stays known) after storing the hour rows of
single samples it drops; rollups are kept forever.

Threading: every method may be called from any thread; one lock serialises use of the
connection. If another process commits to the same file (``scada history import`` while the
runtime runs), the rollup cache is dropped (``PRAGMA data_version``).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from operator import attrgetter
from pathlib import Path

import numpy as np

from historian import compute, counter, counter_days, rollup
from historian.base import (
    AggFn,
    AggSeries,
    BackendUnavailable,
    HistorianError,
    OnTime,
    Replacement,
    Sample,
    check_range,
)
from historian.buckets import Buckets
from historian.counter import CounterData, DeltaBucket
from historian.merge import TABLE, merge, new_cache, store_single_hours
from historian.pending import Columns, encode
from historian.sqlite_query import atom_rows, carry_in
from tags.model import Quality, Reason

log = logging.getLogger(__name__)

# 2: the pending table; 3: carry_in, gap_in of the rollup rows; 4: no hour rows of one sample;
# 5: counter_bucket (historian.counter_days; older code would not drop its rows on late writes)
SCHEMA_VERSION = 5
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    tag_id INTEGER NOT NULL, ts REAL NOT NULL, value REAL, text TEXT,
    quality INTEGER NOT NULL, reason INTEGER NOT NULL,
    PRIMARY KEY (tag_id, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1h (tag_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    {", ".join(c + " REAL" for c in rollup.COLUMNS)}, carry_in REAL, gap_in REAL,
    PRIMARY KEY (tag_id, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1d (tag_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    {", ".join(c + " REAL" for c in rollup.COLUMNS)}, carry_in REAL, gap_in REAL,
    PRIMARY KEY (tag_id, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replacements (tag_id INTEGER NOT NULL, ts REAL NOT NULL,
    old_final REAL NOT NULL, new_initial REAL NOT NULL, PRIMARY KEY (tag_id, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY, n INTEGER NOT NULL,
    data BLOB NOT NULL, texts TEXT);
"""
_SAMPLE_COLS = "ts, value, text, quality, reason"
_TAG = attrgetter("tag")
_ADDITIVE = frozenset({AggFn.COUNT, AggFn.SUM, AggFn.MEAN, AggFn.TWA})
# The counter rule's reads (``_counter_data``): the few rows around the window, by kind, and
# the good numbers of (start, end] alone, two columns: each column of each row costs Python time
_BASE, _PRIOR, _AFTER, _NOT_GOOD, _REPLACEMENT = range(5)
_GOOD = "quality < 2 AND abs(value) <= 1.7976931348623157e308"  # abs(NULL), abs(inf): not good
_FLAG = "CASE WHEN value IS NULL THEN -1 WHEN quality < 2 THEN 1 ELSE 0 END"
_COUNTER_AROUND_SQL = f"""
SELECT * FROM (SELECT {_BASE}, ts, value, 1 FROM samples WHERE tag_id = ?1 AND ts <= ?2
    AND {_GOOD} ORDER BY ts DESC LIMIT 1)
UNION ALL SELECT * FROM (SELECT {_PRIOR}, ts, IFNULL(value, 0.0), {_FLAG} FROM samples
    WHERE tag_id = ?1 AND ts <= ?2 ORDER BY ts DESC LIMIT 1)
UNION ALL SELECT * FROM (SELECT {_AFTER}, ts, IFNULL(value, 0.0), {_FLAG} FROM samples
    WHERE tag_id = ?1 AND ts > ?3 ORDER BY ts LIMIT 1)
UNION ALL SELECT {_NOT_GOOD}, ts, 0.0, 0 FROM samples
    WHERE tag_id = ?1 AND ts > ?2 AND ts <= ?3 AND NOT IFNULL({_GOOD}, 0)
UNION ALL SELECT {_REPLACEMENT}, ts, old_final, new_initial FROM replacements
    WHERE tag_id = ?1 AND ts <= ?3
"""
_COUNTER_GOOD_SQL = (
    f"SELECT ts, value FROM samples WHERE tag_id = ? AND ts > ? AND ts <= ? AND {_GOOD}"
)


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a file of an older schema up to date (version 3: add and fill the link columns).

    ``carry_in`` of a rollup row is the ``carry`` of the tag's previous row (the value in force
    at the row's start) and ``gap_in`` its ``first_ts`` minus that row's ``last_ts``; both are
    NULL on a tag's first row.
    """
    for table in TABLE.values():
        cols = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        if {"carry_in", "gap_in"} <= cols:
            continue
        log.info("%s: migrating %s to schema version 3 (carry_in, gap_in)", table, table)
        con.execute("BEGIN IMMEDIATE")
        try:
            for col in ("carry_in", "gap_in"):
                if col not in cols:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {col} REAL")
            con.execute(
                f"UPDATE {table} SET carry_in = p.c, gap_in = {table}.first_ts - p.l FROM ("
                "SELECT tag_id, bucket, LAG(carry) OVER w AS c, LAG(last_ts) OVER w AS l "
                f"FROM {table} WINDOW w AS (PARTITION BY tag_id ORDER BY bucket)) p "
                f"WHERE {table}.tag_id = p.tag_id AND {table}.bucket = p.bucket"
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _point(rows: np.ndarray) -> tuple[float, float, bool] | None:
    """Return the first ``(ts, value, flag)`` row of ``_COUNTER_AROUND_SQL`` as ``(ts, value, good)``."""
    if not len(rows):
        return None
    ts, value, flag = (float(x) for x in rows[0])
    number = flag >= 0 and math.isfinite(value)
    return ts, value if number else math.nan, number and flag > 0


class SqliteHistorian:
    """The embedded historian (see the module docstring); ``path`` is created if missing.

    ``rollups=False`` keeps raw samples only (tests compare both paths). ``defer_points``: a
    write this large goes to the pending log; ``merge_points``: pending samples merged per
    transaction, and the backlog that triggers a merge inside ``write``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        rollups: bool = True,
        defer_points: int = 5_000,
        merge_points: int = 1_000_000,
    ) -> None:
        if defer_points < 1 or merge_points < 1:
            raise ValueError("defer_points and merge_points must be >= 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.defer_points = defer_points
        self.merge_points = merge_points
        self._lock = threading.RLock()
        self._con = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA page_size=4096")  # only takes effect on a new file
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA busy_timeout=10000")
        self._con.execute("PRAGMA cache_size=-131072")  # 128 MiB: a merge touches many pages
        self._con.execute("PRAGMA temp_store=MEMORY")
        self._con.executescript(_SCHEMA)
        self._con.executescript(counter_days.SCHEMA)
        row = self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            self._con.close()
            raise HistorianError(
                f"{self.path}: written by a newer version of this software (schema {row[0]}; "
                f"this one reads up to {SCHEMA_VERSION}): upgrade, or restore a backup made "
                "before the upgrade"
            )
        _migrate(self._con)
        self._con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._rollups = rollups
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._max_tag_id = 0  # the tags table up to this id is in _ids (tags are never deleted)
        self._cache = new_cache()
        self._data_version = self._con.execute("PRAGMA data_version").fetchone()[0]
        self._pending_points = self._count_pending()
        self._load_tags()

    # -- tags ---------------------------------------------------------------------------------

    def _load_tags(self) -> None:
        """Read the tags added since the last call (by this or another process).

        Only the new rows: re-reading the whole table for every batch with a new tag made
        the first minutes of a large estate (~250k tags met a few thousand at a time)
        quadratic (issue 22).
        """
        rows = self._con.execute(
            "SELECT id, name FROM tags WHERE id > ? ORDER BY id", (self._max_tag_id,)
        ).fetchall()
        for tid, name in rows:
            self._ids[name] = tid
            self._names[tid] = name
        if rows:
            self._max_tag_id = max(self._max_tag_id, int(rows[-1][0]))

    def _tag_id(self, name: str, create: bool = False) -> int | None:
        tid = self._ids.get(name)
        if tid is None and not create:
            self._load_tags()  # another process may have added it
            tid = self._ids.get(name)
        if tid is None and create:
            cur = self._con.execute("INSERT INTO tags (name) VALUES (?)", (name,))
            tid = int(cur.lastrowid or 0)
            self._ids[name] = tid
            self._names[tid] = name
        return tid

    def tags(self) -> list[str]:
        """Return the names of every tag with stored history, sorted."""
        with self._lock:
            self._load_tags()
            return sorted(self._ids)

    # -- write --------------------------------------------------------------------------------

    def write(self, batch: Sequence[Sample]) -> None:
        """Store ``batch`` durably in one transaction (see the module docstring).

        A batch of ``defer_points`` or more samples goes to the pending log; a smaller one is
        merged at once when nothing is pending. Raise ``ValueError`` for bad samples (nothing
        stored), ``BackendUnavailable`` when the file cannot be written.
        """
        if not batch:
            return
        deferred = 0
        with self._lock:
            self._check_data_version()
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    cols = encode(batch, self._ids_for(batch))
                    counter_days.invalidate(self._con, cols.tid, cols.ts)
                    if self._pending_points == 0 and len(cols) < self.defer_points:
                        merge(self._con, cols, self._cache if self._rollups else None)
                    else:
                        data, texts = cols.pack()
                        self._con.execute(
                            "INSERT INTO pending (n, data, texts) VALUES (?, ?, ?)",
                            (len(cols), data, texts),
                        )
                        deferred = len(cols)
                    self._con.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.OperationalError as exc:  # locked, disk full, I/O error
                raise BackendUnavailable(f"{self.path}: {exc}") from exc
            self._data_version = self._con.execute("PRAGMA data_version").fetchone()[0]
            self._pending_points += deferred
            if self._pending_points >= self.merge_points:
                try:
                    self._flush_locked()
                except sqlite3.OperationalError as exc:  # the batch is stored; merge later
                    log.warning(
                        "%s: merging pending samples failed, will retry: %s", self.path, exc
                    )

    def flush(self) -> int:
        """Merge the pending log into the samples and rollups now; return the samples merged.

        Reads do this on their own before answering, so calling it is never needed for
        correctness; it moves the cost off the next query (e.g. after a bulk import).
        """
        with self._lock:
            self._check_data_version()
            try:
                return self._flush_locked()
            except sqlite3.OperationalError as exc:
                raise BackendUnavailable(f"{self.path}: {exc}") from exc

    @property
    def pending_points(self) -> int:
        """Samples written but not yet merged into ``samples`` and the rollups."""
        return self._pending_points

    def _ids_for(self, batch: Sequence[Sample]) -> list[int]:
        ids = self._ids
        try:
            return list(map(ids.__getitem__, map(_TAG, batch)))
        except KeyError:
            self._load_tags()  # another process may have added some
            new = [n for n in dict.fromkeys(map(_TAG, batch)) if n not in ids]
            if new:  # one statement for all of them, then read back just those rows
                self._con.executemany(
                    "INSERT OR IGNORE INTO tags (name) VALUES (?)", [(n,) for n in new]
                )
                self._load_tags()
            return [ids[s.tag] for s in batch]

    def _rollback(self) -> None:
        self._con.execute("ROLLBACK")
        self._cache = new_cache()
        self._ids.clear()
        self._names.clear()
        self._max_tag_id = 0
        self._load_tags()
        self._pending_points = self._count_pending()

    def _count_pending(self) -> int:
        return int(self._con.execute("SELECT coalesce(sum(n), 0) FROM pending").fetchone()[0])

    def _check_data_version(self) -> None:
        """Drop what another process's commit may have made stale (rollup cache, pending count)."""
        dv = self._con.execute("PRAGMA data_version").fetchone()[0]
        if dv != self._data_version:
            self._cache = new_cache()
            self._pending_points = self._count_pending()
            self._data_version = dv

    def _flush_locked(self) -> int:
        """Merge pending rows in chunks of about ``merge_points``, one transaction each."""
        merged = 0
        while self._pending_points > 0:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                last_seq, total = None, 0
                for seq, n in self._con.execute("SELECT seq, n FROM pending ORDER BY seq"):
                    last_seq, total = seq, total + n
                    if total >= self.merge_points:
                        break
                if last_seq is None:
                    self._con.execute("COMMIT")
                    self._pending_points = 0
                    break
                parts = [
                    Columns.unpack(data, texts)
                    for data, texts in self._con.execute(
                        "SELECT data, texts FROM pending WHERE seq <= ? ORDER BY seq", (last_seq,)
                    )
                ]
                merge(self._con, Columns.concat(parts), self._cache if self._rollups else None)
                self._con.execute("DELETE FROM pending WHERE seq <= ?", (last_seq,))
                self._con.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            merged += total
            self._pending_points = self._count_pending()
        self._data_version = self._con.execute("PRAGMA data_version").fetchone()[0]
        if merged:
            log.debug("%s: merged %d pending samples", self.path, merged)
        return merged

    def _catch_up(self) -> None:
        """Merge pending samples so a read sees every write (call with the lock held)."""
        self._check_data_version()
        if self._pending_points:
            try:
                self._flush_locked()
            except sqlite3.OperationalError as exc:
                raise BackendUnavailable(f"{self.path}: {exc}") from exc

    def record_replacement(self, tag: str, ts: float, old_final: float, new_initial: float) -> None:
        """Record that the meter behind ``tag`` was replaced at ``ts`` (see ``delta``)."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                tid = self._tag_id(tag, create=True)
                counter_days.invalidate_one(self._con, int(tid or 0), float(ts))
                self._con.execute(
                    "INSERT OR REPLACE INTO replacements VALUES (?, ?, ?, ?)",
                    (tid, float(ts), float(old_final), float(new_initial)),
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def purge(self, before: float) -> int:
        """Delete raw samples older than ``before`` (each tag keeps its last one); return the count.

        An hour whose single sample goes gets its rollup row stored first (in the same
        transaction), so rollup answers stay as they were.
        """
        deleted = 0
        with self._lock:
            self._catch_up()
            self._load_tags()
            # only the tags with samples before the cut-off, found in one pass in SQLite: a
            # large estate has hundreds of thousands of tags, most with nothing to purge
            old = self._con.execute(
                "SELECT tag_id, max(ts) FROM samples WHERE ts < ? GROUP BY tag_id",
                (float(before),),
            ).fetchall()
            for tid, cutoff in old:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    if self._rollups:
                        store_single_hours(self._con, tid, cutoff)
                    cur = self._con.execute(
                        "DELETE FROM samples WHERE tag_id = ?1 AND ts < "
                        "(SELECT max(ts) FROM samples WHERE tag_id = ?1 AND ts < ?2)",
                        (tid, float(before)),
                    )
                    deleted += cur.rowcount
                    self._con.execute("COMMIT")
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
            self._con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('purged_before', ?)", (repr(float(before)),)
            )
            self._data_version = self._con.execute("PRAGMA data_version").fetchone()[0]
        log.info("%s: purged %d raw samples before %s", self.path, deleted, before)
        return deleted

    # -- read ---------------------------------------------------------------------------------

    def _sample(self, name: str, row: Sequence) -> Sample:
        ts, value, text, quality, reason = row
        return Sample(
            name, ts, text if text is not None else value, Quality(quality), Reason(reason)
        )

    def last(self, tags: Iterable[str]) -> dict[str, Sample]:
        """Return the newest sample of each tag that has history."""
        out: dict[str, Sample] = {}
        with self._lock:
            self._catch_up()
            for name in tags:
                tid = self._tag_id(name)
                if tid is None:
                    continue
                row = self._con.execute(
                    f"SELECT {_SAMPLE_COLS} FROM samples WHERE tag_id = ? ORDER BY ts DESC LIMIT 1",
                    (tid,),
                ).fetchone()
                if row is not None:
                    out[name] = self._sample(name, row)
        return out

    def value_at(self, tag: str, t: float, *, include_bad: bool = True) -> Sample | None:
        """Return the last sample at or before ``t`` (optionally the last not-bad one)."""
        with self._lock:
            self._catch_up()
            tid = self._tag_id(tag)
            if tid is None:
                return None
            extra = "" if include_bad else " AND quality < 2"
            row = self._con.execute(
                f"SELECT {_SAMPLE_COLS} FROM samples WHERE tag_id = ? AND ts <= ?{extra} "
                "ORDER BY ts DESC LIMIT 1",
                (tid, float(t)),
            ).fetchone()
        return None if row is None else self._sample(tag, row)

    def query_raw(
        self, tag: str, start: float, end: float, *, include_bad: bool = True
    ) -> list[Sample]:
        """Return the samples with ``start <= ts < end`` in time order."""
        check_range(start, end)
        with self._lock:
            self._catch_up()
            tid = self._tag_id(tag)
            if tid is None:
                return []
            extra = "" if include_bad else " AND quality < 2"
            rows = self._con.execute(
                f"SELECT {_SAMPLE_COLS} FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ?{extra} ORDER BY ts",
                (tid, float(start), float(end)),
            ).fetchall()
        return [self._sample(tag, row) for row in rows]

    def _series(self, tid: int, start: float, end: float) -> compute.Series:
        """Return samples in ``[start, end)`` as arrays, with the sample in force before start."""
        carry = self._con.execute(
            "SELECT value, quality FROM samples WHERE tag_id = ? AND ts < ? ORDER BY ts DESC LIMIT 1",
            (tid, float(start)),
        ).fetchone()
        rows = self._con.execute(
            "SELECT ts, value, quality FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (tid, float(start), float(end)),
        ).fetchall()
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        cv, cq = (math.nan, int(Quality.BAD)) if carry is None else carry
        return compute.Series(
            data[:, 0],
            data[:, 1],
            data[:, 2].astype(np.int64),
            math.nan if cv is None else float(cv),
            int(cq),
        )

    def query_agg(
        self,
        tags: Iterable[str],
        start: float,
        end: float,
        every_s: float,
        fn: AggFn | str,
        *,
        include_bad: bool = False,
    ) -> dict[str, AggSeries]:
        """Return ``{tag: [(bucket_start, value or None)]}`` (rules in ``historian.base``).

        With ``include_bad`` False and buckets of an hour or more, whole hours and days come
        from the rollups and only the hours holding a bucket edge are read raw, for any
        ``start`` and ``every_s``; otherwise the raw samples are read. Both give the same figures.
        """
        check_range(start, end, every_s)
        agg = AggFn.parse(fn)
        atoms = None
        if self._rollups and not include_bad and every_s >= rollup.HOUR_S and end > start:
            atoms = rollup.plan(start, end, every_s)
        out: dict[str, AggSeries] = {}
        with self._lock:
            self._catch_up()
            for name in tags:
                tid = self._tag_id(name)
                if tid is None:
                    empty = compute.Series(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
                    out[name] = compute.aggregate(empty, start, end, every_s, agg, include_bad)
                elif atoms is not None:
                    full = atom_rows(
                        self._con, tid, atoms, rollup.FN_COLUMNS[agg], additive=agg in _ADDITIVE
                    )
                    carry0 = carry_in(self._con, tid, start) if agg is AggFn.TWA else math.nan
                    out[name] = rollup.reduce(full, atoms, agg, carry0)
                else:
                    s = self._series(tid, start, end)
                    out[name] = compute.aggregate(s, start, end, every_s, agg, include_bad)
        return out

    def query_agg_raw(
        self,
        tag: str,
        start: float,
        end: float,
        every_s: float,
        fn: AggFn | str,
        *,
        include_bad: bool = False,
    ) -> AggSeries:
        """Answer ``query_agg`` for one tag from the raw samples only (tests compare the paths)."""
        check_range(start, end, every_s)
        with self._lock:
            self._catch_up()
            tid = self._tag_id(tag)
            s = (
                compute.Series(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
                if tid is None
                else self._series(tid, start, end)
            )
        return compute.aggregate(s, start, end, every_s, AggFn.parse(fn), include_bad)

    def on_time(self, tag: str, start: float, end: float) -> float:
        """Return the seconds ``tag`` was true (value != 0) in ``[start, end)``."""
        return self.on_time_detail(tag, start, end).on_s

    def on_time_detail(self, tag: str, start: float, end: float) -> OnTime:
        """Return on and known seconds of ``tag`` in ``[start, end)`` (bad samples: unknown).

        Whole days or hours inside the window come from the rollups; the edges from raw samples.
        """
        check_range(start, end)
        on = known = 0.0
        with self._lock:
            self._catch_up()
            tid = self._tag_id(tag)
            if tid is not None and end > start:
                if self._rollups:
                    atoms = rollup.plan(start, end, end - start)
                    full = atom_rows(self._con, tid, atoms, rollup.STEP_COLUMNS, additive=True)
                    _, k, o = rollup.step(full, atoms, carry_in(self._con, tid, start))
                    on, known = float(o.sum()), float(k.sum())
                else:
                    on, known = compute.on_time(self._series(tid, start, end), start, end)
        return OnTime(on, known, end - start)

    def on_time_many(self, tags: Iterable[str], start: float, end: float) -> dict[str, OnTime]:
        """Return ``on_time_detail`` of every tag in ``tags`` with a few queries (``historian.ontime``).

        Tags with no history come back as zero on / zero known seconds.
        """
        from historian.ontime import on_time_many

        check_range(start, end)
        names = list(dict.fromkeys(tags))
        with self._lock:
            self._catch_up()
            if any(n not in self._ids for n in names):
                self._load_tags()  # another process may have added some
            ids = {n: self._ids[n] for n in names if n in self._ids}
            split = rollup.split(start, end) if self._rollups else [(start, end, None)]
            if len(ids) < 500:  # one worker: on this connection, under the lock
                on, known = on_time_many(
                    self.path, list(ids.values()), start, end, split, con=self._con
                )
        if len(ids) >= 500:
            on, known = on_time_many(self.path, list(ids.values()), start, end, split)
        span = end - start
        out = {n: OnTime(0.0, 0.0, span) for n in names}
        for i, n in enumerate(ids):
            out[n] = OnTime(float(on[i]), float(known[i]), span)
        return out

    def _counter_data(self, tag: str, start: float, end: float) -> CounterData:
        """Return what the counter rule reads of ``tag`` for ``[start, end]``: two statements.

        Call with the lock held, after ``_catch_up``.
        """
        tid = self._tag_id(tag)
        if tid is None:
            return CounterData.empty(start, end)
        args = (tid, float(start), float(end))
        around = np.array(self._con.execute(_COUNTER_AROUND_SQL, args).fetchall()).reshape(-1, 4)
        # straight from the cursor into one flat array: no list of row tuples
        good = np.fromiter(
            chain.from_iterable(self._con.execute(_COUNTER_GOOD_SQL, args)), dtype=np.float64
        ).reshape(-1, 2)
        rows = {k: around[around[:, 0] == k, 1:] for k in range(5)}
        ts, v = good[:, 0], good[:, 1]
        ok = np.ones(len(ts), dtype=bool)
        other = rows[_NOT_GOOD][:, 0]
        if len(other):
            ts = np.concatenate([ts, other])
            v = np.concatenate([v, np.full(len(other), np.nan)])
            ok = np.concatenate([ok, np.zeros(len(other), dtype=bool)])
        if len(ts) > 1 and not np.all(np.diff(ts) > 0):
            order = np.argsort(ts, kind="stable")
            ts, v, ok = ts[order], v[order], ok[order]
        base = rows[_BASE]
        return CounterData(
            start,
            end,
            _point(rows[_PRIOR]),
            (float(base[0, 0]), float(base[0, 1])) if len(base) else None,
            ts,
            v,
            ok,
            _point(rows[_AFTER]),
            [Replacement(tag, float(a), float(b), float(c)) for a, b, c in rows[_REPLACEMENT]],
        )

    def delta_buckets(
        self,
        tag: str,
        buckets: Buckets,
        *,
        rollover: float | None = None,
        max_gap_s: float | None = None,
    ) -> list[DeltaBucket]:
        """Return the increase of counter ``tag`` per bucket with its quality (``historian.counter``).

        One statement reads the samples of the whole span (not one per bucket).
        """
        edges = buckets.edges
        start, end = float(edges[0]), float(edges[-1])
        check_range(start, end)
        with self._lock:
            self._catch_up()
            data = self._counter_data(tag, start, end)
        return counter.delta_buckets(data, buckets, rollover=rollover, max_gap_s=max_gap_s)

    def delta_buckets_many(
        self, tags: Mapping[str, float | None], buckets: Buckets, *, rollover: float | None = None
    ) -> dict[str, list[DeltaBucket]]:
        """Return ``delta_buckets`` of every tag of ``{tag: max_gap_s}`` (``delta_table``)."""
        return self.delta_table(tags, buckets, rollover=rollover).series()

    def delta_table(
        self, tags: Mapping[str, float | None], buckets: Buckets, *, rollover: float | None = None
    ) -> counter_days.DeltaTable:
        """Return ``delta_buckets`` of every tag of ``{tag: max_gap_s}`` as arrays: the same figures.

        Whole day or month buckets come from the stored results of closed buckets
        (``historian.counter_days``), computed and stored on first use; others per tag.
        """
        edges = buckets.edges
        check_range(float(edges[0]), float(edges[-1]))
        if not counter_days.cacheable(buckets):
            series = {
                t: self.delta_buckets(t, buckets, rollover=rollover, max_gap_s=g)
                for t, g in tags.items()
            }
            return counter_days.DeltaTable.of(series, buckets)
        return counter_days.delta_table(
            self._con,
            self._lock,
            self._catch_up,
            self._tag_id,
            self._counter_data,
            tags,
            buckets,
            rollover=rollover,
        )

    def delta(self, tag: str, start: float, end: float, *, rollover: float | None = None) -> float:
        """Return the increase of counter ``tag`` over ``[start, end]`` (``historian.counter``)."""
        check_range(start, end)
        (b,) = self.delta_buckets(tag, Buckets.span(start, end), rollover=rollover)
        return b.value or 0.0

    def close(self) -> None:
        """Merge what is pending (best effort: it stays in the log if that fails) and close."""
        with self._lock:
            try:
                self._check_data_version()
                if self._pending_points:
                    self._flush_locked()
            except sqlite3.Error as exc:
                log.warning(
                    "%s: pending samples stay in the log until next open: %s", self.path, exc
                )
            self._con.close()
