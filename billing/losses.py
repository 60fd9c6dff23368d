"""Shared losses: master meter minus its sub-meters, allocated to accounts by area or consumption.

The building's shared energy (common areas and line loss) is ``master - sum(sub-meters)`` over
the period; a negative difference (meter error) is reported and allocated as zero. Each
account's part is ``shared x area_i / sum area`` (``by: area``) or ``shared x kWh_i / sum kWh``
(``by: consumption``; by area when nobody consumed). Parts sum to the shared energy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SharedLoss", "allocate_loss"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SharedLoss:
    """A building's shared energy and each account's part (kWh)."""

    building: str
    master_kwh: float
    sub_kwh: float
    shared_kwh: float
    parts: dict[str, float]


def allocate_loss(
    building: str,
    master_kwh: float,
    consumption_kwh: Mapping[str, float],
    area_m2: Mapping[str, float | None],
    by: str = "area",
) -> SharedLoss:
    """Return the shared loss of ``building`` split over its accounts (pure arithmetic).

    ``consumption_kwh`` and ``area_m2`` are keyed by account id (the same accounts); an account
    with no area gets no part of an area split. Raises ``ValueError`` for an unknown ``by``.
    """
    if by not in ("area", "consumption"):
        raise ValueError(
            f"building {building}: shared loss by {by!r}; expected area or consumption"
        )
    sub = float(sum(consumption_kwh.values()))
    shared = master_kwh - sub
    if shared < 0:
        log.warning(
            "building %s: sub-meters (%.3f kWh) exceed the master meter (%.3f kWh); no shared loss",
            building,
            sub,
            master_kwh,
        )
        shared = 0.0
    ids = list(consumption_kwh)
    weights = {a: float(consumption_kwh[a]) for a in ids} if by == "consumption" else {}
    if not weights or sum(weights.values()) <= 0:
        weights = {a: float(area_m2.get(a) or 0.0) for a in ids}
    total = sum(weights.values())
    parts = {a: (shared * w / total if total > 0 else 0.0) for a, w in weights.items()}
    return SharedLoss(building, float(master_kwh), sub, shared, parts)
