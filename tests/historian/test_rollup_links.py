"""The day rows' link columns (``carry_in``, ``gap_in``) stay equal to their definition.

``carry_in`` is the previous row's ``carry`` and ``gap_in`` this row's ``first_ts`` minus the
previous row's ``last_ts``, whatever order the samples arrive in (in order, late, out of order,
in several batches, after a reopen); a file of schema version 2 is migrated on open. Hour rows
keep no links since schema version 4 (on-time reads hour segments without them, see
``historian.ontime``), so their columns stay NULL in new rows.
"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from historian.base import Sample
from historian.sqlite import SqliteHistorian
from tags.model import Quality

T0 = 1_700_006_400.0  # a UTC day boundary

_EXPECTED = """
SELECT tag_id, bucket, carry_in, gap_in,
  LAG(carry) OVER w, first_ts - LAG(last_ts) OVER w
FROM {t} WINDOW w AS (PARTITION BY tag_id ORDER BY bucket)
"""


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9)


def _bad_links(path: Path) -> list[tuple]:
    """Return the rollup rows whose link columns differ from their definition."""
    con = sqlite3.connect(path)
    try:
        bad = []
        for t in ("rollup_1d",):
            for tid, bucket, cin, gap, want_cin, want_gap in con.execute(_EXPECTED.format(t=t)):
                if not (_same(cin, want_cin) and _same(gap, want_gap)):
                    bad.append((t, tid, bucket, cin, want_cin, gap, want_gap))
        return bad
    finally:
        con.close()


def _samples(seed: int, n: int) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for k in range(3):
        ts = T0 + rng.uniform(-4000.0, 4000.0)
        for _ in range(n):
            q = Quality.BAD if rng.random() < 0.1 else Quality.GOOD
            out.append(Sample(f"v{k}.open", ts, rng.random() < 0.5, q))
            ts += rng.expovariate(1 / rng.choice([200.0, 5000.0, 120000.0]))
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    batches=st.integers(1, 6),
    shuffle=st.booleans(),
    reopen=st.booleans(),
)
def test_links_match_previous_row(
    tmp_path: Path, seed: int, batches: int, shuffle: bool, reopen: bool
) -> None:
    path = tmp_path / f"h{seed}-{batches}-{shuffle}-{reopen}.sqlite"
    path.unlink(missing_ok=True)
    samples = _samples(seed, 40)
    rng = random.Random(seed + 1)
    if shuffle:
        rng.shuffle(samples)
    h = SqliteHistorian(path)
    try:
        size = -(-len(samples) // batches)
        for i in range(0, len(samples), size):
            h.write(samples[i : i + size])
            if reopen:
                h.close()
                h = SqliteHistorian(path)
    finally:
        h.close()
    assert _bad_links(path) == []


def test_late_sample_updates_the_following_row(tmp_path: Path) -> None:
    path = tmp_path / "late.sqlite"
    h = SqliteHistorian(path)
    try:
        h.write([Sample("v.open", T0 + 100.0, True), Sample("v.open", T0 + 3 * 86400.0, False)])
        # the cached newest row is appended to, then a late sample lands in an empty day
        h.write([Sample("v.open", T0 + 3 * 86400.0 + 50.0, True)])
        h.write([Sample("v.open", T0 + 86400.0 + 7.0, False)])
        before = h.on_time_detail("v.open", T0, T0 + 4 * 86400.0)
        many = h.on_time_many(["v.open"], T0, T0 + 4 * 86400.0)["v.open"]
    finally:
        h.close()
    assert _bad_links(path) == []
    # on from +100 s to the late close at day 1 + 7 s, then from day 3 + 50 s to the end
    want_on = (86400.0 + 7.0 - 100.0) + (86400.0 - 50.0)
    assert many.on_s == pytest.approx(want_on, abs=1e-6)
    assert before.on_s == pytest.approx(want_on, abs=1e-6)
    assert many.known_s == pytest.approx(4 * 86400.0 - 100.0, abs=1e-6)


def test_version_2_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    h = SqliteHistorian(path)
    try:
        h.write(_samples(7, 60))
        tags = h.tags()
        want = h.on_time_many(tags, T0 - 3600.0, T0 + 5 * 86400.0)
    finally:
        h.close()
    con = sqlite3.connect(path)
    for t in ("rollup_1h", "rollup_1d"):
        con.execute(f"ALTER TABLE {t} DROP COLUMN carry_in")
        con.execute(f"ALTER TABLE {t} DROP COLUMN gap_in")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    h = SqliteHistorian(path)
    try:
        got = h.on_time_many(tags, T0 - 3600.0, T0 + 5 * 86400.0)
    finally:
        h.close()
    assert _bad_links(path) == []
    for t in tags:
        assert got[t].on_s == pytest.approx(want[t].on_s, abs=1e-6), t
        assert got[t].known_s == pytest.approx(want[t].known_s, abs=1e-6), t
