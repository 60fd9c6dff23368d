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
    for every in (3600.0, 7200.0, DAY):
        for start, end in ((T0, T0 + SPAN), (T0 + 3600, T0 + DAY + 7200), (T0, T0 + DAY + 5000.5)):
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
    batch_sizes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=10),
    windows=st.lists(
        st.tuples(st.floats(0, SPAN, allow_nan=False), st.floats(0, SPAN, allow_nan=False)),
        min_size=1,
        max_size=4,
    ),
)
def test_rollups_equal_raw(samples, in_order, batch_sizes, windows) -> None:
    """Random values, qualities and write order (late samples, duplicates) in random batches."""
    if in_order:
        samples = sorted(samples, key=lambda s: s[0])
    with tempfile.TemporaryDirectory() as d:
        with_rollups = SqliteHistorian(Path(d) / "a.sqlite")
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
