"""The same counter data in SQLite and in a real InfluxDB 1.x gives the same buckets.

Three days of a meter polled about every 5 minutes (fractional times), written to both
backends: increments, a counter reset, a comm-lost stretch, a text sample, an hour without
samples while the counter moved, an idle morning, a meter replacement. Hourly, daily (across
the night the clocks go back) and unaligned fixed buckets, with and without an expected
interval and a rollover: values, qualities and reasons must match.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from historian.base import Historian, Sample
from historian.buckets import Buckets, Every, Unit
from historian.influxd import InfluxdServer
from historian.sqlite import SqliteHistorian
from tags.model import Quality, Reason
from tests.historian.conftest import influx_v1

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2025, 10, 25, tzinfo=BERLIN).timestamp()  # clocks go back on the 26th
END = datetime(2025, 10, 28, tzinfo=BERLIN).timestamp()


def meter_samples(tag: str) -> list[Sample]:
    rng = np.random.default_rng(19)
    out: list[Sample] = []
    t, v = START - 600.0, 1000.0
    while t < END - 2 * 3600:  # the last two hours: no samples (stale)
        t += 300 + float(rng.uniform(-20, 20)) + float(rng.integers(0, 10**6)) / 1e9
        hours = (t - START) / 3600
        if 20 <= hours < 21:  # no samples for an hour, the counter moves on
            v += 0.4
            continue
        if 30 <= hours < 36:  # an idle morning: nothing stored
            continue
        v += float(rng.uniform(0, 0.5))
        if abs(hours - 44) < 0.05:
            v = float(rng.uniform(0, 3))  # reset
        if 50 <= hours < 51.5:
            out.append(Sample(tag, t, v, Quality.BAD, Reason.COMM_LOST))
            continue
        out.append(Sample(tag, t, round(v, 3)))
    out.insert(40, Sample(tag, out[40].ts - 1.5, "n/a", Quality.UNCERTAIN, Reason.MANUAL))
    return out


@pytest.fixture
def pair(
    influxd: InfluxdServer, tmp_path: Path, ns: str
) -> Iterator[tuple[Historian, Historian, str]]:
    sqlite = SqliteHistorian(tmp_path / "history.sqlite")
    influx = influx_v1(influxd)
    tag = ns + "meter"
    samples = meter_samples(tag)
    swap = START + 60 * 3600 + 7.25  # the old meter read 1 more than its last sample
    last_old = max(s.ts for s in samples if s.ts < swap and s.quality is Quality.GOOD)
    old_final = float(next(s.value for s in samples if s.ts == last_old)) + 1.0  # type: ignore[arg-type]
    for h in (sqlite, influx):
        h.write(samples)
        h.record_replacement(tag, swap, old_final=old_final, new_initial=2.0)
    yield sqlite, influx, tag
    sqlite.close()
    influx.close()


ALL = {None, "gap", "comm_lost", "stale"}


@pytest.mark.parametrize(
    ("every", "max_gap_s", "rollover", "reasons"),
    [
        (Every(1, Unit.HOUR), 900.0, None, ALL),
        (Every(1, Unit.DAY), 900.0, None, {"gap", "comm_lost"}),  # every day has a gap
        (Every(1, Unit.HOUR), None, 2000.0, ALL),
        (420.0, 900.0, None, ALL),
    ],
)
def test_influxdb_gives_the_buckets_sqlite_gives(
    pair: tuple[Historian, Historian, str],
    every: Every | float,
    max_gap_s: float | None,
    rollover: float | None,
    reasons: set[str | None],
) -> None:
    sqlite, influx, tag = pair
    seen: set[str | None] = set()
    for end in (END - 5 * 3600, END):  # a sample after the end, then none
        buckets = Buckets.of(START + 0.5, end, every, BERLIN)
        a = sqlite.delta_buckets(tag, buckets, rollover=rollover, max_gap_s=max_gap_s)
        b = influx.delta_buckets(tag, buckets, rollover=rollover, max_gap_s=max_gap_s)
        assert [(x.start, x.end, x.quality, x.gap) for x in a] == [
            (x.start, x.end, x.quality, x.gap) for x in b
        ]
        assert [x.value for x in a] == pytest.approx([x.value for x in b], rel=1e-12, abs=1e-9)
        seen |= {x.reason for x in a}
        total = sum(x.value or 0.0 for x in a)
        assert sqlite.delta(tag, START + 0.5, end, rollover=rollover) == pytest.approx(total)
        assert influx.delta(tag, START + 0.5, end, rollover=rollover) == pytest.approx(total)
    assert seen == reasons  # the data holds every kind of bucket the rule knows
