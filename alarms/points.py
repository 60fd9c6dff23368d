"""Runtime state of one alarm point: condition, core ISA-18.2 state, overlays, occurrence.

``Point`` is the engine's mutable record; the outside world only sees ``Alarm``
snapshots. The core transitions come from ``alarms.model.CORE_TRANSITIONS``; the engine
decides when to apply them and turns them into events.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from alarms.conditions import EvalContext
from alarms.model import ANNUNCIATED, Alarm, AlarmState, Trigger, core_transition
from alarms.rules import PointSpec, format_message
from tags.model import Scalar, Source, TagDef, TagType

__all__ = ["AlarmCounts", "Point", "count_tag_defs"]

_RUNTIME = (
    "raw",
    "raw_since",
    "active",
    "core",
    "occurrence",
    "raised_ts",
    "acked_ts",
    "acked_by",
    "ack_comment",
    "cleared_ts",
    "message",
    "value",
    "shelved_until",
    "shelved_by",
    "shelve_reason",
    "out_of_service",
    "oos_by",
    "oos_reason",
    "suppressed",
)


class Point:
    """One alarm point's runtime state (engine-internal; loop-thread only)."""

    __slots__ = ("spec", *_RUNTIME)

    def __init__(self, spec: PointSpec) -> None:
        self.spec = spec
        self.raw = False  # raw condition (before delays)
        self.raw_since = 0.0
        self.active = False  # condition after delays
        self.core = AlarmState.NORMAL
        self.occurrence: int | None = None
        self.raised_ts: float | None = None
        self.acked_ts: float | None = None
        self.acked_by: str | None = None
        self.ack_comment: str | None = None
        self.cleared_ts: float | None = None
        self.message = ""
        self.value: Scalar | None = None
        self.shelved_until: float | None = None
        self.shelved_by: str | None = None
        self.shelve_reason: str | None = None
        self.out_of_service = False
        self.oos_by: str | None = None
        self.oos_reason: str | None = None
        self.suppressed = False

    # ------------------------------------------------------------------ state
    @property
    def hidden(self) -> bool:
        """True while out of service, shelved or suppressed by design."""
        return self.out_of_service or self.shelved_until is not None or self.suppressed

    @property
    def state(self) -> AlarmState:
        """The observable state: an overlay if one applies, else the core state."""
        if self.out_of_service:
            return AlarmState.OUT_OF_SERVICE
        if self.shelved_until is not None:
            return AlarmState.SHELVED
        if self.suppressed:
            return AlarmState.SUPPRESSED
        return self.core

    @property
    def unacked(self) -> bool:
        """True while the current occurrence waits for an acknowledgement."""
        return self.state in (AlarmState.UNACKED, AlarmState.RTN_UNACKED)

    def apply(
        self, trigger: Trigger, now: float, user: str | None, comment: str | None
    ) -> tuple[bool, int | None] | None:
        """Apply a core trigger; return ``(new_occurrence, superseded_occurrence)`` or None if it does not apply."""
        res = core_transition(self.core, trigger)
        if res is None:
            return None
        new, new_occ = res
        superseded = self.occurrence if new_occ else None
        self.core = new
        if trigger is Trigger.ACK:
            self.acked_ts, self.acked_by, self.ack_comment = now, user, comment
        elif trigger is Trigger.CLEAR:
            self.cleared_ts = now
        return new_occ, superseded

    def open_occurrence(self, occurrence: int, now: float, ctx: EvalContext) -> None:
        """Start occurrence ``occurrence`` now, with its message filled from current values."""
        self.occurrence = occurrence
        self.raised_ts = now
        self.acked_ts = self.acked_by = self.ack_comment = self.cleared_ts = None
        self.message, self.value = format_message(self.spec, ctx, now)

    def close_occurrence(self) -> None:
        """Forget the current occurrence (it is over; the journal keeps it)."""
        self.occurrence = None
        self.raised_ts = self.acked_ts = self.acked_by = self.ack_comment = self.cleared_ts = None
        self.message, self.value = "", None
        self.core = AlarmState.NORMAL

    def set_overlay(
        self,
        which: str,
        on: bool,
        *,
        user: str | None,
        reason: str | None,
        until: float | None = None,
    ) -> None:
        """Set or clear ``shelved``, ``suppressed`` or ``out_of_service``."""
        if which == "shelved":
            if on:
                self.shelved_until, self.shelved_by, self.shelve_reason = until, user, reason
            else:
                self.shelved_until = self.shelved_by = self.shelve_reason = None
        elif which == "suppressed":
            self.suppressed = on
        elif which == "out_of_service":
            self.out_of_service = on
            self.oos_by, self.oos_reason = (user, reason) if on else (None, None)
        else:
            raise ValueError(f"unknown overlay {which!r}")

    # ------------------------------------------------------------------ restore / reload
    def restore(self, row: dict[str, Any]) -> None:
        """Adopt an open occurrence from the journal (after a restart)."""
        state = AlarmState.parse(row["state"])
        if state not in ANNUNCIATED:
            state = AlarmState.RTN_UNACKED if row.get("acked_ts") is None else AlarmState.NORMAL
        self.core = state
        self.occurrence = int(row["id"])
        self.raised_ts = row["raised_ts"]
        self.acked_ts, self.acked_by, self.ack_comment = (
            row["acked_ts"],
            row["acked_by"],
            row["ack_comment"],
        )
        self.cleared_ts = row["cleared_ts"]
        self.message = row["message"]
        self.value = row["value"]
        self.active = self.raw = state in (AlarmState.UNACKED, AlarmState.ACKED)
        self.raw_since = float(row["raised_ts"])

    def restore_override(self, ov: dict[str, Any]) -> None:
        """Adopt shelving / out-of-service from the journal."""
        if ov.get("shelved_until") is not None:
            self.shelved_until, self.shelved_by, self.shelve_reason = (
                ov["shelved_until"],
                ov["shelved_by"],
                ov["shelve_reason"],
            )
        if ov.get("out_of_service"):
            self.out_of_service = True
            self.oos_by, self.oos_reason = ov["out_of_service_by"], ov["out_of_service_reason"]

    def take_state(self, other: Point) -> None:
        """Copy the runtime state of ``other`` (same key, previous configuration)."""
        for name in _RUNTIME:
            setattr(self, name, getattr(other, name))

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> Alarm:
        """Return the read-only view of this point."""
        s = self.spec
        return Alarm(
            key=s.key,
            rule_id=s.rule_id,
            kind=s.kind,
            source=s.source,
            level=s.level,
            priority=s.priority,
            area=s.area,
            state=self.state,
            active=self.active,
            occurrence=self.occurrence,
            message=self.message,
            value=self.value,
            tag=s.tag,
            device=s.device,
            building=s.building,
            raised_ts=self.raised_ts,
            acked_ts=self.acked_ts,
            acked_by=self.acked_by,
            ack_comment=self.ack_comment,
            cleared_ts=self.cleared_ts,
            shelved_until=self.shelved_until,
            shelved_by=self.shelved_by,
            shelve_reason=self.shelve_reason,
            out_of_service_by=self.oos_by,
            out_of_service_reason=self.oos_reason,
        )

    def snapshot_closed(self, occurrence: int) -> Alarm:
        """Return the view of a superseded occurrence: closed (normal), never acknowledged."""
        from dataclasses import replace

        return replace(
            self.snapshot(), state=AlarmState.NORMAL, occurrence=occurrence, active=False
        )


_TOTALS = ("active", "unacked", "shelved", "suppressed", "out_of_service")


class AlarmCounts:
    """Alarm counts kept up to date per transition (no scan of all points per change)."""

    def __init__(self) -> None:
        self._tally: collections.Counter[str] = collections.Counter(dict.fromkeys(_TOTALS, 0))

    @staticmethod
    def _buckets(area: str, state: AlarmState) -> tuple[str, ...]:
        if state is AlarmState.NORMAL:
            return ()
        if state is AlarmState.ACKED:
            return ("active", f"{area}.active")
        if state in ANNUNCIATED:
            return ("active", f"{area}.active", "unacked", f"{area}.unacked")
        return (state.value,)

    def reset(self, points: Iterable[Point]) -> None:
        """Count ``points`` from scratch."""
        self._tally = collections.Counter(dict.fromkeys(_TOTALS, 0))
        for p in points:
            self._tally.update(self._buckets(p.spec.area, p.state))

    def move(self, area: str, before: AlarmState, after: AlarmState) -> None:
        """Account for one point of ``area`` going from ``before`` to ``after``."""
        self._tally.subtract(self._buckets(area, before))
        self._tally.update(self._buckets(area, after))

    def as_dict(self) -> dict[str, int]:
        """Return ``{"active": n, "unacked": n, ..., "<area>.active": n, "<area>.unacked": n}``."""
        return {k: v for k, v in self._tally.items() if v or k in _TOTALS}


def count_tag_defs(areas: Iterable[str]) -> list[TagDef]:
    """Return the alarm-count tags: ``alarms.active``/``unacked``/``shelved``/... and per area.

    Per area: ``alarms.<area>.active`` and ``alarms.<area>.unacked`` (mimics show them).
    """

    def d(name: str, text: str) -> TagDef:
        return TagDef(name, TagType.INT, source=Source.SYSTEM, description=text, historize=True)

    defs = [
        d("alarms.active", "alarms in the alarm list"),
        d("alarms.unacked", "alarms waiting for acknowledgement"),
        d("alarms.shelved", "shelved alarm points"),
        d("alarms.suppressed", "alarm points suppressed by design"),
        d("alarms.out_of_service", "alarm points out of service"),
    ]
    for area in dict.fromkeys(areas):
        defs.append(d(f"alarms.{area}.active", f"alarms in the alarm list for {area}"))
        defs.append(d(f"alarms.{area}.unacked", f"alarms of {area} waiting for acknowledgement"))
    return defs
