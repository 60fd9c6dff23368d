"""Alarm-system performance KPIs per ISA-18.2 (clause 16) / EEMUA 191, from activation history.

Pure functions over ``(ts, key)`` activations, so they are tested on synthetic histories
and computed the same way for the CLI, the REST API and reports.

* alarms per 10 minutes: activations counted in fixed 10-minute buckets aligned to the
  epoch (average over the whole period and the busiest bucket);
* flood intervals: runs of consecutive buckets with more than ``FLOOD_THRESHOLD``
  activations, merged into (start, end, count);
* top-10 bad actors: points with the most activations, with their share of the total;
* chattering: points with at least ``CHATTER_COUNT`` activations within any 60 s;
* stale alarms: occurrences still active (not cleared) after ``STALE_AFTER_S``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tags.model import iso

__all__ = [
    "BUCKET_S",
    "CHATTER_COUNT",
    "FLOOD_THRESHOLD",
    "STALE_AFTER_S",
    "KpiReport",
    "compute_kpis",
]

BUCKET_S = 600.0
FLOOD_THRESHOLD = 10
CHATTER_COUNT = 3
CHATTER_WINDOW_S = 60.0
STALE_AFTER_S = 24 * 3600.0
TOP_N = 10


@dataclass(slots=True)
class KpiReport:
    """The KPIs of one period ``[since, until)``; times are epoch seconds."""

    since: float
    until: float
    activations: int
    average_per_10min: float
    max_per_10min: int
    floods: list[dict[str, Any]] = field(default_factory=list)
    percent_time_in_flood: float = 0.0
    bad_actors: list[dict[str, Any]] = field(default_factory=list)
    chattering: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the report with ISO-8601 times (CLI ``--json`` and REST)."""
        d = asdict(self)
        d["since"], d["until"] = iso(self.since), iso(self.until)
        for f in d["floods"]:
            f["start"], f["end"] = iso(f["start"]), iso(f["end"])
        for s in d["stale"]:
            s["raised_ts"] = iso(s["raised_ts"])
        return d


def compute_kpis(
    activations: Iterable[tuple[float, str]],
    open_occurrences: Iterable[tuple[int, str, float]],
    since: float,
    until: float,
    *,
    now: float | None = None,
) -> KpiReport:
    """Return the KPIs of ``[since, until)``.

    ``activations`` are ``(raised_ts, key)`` pairs (others outside the period are
    ignored); ``open_occurrences`` are ``(occurrence_id, key, raised_ts)`` of occurrences
    whose condition is still active at ``now`` (default ``until``).
    """
    if until <= since:
        raise ValueError(f"empty KPI period: until ({until}) must be after since ({since})")
    now = until if now is None else now
    acts = sorted((t, k) for t, k in activations if since <= t < until)
    total = len(acts)

    buckets: collections.Counter[int] = collections.Counter(int(t // BUCKET_S) for t, _ in acts)
    first_b, last_b = int(since // BUCKET_S), math.ceil(until / BUCKET_S) - 1
    n_buckets = max(1, last_b - first_b + 1)
    floods: list[dict[str, Any]] = []
    run: list[int] = []
    flood_buckets = 0
    for b in range(first_b, last_b + 2):  # one past the end closes the last run
        if buckets.get(b, 0) > FLOOD_THRESHOLD and b <= last_b:
            run.append(b)
            flood_buckets += 1
            continue
        if run:
            floods.append(
                {
                    "start": run[0] * BUCKET_S,
                    "end": (run[-1] + 1) * BUCKET_S,
                    "count": sum(buckets[x] for x in run),
                    "peak_per_10min": max(buckets[x] for x in run),
                }
            )
            run = []

    per_key: collections.Counter[str] = collections.Counter(k for _, k in acts)
    bad = [
        {"key": k, "count": c, "percent": round(100.0 * c / total, 2)}
        for k, c in sorted(per_key.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
    ]

    times: dict[str, list[float]] = collections.defaultdict(list)
    for t, k in acts:
        times[k].append(t)
    chatter: list[tuple[int, int, str]] = []  # (max per minute, count, key)
    for k, ts in times.items():
        best, lo = 0, 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= CHATTER_WINDOW_S:
                lo += 1
            best = max(best, hi - lo + 1)
        if best >= CHATTER_COUNT:
            chatter.append((best, len(ts), k))
    chatter.sort(key=lambda c: (-c[0], -c[1], c[2]))
    chattering: list[dict[str, Any]] = [
        {"key": k, "max_per_minute": best, "count": n} for best, n, k in chatter
    ]

    old = sorted(
        ((occ, k, t) for occ, k, t in open_occurrences if now - t > STALE_AFTER_S),
        key=lambda o: o[2],
    )
    stale: list[dict[str, Any]] = [
        {"occurrence": occ, "key": k, "raised_ts": t, "age_h": round((now - t) / 3600.0, 2)}
        for occ, k, t in old
    ]

    return KpiReport(
        since=since,
        until=until,
        activations=total,
        average_per_10min=round(total / n_buckets, 3),
        max_per_10min=max(buckets.values(), default=0),
        floods=floods,
        percent_time_in_flood=round(100.0 * flood_buckets / n_buckets, 2),
        bad_actors=bad,
        chattering=chattering,
        stale=stale,
    )
