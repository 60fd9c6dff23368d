"""Poll planner: coalesce a device's points into the fewest Modbus reads.

A read covers a contiguous address range of one data table (coils, discrete inputs, input
or holding registers). Points of one device, kind and poll period are sorted by address
and packed greedily: a point joins the current read while the hole before it is at most
``max_gap`` unused addresses and the read stays within the protocol limit (125 registers
for FC 3/4, 2000 bits for FC 1/2). Because feasibility of a run of sorted, non-overlapping
points is inherited by every sub-run, the greedy cut is minimal (tested against an
exhaustive search in ``tests/drivers/test_plan.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drivers.codec import BIT_KINDS, BlockCodec, Kind, PointSpec

__all__ = [
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "READ_FUNCTION_CODES",
    "PlanError",
    "ReadRequest",
    "coalesce",
    "plan_device",
]

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000
READ_FUNCTION_CODES: dict[Kind, int] = {
    Kind.COIL: 1,
    Kind.DISCRETE: 2,
    Kind.HOLDING: 3,
    Kind.INPUT: 4,
}
"""The Modbus read function code of each table."""

# Kind order in a scan: cheap bit tables last is arbitrary; keep a stable order.
_KIND_ORDER = {Kind.HOLDING: 0, Kind.INPUT: 1, Kind.COIL: 2, Kind.DISCRETE: 3}


class PlanError(ValueError):
    """A point cannot be read at all (wider than one request allows)."""


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One planned read: ``count`` addresses of ``kind`` from ``start`` for one device.

    ``names`` are the point names aligned with ``points``; ``codec`` decodes the response.
    """

    device: str
    unit: int
    kind: Kind
    start: int
    count: int
    period_s: float
    points: tuple[PointSpec, ...]
    names: tuple[str, ...]
    codec: BlockCodec = field(compare=False, repr=False)

    @property
    def function_code(self) -> int:
        """Modbus read function code (1, 2, 3 or 4)."""
        return READ_FUNCTION_CODES[self.kind]


def coalesce(
    points: Sequence[PointSpec], max_gap: int, limit: int
) -> list[tuple[int, int, list[int]]]:
    """Split ``points`` (one kind) into the fewest reads; return ``(start, count, indices)``.

    ``indices`` refer to ``points``. ``max_gap`` is the largest run of unused addresses a
    read may span; ``limit`` the most addresses one read may cover. Raise
    :class:`PlanError` if a single point is wider than ``limit``.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    order = sorted(range(len(points)), key=lambda i: (points[i].address, points[i].end))
    reads: list[tuple[int, int, list[int]]] = []
    start = end = 0
    members: list[int] = []
    for i in order:
        p = points[i]
        if p.end - p.address > limit:
            raise PlanError(
                f"point {p.name or p.address} spans {p.end - p.address} addresses; "
                f"one read allows {limit}"
            )
        if members and p.address - end <= max_gap and max(end, p.end) - start <= limit:
            end = max(end, p.end)
            members.append(i)
            continue
        if members:
            reads.append((start, end - start, members))
        start, end, members = p.address, p.end, [i]
    if members:
        reads.append((start, end - start, members))
    return reads


def plan_device(
    device: str,
    unit: int,
    points: Mapping[str, PointSpec],
    poll_s: float,
    point_poll_s: Mapping[str, float | None] | None = None,
    max_gap: int = 0,
    max_gap_bits: int = 0,
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
) -> list[ReadRequest]:
    """Plan the reads of one device: grouped by effective poll period and kind.

    ``point_poll_s`` overrides the device's ``poll_s`` per point name (None = inherit).
    Reads come out ordered by period, kind and address. Devices of one template plan alike:
    the shape of a plan (and its codecs, which hold no state) is computed once per point
    set and settings, then stamped with each device's id and unit.
    """
    overrides = point_poll_s or {}
    key = (
        tuple(points.items()),
        float(poll_s),
        tuple((n, overrides.get(n)) for n in points),
        max_gap,
        max_gap_bits,
        max_registers,
        max_bits,
    )
    try:
        shape = _plan_shape(*key)
    except PlanError as exc:
        raise PlanError(f"device {device}: {exc}") from None
    return [
        ReadRequest(device, unit, kind, start, count, period, pts, names, codec)
        for kind, start, count, period, pts, names, codec in shape
    ]


_Shape = tuple[Kind, int, int, float, tuple[PointSpec, ...], tuple[str, ...], BlockCodec]


@functools.lru_cache(maxsize=4096)
def _plan_shape(
    items: tuple[tuple[str, PointSpec], ...],
    poll_s: float,
    overrides: tuple[tuple[str, float | None], ...],
    max_gap: int,
    max_gap_bits: int,
    max_registers: int,
    max_bits: int,
) -> tuple[_Shape, ...]:
    points = dict(items)
    periods = dict(overrides)
    groups: dict[tuple[float, Kind], list[str]] = {}
    for name, spec in items:
        period = periods.get(name) or poll_s
        groups.setdefault((float(period), spec.kind), []).append(name)
    shape: list[_Shape] = []
    for (period, kind), names in sorted(
        groups.items(), key=lambda kv: (kv[0][0], _KIND_ORDER[kv[0][1]])
    ):
        specs = [points[n] for n in names]
        bits = kind in BIT_KINDS
        reads = coalesce(
            specs, max_gap_bits if bits else max_gap, max_bits if bits else max_registers
        )
        for start, count, idx in reads:
            pts = tuple(specs[i] for i in idx)
            shape.append(
                (
                    kind,
                    start,
                    count,
                    period,
                    pts,
                    tuple(names[i] for i in idx),
                    BlockCodec(pts, start, count),
                )
            )
    return tuple(shape)
