"""Stored counter buckets (``historian.counter_days``): the same figures as the raw counter rule.

Hand-made meters over six local days (Asia/Shanghai) cover each case the rule handles: a
steady meter, a meter replaced mid-day (the new one starting at 0), a counter reset, a gap
across a midnight, comm lost, a meter that starts late, one that falls silent (stale days),
one never written, and a replacement between a midnight and the next sample. Every answer of
``delta_table`` (cold: computed and stored; warm: read back) equals ``delta_buckets`` of each
tag, bucket for bucket (value, quality, reason), for the whole window and for windows inside
it; late samples and replacements drop the stored rows they change.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from historian import counter_days
from historian.base import Sample
from historian.buckets import Buckets, Every, Unit
from historian.counter import CounterData, consumption
from historian.sqlite import SqliteHistorian
from tags.model import Quality, TagDef

ZONE = ZoneInfo("Asia/Shanghai")
DAY = Every(1, Unit.DAY)
H = 3600.0


def at(day: int, hour: float = 0.0) -> float:
    return datetime(2025, 11, day, tzinfo=ZONE).timestamp() + hour * H


#: tag -> max_gap_s (the tag's expected interval; None: none)
TAGS: dict[str, float | None] = {
    "steady": None,
    "swapped": None,
    "reset": 2 * H,
    "gappy": 2 * H,
    "lost": None,
    "late": None,
    "silent": 2 * H,
    "never": None,
    "edge_swap": 1.6 * H,  # the pair across midnight is a gap unless the 00:30 swap is read
}


def hourly(tag: str, first: float, last: float, value0: float, rate: float) -> list[Sample]:
    ts = np.arange(first, last + 1.0, H)
    return [Sample(tag, float(t), value0 + rate * i) for i, t in enumerate(ts.tolist())]


def fill(h: SqliteHistorian) -> None:
    """Write the meters of the module docstring (2025-11-01 .. 11-07, hourly)."""
    a, z = at(1) - 2 * H, at(7, 2)
    batch = hourly("steady", a, z, 100.0, 1.25)
    # replaced at 11:30 on day 2: the old meter's final 137.5, the new one from 0
    old = [s for s in hourly("swapped", a, at(2, 11), 100.0, 1.0)]
    new = hourly("swapped", at(2, 12), z, 0.5, 1.0)
    batch += old + new
    # reset to 0 at 05:00 on day 3
    batch += hourly("reset", a, at(3, 4), 500.0, 2.0)
    batch += hourly("reset", at(3, 5), z, 1.0, 2.0)
    # silent from 22:00 on day 2 to 04:00 on day 3 while it moved
    batch += hourly("gappy", a, at(2, 22), 10.0, 0.5)
    batch += hourly("gappy", at(3, 4), z, 40.0, 0.5)
    # comm lost (bad samples) from 08:00 to 12:00 on day 4
    lost = hourly("lost", a, z, 0.0, 3.0)
    for i, s in enumerate(lost):
        if at(4, 8) <= s.ts < at(4, 12):
            lost[i] = Sample("lost", s.ts, None, Quality.BAD)
    batch += lost
    batch += hourly("late", at(3, 9), z, 7.0, 1.0)  # no data before day 3 09:00
    batch += hourly("silent", a, at(4, 13), 1.0, 1.0)  # nothing after day 4 13:00: stale
    # samples at 23:00 and 01:00 around the midnight of day 4, a replacement at 00:30
    edge = [s for s in hourly("edge_swap", a, z, 50.0, 2.0) if s.ts != at(4)]
    for i, s in enumerate(edge):
        if s.ts > at(4):
            edge[i] = Sample("edge_swap", s.ts, s.value - 246.0)
    batch += edge
    h.write(batch)
    h.record_replacement("swapped", at(2, 11.5), 137.5, 0.0)
    h.record_replacement("edge_swap", at(4, 0.5), 245.0, 0.0)


@pytest.fixture
def hist(tmp_path: Path) -> SqliteHistorian:
    h = SqliteHistorian(tmp_path / "h.sqlite")
    fill(h)
    yield h
    h.close()


def raw(h: SqliteHistorian, buckets: Buckets) -> dict:
    return {t: h.delta_buckets(t, buckets, max_gap_s=g) for t, g in TAGS.items()}


def stored(h: SqliteHistorian) -> int:
    return int(h._con.execute("SELECT count(*) FROM counter_bucket").fetchone()[0])


def days(a: int, b: int) -> Buckets:
    return Buckets.calendar(at(a), at(b), DAY, ZONE)


def test_cold_and_warm_answers_equal_the_raw_rule(hist: SqliteHistorian) -> None:
    b = days(1, 9)  # days 7 and 8: open (no sample at or after their end)
    expected = raw(hist, b)
    assert stored(hist) == 0
    cold = hist.delta_table(TAGS, b).series()
    assert cold == expected
    n = stored(hist)
    assert n > 0
    warm = hist.delta_table(TAGS, b).series()
    assert warm == expected and stored(hist) == n
    # the cases are there: the rows are not all alike
    reasons = {x.reason for s in expected.values() for x in s}
    assert {"no_data", "comm_lost", "gap", "stale", None} <= reasons
    assert expected["swapped"][1].value == pytest.approx(11.0 + 0.5 + 0.5 + 12.0)
    # open buckets are not stored: the last stored start of "steady" is day 6
    last = hist._con.execute(
        "SELECT max(start) FROM counter_bucket b JOIN tags t ON t.id = b.tag_id "
        "WHERE t.name = 'steady'"
    ).fetchone()[0]
    assert last == at(6)
    # "silent": its stale days (no sample after them) are not stored either
    silent = hist._con.execute(
        "SELECT count(*) FROM counter_bucket b JOIN tags t ON t.id = b.tag_id "
        "WHERE t.name = 'silent'"
    ).fetchone()[0]
    assert silent == 3  # days 1..3; day 4 holds the last sample, it is open


@pytest.mark.parametrize(("a", "b"), [(1, 4), (2, 5), (4, 7), (3, 4), (1, 9), (5, 9)])
def test_windows_inside_a_stored_one_equal_the_raw_rule(
    hist: SqliteHistorian, a: int, b: int
) -> None:
    hist.delta_table(TAGS, days(1, 9))
    assert hist.delta_table(TAGS, days(a, b)).series() == raw(hist, days(a, b))


def test_replacement_after_the_window_end_is_read_raw(hist: SqliteHistorian) -> None:
    """Day 3 ends at midnight; the raw rule of a window ending there does not see 00:30's swap."""
    hist.delta_table(TAGS, days(1, 7))
    short = days(1, 4)
    got = hist.delta_table(TAGS, short).series()
    assert got == raw(hist, short)
    long_ = hist.delta_table(TAGS, days(1, 7)).series()
    assert long_ == raw(hist, days(1, 7))


def test_late_samples_and_replacements_drop_what_they_change(hist: SqliteHistorian) -> None:
    b = days(1, 7)
    before = hist.delta_table(TAGS, b).series()
    n = stored(hist)
    hist.write([Sample("steady", at(2, 10.5), 200.0)])  # a late, out-of-line reading
    assert stored(hist) < n
    after = hist.delta_table(TAGS, b).series()
    assert after == raw(hist, b)
    assert after["steady"][1].value != before["steady"][1].value
    hist.record_replacement("reset", at(5, 6.5), 1000.0, 0.0)
    assert hist.delta_table(TAGS, b).series() == raw(hist, b)
    # a gap filled late: the stale days of "silent" become known
    hist.write(hourly("silent", at(4, 14), at(7, 2), 14.0, 1.0))
    assert hist.delta_table(TAGS, b).series() == raw(hist, b)


def test_live_writes_touch_no_stored_row(hist: SqliteHistorian) -> None:
    hist.delta_table(TAGS, days(1, 7))
    n = stored(hist)
    newest = at(7, 3)
    with hist._lock:
        hist._con.execute("BEGIN IMMEDIATE")
        dropped = counter_days.invalidate(
            hist._con, np.array([1, 2, 3]), np.array([newest, newest, newest])
        )
        hist._con.execute("COMMIT")
    assert dropped == 0
    hist.write([Sample(t, newest, 1e6) for t in TAGS if t != "never"])
    assert stored(hist) == n


def test_months_are_stored_hours_are_not(hist: SqliteHistorian) -> None:
    month = Buckets.calendar(at(1) - 31 * 86400, at(1) + 30 * 86400, Every(1, Unit.MONTH), ZONE)
    assert counter_days.cacheable(month)
    assert hist.delta_table(TAGS, month).series() == raw(hist, month)
    hours = Buckets.calendar(at(2), at(3), Every(1, Unit.HOUR), ZONE)
    assert not counter_days.cacheable(hours)
    n = stored(hist)
    assert hist.delta_table(TAGS, hours).series() == raw(hist, hours)
    assert stored(hist) == n
    clipped = Buckets.calendar(at(2, 5), at(5), DAY, ZONE)
    assert not counter_days.cacheable(clipped)


def test_consumption_uses_it_with_each_tags_gap_limit(hist: SqliteHistorian) -> None:
    defs = [TagDef("gappy", history_max_interval_s=3600.0, poll_s=60.0), TagDef("steady")]
    b = days(1, 7)
    got = consumption(hist, defs, b)
    assert got["gappy"] == hist.delta_buckets("gappy", b, max_gap_s=3600.0 + 180.0)
    table = counter_days.consumption_table(hist, defs, b)
    assert table.series() == got


def test_a_write_between_the_reads_and_the_store_stores_nothing(hist: SqliteHistorian) -> None:
    """Another connection commits while the rows are computed: the answer stands, nothing kept."""
    b = days(1, 7)
    other = sqlite3.connect(hist.path)

    def fetch(tag: str, a: float, e: float) -> CounterData:
        other.execute(
            "INSERT INTO meta VALUES ('poke', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = value || '1'"
        )
        other.commit()
        return hist._counter_data(tag, a, e)

    try:
        got = counter_days.delta_table(
            hist._con, hist._lock, hist._catch_up, hist._tag_id, fetch, TAGS, b
        )
    finally:
        other.close()
    assert got.series() == raw(hist, b)
    assert stored(hist) == 0
    assert hist.delta_table(TAGS, b).series() == raw(hist, b)  # and the next one stores them
    assert stored(hist) > 0
