"""Poll planner: reads are minimal for the gap and limit (checked against exhaustive search)."""

from __future__ import annotations

import functools
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codec import Kind, PointSpec, PointType
from drivers.plan import PlanError, coalesce, plan_device

WIDTH_TYPES = {1: PointType.UINT16, 2: PointType.FLOAT32, 4: PointType.FLOAT64}


def brute_force_min_reads(points: list[PointSpec], max_gap: int, limit: int) -> int:
    """Fewest reads by exhaustive search over every read range (no greedy assumption).

    A read is any range [s, e) of at most ``limit`` addresses; it covers the points lying
    wholly inside it, and the holes between the covered points may not exceed ``max_gap``.
    The search always serves the lowest uncovered point next, trying every range that
    contains it.
    """
    n = len(points)
    lo_addr = min(p.address for p in points)
    hi_addr = max(p.end for p in points)

    def valid(members: list[int]) -> bool:
        ms = sorted(members, key=lambda i: points[i].address)
        end = points[ms[0]].end
        for i in ms[1:]:
            if points[i].address - end > max_gap:
                return False
            end = max(end, points[i].end)
        return True

    @functools.cache
    def solve(covered: frozenset[int]) -> int:
        if len(covered) == n:
            return 0
        first = min((i for i in range(n) if i not in covered), key=lambda i: points[i].address)
        p = points[first]
        best = n + 1
        for s in range(max(lo_addr, p.end - limit), p.address + 1):
            for e in range(p.end, min(hi_addr, s + limit) + 1):
                inside = [i for i in range(n) if points[i].address >= s and points[i].end <= e]
                # any subset of `inside` containing `first` may be served; the full set is
                # never worse unless it breaks the gap rule, so try the maximal valid runs
                for members in _candidate_sets(inside, first):
                    if valid(members):
                        best = min(best, 1 + solve(covered | frozenset(members)))
        return best

    def _candidate_sets(inside: list[int], first: int) -> list[list[int]]:
        ordered = sorted(inside, key=lambda i: points[i].address)
        k = ordered.index(first)
        return [ordered[a : b + 1] for a in range(k + 1) for b in range(k, len(ordered))]

    return solve(frozenset())


@st.composite
def layout(draw):
    specs = []
    addr = draw(st.integers(0, 5))
    for i in range(draw(st.integers(1, 7))):
        addr += draw(st.integers(0, 6))
        width = draw(st.sampled_from([1, 2, 4]))
        specs.append(PointSpec(address=addr, type=WIDTH_TYPES[width], name=f"p{i}"))
        addr += width
    order = draw(st.permutations(range(len(specs))))
    return [specs[i] for i in order]


@settings(max_examples=150, deadline=None)
@given(layout(), st.integers(0, 6), st.integers(4, 16))
def test_plan_is_minimal(points, max_gap, limit):
    reads = coalesce(points, max_gap, limit)
    # every point is read exactly once, within limit and gap
    served = sorted(i for _, _, idx in reads for i in idx)
    assert served == list(range(len(points)))
    for start, count, idx in reads:
        assert count <= limit
        members = sorted((points[i] for i in idx), key=lambda p: p.address)
        assert start == members[0].address and start + count == max(p.end for p in members)
        for a, b in itertools.pairwise(members):
            assert b.address - a.end <= max_gap
    assert len(reads) == brute_force_min_reads(points, max_gap, limit)


def test_gap_and_limit_examples():
    pts = [PointSpec(address=a, name=str(a)) for a in (0, 1, 5, 6, 20)]
    assert [(s, c) for s, c, _ in coalesce(pts, 0, 125)] == [(0, 2), (5, 2), (20, 1)]
    assert [(s, c) for s, c, _ in coalesce(pts, 3, 125)] == [(0, 7), (20, 1)]
    assert [(s, c) for s, c, _ in coalesce(pts, 20, 125)] == [(0, 21)]
    assert [(s, c) for s, c, _ in coalesce(pts, 20, 6)] == [(0, 6), (6, 1), (20, 1)]


def test_protocol_limits():
    regs = [PointSpec(address=2 * i, type=PointType.FLOAT32) for i in range(100)]  # 200 registers
    reads = coalesce(regs, 0, 125)
    assert [(s, c) for s, c, _ in reads] == [(0, 124), (124, 76)]
    coils = {
        f"c{i}": PointSpec(address=i, kind=Kind.COIL, type=PointType.BOOL) for i in range(4500)
    }
    plan = plan_device("d", 1, coils, poll_s=1)
    assert [(r.start, r.count, r.function_code) for r in plan] == [
        (0, 2000, 1),
        (2000, 2000, 1),
        (4000, 500, 1),
    ]


def test_bits_share_a_register():
    pts = [PointSpec(address=3, type=PointType.BIT, bit=b) for b in range(16)]
    assert [(s, c) for s, c, _ in coalesce(pts, 0, 125)] == [(3, 1)]


def test_point_wider_than_a_read():
    with pytest.raises(PlanError, match="200 addresses"):
        plan_device(
            "meter", 1, {"s": PointSpec(address=0, type=PointType.STR, count=200, name="s")}, 1
        )


def test_plan_groups_by_period_and_kind():
    points = {
        "energy": PointSpec(address=0, type=PointType.FLOAT32),
        "power": PointSpec(address=2, type=PointType.FLOAT32),
        "serial": PointSpec(address=4, type=PointType.STR, count=4),
        "room": PointSpec(address=0, kind=Kind.INPUT, type=PointType.INT16),
        "relay": PointSpec(address=0, kind=Kind.COIL, type=PointType.BOOL),
    }
    plan = plan_device(
        "m", 7, points, poll_s=10, point_poll_s={"serial": 3600, "power": None}, max_gap=8
    )
    summary = [(r.period_s, r.kind, r.start, r.count, r.names) for r in plan]
    assert summary == [
        (10.0, Kind.HOLDING, 0, 4, ("energy", "power")),
        (10.0, Kind.INPUT, 0, 1, ("room",)),
        (10.0, Kind.COIL, 0, 1, ("relay",)),
        (3600.0, Kind.HOLDING, 4, 4, ("serial",)),
    ]
    assert all(r.unit == 7 and r.device == "m" for r in plan)
