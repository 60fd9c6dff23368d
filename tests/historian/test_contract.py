"""Contract suite: every backend must give these hand-computed answers."""

from __future__ import annotations

import pytest

from historian.base import AggFn, Historian, Sample
from tags.model import Quality, Reason
from tests.historian.conftest import T0

G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


def put(h: Historian, tag: str, points: list[tuple]) -> None:
    """Write ``(dt, value[, quality])`` points at ``T0 + dt``."""
    h.write([Sample(tag, T0 + p[0], p[1], p[2] if len(p) > 2 else G) for p in points])


def test_write_last_value_at_and_raw(historian: Historian, ns: str) -> None:
    a, s = ns + "a", ns + "s"
    put(historian, a, [(0, 1.5), (10, 2), (20, True), (30, 7, B)])
    historian.write([Sample(s, T0 + 5, "open", U, Reason.MANUAL)])
    last = historian.last([a, s, ns + "missing"])
    assert set(last) == {a, s}
    assert last[a] == Sample(a, T0 + 30, 7.0, B, Reason.NONE)
    assert last[s] == Sample(s, T0 + 5, "open", U, Reason.MANUAL)
    assert historian.value_at(a, T0 + 10).value == 2.0  # exactly at a sample
    assert historian.value_at(a, T0 + 15).value == 2.0
    assert historian.value_at(a, T0 - 1) is None
    assert historian.value_at(a, T0 + 99, include_bad=False).ts == T0 + 20
    raw = historian.query_raw(a, T0 + 10, T0 + 30)  # end exclusive
    assert [(r.ts - T0, r.value) for r in raw] == [(10, 2.0), (20, 1.0)]
    assert [r.quality for r in historian.query_raw(a, T0, T0 + 40)] == [G, G, G, B]
    assert len(historian.query_raw(a, T0, T0 + 40, include_bad=False)) == 3


def test_same_timestamp_replaces(historian: Historian, ns: str) -> None:
    a = ns + "a"
    put(historian, a, [(0, 1.0), (0, 2.0)])
    put(historian, a, [(0, 3.0)])
    assert [r.value for r in historian.query_raw(a, T0, T0 + 1)] == [3.0]


# Samples (T0,1) (T0+10,3) (T0+30,2 BAD) (T0+40,5); buckets of 20 s from T0 to T0+60.
AGG_POINTS = [(0, 1.0), (10, 3.0), (30, 2.0, B), (40, 5.0)]
AGG_EXPECTED = {
    AggFn.MEAN: [2.0, None, 5.0],
    AggFn.MIN: [1.0, None, 5.0],
    AggFn.MAX: [3.0, None, 5.0],
    AggFn.FIRST: [1.0, None, 5.0],
    AggFn.LAST: [3.0, None, 5.0],
    AggFn.SUM: [4.0, None, 5.0],
    AggFn.COUNT: [2.0, 0.0, 1.0],
    # bucket 1: 3 holds over [20, 30), [30, 40) is bad, so unknown
    AggFn.TWA: [2.0, 3.0, 5.0],
}


@pytest.mark.parametrize("fn", list(AggFn))
def test_query_agg_every_fn(historian: Historian, ns: str, fn: AggFn) -> None:
    a = ns + "a"
    put(historian, a, AGG_POINTS)
    out = historian.query_agg([a, ns + "none"], T0, T0 + 60, 20, fn)
    assert [b - T0 for b, _ in out[a]] == [0, 20, 40]
    assert [v for _, v in out[a]] == pytest.approx(AGG_EXPECTED[fn])
    empty = [0.0, 0.0, 0.0] if fn is AggFn.COUNT else [None, None, None]
    assert [v for _, v in out[ns + "none"]] == empty


def test_query_agg_include_bad(historian: Historian, ns: str) -> None:
    a = ns + "a"
    put(historian, a, AGG_POINTS)
    mean = historian.query_agg([a], T0, T0 + 60, 20, "mean", include_bad=True)[a]
    assert [v for _, v in mean] == pytest.approx([2.0, 2.0, 5.0])
    twa = historian.query_agg([a], T0, T0 + 60, 20, "twa", include_bad=True)[a]
    assert [v for _, v in twa] == pytest.approx([2.0, 2.5, 5.0])


def test_twa_carries_value_from_before_start_and_clips_last_bucket(
    historian: Historian, ns: str
) -> None:
    a = ns + "a"
    put(historian, a, [(-100, 4.0), (15, 10.0)])
    out = historian.query_agg([a], T0, T0 + 25, 10, AggFn.TWA)[a]
    # [0,10): 4; [10,20): 5 s of 4 then 5 s of 10 -> 7; [20,25) (clipped): 10
    assert [b - T0 for b, _ in out] == [0, 10, 20]
    assert [v for _, v in out] == pytest.approx([4.0, 7.0, 10.0])


def test_query_agg_bad_arguments(historian: Historian, ns: str) -> None:
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        historian.query_agg([ns + "a"], T0, T0 + 60, 20, "median")
    with pytest.raises(ValueError, match="bucket width"):
        historian.query_agg([ns + "a"], T0, T0 + 60, 0, "mean")
    with pytest.raises(ValueError, match="bad time range"):
        historian.query_agg([ns + "a"], T0 + 60, T0, 20, "mean")


# -- on_time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "start", "end", "on", "known"),
    [
        # value before start: on from start until it switches off
        ([(-100, 1), (30, 0), (60, 1)], 0, 100, 30 + 40, 100),
        # repeated states do not restart anything
        ([(0, 1), (10, 1), (20, 0), (30, 0), (40, 1)], 0, 50, 20 + 10, 50),
        # samples exactly at the bounds: the one at start counts, the one at end does not
        ([(0, 0), (10, 1), (20, 0)], 10, 20, 10, 10),
        ([(0, 0), (10, 1), (20, 0)], 0, 10, 0, 10),
        # nothing before start: unknown until the first sample
        ([(10, 1)], 0, 20, 10, 10),
        # a bad sample ends the known interval until the next good one
        ([(0, 1), (10, 1, B), (30, 1)], 0, 40, 20, 20),
        # uncertain counts as known
        ([(0, 1, U)], 0, 10, 10, 10),
        # no samples at all
        ([], 0, 10, 0, 0),
    ],
)
def test_on_time_edges(historian: Historian, ns: str, points, start, end, on, known) -> None:
    v = ns + "valve"
    if points:
        put(historian, v, points)
    detail = historian.on_time_detail(v, T0 + start, T0 + end)
    assert detail.on_s == pytest.approx(on)
    assert detail.known_s == pytest.approx(known)
    assert detail.unknown_s == pytest.approx(end - start - known)
    assert historian.on_time(v, T0 + start, T0 + end) == pytest.approx(on)


def test_on_time_across_hours_and_days(historian: Historian, ns: str) -> None:
    v = ns + "valve"
    put(
        historian,
        v,
        [(-7200, 1), (86400 + 5, 0), (2 * 86400 + 3600 + 7, 1), (2 * 86400 + 3600 + 8, 1, B)],
    )
    # window from mid-hour on day 0 to mid-hour on day 3
    start, end = T0 + 1800.5, T0 + 3 * 86400 + 1000
    d = historian.on_time_detail(v, start, end)
    on = (T0 + 86400 + 5 - start) + 1
    known = on + (2 * 86400 + 3600 + 7 - 86400 - 5)
    assert d.on_s == pytest.approx(on)
    assert d.known_s == pytest.approx(known)


# -- delta ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "start", "end", "kwargs", "expected"),
    [
        # plain increase, value in force at start comes from before the window
        ([(-10, 100), (10, 110), (20, 125)], 0, 30, {}, 25),
        ([(-10, 100), (10, 110), (20, 125)], 0, 15, {}, 10),
        # samples exactly at the bounds: consecutive windows add up
        ([(0, 100), (10, 110)], 0, 10, {}, 10),
        ([(0, 100), (10, 110)], 10, 20, {}, 0),
        # reset: the counter restarted from 0
        ([(0, 100), (10, 110), (20, 5), (30, 12)], 0, 30, {}, 10 + 5 + 7),
        # rollover at 1000
        ([(0, 990), (10, 998), (20, 3)], 0, 20, {"rollover": 1000}, 8 + 5),
        # bad samples are left out
        ([(0, 100), (10, 0, B), (20, 120)], 0, 20, {}, 20),
        # no value before start: the first sample in the window is the base
        ([(5, 100), (10, 104)], 0, 20, {}, 4),
        # nothing at all
        ([], 0, 20, {}, 0),
    ],
)
def test_delta_edges(historian: Historian, ns: str, points, start, end, kwargs, expected) -> None:
    m = ns + "meter"
    if points:
        put(historian, m, points)
    assert historian.delta(m, T0 + start, T0 + end, **kwargs) == pytest.approx(expected)


def test_delta_meter_replacement(historian: Historian, ns: str) -> None:
    m = ns + "meter"
    put(historian, m, [(0, 100), (10, 150), (20, 5), (30, 9)])
    historian.record_replacement(m, T0 + 15, old_final=160, new_initial=0)
    # 50 on the old meter, 10 more until it was removed, 5 + 4 on the new one
    assert historian.delta(m, T0, T0 + 30) == pytest.approx(50 + 10 + 5 + 4)
    assert historian.delta(m, T0, T0 + 10) == pytest.approx(50)
    assert historian.delta(m, T0 + 20, T0 + 30) == pytest.approx(4)


# -- names, strings, times ---------------------------------------------------------------------


def test_odd_names_strings_and_fractional_times_round_trip(historian: Historian, ns: str) -> None:
    names = [ns + "b1 meter,x=1", ns + "o'clock", ns + 'say "hi"', ns + "温度"]
    texts = ['a "quoted", spaced = text', "back\\slash", "ünïcödé", ""]
    times = [T0 + 0.123456789, T0 + 1 / 3, T0 + 2.5e-7, T0 + 86399.999999]
    for name, text, ts in zip(names, texts, times, strict=True):
        historian.write([Sample(name, ts, text, U, Reason.MANUAL), Sample(name, ts + 1, 7)])
    last = historian.last(names)
    for name, text, ts in zip(names, texts, times, strict=True):
        raw = historian.query_raw(name, T0, T0 + 86401)
        assert raw == [Sample(name, ts, text, U, Reason.MANUAL), Sample(name, ts + 1, 7.0)]
        assert historian.value_at(name, ts) == raw[0]  # the exact time finds the sample
        assert historian.value_at(name, ts - 1e-6) is None
        assert last[name] == raw[1]


def test_query_agg_unaligned_window_many_tags(historian: Historian, ns: str) -> None:
    a, b, c = ns + "a", ns + "b", ns + "c"
    put(historian, a, [(0, 1.0), (7, 2.0), (8, 4.0), (20, 8.0)])
    put(historian, b, [(3, 10.0), (16, 20.0, B), (17.5, 30.0)])
    put(historian, c, [(100, 1.0)])  # outside the window
    # buckets of 7.5 s from T0 + 2.5: [2.5, 10), [10, 17.5), [17.5, 20) (clipped)
    start, end = T0 + 2.5, T0 + 20
    mean = historian.query_agg([a, b, c], start, end, 7.5, "mean")
    assert [x - start for x, _ in mean[a]] == [0, 7.5, 15]
    assert [v for _, v in mean[a]] == pytest.approx([3.0, None, None])
    assert [v for _, v in mean[b]] == pytest.approx([10.0, None, 30.0])
    assert [v for _, v in mean[c]] == [None, None, None]
    count = historian.query_agg([a, b, c], start, end, 7.5, "count", include_bad=True)
    assert [v for _, v in count[b]] == [1.0, 1.0, 1.0]
    twa = historian.query_agg([a, b], start, end, 7.5, "twa")
    # a: 1 holds 2.5..7, 2 until 8, 4 until 17.5 -> (4.5*1 + 1*2 + 2*4)/7.5, then 4, then 4
    assert [v for _, v in twa[a]] == pytest.approx([14.5 / 7.5, 4.0, 4.0])
    # b: unknown until 3, then 10; [16, 17.5) bad is unknown; 30 from 17.5
    assert [v for _, v in twa[b]] == pytest.approx([10.0, 10.0, 30.0])


def test_on_time_many_matches_tag_by_tag(historian: Historian, ns: str) -> None:
    from historian.base import on_time_many

    valves = [ns + f"v{i}" for i in range(5)]
    for i, v in enumerate(valves[:4]):
        put(historian, v, [(-50 + i, 1), (10 * i, 0), (10 * i + 5, 1), (60, 0, B)])
    many = on_time_many(historian, [*valves, valves[0]], T0, T0 + 100)
    assert list(many) == valves
    for v in valves:
        single = historian.on_time_detail(v, T0, T0 + 100)
        assert many[v].on_s == pytest.approx(single.on_s)
        assert many[v].known_s == pytest.approx(single.known_s)
    # valve 2: on from before start until 20, off until 25, on until 60, then bad
    assert (many[valves[2]].on_s, many[valves[2]].known_s) == pytest.approx((55.0, 60.0))
    assert (many[valves[4]].on_s, many[valves[4]].known_s) == (0.0, 0.0)
