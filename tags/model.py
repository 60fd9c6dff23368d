"""Tag definitions and values: the small value objects every package shares.

Times are UTC epoch seconds (float) inside the runtime; they become ISO-8601 strings
with an offset only at the edges (JSON, CLI, HMI).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeAlias

Scalar: TypeAlias = bool | int | float | str
"""The Python type of a tag value (``TagValue.value`` is this or None: no value yet)."""


class Quality(enum.IntEnum):
    """Quality of a value; a higher number is worse, so ``max()`` gives the worst."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str | Quality) -> Quality:
        if isinstance(text, Quality):
            return text
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise ValueError(f"unknown quality {text!r}; expected good, uncertain or bad") from None


class Reason(enum.IntEnum):
    """Why a value is not good (``NONE`` for good values), or where a good one came from (``ARCHIVE``)."""

    NONE = 0
    COMM_LOST = 1
    STALE = 2
    OUT_OF_RANGE = 3
    MANUAL = 4
    NOT_CONNECTED = 5
    CONFIG_ERROR = 6
    #: A good value read back from the device's own archive (a daily freeze, a historic
    #: record) after a comm loss, written into history at its frozen time.
    ARCHIVE = 7

    @property
    def label(self) -> str | None:
        return None if self is Reason.NONE else self.name.lower()

    @classmethod
    def parse(cls, text: str | Reason | None) -> Reason:
        if text is None or text == "":
            return cls.NONE
        if isinstance(text, Reason):
            return text
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise ValueError(f"unknown quality reason {text!r}") from None


class TagType(enum.StrEnum):
    """Runtime type of a tag's value (a device point's wire type maps onto one of these)."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STR = "str"

    @property
    def numeric(self) -> bool:
        """True for the types the database keeps in numpy arrays."""
        return self is not TagType.STR

    def coerce(self, value: Any) -> Scalar:
        """Return ``value`` as this type; raise ``ValueError``/``TypeError`` if it does not fit."""
        if self is TagType.STR:
            return str(value)
        if isinstance(value, str):
            raise TypeError(f"expected {self.value}, got string {value!r}")
        if self is TagType.BOOL:
            if value in (0, 1, True, False):
                return bool(value)
            raise ValueError(f"expected bool (0/1/true/false), got {value!r}")
        if self is TagType.INT:
            f = float(value)
            if not math.isfinite(f) or f != int(f):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(f)
        return float(value)


class Source(enum.StrEnum):
    """Where a tag's value comes from."""

    DEVICE = "device"  # a point of a field device, written by a driver
    STATUS = "status"  # a device status tag (online, last_ok, errors, latency_ms)
    MEMORY = "memory"  # set by operators, the API or other services
    COMPUTED = "computed"  # an expression over other tags
    SYSTEM = "system"  # the runtime's own health (historian.backend_ok, ...)


@dataclass(frozen=True, slots=True)
class TagDef:
    """Definition of one tag: fixed for the life of a configuration version."""

    name: str
    type: TagType = TagType.FLOAT
    unit: str = ""
    description: str = ""
    source: Source = Source.MEMORY
    deadband: float = 0.0
    writable: bool = False
    min: float | None = None
    max: float | None = None
    device: str | None = None  # owning device id, for device and status tags
    building: str | None = None  # owning building id, when known
    household: str | None = None  # owning household id, when known
    poll_s: float | None = None  # expected refresh period; stale after 3 x poll_s
    expr: str | None = None  # expression of a computed tag
    historize: bool = True
    history_deadband: float | None = None  # None: same as ``deadband``
    history_max_interval_s: float | None = None  # store at least this often while changing
    min_interval_s: float | None = None  # commands: shortest time between two operates
    max_step: float | None = None  # commands: largest change from the current value


def iso(ts: float | None) -> str | None:
    """Format epoch seconds as ISO-8601 UTC with offset (``2026-11-21T08:00:00.123+00:00``)."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return None
    return _iso(ts)


@lru_cache(maxsize=8192)
def _iso(ts: float) -> str:
    # a device's tags share their poll's timestamp: a listing of an estate formats each one once
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class TagValue:
    """A value with its quality, quality reason and source timestamp (epoch seconds, UTC).

    ``detail`` says more about a reason where the source knows it, for people: the cause
    of a ``comm_lost`` (``"timeout: no answer within 1 s"``, ``"Modbus exception code 2
    (illegal data address)"``, ``"connection refused by 10.0.0.5:502"``). None otherwise.
    """

    value: Scalar | None
    quality: Quality = Quality.GOOD
    reason: Reason = Reason.NONE
    ts: float = field(default=0.0)
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the wire form used by ``scada poll --json``, the websocket and the REST API.

        ``detail`` is present only when there is one (the websocket does not carry it).
        """
        v = self.value
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out: dict[str, Any] = {
            "value": v,
            "quality": self.quality.label,
            "reason": self.reason.label,
            "ts": iso(self.ts),
        }
        if self.detail:
            out["detail"] = self.detail
        return out
