"""Contract of ``on_time_many``: the bulk answer equals ``on_time_detail`` tag by tag."""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from historian.base import OnTime, Sample, on_time_many
from historian.ontime import _spans_of, unknown_spans_many
from historian.sqlite import SqliteHistorian
from tags.model import Quality

T0 = 1_700_006_400.0  # a UTC day boundary


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[SqliteHistorian, list[str]]:
    h = SqliteHistorian(Path(tmp_path_factory.mktemp("otm")) / "h.sqlite")
    rng = random.Random(5)
    tags = [f"v{i}.open" for i in range(40)]
    batch = []
    for t in tags:
        ts = T0 - 5000 * rng.random()
        while ts < T0 + 6 * 86400:
            q = Quality.BAD if rng.random() < 0.1 else Quality.GOOD
            batch.append(Sample(t, ts, rng.random() < 0.5, q))
            ts += rng.expovariate(1 / rng.choice([300, 7200, 150000]))
    h.write(batch)
    h.write([Sample("late.open", T0 + 3 * 86400, True)])
    return h, [*tags, "late.open"]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0, 3 * 86400),
        (1234.5, 4 * 86400 + 777),
        (-3000, 100),
        (86400 * 2 + 3600 * 5.5, 86400 * 5.3),
        (50, 60),
        (0, 0),
    ],
)
def test_bulk_equals_tag_by_tag(
    filled: tuple[SqliteHistorian, list[str]], a: float, b: float
) -> None:
    h, tags = filled
    many = h.on_time_many([*tags, "missing.tag"], T0 + a, T0 + b)
    for t in tags:
        one = h.on_time_detail(t, T0 + a, T0 + b)
        assert many[t].on_s == pytest.approx(one.on_s, abs=1e-6), t
        assert many[t].known_s == pytest.approx(one.known_s, abs=1e-6), t
    assert many["missing.tag"] == OnTime(0.0, 0.0, b - a)


def test_many_workers_and_fallback(filled: tuple[SqliteHistorian, list[str]]) -> None:
    h, tags = filled
    from historian.ontime import on_time_many as raw
    from historian.rollup import split as _split

    ids = [h._ids[t] for t in tags]
    start, end = T0 + 100, T0 + 5 * 86400
    on1, k1 = raw(h.path, ids, start, end, _split(start, end), workers=1)
    on3, k3 = raw(h.path, ids, start, end, _split(start, end), workers=3)  # 3 threads
    assert list(on3) == pytest.approx(list(on1)) and list(k3) == pytest.approx(list(k1))

    class Plain:  # a backend without on_time_many: asked tag by tag
        def on_time_detail(self, tag: str, s: float, e: float) -> OnTime:
            return h.on_time_detail(tag, s, e)

    got = on_time_many(Plain(), tags, start, end)  # type: ignore[arg-type]
    assert got == {t: h.on_time_detail(t, start, end) for t in tags}


_DAY = 86400.0
_sample = st.tuples(
    st.floats(-0.3 * _DAY, 2.7 * _DAY, allow_nan=False),  # around two day boundaries
    st.sampled_from([0.0, 1.0, 0.0, 1.0, 2.5, math.nan]),  # NaN: a value with no number
    st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD]),
)


@given(
    series=st.lists(st.lists(_sample, max_size=25), min_size=1, max_size=4),
    window=st.tuples(
        st.floats(-0.5 * _DAY, 3 * _DAY, allow_nan=False),
        st.floats(0, 3 * _DAY, allow_nan=False),
    ),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_bulk_answers_equal_the_reference_for_any_history(
    series: list[list[tuple[float, float, Quality]]], window: tuple[float, float]
) -> None:
    """Property: on_time_many == on_time_detail (rollups) == the raw samples' answer, and the
    bulk unknown spans equal the tag-by-tag ones, for any samples and any window."""
    a = T0 + window[0]
    b = a + window[1]
    with tempfile.TemporaryDirectory() as tmp:
        h = SqliteHistorian(Path(tmp) / "h.sqlite")
        raw = SqliteHistorian(Path(tmp) / "raw.sqlite", rollups=False)
        try:
            tags = [f"p{i}.open" for i in range(len(series))]
            for tag, samples in zip(tags, series, strict=True):
                batch = [
                    Sample(tag, T0 + t, v, q)
                    for t, v, q in dict((s[0], s) for s in samples).values()
                ]
                for hist in (h, raw):
                    hist.write(sorted(batch, key=lambda s: s.ts))
            many = h.on_time_many([*tags, "never.open"], a, b)
            spans = unknown_spans_many(h, [*tags, "never.open"], a, b)
            for t in tags:
                one, ref = h.on_time_detail(t, a, b), raw.on_time_detail(t, a, b)
                for got in (many[t], one):
                    assert got.on_s == pytest.approx(ref.on_s, abs=1e-6), t
                    assert got.known_s == pytest.approx(ref.known_s, abs=1e-6), t
                assert spans[t] == _spans_of(h, t, a, b), t
                unknown = sum(y - x for x, y in spans[t])
                assert unknown == pytest.approx(ref.unknown_s, abs=1e-6), t
            assert many["never.open"].known_s == 0.0
            assert spans["never.open"] == ([(a, b)] if b > a else [])
        finally:
            h.close()
            raw.close()
