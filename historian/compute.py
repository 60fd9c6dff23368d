"""Compute aggregates and on-time from raw samples (numpy; shared by backends).

Every backend that cannot answer a query inside its engine fetches the raw samples (plus the
sample in force at ``start``) and calls these functions, so the rules of ``historian.base`` have
one implementation (counter deltas have theirs in ``historian.counter``). Inputs are arrays
sorted by time: ``ts`` (float seconds), ``v`` (float, NaN for strings and missing values) and
``q`` (quality as int).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from historian.base import AggFn, AggSeries, Sample, as_float
from tags.model import Quality

BAD = int(Quality.BAD)


@dataclass(frozen=True, slots=True)
class Series:
    """Raw samples of one tag as arrays, plus the sample in force just before ``start``."""

    ts: np.ndarray
    v: np.ndarray
    q: np.ndarray
    carry_v: float = math.nan  # value of the last sample before start (NaN: none or not numeric)
    carry_q: int = BAD  # its quality (BAD when there is none)

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], carry: Sample | None = None) -> Series:
        """Build arrays from samples sorted by time."""
        ts = np.fromiter((s.ts for s in samples), dtype=np.float64, count=len(samples))
        v = np.fromiter(
            (_nan_if_none(as_float(s.value)) for s in samples), dtype=np.float64, count=len(samples)
        )
        q = np.fromiter((int(s.quality) for s in samples), dtype=np.int64, count=len(samples))
        if carry is None:
            return cls(ts, v, q)
        return cls(ts, v, q, _nan_if_none(as_float(carry.value)), int(carry.quality))


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else x


def bucket_edges(start: float, end: float, every_s: float) -> np.ndarray:
    """Return the bucket start times ``start + k*every_s`` that are ``< end``."""
    nb = math.ceil((end - start) / every_s) if end > start else 0
    edges = start + every_s * np.arange(nb, dtype=np.float64)
    return edges[edges < end]


def usable(v: np.ndarray, q: np.ndarray, include_bad: bool) -> np.ndarray:
    """Return the mask of samples whose value counts (finite number, not bad unless asked)."""
    m = np.isfinite(v)
    if not include_bad:
        m &= q != BAD
    return m


def step_integrals(
    s: Series, start: float, end: float, every_s: float, include_bad: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return per bucket (starts, integral of value·dt, known seconds, seconds with value != 0).

    Step interpolation: each sample's value holds until the next sample; the carry holds from
    ``start`` to the first sample. Segments whose value does not count are unknown.
    """
    starts = bucket_edges(start, end, every_s)
    nb = len(starts)
    if nb == 0:
        z = np.zeros(0)
        return starts, z, z, z
    carry_ok = math.isfinite(s.carry_v) and (include_bad or s.carry_q != BAD)
    pts_t = s.ts
    pts_v = s.v
    pts_k = usable(s.v, s.q, include_bad)
    # Points: carry at start (if any), the samples, then the inner bucket edges carrying the value
    # in force there, so every segment lies inside one bucket.
    lead_t = np.array([start]) if (len(pts_t) == 0 or pts_t[0] > start) else np.zeros(0)
    lead_v = np.full(len(lead_t), s.carry_v if carry_ok else math.nan)
    lead_k = np.full(len(lead_t), carry_ok)
    all_t = np.concatenate([lead_t, pts_t])
    all_v = np.concatenate([lead_v, pts_v])
    all_k = np.concatenate([lead_k, pts_k])
    inner = starts[1:]
    idx = np.searchsorted(all_t, inner, side="right") - 1
    has = idx >= 0
    safe = np.where(has, idx, 0)
    edge_v = np.where(has, all_v[safe], math.nan)
    edge_k = np.where(has, all_k[safe], False)
    t = np.concatenate([all_t, inner])
    v = np.concatenate([all_v, edge_v])
    k = np.concatenate([all_k, edge_k])
    order = np.argsort(t, kind="stable")
    t, v, k = t[order], v[order], k[order]
    dt = np.diff(np.append(t, end))
    g = np.searchsorted(starts, t, side="right") - 1
    vk = np.where(k, v, 0.0)
    integral = np.bincount(g, weights=vk * dt, minlength=nb)
    known = np.bincount(g, weights=np.where(k, dt, 0.0), minlength=nb)
    on = np.bincount(g, weights=np.where(k & (vk != 0), dt, 0.0), minlength=nb)
    return starts, integral, known, on


def aggregate(
    s: Series, start: float, end: float, every_s: float, fn: AggFn, include_bad: bool
) -> AggSeries:
    """Return ``[(bucket_start, value or None)]`` of ``fn`` over the buckets of ``[start, end)``."""
    if fn is AggFn.TWA:
        starts, integral, known, _ = step_integrals(s, start, end, every_s, include_bad)
        return [
            (b, (i / k) if k > 0 else None)
            for b, i, k in zip(starts.tolist(), integral.tolist(), known.tolist(), strict=True)
        ]
    starts = bucket_edges(start, end, every_s)
    nb = len(starts)
    if nb == 0:
        return []
    inside = (s.ts >= start) & (s.ts < end)
    m = usable(s.v, s.q, include_bad) & inside
    ts, v = s.ts[m], s.v[m]
    g = np.searchsorted(starts, ts, side="right") - 1
    n = np.bincount(g, minlength=nb)
    if fn is AggFn.COUNT:
        return list(zip(starts.tolist(), n.astype(float).tolist(), strict=True))
    out = np.full(nb, math.nan)
    if fn is AggFn.SUM or fn is AggFn.MEAN:
        total = np.bincount(g, weights=v, minlength=nb)
        out = total if fn is AggFn.SUM else total / np.maximum(n, 1)
    elif fn is AggFn.MIN:
        np.minimum.at(out_min := np.full(nb, np.inf), g, v)
        out = out_min
    elif fn is AggFn.MAX:
        np.maximum.at(out_max := np.full(nb, -np.inf), g, v)
        out = out_max
    elif fn is AggFn.FIRST:
        first = np.full(nb, len(v), dtype=np.int64)
        np.minimum.at(first, g, np.arange(len(g)))
        out = np.append(v, math.nan)[first]
    elif fn is AggFn.LAST:
        last = np.full(nb, -1, dtype=np.int64)
        np.maximum.at(last, g, np.arange(len(g)))
        last[last < 0] = len(v)
        out = np.append(v, math.nan)[last]
    else:  # pragma: no cover - AggFn is closed
        raise ValueError(fn)
    return [
        (b, float(x) if c > 0 else None)
        for b, x, c in zip(starts.tolist(), out.tolist(), n.tolist(), strict=True)
    ]


def on_time(s: Series, start: float, end: float) -> tuple[float, float]:
    """Return (on seconds, known seconds) of ``[start, end)``; bad samples are unknown time."""
    if end <= start:
        return 0.0, 0.0
    _, _, known, on = step_integrals(s, start, end, end - start, include_bad=False)
    return float(on.sum()), float(known.sum())
