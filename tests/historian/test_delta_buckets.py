"""Calendar buckets in the site's time zone (``historian.buckets``) and consumption per day/month.

Days run from local midnight to local midnight (23 or 25 hours when clocks change), months
are calendar months, hours are local clock hours (the repeated hour when clocks go back is
a bucket of its own). A meter counting 1 per hour shows it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historian.base import Sample
from historian.buckets import Buckets, Every, Unit, floor, parse_every
from historian.compute import bucket_edges
from historian.sqlite import SqliteHistorian

BERLIN = ZoneInfo("Europe/Berlin")


def local(*args: int, zone: ZoneInfo = BERLIN) -> float:
    return datetime(*args, tzinfo=zone).timestamp()  # type: ignore[misc]


def labels(b: Buckets, zone: ZoneInfo = BERLIN) -> list[str]:
    return [datetime.fromtimestamp(t, zone).strftime("%m-%d %H:%M%z") for t in b.starts]


def test_parse_every() -> None:
    assert parse_every("3600") == 3600.0
    assert parse_every("1.5e3") == 1500.0
    assert parse_every("1d") == Every(1, Unit.DAY)
    assert parse_every("15m") == Every(15, Unit.MINUTE)
    assert str(parse_every("1mo")) == "1mo"
    for bad in ("0", "1e999", "-5", "1w", "7h", "0d", "1 d", "d", "1.5h", ""):
        with pytest.raises(ValueError, match="every"):
            parse_every(bad)


def test_fixed_buckets_are_those_of_query_agg() -> None:
    for start, end, every in ((0.0, 100.0, 30.0), (5.5, 6.0, 1.0), (0.0, 90.0, 30.0)):
        b = Buckets.fixed(start, end, every)
        assert b.starts == bucket_edges(start, end, every).tolist()
        assert b.ends[-1] == end and list(b.widths) == [every] * len(b)
    assert len(Buckets.fixed(10.0, 10.0, 5.0)) == 0


def test_days_are_local_midnights_23_and_25_hours_when_clocks_change() -> None:
    spring = Buckets.calendar(local(2025, 3, 29), local(2025, 4, 1), Every(1, Unit.DAY), BERLIN)
    assert labels(spring) == ["03-29 00:00+0100", "03-30 00:00+0100", "03-31 00:00+0200"]
    assert list(np.diff(spring.edges) / 3600) == [24, 23, 24]
    autumn = Buckets.calendar(local(2025, 10, 26), local(2025, 10, 27), Every(1, Unit.DAY), BERLIN)
    assert list(autumn.widths / 3600) == [25]


def test_hours_follow_the_local_clock() -> None:
    day = Buckets.calendar(local(2025, 10, 26), local(2025, 10, 27), Every(1, Unit.HOUR), BERLIN)
    assert len(day) == 25
    assert labels(day)[2:4] == ["10-26 02:00+0200", "10-26 02:00+0100"]  # the hour twice
    spring = Buckets.calendar(local(2025, 3, 30), local(2025, 3, 31), Every(1, Unit.HOUR), BERLIN)
    assert len(spring) == 23 and labels(spring)[2] == "03-30 03:00+0200"
    # a zone half an hour off UTC: local whole hours are UTC half hours
    kolkata = ZoneInfo("Asia/Kolkata")
    b = Buckets.calendar(
        local(2025, 1, 1, 0, 10, zone=kolkata),
        local(2025, 1, 1, 3, zone=kolkata),
        Every(1, Unit.HOUR),
        kolkata,
    )
    assert labels(b, kolkata) == ["01-01 00:10+0530", "01-01 01:00+0530", "01-01 02:00+0530"]
    assert datetime.fromtimestamp(b.starts[1], UTC).minute == 30
    quarter = Buckets.calendar(
        local(2025, 1, 1, 0, 5), local(2025, 1, 1, 1), Every(15, Unit.MINUTE), BERLIN
    )
    assert labels(quarter) == [
        "01-01 00:05+0100",
        "01-01 00:15+0100",
        "01-01 00:30+0100",
        "01-01 00:45+0100",
    ]
    assert list(quarter.widths) == [900.0] * 4  # nominal, also for the clipped first one


def test_months_and_years_are_calendar_ones() -> None:
    b = Buckets.calendar(local(2025, 1, 15), local(2025, 4, 1), Every(1, Unit.MONTH), BERLIN)
    assert labels(b) == ["01-15 00:00+0100", "02-01 00:00+0100", "03-01 00:00+0100"]
    assert list(b.widths / 86400) == [31, 28, 31 - 1 / 24]  # March loses an hour
    y = Buckets.calendar(local(2024, 6, 1), local(2026, 1, 1), Every(1, Unit.YEAR), BERLIN)
    assert [datetime.fromtimestamp(t, BERLIN).year for t in y.starts] == [2024, 2025]
    # a count of years past what a date can hold: one bucket, its width unbounded
    wide = Buckets.calendar(0.0, 4102444800.0, Every(9999, Unit.YEAR), BERLIN)
    assert len(wide) == 1 and wide.widths[0] == math.inf
    assert floor(local(2025, 3, 30, 12), Every(1, Unit.MONTH), BERLIN) == local(2025, 3, 1)
    assert floor(local(2025, 3, 30, 12, 40), Every(1, Unit.HOUR), BERLIN) == local(2025, 3, 30, 12)


def test_a_midnight_the_clocks_skip() -> None:
    santiago = ZoneInfo("America/Santiago")  # clocks go 00:00 -> 01:00 on 2024-09-08
    b = Buckets.calendar(
        local(2024, 9, 7, zone=santiago),
        local(2024, 9, 10, zone=santiago),
        Every(1, Unit.DAY),
        santiago,
    )
    assert list(np.diff(b.edges) / 3600) == [24, 23, 24]
    hours = Buckets.calendar(b.edges[1], b.edges[2], Every(1, Unit.HOUR), santiago)
    assert len(hours) == 23 and np.all(np.diff(hours.edges) == 3600)


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(0, 3e9),
    span=st.floats(0, 3e7),
    every=st.sampled_from(
        [
            Every(1, Unit.HOUR),
            Every(6, Unit.HOUR),
            Every(1, Unit.DAY),
            Every(2, Unit.DAY),
            Every(1, Unit.MONTH),
            Every(1, Unit.YEAR),
        ]
    ),
    zone=st.sampled_from([BERLIN, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("America/Santiago")]),
)
def test_calendar_buckets_tile_the_span_and_are_counted_ahead(
    start: float, span: float, every: Every, zone: ZoneInfo
) -> None:
    b = Buckets.calendar(start, start + span, every, zone)
    if span == 0:
        assert len(b) == 0
        return
    assert b.edges[0] == start and b.edges[-1] == start + span
    assert np.all(np.diff(b.edges) > 0)
    assert np.all(b.widths >= np.diff(b.edges))
    assert len(b) <= math.ceil(span / every.min_s) + 1  # the API's bucket limit holds


def test_consumption_per_day_and_month_of_a_meter_counting_one_per_hour(tmp_path: Path) -> None:
    h = SqliteHistorian(tmp_path / "h.sqlite")
    first = local(2025, 3, 1)
    hours = int((local(2025, 4, 2) - first) // 3600)
    h.write([Sample("m", first + 3600 * i, float(i)) for i in range(hours + 1)])
    days = h.delta_buckets(
        "m",
        Buckets.calendar(local(2025, 3, 29), local(2025, 4, 1), Every(1, Unit.DAY), BERLIN),
        max_gap_s=3600,
    )
    assert [b.value for b in days] == [24, 23, 24]
    assert all(b.reason is None for b in days)
    months = h.delta_buckets(
        "m", Buckets.calendar(local(2025, 3, 1), local(2025, 4, 1), Every(1, Unit.MONTH), BERLIN)
    )
    assert [b.value for b in months] == [31 * 24 - 1]
    assert h.delta("m", local(2025, 3, 1), local(2025, 4, 1)) == 31 * 24 - 1
    h.close()
