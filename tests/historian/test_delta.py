"""Counter consumption per bucket (``delta_buckets``): hand-computed answers on every backend.

Each test runs against SQLite and against the v1 backend on a real InfluxDB 1.x (the
``historian`` fixture of the contract suite): resets, rollovers, meter replacements counted
up to the swap, each reason a bucket is uncertain, and ``delta`` as the sum of the buckets.
"""

from __future__ import annotations

import math

import pytest

from historian.base import Historian, Sample
from historian.buckets import Buckets
from historian.counter import DeltaBucket, GapReason
from tags.model import Quality
from tests.historian.conftest import T0

G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


def put(h: Historian, tag: str, points: list[tuple]) -> None:
    """Write ``(dt, value[, quality])`` points at ``T0 + dt``."""
    h.write([Sample(tag, T0 + p[0], p[1], p[2] if len(p) > 2 else G) for p in points])


def edges(*dts: float) -> Buckets:
    """Return buckets between consecutive ``T0 + dt`` (nominal width: their own)."""
    import numpy as np

    e = np.array([T0 + d for d in dts])
    return Buckets(e, np.diff(e))


def values(buckets: list[DeltaBucket]) -> list[float | None]:
    return [b.value for b in buckets]


def reasons(buckets: list[DeltaBucket]) -> list[str | None]:
    return [b.reason for b in buckets]


def test_resets_and_rollover_count_per_bucket(historian: Historian, ns: str) -> None:
    m, w = ns + "meter", ns + "wrapping"
    put(historian, m, [(0, 100), (10, 110), (20, 5), (30, 12)])
    got = historian.delta_buckets(m, Buckets.fixed(T0, T0 + 40, 10))
    assert values(got) == pytest.approx([10, 5, 7, 0])  # the reset adds the new value
    assert [b.start - T0 for b in got] == [0, 10, 20, 30]
    assert [b.end - T0 for b in got] == [10, 20, 30, 40]
    assert historian.delta(m, T0, T0 + 40) == pytest.approx(22)
    put(historian, w, [(0, 990), (10, 998), (20, 3)])
    wrapped = historian.delta_buckets(w, Buckets.fixed(T0, T0 + 20, 10), rollover=1000)
    assert values(wrapped) == pytest.approx([8, 5])  # 1000 - 998 + 3
    assert values(historian.delta_buckets(w, Buckets.fixed(T0, T0 + 20, 10))) == pytest.approx(
        [8, 3]
    )


def test_a_sample_on_an_edge_belongs_to_the_bucket_it_ends(historian: Historian, ns: str) -> None:
    m = ns + "meter"
    put(historian, m, [(-5, 100), (10, 110), (20, 120)])
    got = historian.delta_buckets(m, Buckets.fixed(T0, T0 + 30, 10))
    assert values(got) == pytest.approx([10, 10, 0])
    # the value in force at the start comes from before it
    assert historian.delta(m, T0, T0 + 10) == pytest.approx(10)
    assert historian.delta(m, T0 + 10, T0 + 20) == pytest.approx(10)


def test_replacement_counts_the_old_meter_up_to_the_swap(historian: Historian, ns: str) -> None:
    m = ns + "meter"
    put(historian, m, [(0, 100), (10, 150), (20, 5), (30, 9)])
    historian.record_replacement(m, T0 + 15, old_final=160, new_initial=0)
    got = historian.delta_buckets(m, edges(0, 10, 15, 20, 30))
    # 50 on the old meter; 10 more until it was removed at 15; 5 then 4 on the new one
    assert values(got) == pytest.approx([50, 10, 5, 4])
    assert all(b.quality is G for b in got)
    assert historian.delta(m, T0, T0 + 30) == pytest.approx(69)
    assert historian.delta(m, T0 + 12, T0 + 30) == pytest.approx(10 + 5 + 4)
    assert historian.delta(m, T0 + 16, T0 + 30) == pytest.approx(9)  # from the new initial
    # a swap on a bucket edge: the old meter's part ends that bucket
    assert values(historian.delta_buckets(m, edges(0, 15, 30))) == pytest.approx([60, 9])


def test_replacement_readings_are_clamped_like_billing(historian: Historian, ns: str) -> None:
    m = ns + "meter"
    put(historian, m, [(0, 100), (20, 3)])
    # a final reading below the last sample and a new meter below its initial reading add 0
    historian.record_replacement(m, T0 + 10, old_final=90, new_initial=5)
    assert historian.delta(m, T0, T0 + 20) == 0


def test_every_reason_a_bucket_is_uncertain(historian: Historian, ns: str) -> None:
    m = ns + "meter"
    put(
        historian,
        m,
        [
            (0, 100),
            (10, 110),
            (25, 111, B),  # comm lost from 25 until the good sample at 40
            (40, 130),
            (100, 150),  # moved 20 over 60 s: longer than the expected 15 s
            (200, 150),  # idle 100 s: no change, so no gap (the recorder stores changes only)
        ],
    )
    got = historian.delta_buckets(m, Buckets.fixed(T0 - 20, T0 + 240, 20), max_gap_s=15)
    assert values(got) == pytest.approx([None, 10, 20, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0])
    assert reasons(got) == [
        "no_data",  # before the first sample: no value
        None,
        "comm_lost",
        "gap",
        "gap",
        "gap",
        None,
        None,
        None,
        None,
        None,
        "stale",  # ends 20 s after the newest sample: more than 15 s carried
        "stale",
    ]
    assert [b.quality for b in got] == [U if b.gap else G for b in got]
    assert all(isinstance(b.gap, GapReason) for b in got if b.gap)
    # without an expected interval the bucket's width is the limit
    loose = historian.delta_buckets(m, Buckets.fixed(T0 - 20, T0 + 240, 20))
    assert reasons(loose)[3:6] == ["gap", "gap", "gap"]  # 60 s spans the edges at 60 and 80
    assert reasons(loose)[11:] == [None, "stale"]  # 20 s is not more than 20 s; 40 s is


def test_a_bucket_without_samples_across_which_the_counter_moved(
    historian: Historian, ns: str
) -> None:
    m = ns + "meter"
    put(historian, m, [(0, 100), (100, 200)])
    got = historian.delta_buckets(m, Buckets.fixed(T0, T0 + 120, 30))
    # the increase counts where the later reading is; no bucket of it is sure
    assert values(got) == pytest.approx([0, 0, 0, 100])
    assert reasons(got) == ["gap", "gap", "gap", "gap"]


def test_no_history_and_strings(historian: Historian, ns: str) -> None:
    m, s = ns + "meter", ns + "text"
    got = historian.delta_buckets(m, Buckets.fixed(T0, T0 + 20, 10))
    assert values(got) == [None, None] and reasons(got) == ["no_data", "no_data"]
    historian.write([Sample(s, T0 + 5, "n/a"), Sample(s, T0 + 12, 7.0)])
    got = historian.delta_buckets(s, Buckets.fixed(T0, T0 + 20, 10))
    assert values(got) == [None, 0.0]  # counted from the first number
    assert reasons(got) == ["no_data", "comm_lost"]  # a text is not a reading
    assert historian.delta(m, T0, T0 + 20) == 0.0


def test_delta_is_the_sum_of_the_buckets(historian: Historian, ns: str) -> None:
    m = ns + "meter"
    put(
        historian,
        m,
        [(-30, 5), (3, 7.5), (11, 2, B), (17, 9.25), (29, 1.5), (41, 4), (57, 4), (58, 10)],
    )
    historian.record_replacement(m, T0 + 33, old_final=3, new_initial=0.5)
    for every in (1, 7, 10, 60):
        got = historian.delta_buckets(m, Buckets.fixed(T0, T0 + 60, every), rollover=50)
        total = sum(b.value or 0.0 for b in got)
        assert total == pytest.approx(historian.delta(m, T0, T0 + 60, rollover=50)), every
        for b in got:
            assert (b.value or 0.0) == pytest.approx(
                historian.delta(m, b.start, b.end, rollover=50)
            )
    assert math.isfinite(historian.delta(m, T0, T0 + 60))
