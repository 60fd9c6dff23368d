"""Embedded SQLite historian: one WAL-mode file, raw samples plus hourly and daily rollups.

Layout: ``tags(id, name)``; ``samples(tag_id, ts, value REAL, text, quality, reason)`` keyed by
``(tag_id, ts)`` WITHOUT ROWID so a tag's time range is one contiguous B-tree scan (numbers go to
``value``, strings to ``text``); ``rollup_1h`` / ``rollup_1d`` keyed by ``(tag_id, bucket)`` with the
columns of ``historian.rollup.COLUMNS``; ``replacements(tag_id, ts, old_final, new_initial)``.

Writes: one transaction per batch (``executemany`` in key order). Rollups are maintained in the
same transaction: rows of the newest bucket of each tag are cached and merged with in-order
samples; a late or out-of-order sample recomputes its hour from the raw samples and its day
from the hours. ``purge(before)`` drops raw samples (keeping each tag's last one before the
horizon, so the value in force stays known); rollups are kept forever.

Threading: every method may be called from any thread; one lock serialises use of the
connection. If another process commits to the same file (``scada history import`` while the
runtime runs), the rollup cache is dropped (``PRAGMA data_version``).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from historian import compute, rollup
from historian.base import (
    AggFn,
    AggSeries,
    BackendUnavailable,
    OnTime,
    Replacement,
    Sample,
    check_range,
)
from tags.model import Quality, Reason

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_ROLLUP_COLS = ", ".join(rollup.COLUMNS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    tag_id INTEGER NOT NULL, ts REAL NOT NULL, value REAL, text TEXT,
    quality INTEGER NOT NULL, reason INTEGER NOT NULL,
    PRIMARY KEY (tag_id, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1h (tag_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    {", ".join(c + " REAL" for c in rollup.COLUMNS)}, PRIMARY KEY (tag_id, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1d (tag_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    {", ".join(c + " REAL" for c in rollup.COLUMNS)}, PRIMARY KEY (tag_id, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replacements (tag_id INTEGER NOT NULL, ts REAL NOT NULL,
    old_final REAL NOT NULL, new_initial REAL NOT NULL, PRIMARY KEY (tag_id, ts)) WITHOUT ROWID;
"""
_TABLE = {rollup.HOUR_S: "rollup_1h", rollup.DAY_S: "rollup_1d"}
_SAMPLE_COLS = "ts, value, text, quality, reason"


class SqliteHistorian:
    """The embedded historian (see the module docstring); ``path`` is created if missing."""

    def __init__(self, path: str | Path, *, rollups: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA page_size=16384")  # only takes effect on a new file
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA busy_timeout=10000")
        self._con.execute("PRAGMA cache_size=-65536")
        self._con.executescript(_SCHEMA)
        self._con.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._rollups = rollups
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._cache: dict[int, dict[int, tuple[int, rollup.Row] | None]] = {
            rollup.HOUR_S: {},
            rollup.DAY_S: {},
        }
        self._data_version = self._con.execute("PRAGMA data_version").fetchone()[0]
        self._load_tags()

    # -- tags ---------------------------------------------------------------------------------

    def _load_tags(self) -> None:
        for tid, name in self._con.execute("SELECT id, name FROM tags"):
            self._ids[name] = tid
            self._names[tid] = name

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
        """Store ``batch`` in one transaction and update the rollups (see the module docstring)."""
        if not batch:
            return
        with self._lock:
            self._check_data_version()
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    self._write_locked(batch)
                    self._con.execute("COMMIT")
                except BaseException:
                    self._con.execute("ROLLBACK")
                    for c in self._cache.values():
                        c.clear()
                    self._ids.clear()
                    self._names.clear()
                    self._load_tags()
                    raise
            except sqlite3.OperationalError as exc:  # locked, disk full, I/O error
                raise BackendUnavailable(f"{self.path}: {exc}") from exc
            self._data_version = self._con.execute("PRAGMA data_version").fetchone()[0]

    def _check_data_version(self) -> None:
        dv = self._con.execute("PRAGMA data_version").fetchone()[0]
        if dv != self._data_version:
            for c in self._cache.values():
                c.clear()
            self._data_version = dv

    def _write_locked(self, batch: Sequence[Sample]) -> None:
        count = len(batch)
        ids = self._ids
        try:
            tag_ids = [ids[s.tag] for s in batch]
        except KeyError:
            self._load_tags()  # another process may have added some
            for s in batch:
                if s.tag not in ids:
                    self._tag_id(s.tag, create=True)
            tag_ids = [ids[s.tag] for s in batch]
        tid_a = np.array(tag_ids, dtype=np.int64)
        ts = np.fromiter((s.ts for s in batch), dtype=np.float64, count=count)
        if not np.isfinite(ts).all():
            bad = next(s for s in batch if not math.isfinite(s.ts))
            raise ValueError(f"tag {bad.tag}: timestamp {bad.ts!r} is not a finite number")
        raw_values = [s.value for s in batch]
        texts: list[str | None] | None = None
        if any(type(x) is str for x in raw_values):
            texts = [x if isinstance(x, str) else None for x in raw_values]
            raw_values = [None if isinstance(x, str) else x for x in raw_values]
        try:
            v = np.array(raw_values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"historian write: a value is neither number nor string: {exc}"
            ) from exc
        q = np.fromiter((s.quality for s in batch), dtype=np.int64, count=count)
        r = np.fromiter((s.reason for s in batch), dtype=np.int64, count=count)
        # sort by (tag, ts, arrival); for duplicate (tag, ts) the last one in the batch wins
        order = np.lexsort((np.arange(count), ts, tid_a))
        tid_a, ts, v, q, r = tid_a[order], ts[order], v[order], q[order], r[order]
        keep = np.ones(count, dtype=bool)
        keep[:-1] = (tid_a[1:] != tid_a[:-1]) | (ts[1:] != ts[:-1])
        if not keep.all():
            order, tid_a, ts, v, q, r = (x[keep] for x in (order, tid_a, ts, v, q, r))
        text_col: Iterable[str | None]
        if texts is None:
            text_col = [None] * len(ts)
        else:
            text_col = [texts[i] for i in order.tolist()]
        self._con.executemany(
            "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?)",
            zip(
                tid_a.tolist(),
                ts.tolist(),
                v.tolist(),
                text_col,
                q.tolist(),
                r.tolist(),
                strict=True,
            ),
        )
        if self._rollups:
            self._update_level(rollup.HOUR_S, tid_a, ts, v, q)
            self._update_level(rollup.DAY_S, tid_a, ts, v, q)

    def _update_level(
        self, level: int, tid: np.ndarray, ts: np.ndarray, v: np.ndarray, q: np.ndarray
    ) -> None:
        bucket = (ts // level).astype(np.int64) * level
        change = np.ones(len(ts), dtype=bool)
        change[1:] = (tid[1:] != tid[:-1]) | (bucket[1:] != bucket[:-1])
        starts = np.flatnonzero(change)
        rows = rollup.group_stats(ts, v, q, starts)
        cache = self._cache[level]
        table = _TABLE[level]
        gts = tid[starts].tolist()
        gbs = bucket[starts].tolist()
        first_ts = rows[:, rollup.FIRST_TS].tolist()
        merge: list[int] = []
        merge_rows: list[rollup.Row] = []
        recompute: list[int] = []
        for i, (gt, gb) in enumerate(zip(gts, gbs, strict=True)):
            if gt not in cache:
                cache[gt] = self._latest_row(table, gt)
            cached = cache[gt]
            if cached is None or gb > cached[0]:
                continue
            if gb == cached[0] and first_ts[i] > cached[1][rollup.LAST_TS]:
                merge.append(i)
                merge_rows.append(cached[1])
            else:
                recompute.append(i)
        if merge:
            rows[merge] = rollup.combine_arrays(np.array(merge_rows), rows[merge])
        for i in recompute:
            rows[i] = self._recompute(level, gts[i], gbs[i])
        out = rows.tolist()
        for gt, gb, row in zip(gts, gbs, out, strict=True):
            cached = cache[gt]
            if cached is None or gb >= cached[0]:
                cache[gt] = (gb, tuple(row))
        self._con.executemany(
            f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' * (2 + len(rollup.COLUMNS)))})",
            ([gt, gb, *row] for gt, gb, row in zip(gts, gbs, out, strict=True)),
        )

    def _latest_row(self, table: str, tid: int) -> tuple[int, rollup.Row] | None:
        row = self._con.execute(
            f"SELECT bucket, {_ROLLUP_COLS} FROM {table} WHERE tag_id = ? ORDER BY bucket DESC LIMIT 1",
            (tid,),
        ).fetchone()
        return None if row is None else (int(row[0]), rollup.row_from_db(row[1:]))

    def _recompute(self, level: int, tid: int, bucket: int) -> rollup.Row:
        """Return the row of one bucket rebuilt from the level below (raw samples for hours)."""
        if level == rollup.HOUR_S:
            cur = self._con.execute(
                "SELECT ts, value, quality FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (tid, bucket, bucket + level),
            )
            data = np.array(cur.fetchall(), dtype=np.float64).reshape(-1, 3)
            stats = rollup.group_stats(
                data[:, 0], data[:, 1], data[:, 2].astype(np.int64), np.array([0])
            )
            return tuple(stats[0].tolist())
        hours = self._con.execute(
            f"SELECT {_ROLLUP_COLS} FROM rollup_1h WHERE tag_id = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (tid, bucket, bucket + level),
        ).fetchall()
        return rollup.combine_all([rollup.row_from_db(h) for h in hours])

    def record_replacement(self, tag: str, ts: float, old_final: float, new_initial: float) -> None:
        """Record that the meter behind ``tag`` was replaced at ``ts`` (see ``delta``)."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                tid = self._tag_id(tag, create=True)
                self._con.execute(
                    "INSERT OR REPLACE INTO replacements VALUES (?, ?, ?, ?)",
                    (tid, float(ts), float(old_final), float(new_initial)),
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def purge(self, before: float) -> int:
        """Delete raw samples older than ``before`` (each tag keeps its last one); return the count."""
        deleted = 0
        with self._lock:
            self._load_tags()
            for tid in list(self._names):
                self._con.execute("BEGIN IMMEDIATE")
                try:
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

    def _dense(
        self,
        tid: int,
        start: float,
        end: float,
        level: int,
        columns: Sequence[str] = rollup.COLUMNS,
    ) -> dict[str, np.ndarray]:
        table = _TABLE[level]
        carry0 = math.nan
        if "carry" in columns:
            before = self._con.execute(
                f"SELECT carry FROM {table} WHERE tag_id = ? AND bucket < ? ORDER BY bucket DESC LIMIT 1",
                (tid, int(start)),
            ).fetchone()
            carry0 = math.nan if before is None or before[0] is None else float(before[0])
        rows = self._con.execute(
            f"SELECT bucket, {', '.join(columns)} FROM {table} WHERE tag_id = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (tid, int(start), int(end)),
        ).fetchall()
        data = np.array(rows, dtype=np.float64).reshape(-1, 1 + len(columns))
        return rollup.dense(data[:, 0], data[:, 1:], carry0, start, end, level, columns)

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
        """Return ``{tag: [(bucket_start, value or None)]}``; rollups answer aligned windows.

        Rollups answer when ``include_bad`` is False and ``start`` and ``every_s`` are whole
        days or whole hours (a partial last bucket is read raw); otherwise the raw samples are
        read. Trend callers should align ``start`` to the hour for speed.
        """
        check_range(start, end, every_s)
        agg = AggFn.parse(fn)
        # whole query buckets from the rollups, a partial last bucket from the raw samples
        whole_end = start + math.floor((end - start) / every_s) * every_s
        level = None
        if self._rollups and not include_bad and whole_end > start:
            level = rollup.aligned_level(start, whole_end, every_s)
        out: dict[str, AggSeries] = {}
        with self._lock:
            self._check_data_version()
            for name in tags:
                tid = self._tag_id(name)
                if tid is None:
                    out[name] = compute.aggregate(
                        compute.Series(np.zeros(0), np.zeros(0), np.zeros(0, np.int64)),
                        start,
                        end,
                        every_s,
                        agg,
                        include_bad,
                    )
                elif level is not None:
                    d = self._dense(tid, start, whole_end, level, rollup.FN_COLUMNS[agg])
                    out[name] = rollup.aggregate_dense(d, start, every_s, level, agg)
                    if whole_end < end:
                        tail = self._series(tid, whole_end, end)
                        out[name] += compute.aggregate(
                            tail, whole_end, end, end - whole_end, agg, False
                        )
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
            self._check_data_version()
            tid = self._tag_id(tag)
            if tid is not None:
                for a, b, level in _split(start, end) if self._rollups else [(start, end, None)]:
                    if level is None:
                        o, k = compute.on_time(self._series(tid, a, b), a, b)
                    else:
                        d = self._dense(tid, a, b, level, rollup.STEP_COLUMNS)
                        o, k = float(d["on"].sum()), float(d["known"].sum())
                    on += o
                    known += k
        return OnTime(on, known, end - start)

    def on_time_many(self, tags: Iterable[str], start: float, end: float) -> dict[str, OnTime]:
        """Return ``on_time_detail`` of every tag in ``tags`` with a few queries (``historian.ontime``).

        Tags with no history come back as zero on / zero known seconds.
        """
        from historian.ontime import on_time_many

        check_range(start, end)
        names = list(dict.fromkeys(tags))
        with self._lock:
            self._check_data_version()
            if any(n not in self._ids for n in names):
                self._load_tags()  # another process may have added some
            ids = {n: self._ids[n] for n in names if n in self._ids}
            split = _split(start, end) if self._rollups else [(start, end, None)]
            if len(ids) < 500:  # one worker: on this connection, under the lock
                on, known = on_time_many(self.path, list(ids.values()), start, end, split, con=self._con)
        if len(ids) >= 500:
            on, known = on_time_many(self.path, list(ids.values()), start, end, split)
        span = end - start
        out = {n: OnTime(0.0, 0.0, span) for n in names}
        for i, n in enumerate(ids):
            out[n] = OnTime(float(on[i]), float(known[i]), span)
        return out

    def delta(self, tag: str, start: float, end: float, *, rollover: float | None = None) -> float:
        """Return the increase of counter ``tag`` over ``[start, end]`` (rule in historian.base)."""
        check_range(start, end)
        with self._lock:
            tid = self._tag_id(tag)
            if tid is None:
                return 0.0
            good = "quality < 2 AND value IS NOT NULL"
            base = self._con.execute(
                f"SELECT ts, value FROM samples WHERE tag_id = ? AND ts <= ? AND {good} ORDER BY ts DESC LIMIT 1",
                (tid, float(start)),
            ).fetchone()
            rows = self._con.execute(
                f"SELECT ts, value FROM samples WHERE tag_id = ? AND ts > ? AND ts <= ? AND {good} ORDER BY ts",
                (tid, float(start), float(end)),
            ).fetchall()
            reps = [
                Replacement(tag, *r)
                for r in self._con.execute(
                    "SELECT ts, old_final, new_initial FROM replacements WHERE tag_id = ? AND ts <= ?",
                    (tid, float(end)),
                )
            ]
        data = np.array(rows, dtype=np.float64).reshape(-1, 2)
        bts, bv = (None, None) if base is None else base
        return compute.counter_delta(bts, bv, data[:, 0], data[:, 1], reps, rollover)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._con.close()


def _split(start: float, end: float) -> list[tuple[float, float, int | None]]:
    """Split ``[start, end)`` into a raw head, whole days/hours (rollups) and a raw tail."""
    parts: list[tuple[float, float, int | None]] = []
    h0 = math.ceil(start / rollup.HOUR_S) * rollup.HOUR_S
    h1 = math.floor(end / rollup.HOUR_S) * rollup.HOUR_S
    if h1 <= h0:
        return [(start, end, None)]
    d0 = math.ceil(h0 / rollup.DAY_S) * rollup.DAY_S
    d1 = math.floor(h1 / rollup.DAY_S) * rollup.DAY_S
    if start < h0:
        parts.append((start, float(h0), None))
    if d1 > d0:
        if h0 < d0:
            parts.append((float(h0), float(d0), rollup.HOUR_S))
        parts.append((float(d0), float(d1), rollup.DAY_S))
        if d1 < h1:
            parts.append((float(d1), float(h1), rollup.HOUR_S))
    else:
        parts.append((float(h0), float(h1), rollup.HOUR_S))
    if h1 < end:
        parts.append((float(h1), end, None))
    return parts
