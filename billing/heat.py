"""Heat allocation by the on-off time area method, per building and period, from the historian.

For a building with ``heat`` and the households that have a ``valve_tag``:

- ``Q`` = ``delta`` of the heat meter's energy tag over the period;
- ``basic_share`` of ``Q`` is shared by area alone: ``F_i / sum F``;
- the rest by ``F_i * t_i * k_i / sum F_j * t_j * k_j`` (area, valve-open seconds, position
  factor); if no valve was open at all, the rest is shared by area too;
- a household whose valve state is unknown for part of the period (comm lost, no data yet) gets
  ``t_i = known open time + unknown time x the building's open ratio`` in those intervals (open
  seconds over known seconds of the building's households in each unknown span) and is flagged
  ``estimated``;
- the building is flagged ``estimated`` when the heat meter's reading at the period's start or
  end is not measured (it falls in a span without a good sample: comm lost, so ``Q`` counts
  from the last reading before the loss). A reading read back from the meter's own archive
  after the loss (a daily freeze, reason ``archive``) is a measured one;
- ``share_i`` is the household's fraction of ``Q`` (the shares sum to 1), ``heat_kwh = Q x share``;
  ``cost = heat_kwh x price_per_kwh`` rounded half-up to the cent per household (energy as
  Decimal rounded to 1e-6 kWh); the building's cost is the sum of the rounded costs.

Households without a valve (shops with electricity only) are not part of heat allocation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from billing.periods import cents, energy_decimal
from historian.base import OnTime, on_time_many
from historian.ontime import on_time_windows, sqlite_backend, unknown_spans_many

if TYPE_CHECKING:
    from billing.site import BillingSite
    from historian.base import Historian

__all__ = [
    "BuildingHeat",
    "HeatAllocation",
    "HouseholdHeat",
    "allocate_building",
    "allocate_heat",
    "heat_shares",
]

log = logging.getLogger(__name__)

#: Unknown valve time below this (seconds) is rounding, not missing data.
UNKNOWN_TOLERANCE_S = 1.0


def heat_shares(
    basic_share: float,
    area_m2: np.ndarray,
    factor: np.ndarray,
    on_s: np.ndarray,
) -> np.ndarray:
    """Return each household's fraction of the building heat (sums to 1 when there are any).

    ``basic_share x F_i / sum F + (1 - basic_share) x F_i t_i k_i / sum F t k``; the second part
    falls back to area when no valve was open.
    """
    area = np.asarray(area_m2, dtype=np.float64)
    if area.size == 0:
        return np.zeros(0)
    by_area = area / area.sum()
    w = area * np.asarray(on_s, dtype=np.float64) * np.asarray(factor, dtype=np.float64)
    total = w.sum()
    by_time = w / total if total > 0 else by_area
    return basic_share * by_area + (1.0 - basic_share) * by_time


@dataclass(frozen=True, slots=True)
class HouseholdHeat:
    """One household's allocation."""

    id: str
    area_m2: float
    position_factor: float
    on_s: float
    unknown_s: float
    estimated: bool
    share: float
    heat_kwh: float
    basic_kwh: float
    cost: Decimal | None

    def to_json(self) -> dict[str, Any]:
        """Return the household item of ``scada allocate heat --json``."""
        return {
            "id": self.id,
            "area_m2": self.area_m2,
            "on_hours": round(self.on_s / 3600.0, 6),
            "share": self.share,
            "heat_kwh": round(self.heat_kwh, 6),
            "cost": None if self.cost is None else str(self.cost),
            "estimated": self.estimated,
        }


@dataclass(frozen=True, slots=True)
class BuildingHeat:
    """One building's allocation: ``heat_kwh`` is ``Q``, ``basic_kwh`` its basic part."""

    id: str
    heat_kwh: float
    basic_kwh: float
    price_per_kwh: Decimal | None
    households: list[HouseholdHeat]
    #: The heat meter's reading at the start or end of the period is not measured.
    estimated: bool = False

    @property
    def cost(self) -> Decimal | None:
        """The building's cost: the sum of the households' rounded costs."""
        if self.price_per_kwh is None:
            return None
        return sum((h.cost or Decimal(0) for h in self.households), Decimal("0.00"))

    def to_json(self) -> dict[str, Any]:
        """Return the building item of ``scada allocate heat --json``."""
        return {
            "id": self.id,
            "heat_kwh": round(self.heat_kwh, 6),
            "basic_kwh": round(self.basic_kwh, 6),
            "estimated": self.estimated,
            "households": [h.to_json() for h in self.households],
        }


@dataclass(frozen=True, slots=True)
class HeatAllocation:
    """The allocation of every building for ``[start, end)``."""

    start: float
    end: float
    buildings: list[BuildingHeat]

    def to_json(self) -> dict[str, Any]:
        """Return ``{"buildings": [...]}`` (the format of issue 8 item 7)."""
        return {"buildings": [b.to_json() for b in self.buildings]}


def allocate_building(
    building_id: str,
    q_kwh: float,
    basic_share: float,
    price: Decimal | None,
    ids: Sequence[str],
    area_m2: np.ndarray,
    factor: np.ndarray,
    on_s: np.ndarray,
    unknown_s: np.ndarray | None = None,
    estimated: np.ndarray | None = None,
) -> BuildingHeat:
    """Return the allocation of ``q_kwh`` over households (pure arithmetic, no I/O)."""
    n = len(ids)
    area = np.asarray(area_m2, dtype=np.float64)
    shares = heat_shares(basic_share, area, factor, on_s)
    basic = q_kwh * basic_share
    basic_i = basic * area / area.sum() if n else np.zeros(0)
    unknown = np.zeros(n) if unknown_s is None else np.asarray(unknown_s)
    est = np.zeros(n, dtype=bool) if estimated is None else np.asarray(estimated, dtype=bool)
    households = []
    q = float(q_kwh)
    # plain Python floats (``tolist``): far cheaper per item than numpy scalars, same values
    columns = (
        area.tolist(),
        np.asarray(factor, dtype=np.float64).tolist(),
        np.asarray(on_s, dtype=np.float64).tolist(),
        np.asarray(unknown, dtype=np.float64).tolist(),
        est.tolist(),
        shares.tolist(),
        np.asarray(basic_i, dtype=np.float64).tolist(),
    )
    for hid, a, k, o, u, e, share, b in zip(ids, *columns, strict=True):
        heat = q * share
        cost = None if price is None else cents(energy_decimal(heat) * price)
        households.append(HouseholdHeat(hid, a, k, o, u, e, share, heat, b, cost))
    return BuildingHeat(building_id, float(q_kwh), float(basic), price, households)


def edges_estimated(
    historian: Historian, tags: Sequence[str], start: float, end: float
) -> dict[str, bool]:
    """Return, per counter tag, whether its reading at ``start`` or at ``end`` is not measured.

    A reading is measured when a good sample is in force there (a device-archive sample at
    exactly that time counts); it is not when the edge falls in a span without a good value.
    """
    spans = unknown_spans_many(historian, tags, start, end + 1.0)
    return {
        t: any(a <= edge < b for a, b in spans.get(t, ()) for edge in (start, end)) for t in tags
    }


def unknown_spans(
    historian: Historian, tag: str, start: float, end: float
) -> list[tuple[float, float]]:
    """Return the spans of ``[start, end)`` where ``tag`` has no good value (comm lost, no data)."""
    return unknown_spans_many(historian, [tag], start, end)[tag]


def _on_time_many(
    historian: Historian, tags: Sequence[str], start: float, end: float
) -> dict[str, OnTime]:
    """Return ``on_time_many`` from the SQLite backend itself when a spool wraps it."""
    return on_time_many(sqlite_backend(historian) or historian, tags, start, end)


def estimate_on_s(
    historian: Historian,
    tags: Sequence[str],
    period: dict[str, OnTime],
    start: float,
    end: float,
    spans: dict[str, list[tuple[float, float]]] | None = None,
    windows: dict[tuple[float, float], dict[str, OnTime]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (open seconds with estimates, estimated flags) for the building's valve tags.

    Each span where a household's valve state is unknown is filled with the building's open
    ratio in exactly that span (open / known seconds over the building's households); a span
    nobody reported uses the period's ratio. ``spans`` (``unknown_spans_many`` of the flagged
    tags) and ``windows`` (span -> ``on_time_many`` of ``tags`` in it) save the look-ups when
    the caller fetched them for many buildings at once.
    """
    on = np.array([period[t].on_s for t in tags])
    known = np.array([period[t].known_s for t in tags])
    unknown = np.array([period[t].unknown_s for t in tags])
    flagged = unknown > UNKNOWN_TOLERANCE_S
    if not flagged.any():
        return on, flagged
    total_known = known.sum()
    period_ratio = on.sum() / total_known if total_known > 0 else 0.0
    est = on.copy()
    wanted = [tags[i] for i in np.flatnonzero(flagged).tolist()]
    if spans is None or any(t not in spans for t in wanted):
        spans = unknown_spans_many(historian, wanted, start, end)
    ratios: dict[tuple[float, float], dict[str, OnTime]] = dict(windows or {})
    for i in np.flatnonzero(flagged).tolist():
        for a, b in spans[tags[i]]:
            span = ratios.get((a, b))
            if span is None:  # households often lose contact together: one query per span
                span = ratios[(a, b)] = _on_time_many(historian, tags, a, b)
            s_on = sum(x.on_s for x in span.values())
            s_known = sum(x.known_s for x in span.values())
            ratio = s_on / s_known if s_known > 0 else period_ratio
            est[i] += span[tags[i]].unknown_s * ratio
    return est, flagged


def allocate_heat(
    site: BillingSite,
    historian: Historian,
    start: float,
    end: float,
    buildings: Iterable[str] | None = None,
) -> HeatAllocation:
    """Allocate every heated building's heat over ``[start, end)`` (epoch seconds).

    ``buildings`` limits the run to those ids (KeyError for an unknown one). Buildings without
    ``heat`` or without households with a valve are left out.
    """
    if end <= start:
        raise ValueError(f"empty allocation period: {start} .. {end}")
    wanted = None if buildings is None else list(buildings)
    chosen = [site.building(b) for b in wanted] if wanted is not None else list(site.buildings)
    plan: list[tuple[Any, list[Any], list[str]]] = []
    for b in chosen:
        if b.heat is None:
            continue
        hh = [h for h in b.households if h.valve_tag is not None]
        if hh:
            plan.append((b, hh, [h.valve_tag for h in hh if h.valve_tag is not None]))
    # the building meters' deltas in a thread beside the bulk on-time query of every valve
    # (which has threads of its own) and the estimates of the valves that lost contact
    all_tags = [t for _, _, tags in plan for t in tags]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="heat-delta") as pool:
        deltas = pool.submit(
            lambda: [historian.delta(b.heat.energy_tag, start, end) for b, _, _ in plan]
        )
        period = _on_time_many(historian, all_tags, start, end)
        lost = [t for t in all_tags if period[t].unknown_s > UNKNOWN_TOLERANCE_S]
        spans = unknown_spans_many(historian, lost, start, end) if lost else {}
        # the building's open ratio in each span of each lost valve: all in one batch
        jobs = list(
            dict.fromkeys(
                (i, a, b)
                for i, (_, _, vt) in enumerate(plan)
                for t in vt
                for a, b in spans.get(t, ())
            )
        )
        found = on_time_windows(historian, [(plan[i][2], a, b) for i, a, b in jobs])
        windows: list[dict[tuple[float, float], dict[str, OnTime]]] = [{} for _ in plan]
        for (i, lo, hi), res in zip(jobs, found, strict=True):
            windows[i][(lo, hi)] = res
        estimates = [
            estimate_on_s(historian, vt, period, start, end, spans, windows[i])
            for i, (_, _, vt) in enumerate(plan)
        ]
        qs = deltas.result()
    meters = edges_estimated(historian, [b.heat.energy_tag for b, _, _ in plan], start, end)
    out: list[BuildingHeat] = []
    for (b, hh, vt), q, (on, flagged) in zip(plan, qs, estimates, strict=True):
        unknown = np.array([period[t].unknown_s for t in vt])
        if flagged.any():
            log.info(
                "building %s: valve data missing for %d households; estimated", b.id, flagged.sum()
            )
        building = allocate_building(
            b.id,
            q,
            b.heat.basic_share,
            b.heat.price_per_kwh,
            [h.id for h in hh],
            np.array([h.area_m2 for h in hh]),
            np.array([h.position_factor for h in hh]),
            on,
            unknown,
            flagged,
        )
        if meters[b.heat.energy_tag]:
            log.info("building %s: heat meter reading at a period edge not measured", b.id)
            building = dataclasses.replace(building, estimated=True)
        out.append(building)
    return HeatAllocation(start, end, out)
