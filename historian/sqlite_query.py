"""Read a SQLite historian window as atoms: rollup rows for whole hours/days, raw edge pieces.

Used by ``SqliteHistorian.query_agg`` and ``on_time_detail`` with its lock held; the window plan
and the arithmetic live in ``historian.rollup`` (``plan``, ``step``, ``reduce``). An hour with
no stored row holds at most one sample (``historian.merge``): its row is summarised from it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence

import numpy as np

from historian import rollup
from historian.merge import TABLE
from tags.model import Quality

BAD = int(Quality.BAD)

__all__ = ["atom_rows", "carry_in"]


# the last sample before ?2 and the last hour row before hour ?3, in one statement
_CARRY_IN = (
    "SELECT s.ts, s.value, s.quality, r.last_ts, r.carry FROM (SELECT 1) "
    "LEFT JOIN samples s ON s.tag_id = ?1 AND s.ts = "
    "(SELECT max(x.ts) FROM samples x WHERE x.tag_id = ?1 AND x.ts < ?2) "
    "LEFT JOIN rollup_1h r ON r.tag_id = ?1 AND r.bucket = "
    "(SELECT max(y.bucket) FROM rollup_1h y WHERE y.tag_id = ?1 AND y.bucket < ?3)"
)


def carry_in(con: sqlite3.Connection, tid: int, start: float) -> float:
    """Return the good value in force at ``start`` (NaN if none), as the rollups see it.

    The later of the last raw sample before ``start`` and the last stored hour row before
    ``start``'s hour gives it; this stays right after ``purge`` dropped the older raw samples.
    """
    hour = math.floor(start / rollup.HOUR_S) * rollup.HOUR_S
    ts, value, quality, row_ts, row_carry = con.execute(
        _CARRY_IN, (tid, float(start), hour)
    ).fetchone()
    if ts is not None and (row_ts is None or ts >= row_ts):
        ok = value is not None and quality != int(Quality.BAD) and math.isfinite(value)
        return float(value) if ok else math.nan
    return math.nan if row_carry is None else float(row_carry)


def atom_rows(
    con: sqlite3.Connection,
    tid: int,
    atoms: rollup.Atoms,
    columns: Sequence[str],
    *,
    additive: bool = False,
) -> np.ndarray:
    """Return the rows of ``atoms`` of tag ``tid``: rollup rows, raw pieces summarised.

    Only ``columns`` are filled for rollup atoms (the rest stays NaN). Raw pieces get every
    column, or with ``additive`` (count, sum, mean, twa, on-time) possibly only the additive
    and step ones, which lets edge hours be read by difference. Atoms without samples keep
    ``rollup.empty_rows``.
    """
    full = rollup.empty_rows(len(atoms))
    col_idx = [rollup.COLUMNS.index(c) for c in columns]
    unstored = np.zeros(0, dtype=np.int64)  # hour atoms without a stored row
    for level, table in TABLE.items():
        sel = atoms.level == level
        count = int(sel.sum())
        if count == 0:
            continue
        la = atoms.a[sel]
        lo, hi = int(la[0]), int(la[-1]) + level
        what = f"SELECT bucket, {', '.join(columns)} FROM {table}"
        if count * level * 2 >= hi - lo:  # mostly needed: one range scan
            rows = con.execute(
                f"{what} WHERE tag_id = ? AND bucket >= ? AND bucket < ?", (tid, lo, hi)
            ).fetchall()
        else:
            rows = con.execute(
                f"{what} WHERE tag_id = ? AND bucket IN (SELECT value FROM json_each(?))",
                (tid, json.dumps(la.astype(np.int64).tolist())),
            ).fetchall()
        data = np.array(rows, dtype=np.float64).reshape(-1, 1 + len(columns))
        idx = np.minimum(np.searchsorted(atoms.a, data[:, 0]), len(atoms) - 1)
        ok = (atoms.a[idx] == data[:, 0]) & (atoms.level[idx] == level)
        full[np.ix_(idx[ok], col_idx)] = data[ok, 1:]
        if level == rollup.HOUR_S and ok.sum() < count:  # hours of one sample, or none
            stored = np.zeros(len(atoms), dtype=bool)
            stored[idx[ok]] = True
            unstored = np.flatnonzero(sel & ~stored)
    raw = np.flatnonzero(atoms.level == 0)
    raw_rows = None
    if additive and len(raw) >= 16:
        raw_rows = _pieces_by_difference(con, tid, atoms.a[raw], atoms.b[raw])
    if raw_rows is not None:
        full[raw] = raw_rows
        if len(unstored):
            full[unstored] = _unstored_hours(con, tid, atoms.a[unstored])
    else:
        # a few pieces (on-time, short windows): one query for their hours, and for the
        # unstored hours (each a piece of its own) is cheapest
        pieces = np.union1d(raw, unstored)
        if len(pieces):
            full[pieces] = _pieces_from_hours(con, tid, atoms.a[pieces], atoms.b[pieces])
    return full


def _fetch(
    con: sqlite3.Connection, tid: int, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (ts, value, quality) of the samples in the integer ranges ``[lo[i], hi[i])``.

    Ranges are sorted and disjoint; integers keep the JSON bounds exact.
    """
    ranges = json.dumps(np.column_stack([lo, hi]).astype(np.int64).tolist())
    data = np.array(
        con.execute(
            "SELECT s.ts, s.value, s.quality FROM json_each(?) j CROSS JOIN samples s "
            "ON s.tag_id = ? AND s.ts >= json_extract(j.value, '$[0]') "
            "AND s.ts < json_extract(j.value, '$[1]')",
            (ranges, tid),
        ).fetchall(),
        dtype=np.float64,
    ).reshape(-1, 3)
    if len(data) > 1 and not (np.diff(data[:, 0]) > 0).all():
        data = data[np.argsort(data[:, 0], kind="stable")]
    return data[:, 0], data[:, 1], data[:, 2].astype(np.int64)


def _unstored_hours(con: sqlite3.Connection, tid: int, hours: np.ndarray) -> np.ndarray:
    """Return the rows of hours (sorted starts) with no stored row, from their raw samples.

    Such an hour holds one sample or none; adjacent hours are read with one range.
    """
    hi = hours + rollup.HOUR_S
    new = np.concatenate([[True], hours[1:] > hi[:-1]])
    ts, v, q = _fetch(con, tid, hours[new], np.maximum.reduceat(hi, np.flatnonzero(new)))
    key = np.searchsorted(hours, ts, side="right") - 1
    return _stats_by(key, ts, v, q, len(hours))


def _stats_by(
    key: np.ndarray, ts: np.ndarray, v: np.ndarray, q: np.ndarray, size: int
) -> np.ndarray:
    """Return ``size`` rows: the samples grouped by ``key`` (sorted), empty rows elsewhere."""
    out = rollup.empty_rows(size)
    if len(key):
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        out[key[starts]] = rollup.group_stats(ts, v, q, starts)
    return out


def _pieces_from_hours(
    con: sqlite3.Connection, tid: int, ra: np.ndarray, rb: np.ndarray
) -> np.ndarray:
    """Return the rows of raw pieces ``[ra[i], rb[i])`` from every sample of their hours."""
    lo = np.floor(ra / rollup.HOUR_S) * rollup.HOUR_S
    hi = np.maximum(np.ceil(rb / rollup.HOUR_S) * rollup.HOUR_S, lo + rollup.HOUR_S)
    new = np.concatenate([[True], lo[1:] > hi[:-1]])  # join adjacent hours
    ts, v, q = _fetch(con, tid, lo[new], np.maximum.reduceat(hi, np.flatnonzero(new)))
    piece = np.searchsorted(ra, ts, side="right") - 1
    inside = (piece >= 0) & (ts < rb[np.maximum(piece, 0)])
    return _stats_by(piece[inside], ts[inside], v[inside], q[inside], len(ra))


def _pieces_by_difference(
    con: sqlite3.Connection, tid: int, ra: np.ndarray, rb: np.ndarray
) -> np.ndarray | None:
    """Return the rows of raw pieces reading only the shorter side of each edge hour.

    Applies when each piece is the part of one hour before or after a single split point
    ``x`` (buckets of two hours or more); returns None otherwise. The short side is read raw
    (plus the neighbouring sample across ``x``), the other side is the hour's rollup row minus
    it (``rollup.later_part`` / ``earlier_part``): additive and step columns only.
    """
    hour_s = rollup.HOUR_S
    h = np.floor(ra / hour_s) * hour_s
    left = ra == h
    if not (left ^ (rb == h + hour_s)).all():
        return None
    x = np.where(left, rb, ra)
    hours, inv = np.unique(h, return_inverse=True)
    xs = np.empty(len(hours))
    xs[inv] = x
    if not (xs[inv] == x).all():
        return None
    nh = len(hours)
    short_left = xs - hours <= hour_s / 2
    fx = np.floor(xs)
    ts, v, q = _fetch(
        con, tid, np.where(short_left, hours, fx), np.where(short_left, fx + 1, hours + hour_s)
    )
    e = np.searchsorted(hours, ts, side="right") - 1
    before = ts < xs[e]
    on_short = np.where(short_left[e], before, ~before)
    short = _stats_by(e[on_short], ts[on_short], v[on_short], q[on_short], nh)
    # the neighbour across x: fetched in the slack up to the next whole second, else a seek
    slack = np.flatnonzero(~on_short)
    next_ts = np.full(nh, math.nan)
    prev_ts = np.full(nh, math.nan)
    prev_v = np.full(nh, math.nan)
    prev_q = np.zeros(nh, dtype=np.int64)
    if len(slack):
        es = e[slack]
        first = np.unique(es, return_index=True)[1]
        last = len(es) - 1 - np.unique(es[::-1], return_index=True)[1]
        next_ts[es[first]] = ts[slack[first]]
        prev_ts[es[last]] = ts[slack[last]]
        prev_v[es[last]] = v[slack[last]]
        prev_q[es[last]] = q[slack[last]]
    need = np.flatnonzero(short_left & np.isnan(next_ts))
    if len(need):
        ranges = json.dumps(
            np.column_stack([fx[need] + 1, hours[need] + hour_s]).astype(np.int64).tolist()
        )
        for key, t in con.execute(
            "SELECT j.key, (SELECT min(s.ts) FROM samples s WHERE s.tag_id = :tid "
            "AND s.ts >= json_extract(j.value, '$[0]') AND s.ts < json_extract(j.value, '$[1]')) "
            "FROM json_each(:r) j",
            {"tid": tid, "r": ranges},
        ):
            if t is not None:
                next_ts[need[key]] = t
    need = np.flatnonzero(~short_left & np.isnan(prev_ts))
    if len(need):
        ranges = json.dumps(np.column_stack([hours[need], fx[need]]).astype(np.int64).tolist())
        for key, t, value, quality in con.execute(
            "SELECT j.key, s.ts, s.value, s.quality FROM json_each(:r) j CROSS JOIN samples s "
            "ON s.tag_id = :tid AND s.ts = (SELECT max(x.ts) FROM samples x WHERE x.tag_id = :tid "
            "AND x.ts >= json_extract(j.value, '$[0]') AND x.ts < json_extract(j.value, '$[1]'))",
            {"tid": tid, "r": ranges},
        ):
            prev_ts[need[key]] = t
            prev_v[need[key]] = math.nan if value is None else value
            prev_q[need[key]] = quality
    prev_carry = np.where((prev_q != BAD) & np.isfinite(prev_v), prev_v, math.nan)
    whole = rollup.empty_rows(nh)
    data = np.array(
        con.execute(
            f"SELECT bucket, {', '.join(rollup.COLUMNS)} FROM rollup_1h "
            "WHERE tag_id = ? AND bucket IN (SELECT value FROM json_each(?))",
            (tid, json.dumps(hours.astype(np.int64).tolist())),
        ).fetchall(),
        dtype=np.float64,
    ).reshape(-1, 1 + len(rollup.COLUMNS))
    at = np.searchsorted(hours, data[:, 0])
    whole[at] = data[:, 1:]
    if len(at) < nh:  # hours of one sample have no stored row
        missing = np.setdiff1d(np.arange(nh), at)
        whole[missing] = _unstored_hours(con, tid, hours[missing])
    sl = short_left[:, None]
    left_rows = np.where(sl, short, rollup.earlier_part(whole, short, prev_ts, prev_carry))
    right_rows = np.where(sl, rollup.later_part(whole, short, next_ts), short)
    return np.where(left[:, None], left_rows[inv], right_rows[inv])
