"""Tag ids of the SQLite historian: new tags are read incrementally, never the whole table again.

Issue 22: ``_load_tags`` re-read the whole ``tags`` table for every write batch holding a tag
not stored yet, which made the first minutes of a 200-building estate (~250k tags met a few
thousand at a time) quadratic.
"""

from __future__ import annotations

import re
from pathlib import Path

from historian.base import Sample
from historian.sqlite import SqliteHistorian

T0 = 1_700_000_000.0


def _batch(first: int, n: int, ts: float = T0) -> list[Sample]:
    return [Sample(f"t{i:06d}", ts, float(i)) for i in range(first, first + n)]


def test_new_tags_are_read_incrementally(tmp_path: Path) -> None:
    h = SqliteHistorian(tmp_path / "h.sqlite")
    loads: list[int] = []  # the id each tags read started after

    def trace(sql: str) -> None:
        hit = re.search(r"SELECT id, name FROM tags WHERE id > (\d+)", sql)
        if hit:
            loads.append(int(hit[1]))

    h._con.set_trace_callback(trace)
    try:
        for k in range(40):
            h.write(_batch(k * 250, 250))
        # every read of the tags table started after the tags already known (at most two per
        # batch: one for tags another process added, one for the batch's new ones)
        assert loads == sorted(loads)
        assert loads.count(0) <= 2 and max(loads.count(x) for x in loads) <= 2
        assert loads[-1] == 39 * 250
        assert len(h.tags()) == 40 * 250
        assert h.last(["t000000", "t009999"])["t009999"].value == 9999.0
    finally:
        h.close()


def test_tags_added_by_another_process_are_found(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    a = SqliteHistorian(path)
    b = SqliteHistorian(path)
    try:
        a.write(_batch(0, 10))
        b.write(_batch(5, 10, T0 + 1))  # 5 known to the file, 5 new
        a.write(_batch(12, 5, T0 + 2))  # 3 that b created, 2 new
        assert a.tags() == b.tags() == [f"t{i:06d}" for i in range(17)]
        # the same tag has one id in both
        assert a.last(["t000013"])["t000013"].value == 13.0
        assert b.value_at("t000013", T0 + 5).value == 13.0
        assert [s.ts for s in b.query_raw("t000012", T0, T0 + 3)] == [T0 + 1, T0 + 2]
    finally:
        a.close()
        b.close()
