"""``round_rows``: the vectorised rounding of report cells gives exactly Python's ``round``."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.report_energy import round_rows


def _python(values: np.ndarray, decimals: np.ndarray) -> list[list[float]]:
    return [
        [math.nan if v != v else round(v, int(d)) for v in row]
        for row, d in zip(values.tolist(), decimals.tolist(), strict=True)
    ]


def _same(a: np.ndarray, b: list[list[float]]) -> bool:
    return all(
        (x != x and y != y) or x == y
        for ra, rb in zip(a.tolist(), b, strict=True)
        for x, y in zip(ra, rb, strict=True)
    )


def test_halfway_cases_and_nan() -> None:
    values = np.array(
        [
            [2.675, 0.125, 0.375, 1.0005, 29.6294399, math.nan],
            [59.50999999999965, -2.5, 0.5, 1.5, 1e15 + 0.5, 7.0],
        ]
    )
    decimals = np.array([2, 0])
    got = round_rows(values, decimals)
    assert _same(got, _python(values, decimals))
    assert got[0, 0] == 2.67 and got[1, 1] == -2.0 and got[1, 3] == 2.0  # as ``round`` does


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=6),
)
def test_equals_python_round(xs: list[float], dec: int) -> None:
    values = np.array([xs, [x / 7.0 for x in xs], [round(x, 3) + 0.0005 for x in xs]])
    decimals = np.array([dec, dec, 3])
    assert _same(round_rows(values, decimals), _python(values, decimals))
