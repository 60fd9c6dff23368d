"""Hours of a single sample have no stored rollup row (schema 4); answers stay exact.

Readers summarise such an hour from its sample (``historian.merge``). These tests check the
paths that depend on it beyond ``test_rollups``: ``on_time_many``'s hour segments, a cold
cache after a reopen, ``purge`` (the row is stored before its sample goes) and files of schema
version 3, where every hour has a row.
"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from historian.base import AggFn, HistorianError, Sample
from historian.merge import store_single_hours
from historian.sqlite import SCHEMA_VERSION, SqliteHistorian
from tags.model import Quality
from tests.historian.conftest import T0

DAY = 86400.0
SPAN = 3 * DAY
#: unaligned windows: raw edges, hour segments and whole days
WINDOWS = (
    (T0 - 3600.0, T0 + SPAN),
    (T0 + 1234.5, T0 + SPAN - 99.25),
    (T0 + DAY - 1800.0, T0 + 2 * DAY + 61.0),
    (T0 + 7200.0, T0 + 5 * 3600.0 + 0.5),
)


def _valves(seed: int, tags: int, per_tag: int) -> list[Sample]:
    """Sparse on/off samples (about one an hour, some hours with several), a few bad."""
    rng = random.Random(seed)
    out = []
    for k in range(tags):
        ts = T0 + rng.uniform(-3 * 3600.0, 3600.0)
        for i in range(per_tag):
            q = Quality.BAD if rng.random() < 0.08 else Quality.GOOD
            out.append(Sample(f"v{k}.open", round(ts, 3), float((i + k) % 2), q))
            ts += rng.choice([rng.uniform(1.0, 900.0), rng.expovariate(1 / 4000.0)])
    return out


def _rows(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def _assert_same_series(got: list, want: list) -> None:
    assert [x for x, _ in got] == [x for x, _ in want]
    for (_, x), (_, y) in zip(got, want, strict=True):
        assert (x is None and y is None) or math.isclose(x, y, abs_tol=1e-6), (got, want)


def _assert_on_time_equal(h: SqliteHistorian, raw: SqliteHistorian, tags: list[str]) -> None:
    for start, end in WINDOWS:
        many = h.on_time_many(tags, start, end)
        for t in tags:
            want = raw.on_time_detail(t, start, end)
            got = h.on_time_detail(t, start, end)
            for x in (many[t], got):
                assert x.on_s == pytest.approx(want.on_s, abs=1e-6), (t, start, end)
                assert x.known_s == pytest.approx(want.known_s, abs=1e-6), (t, start, end)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    batches=st.integers(1, 5),
    shuffle=st.booleans(),
    reopen=st.booleans(),
    deferred=st.booleans(),
)
def test_on_time_many_equals_raw(
    tmp_path: Path, seed: int, batches: int, shuffle: bool, reopen: bool, deferred: bool
) -> None:
    path = tmp_path / f"h{seed}-{batches}-{shuffle}-{reopen}-{deferred}.sqlite"
    path.unlink(missing_ok=True)
    raw_path = path.with_suffix(".raw")
    raw_path.unlink(missing_ok=True)
    samples = _valves(seed, 3, 50)
    if shuffle:
        random.Random(seed + 1).shuffle(samples)
    # deferred: batches go to the pending log and are merged in chunks of about 40 samples
    opts = {"defer_points": 10, "merge_points": 40} if deferred else {}
    h = SqliteHistorian(path, **opts)
    raw = SqliteHistorian(raw_path, rollups=False)
    try:
        size = -(-len(samples) // batches)
        for i in range(0, len(samples), size):
            h.write(samples[i : i + size])
            raw.write(samples[i : i + size])
            if reopen:
                h.close()
                h = SqliteHistorian(path, **opts)
        _assert_on_time_equal(h, raw, h.tags())
    finally:
        h.close()
        raw.close()


def test_sparse_tags_store_no_row_for_single_sample_hours(tmp_path: Path) -> None:
    h = SqliteHistorian(tmp_path / "h.sqlite")
    # one sample in each of 10 hours, then a second one in hour 3
    h.write([Sample("v.open", T0 + 3600.0 * i + 10.0, float(i % 2)) for i in range(10)])
    assert _rows(h.path, "rollup_1h") == 0
    assert _rows(h.path, "rollup_1d") == 1
    h.write([Sample("v.open", T0 + 3 * 3600.0 + 20.0, 0.0)])  # late: the hour is rebuilt
    assert _rows(h.path, "rollup_1h") == 1
    twa = h.query_agg(["v.open"], T0, T0 + 10 * 3600.0, 3600, "twa")["v.open"]
    raw = h.query_agg_raw("v.open", T0, T0 + 10 * 3600.0, 3600, "twa")
    _assert_same_series(twa, raw)
    h.close()


def test_reopen_then_append_to_an_unstored_hour(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = SqliteHistorian(path)
    h.write([Sample("v.open", T0 + 100.0, 1.0), Sample("v.open", T0 + 3700.0, 0.0)])
    h.close()
    h = SqliteHistorian(path)  # cold cache: the newest hour (one sample) has no row
    h.write([Sample("v.open", T0 + 3900.0, 1.0)])
    h.write([Sample("v.open", T0 + 4000.0, 0.0)])
    got = h.query_agg(["v.open"], T0, T0 + 3 * 3600.0, 3600, "twa")["v.open"]
    _assert_same_series(got, h.query_agg_raw("v.open", T0, T0 + 3 * 3600.0, 3600, "twa"))
    assert h.query_agg(["v.open"], T0, T0 + 7200.0, 3600, "count")["v.open"] == [
        (T0, 1),
        (T0 + 3600.0, 3),
    ]
    h.close()


def test_purge_keeps_the_answers_of_single_sample_hours(tmp_path: Path) -> None:
    """Hour-aligned answers over the purged span stay the same (raw edges are gone, as before)."""
    h = SqliteHistorian(tmp_path / "h.sqlite")
    h.write(_valves(5, 4, 80))
    tags = h.tags()
    aligned = (
        (T0 - 3600.0, T0 + SPAN),
        (T0 + 3600.0, T0 + DAY + 7200.0),
        (T0 + 7200.0, T0 + 5 * 3600.0),
    )
    fns = (AggFn.TWA, AggFn.COUNT, AggFn.MEAN, AggFn.MIN, AggFn.LAST)
    before = {(fn, w): h.query_agg(tags, *w, 3600, fn) for fn in fns for w in aligned}
    many_before = {w: h.on_time_many(tags, *w) for w in aligned}
    detail_before = {w: {t: h.on_time_detail(t, *w) for t in tags} for w in aligned}
    stored_before = _rows(h.path, "rollup_1h")
    horizon = T0 + 2 * DAY
    assert h.purge(horizon) > 0
    assert all(len(h.query_raw(t, T0 - DAY, horizon)) <= 1 for t in tags)
    assert _rows(h.path, "rollup_1h") > stored_before  # the single-sample hours got rows
    for (fn, w), want in before.items():
        got = h.query_agg(tags, *w, 3600, fn)
        for t in tags:
            _assert_same_series(got[t], want[t])
    for w in aligned:
        many = h.on_time_many(tags, *w)
        for t in tags:
            for x in (many[t], h.on_time_detail(t, *w)):
                assert x.on_s == pytest.approx(many_before[w][t].on_s, abs=1e-6), (w, t)
                assert x.known_s == pytest.approx(many_before[w][t].known_s, abs=1e-6), (w, t)
                assert x.on_s == pytest.approx(detail_before[w][t].on_s, abs=1e-6), (w, t)
    h.close()


def test_version_3_file_is_opened_and_written(tmp_path: Path) -> None:
    """A schema 3 file (every hour has a row) answers the same and takes new samples."""
    path = tmp_path / "v3.sqlite"
    samples = _valves(9, 3, 60)
    old, new = samples[::2], samples[1::2]  # the new ones land before, between and after
    h = SqliteHistorian(path)
    h.write(old)
    tags = h.tags()
    h.close()
    con = sqlite3.connect(path)  # what schema 3 wrote: a row for every hour with samples
    for (tid,) in con.execute("SELECT id FROM tags").fetchall():
        store_single_hours(con, tid, math.inf)
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    stored = _rows(path, "rollup_1h")
    assert stored > 0
    h = SqliteHistorian(path)
    raw = SqliteHistorian(tmp_path / "raw.sqlite", rollups=False)
    try:
        con = sqlite3.connect(path)
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        con.close()
        assert version == (str(SCHEMA_VERSION),)
        assert _rows(path, "rollup_1h") == stored  # nothing to migrate
        raw.write(old)
        _assert_on_time_equal(h, raw, tags)
        h.write(new)
        raw.write(new)
        _assert_on_time_equal(h, raw, tags)
        for t in tags:
            for fn in (AggFn.TWA, AggFn.COUNT, AggFn.MAX):
                got = h.query_agg([t], T0 - 3600.0, T0 + SPAN, 3600, fn)[t]
                _assert_same_series(got, raw.query_agg([t], T0 - 3600.0, T0 + SPAN, 3600, fn)[t])
    finally:
        h.close()
        raw.close()


def test_a_file_of_a_newer_schema_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    SqliteHistorian(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(HistorianError, match=r"newer version.*schema 99"):
        SqliteHistorian(path)
