"""Contract of ``on_time_many``: the bulk answer equals ``on_time_detail`` tag by tag."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from historian.base import OnTime, Sample, on_time_many
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
    from historian.sqlite import _split

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
