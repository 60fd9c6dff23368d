"""Rollup-based answers must equal raw-based answers (SQLite backend)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from historian.base import AggFn, Sample
from historian.sqlite import SqliteHistorian
from tags.model import Quality
from tests.historian.conftest import T0

DAY = 86400.0
SPAN = 3 * DAY

sample_st = st.tuples(
    st.one_of(
        st.floats(min_value=-DAY, max_value=SPAN + DAY, allow_nan=False),
        st.floats(min_value=DAY - 7200, max_value=DAY + 7200, allow_nan=False),  # dense hours
    ).map(lambda x: round(x, 3)),
    st.one_of(
        st.sampled_from([0.0, 1.0]),
        st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
        st.just(math.nan),
    ),
    st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD]),
)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def assert_same(with_rollups: SqliteHistorian, raw: SqliteHistorian, tag: str) -> None:
    windows = ((T0, T0 + SPAN), (T0 + 3600, T0 + DAY + 7200), (T0, T0 + DAY + 5000.5))
    unaligned = ((T0 + 1234.5, T0 + SPAN - 99.25), (T0 + DAY - 1800.0, T0 + 2 * DAY + 61.0))
    for every in (3600.0, 7200.0, DAY, 5000.0, 31536.0, 1.5 * DAY):
        for start, end in windows + unaligned:
            for fn in AggFn:
                a = with_rollups.query_agg([tag], start, end, every, fn)[tag]
                b = raw.query_agg([tag], start, end, every, fn)[tag]
                assert [x for x, _ in a] == [x for x, _ in b]
                assert all(close(x, y) for (_, x), (_, y) in zip(a, b, strict=True)), (
                    fn,
                    every,
                    a,
                    b,
                )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.lists(sample_st, min_size=0, max_size=80),
    in_order=st.booleans(),
    deferred=st.booleans(),
    merge_points=st.integers(min_value=1, max_value=60),
    batch_sizes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=10),
    windows=st.lists(
        st.tuples(st.floats(0, SPAN, allow_nan=False), st.floats(0, SPAN, allow_nan=False)),
        min_size=1,
        max_size=4,
    ),
)
def test_rollups_equal_raw(samples, in_order, deferred, merge_points, batch_sizes, windows) -> None:
    """Random values, qualities and write order (late samples, duplicates) in random batches.

    ``deferred``: every batch goes through the pending log, merged in chunks of about
    ``merge_points`` samples (inside writes and before reads).
    """
    if in_order:
        samples = sorted(samples, key=lambda s: s[0])
    with tempfile.TemporaryDirectory() as d:
        with_rollups = SqliteHistorian(
            Path(d) / "a.sqlite",
            defer_points=1 if deferred else 5000,
            merge_points=merge_points if deferred else 1_000_000,
        )
        raw = SqliteHistorian(Path(d) / "b.sqlite", rollups=False)
        try:
            pos = 0
            i = 0
            while pos < len(samples):
                n = batch_sizes[i % len(batch_sizes)]
                batch = [Sample("x", T0 + t, v, q) for t, v, q in samples[pos : pos + n]]
                with_rollups.write(batch)
                raw.write(batch)
                pos += n
                i += 1
            assert_same(with_rollups, raw, "x")
            assert with_rollups.pending_points == 0  # the reads merged everything
            for a, b in windows:
                lo, hi = sorted((a, b))
                x = with_rollups.on_time_detail("x", T0 + lo, T0 + hi)
                y = raw.on_time_detail("x", T0 + lo, T0 + hi)
                assert close(x.on_s, y.on_s) and close(x.known_s, y.known_s), (lo, hi, x, y)
        finally:
            with_rollups.close()
            raw.close()


def test_rollups_survive_purge_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = SqliteHistorian(path)
    h.write([Sample("x", T0 + 60 * i, float(i % 7)) for i in range(3 * 1440)])
    before = h.query_agg(["x"], T0, T0 + SPAN, 3600, "twa")["x"]
    on_before = h.on_time_detail("x", T0, T0 + SPAN)
    assert h.purge(T0 + 2 * DAY) == 2 * 1440 - 1  # the last sample before the horizon stays
    assert len(h.query_raw("x", T0, T0 + SPAN)) == 1440 + 1
    h.close()
    h = SqliteHistorian(path)
    assert h.query_agg(["x"], T0, T0 + SPAN, 3600, "twa")["x"] == before
    assert h.on_time_detail("x", T0, T0 + SPAN) == on_before
    # writing after reopen keeps merging into the cached newest hour correctly
    h.write([Sample("x", T0 + SPAN + 30, 100.0)])
    h.write([Sample("x", T0 + SPAN + 90, 50.0)])
    raw = SqliteHistorian(tmp_path / "raw.sqlite", rollups=False)
    raw.write(
        [
            Sample("x", T0 + SPAN - 60, float((3 * 1440 - 1) % 7)),
            Sample("x", T0 + SPAN + 30, 100.0),
            Sample("x", T0 + SPAN + 90, 50.0),
        ]
    )
    got = h.query_agg(["x"], T0 + SPAN, T0 + SPAN + 3600, 3600, "twa")["x"][0][1]
    want = raw.query_agg(["x"], T0 + SPAN, T0 + SPAN + 3600, 3600, "twa")["x"][0][1]
    assert got == pytest.approx(want)
    assert want == pytest.approx((0 * 30 + 100 * 60 + 50 * 3510) / 3600)
    h.close()
    raw.close()


def test_another_process_writing_invalidates_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    a = SqliteHistorian(path)
    b = SqliteHistorian(path)
    a.write([Sample("x", T0 + 10, 1.0)])
    b.write([Sample("x", T0 + 20, 3.0)])  # b's cache knows nothing of a's row
    a.write([Sample("x", T0 + 30, 5.0)])  # a must see b's commit before merging
    twa = a.query_agg(["x"], T0, T0 + 3600, 3600, "twa")["x"][0][1]
    assert twa == pytest.approx((1 * 10 + 3 * 10 + 5 * 3570) / 3590)
    assert a.query_agg(["x"], T0, T0 + 3600, 3600, "count")["x"][0][1] == 3
    a.close()
    b.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.floats(min_value=-DAY, max_value=2 * DAY, allow_nan=False),
    span=st.floats(min_value=0.5, max_value=3 * DAY, allow_nan=False),
    every=st.one_of(
        st.floats(min_value=3600.0, max_value=2 * DAY, allow_nan=False),
        st.sampled_from([3600.0, 7200.0, DAY, 10800.5]),
    ),
    fn=st.sampled_from(list(AggFn)),
)
def test_unaligned_windows_equal_raw(rolled: SqliteHistorian, start, span, every, fn) -> None:
    """Any start and bucket width: rollups for whole hours/days, raw edges == all raw."""
    a = rolled.query_agg(["x"], T0 + start, T0 + start + span, every, fn)["x"]
    b = rolled.query_agg_raw("x", T0 + start, T0 + start + span, every, fn)
    assert [t for t, _ in a] == [t for t, _ in b]
    assert all(close(x, y) for (_, x), (_, y) in zip(a, b, strict=True)), (start, span, every, fn)
    on = rolled.on_time_detail("x", T0 + start, T0 + start + span)
    raw_on = rolled.query_agg_raw("x", T0 + start, T0 + start + span, span, "twa")
    assert (on.known_s > 0) == (raw_on[0][1] is not None)


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> SqliteHistorian:
    """Three days of irregular samples (gaps, bad values, strings) written through the log."""
    import numpy as np

    rng = np.random.default_rng(7)
    ts = np.sort(rng.uniform(-DAY / 2, SPAN + DAY / 2, 3000)).round(3)
    ts = ts[(ts < DAY + 3600) | (ts > DAY + 5 * 3600)]  # a gap of 4 hours
    values = rng.normal(50, 20, len(ts)).round(2)
    quality = rng.choice([Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD], len(ts))
    batch = [
        Sample("x", T0 + float(t), "text" if i % 97 == 0 else float(v), Quality(int(q)))
        for i, (t, v, q) in enumerate(zip(ts, values, quality, strict=True))
    ]
    h = SqliteHistorian(tmp_path_factory.mktemp("rolled") / "h.sqlite", defer_points=1)
    rng.shuffle(batch)  # out of order: merges must recompute touched buckets
    for i in range(0, len(batch), 700):
        h.write(batch[i : i + 700])
    assert h.pending_points == len(batch)
    yield h
    h.close()


def test_pending_log_is_durable_and_merged_by_the_next_reader(tmp_path: Path) -> None:
    """A crash before the merge loses nothing; another process's reads merge the log."""
    path = tmp_path / "h.sqlite"
    a = SqliteHistorian(path, defer_points=1)
    samples = [Sample("x", T0 + 60 * i, float(i % 5), Quality.GOOD) for i in range(600)]
    a.write(samples[:300])
    a.write(samples[300:])
    assert a.pending_points == 600
    a._con.close()  # simulated crash: no flush, no close()
    b = SqliteHistorian(path)
    assert b.pending_points == 600
    c = SqliteHistorian(path)  # a second reader on the same file
    assert len(b.query_raw("x", T0, T0 + DAY)) == 600
    assert b.pending_points == 0
    twa = c.query_agg(["x"], T0, T0 + 36000, 3600, "twa")["x"]  # c sees b's merge
    raw = SqliteHistorian(tmp_path / "raw.sqlite", rollups=False)
    raw.write(samples)
    assert twa == raw.query_agg(["x"], T0, T0 + 36000, 3600, "twa")["x"]
    assert c.pending_points == 0
    for h in (b, c, raw):
        h.close()


def test_small_write_after_pending_keeps_arrival_order(tmp_path: Path) -> None:
    """The same (tag, ts) written twice: the later write wins across log and direct paths."""
    h = SqliteHistorian(tmp_path / "h.sqlite", defer_points=3)
    h.write([Sample("x", T0 + i, 1.0) for i in range(3)])  # deferred
    h.write([Sample("x", T0 + 1, 9.0)])  # small, but queued behind the log
    assert h.pending_points == 4
    assert [s.value for s in h.query_raw("x", T0, T0 + 10)] == [1.0, 9.0, 1.0]
    h.write([Sample("x", T0 + 2, 7.0)])  # nothing pending: merged at once
    assert h.pending_points == 0
    assert h.query_agg(["x"], T0, T0 + 3600, 3600, "max")["x"] == [(T0, 9.0)]
    h.close()


def test_bad_batch_stores_nothing_and_names_the_tag(tmp_path: Path) -> None:
    h = SqliteHistorian(tmp_path / "h.sqlite", defer_points=1)
    with pytest.raises(ValueError, match="tag y: timestamp"):
        h.write([Sample("x", T0, 1.0), Sample("y", math.inf, 2.0)])
    assert h.pending_points == 0
    assert h.last(["x", "y"]) == {}
    h.close()


@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 200])
def test_insert_rows_stores_every_row_like_one_by_one(tmp_path: Path, count: int) -> None:
    """Multi-row statements store exactly what single inserts do (NaN as NULL, ints as ints)."""
    import sqlite3

    import numpy as np

    from historian.merge import insert_rows

    con = sqlite3.connect(tmp_path / "t.sqlite")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, ts REAL, v REAL, q INTEGER)")
    rows = np.column_stack(
        (np.arange(count), T0 + np.arange(count) * 0.125, np.arange(count) / 3, np.ones(count))
    )
    rows[::7, 2] = math.nan
    insert_rows(con, "INSERT INTO t", rows)
    got = con.execute("SELECT k, ts, v, q, typeof(k), typeof(q) FROM t ORDER BY k").fetchall()
    assert len(got) == count
    for i, (k, ts, v, q, tk, tq) in enumerate(got):
        assert (k, ts, q, tk, tq) == (i, T0 + i * 0.125, 1, "integer", "integer")
        assert v == (None if i % 7 == 0 else i / 3)
    con.close()


def test_a_large_merge_of_many_sparse_tags_equals_raw(tmp_path: Path) -> None:
    """Valve-like data (many tags, about one sample an hour) merged in one go matches raw."""
    import numpy as np

    rng = np.random.default_rng(11)
    batch = [
        Sample(
            f"v{i % 40}", T0 + float(t), float(i % 2), Quality.BAD if i % 53 == 0 else Quality.GOOD
        )
        for i, t in enumerate(np.sort(rng.uniform(0, SPAN, 4000)).round(3))
    ]
    h = SqliteHistorian(tmp_path / "h.sqlite", defer_points=100, merge_points=10**9)
    raw = SqliteHistorian(tmp_path / "raw.sqlite", rollups=False)
    for i in range(0, len(batch), 1000):
        h.write(batch[i : i + 1000])
        raw.write(batch[i : i + 1000])
    assert h.pending_points == len(batch)
    assert h.flush() == len(batch)
    for tag in ("v0", "v13", "v39"):
        assert_same(h, raw, tag)
        assert math.isclose(
            h.on_time(tag, T0 + 1000.5, T0 + SPAN - 3),
            raw.on_time(tag, T0 + 1000.5, T0 + SPAN - 3),
            abs_tol=1e-6,
        )
    h.close()
    raw.close()


def test_insert_rows_template_repeats_columns_and_spells_literals(tmp_path: Path) -> None:
    import sqlite3

    import numpy as np

    from historian.merge import insert_rows

    con = sqlite3.connect(tmp_path / "t.sqlite")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, a REAL, b REAL, c INTEGER)")
    rows = np.column_stack((np.arange(70), np.arange(70) * 1.5))
    insert_rows(con, "INSERT INTO t", rows, "({0}, {1}, {1}, 7)")
    got = con.execute("SELECT k, a, b, c FROM t ORDER BY k").fetchall()
    assert got == [(i, i * 1.5, i * 1.5, 7) for i in range(70)]
    con.close()


def test_purge_touches_only_the_tags_with_samples_past_the_horizon(tmp_path: Path) -> None:
    h = SqliteHistorian(tmp_path / "h.sqlite")
    recent = [Sample(f"t{i}", T0 + 3 * DAY + i, float(i)) for i in range(500)]
    old = [Sample(name, T0 + 60 * k, float(k)) for name in ("a", "b") for k in range(10)]
    h.write(recent + old)
    assert h.purge(T0 + DAY) == 2 * 9  # a and b keep their last sample before the horizon
    assert [len(h.query_raw(n, T0, T0 + 4 * DAY)) for n in ("a", "b")] == [1, 1]
    assert all(len(h.query_raw(f"t{i}", T0, T0 + 4 * DAY)) == 1 for i in range(0, 500, 50))
    assert h.purge(T0 + DAY) == 0  # nothing left to purge
    h.close()
