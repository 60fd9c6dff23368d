"""Counter deltas on SQLite against a plain reading of the rule, for random data (hypothesis).

The oracle below walks the readings one by one (``historian.counter``'s rule, written the
slow and obvious way); the backend must agree bucket by bucket, the buckets must add up to
the delta of their span, and reading a span costs the same statements for 3 buckets or 3,000.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from historian.base import Replacement, Sample
from historian.buckets import Buckets
from historian.sqlite import SqliteHistorian
from tags.model import Quality
from tests.historian.conftest import T0

OLD, NEW, READING = 0, 1, 2
_names = itertools.count()


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteHistorian]:
    h = SqliteHistorian(Path(tmp_path_factory.mktemp("delta")) / "history.sqlite")
    yield h
    h.close()


def oracle(
    points: list[tuple[float, float, bool]],
    reps: list[Replacement],
    start: float,
    end: float,
    rollover: float | None,
) -> float:
    """Return the increase over ``[start, end]``: counter at end minus counter at start."""
    readings = sorted(
        [(t, READING, v) for t, v, good in points if good]
        + [(r.ts, OLD, r.old_final) for r in reps]
        + [(r.ts, NEW, r.new_initial) for r in reps]
    )

    def counter_at(x: float) -> float:
        total, prev = 0.0, None
        for t, kind, v in readings:
            if t > x:
                break
            if prev is not None:
                p_kind, pv = prev
                if kind == NEW:
                    step = 0.0
                elif kind == OLD or p_kind == NEW:
                    step = max(0.0, v - pv)
                elif v >= pv:
                    step = v - pv
                else:
                    step = v if rollover is None else rollover - pv + v
                total += step
            prev = (kind, v)
        return total

    return counter_at(end) - counter_at(start)


points_st = st.lists(
    st.tuples(
        st.integers(0, 200),
        st.integers(0, 400).map(lambda x: x / 4),
        st.booleans().map(lambda b: b or None),  # mostly good
    ),
    max_size=40,
    unique_by=lambda p: p[0],
)
reps_st = st.lists(
    st.tuples(st.integers(-5, 205), st.integers(0, 400).map(lambda x: x / 4), st.integers(0, 20)),
    max_size=2,
    unique_by=lambda r: r[0],
)
edges_st = st.lists(st.integers(-10, 210), min_size=2, max_size=9, unique=True).map(sorted)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=points_st,
    reps=reps_st,
    cuts=edges_st,
    rollover=st.sampled_from([None, 150.0]),
)
def test_buckets_follow_the_rule_and_add_up(
    sqlite: SqliteHistorian,
    points: list[tuple[int, float, bool | None]],
    reps: list[tuple[int, float, int]],
    cuts: list[int],
    rollover: float | None,
) -> None:
    tag = f"p{next(_names)}"
    pts = sorted((T0 + t, v, good is True) for t, v, good in points)
    sqlite.write([Sample(tag, t, v, Quality.GOOD if g else Quality.BAD) for t, v, g in pts])
    replacements = [Replacement(tag, T0 + t, a, float(b)) for t, a, b in reps]
    for r in replacements:
        sqlite.record_replacement(tag, r.ts, r.old_final, r.new_initial)
    e = np.array([T0 + c for c in cuts], dtype=np.float64)
    got = sqlite.delta_buckets(tag, Buckets(e, np.diff(e)), rollover=rollover)
    assert len(got) == len(cuts) - 1
    for b in got:
        want = oracle(pts, replacements, b.start, b.end, rollover)
        assert (b.value or 0.0) == pytest.approx(want, abs=1e-9), (b.start - T0, b.end - T0)
    span = oracle(pts, replacements, e[0], e[-1], rollover)
    assert sum(b.value or 0.0 for b in got) == pytest.approx(span, abs=1e-9)
    assert sqlite.delta(tag, e[0], e[-1], rollover=rollover) == pytest.approx(span, abs=1e-9)


def test_one_read_of_the_span_whatever_the_bucket_count(sqlite: SqliteHistorian) -> None:
    tag = "many-buckets"
    sqlite.write([Sample(tag, T0 + 60 * i, float(i)) for i in range(3000)])
    seen: list[str] = []
    sqlite._con.set_trace_callback(seen.append)
    try:
        counts = []
        for every in (60_000.0, 60.0):  # 3 buckets, then 3,000
            seen.clear()
            got = sqlite.delta_buckets(tag, Buckets.fixed(T0, T0 + 180_000, every))
            assert sum(b.value or 0.0 for b in got) == pytest.approx(2999)
            counts.append(sum(" samples " in q for q in seen))
    finally:
        sqlite._con.set_trace_callback(None)
    assert counts == [2, 2]
