"""ISA-18.2 alarm states, the transition table, and the value objects the engine hands out.

An *alarm point* is one rule bound to one source (a tag, a device, a limit level); its
key (``"room_cold:b1.101.temp"``, ``"temp_limits:b1.hm.supply_c:hh"``) is stable across
restarts and configuration reloads. An *occurrence* is one activation of a point: it gets
a new integer id each time the point goes from normal to active, so an acknowledgement
names exactly what the operator saw; an alarm that clears and comes back is a new
occurrence.

States (ISA-18.2 clause 6 / IEC 62682): the four annunciation states of the core machine
(normal, unacknowledged, acknowledged, return-to-normal unacknowledged) plus three
overlays that hide the point: shelved (by an operator, timed, with a reason),
suppressed by design (a logic condition, e.g. its gateway is offline) and out of service
(maintenance). While hidden, a point's condition is still tracked; when it stops being
hidden and the condition is active, a new occurrence is raised unacknowledged.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tags.model import Scalar, iso

__all__ = [
    "ANNUNCIATED",
    "CORE_TRANSITIONS",
    "Alarm",
    "AlarmEvent",
    "AlarmFilter",
    "AlarmState",
    "EventKind",
    "Trigger",
    "core_transition",
]


class AlarmState(enum.StrEnum):
    """Observable ISA-18.2 state of an alarm point."""

    NORMAL = "normal"
    UNACKED = "unacknowledged"
    ACKED = "acknowledged"
    RTN_UNACKED = "rtn_unacknowledged"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"

    @classmethod
    def parse(cls, text: str | AlarmState) -> AlarmState:
        """Return the state named ``text`` (value or member name, any case); ValueError if none."""
        if isinstance(text, AlarmState):
            return text
        t = str(text).strip().lower()
        for s in cls:
            if t in (s.value, s.name.lower()):
                return s
        raise ValueError(
            f"unknown alarm state {text!r}; expected one of {', '.join(s.value for s in cls)}"
        )


#: States shown in the alarm list (the core machine's non-normal states).
ANNUNCIATED = frozenset({AlarmState.UNACKED, AlarmState.ACKED, AlarmState.RTN_UNACKED})
#: Overlay states that hide a point.
HIDDEN = frozenset({AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE})


class Trigger(enum.StrEnum):
    """What can happen to the core machine."""

    ACTIVATE = "activate"  # the condition became true (after on-delay)
    CLEAR = "clear"  # the condition became false (after off-delay)
    ACK = "ack"  # an operator acknowledged


#: The core ISA-18.2 machine: (state, trigger) -> (new state, starts a new occurrence).
#: Pairs not listed leave the state unchanged (ack of a normal alarm, clear of a cleared one).
CORE_TRANSITIONS: dict[tuple[AlarmState, Trigger], tuple[AlarmState, bool]] = {
    (AlarmState.NORMAL, Trigger.ACTIVATE): (AlarmState.UNACKED, True),
    (AlarmState.UNACKED, Trigger.ACK): (AlarmState.ACKED, False),
    (AlarmState.UNACKED, Trigger.CLEAR): (AlarmState.RTN_UNACKED, False),
    (AlarmState.ACKED, Trigger.CLEAR): (AlarmState.NORMAL, False),
    (AlarmState.RTN_UNACKED, Trigger.ACK): (AlarmState.NORMAL, False),
    # back before anyone acknowledged: a new occurrence (the old one is closed unacknowledged)
    (AlarmState.RTN_UNACKED, Trigger.ACTIVATE): (AlarmState.UNACKED, True),
}


def core_transition(state: AlarmState, trigger: Trigger) -> tuple[AlarmState, bool] | None:
    """Return ``(new_state, new_occurrence)`` or None when ``trigger`` does not apply in ``state``."""
    return CORE_TRANSITIONS.get((state, trigger))


class EventKind(enum.StrEnum):
    """Kinds of alarm events published to subscribers and written to the journal."""

    RAISED = "raised"
    CLEARED = "cleared"
    ACKED = "acked"
    CLOSED = "closed"  # an occurrence ended without ack (superseded, shelved, suppressed, removed)
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    OUT_OF_SERVICE = "out_of_service"
    IN_SERVICE = "in_service"
    ESCALATED = "escalated"  # written by the notification router


@dataclass(frozen=True, slots=True)
class Alarm:
    """Read-only snapshot of an alarm point and its current occurrence.

    Times are epoch seconds (UTC); ``occurrence`` is None while the point has no open
    occurrence (normal or hidden). ``active`` is the condition after delays.
    """

    key: str
    rule_id: str
    kind: str
    source: str
    level: str | None
    priority: int
    area: str
    state: AlarmState
    active: bool
    occurrence: int | None = None
    message: str = ""
    value: Scalar | None = None
    tag: str | None = None
    device: str | None = None
    building: str | None = None
    raised_ts: float | None = None
    acked_ts: float | None = None
    acked_by: str | None = None
    ack_comment: str | None = None
    cleared_ts: float | None = None
    shelved_until: float | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    out_of_service_by: str | None = None
    out_of_service_reason: str | None = None

    @property
    def unacked(self) -> bool:
        """True while the occurrence waits for an acknowledgement."""
        return self.state in (AlarmState.UNACKED, AlarmState.RTN_UNACKED)

    def to_json(self) -> dict[str, Any]:
        """Return the wire form (REST, websocket, webhook): ISO times, state as its value."""
        d = asdict(self)
        d["state"] = self.state.value
        for k in ("raised_ts", "acked_ts", "cleared_ts", "shelved_until"):
            d[k] = iso(d[k])
        if isinstance(self.value, float) and self.value != self.value:
            d["value"] = None
        return d


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition: what happened, to which alarm (snapshot after it), by whom, when."""

    kind: EventKind
    alarm: Alarm
    ts: float
    previous: AlarmState
    user: str | None = None
    comment: str | None = None
    occurrence: int | None = None  # the occurrence concerned (set also for CLOSED/ACKED ones)

    def to_json(self) -> dict[str, Any]:
        """Return ``{"type": "alarm", "event": ..., "alarm": {...}, ...}`` for the websocket."""
        return {
            "type": "alarm",
            "event": self.kind.value,
            "ts": iso(self.ts),
            "previous": self.previous.value,
            "user": self.user,
            "comment": self.comment,
            "occurrence": self.occurrence,
            "alarm": self.alarm.to_json(),
        }


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Select alarms: every given criterion must match (None: any).

    ``priorities`` a set of priorities; ``areas``/``keys``/``rules`` globs (or lists of
    globs); ``states`` states or their names; ``text`` a case-insensitive substring of
    the message, key or source.
    """

    priorities: Iterable[int] | None = None
    areas: str | Iterable[str] | None = None
    states: Iterable[AlarmState | str] | None = None
    keys: str | Iterable[str] | None = None
    rules: str | Iterable[str] | None = None
    text: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def _prep(self) -> dict[str, Any]:
        if not self._cache:

            def globs(v: str | Iterable[str] | None) -> tuple[str, ...] | None:
                return None if v is None else ((v,) if isinstance(v, str) else tuple(v))

            self._cache.update(
                priorities=None
                if self.priorities is None
                else frozenset(int(p) for p in self.priorities),
                areas=globs(self.areas),
                keys=globs(self.keys),
                rules=globs(self.rules),
                states=None
                if self.states is None
                else frozenset(AlarmState.parse(s) for s in self.states),
                text=None if self.text is None else self.text.lower(),
            )
        return self._cache

    def matches(self, alarm: Alarm) -> bool:
        """Return True when ``alarm`` meets every criterion."""
        c = self._prep()

        def any_glob(pats: tuple[str, ...] | None, value: str) -> bool:
            return pats is None or any(fnmatch.fnmatchcase(value, p) for p in pats)

        if c["priorities"] is not None and alarm.priority not in c["priorities"]:
            return False
        if c["states"] is not None and alarm.state not in c["states"]:
            return False
        if not any_glob(c["areas"], alarm.area) or not any_glob(c["keys"], alarm.key):
            return False
        if not any_glob(c["rules"], alarm.rule_id):
            return False
        t = c["text"]
        return (
            t is None
            or t in alarm.message.lower()
            or t in alarm.key.lower()
            or t in alarm.source.lower()
        )
