"""Driver interface, device/point bindings, the write checks and the write result.

A driver serves one channel (a TCP endpoint, a serial port, a CAN bus). It is started and
stopped explicitly, writes polled values straight into the tag database (drivers keep no
copy of current values) and executes writes with read-back. Loop-thread only.

:func:`check_write` is the one check of a value before it is written (writable, table,
type, ``min``/``max``): the driver manager runs it on a device point, the command service
on a device point or on a tag definition (memory tags, and device tags on a central).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.codec import WRITABLE_KINDS, Kind, PointSpec
from tags.model import TagDef, TagType

__all__ = [
    "DeviceBinding",
    "Driver",
    "NotWritable",
    "OutOfRange",
    "PointBinding",
    "UnknownTag",
    "WriteRejected",
    "WriteResult",
    "WriteState",
    "WrongType",
    "check_write",
]


class WriteRejected(ValueError):
    """A write refused before anything was sent; ``tag`` and ``device`` name the target."""

    def __init__(self, message: str, tag: str = "", device: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag
        self.device = device


class UnknownTag(WriteRejected):
    """The tag does not exist or is not a device point."""


class NotWritable(WriteRejected):
    """The point is not configured ``writable: true`` (or its table is read-only)."""


class WrongType(WriteRejected):
    """The value does not have the point's type (e.g. a string for a float)."""


class OutOfRange(WriteRejected):
    """The value is outside the point's ``min``/``max`` or its wire type's range."""


class WriteState(enum.StrEnum):
    """Outcome of a write that was sent."""

    CONFIRMED = "confirmed"  # read-back equals what was written
    MISMATCH = "mismatch"  # written, but the device reports another value
    FAILED = "failed"  # the write or the read-back did not get a valid response


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Result of ``write(tag, value)``: ``state``, the value read back and a message."""

    tag: str
    device: str
    state: WriteState
    value: Any
    read_back: Any = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state is WriteState.CONFIRMED

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "device": self.device,
            "state": self.state.value,
            "value": self.value,
            "read_back": self.read_back,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PointBinding:
    """One configured point of one device, with its tag name and write limits.

    ``config`` is the original config point (protocol extras such as CAN ``can_id``).
    """

    device: str
    name: str
    tag: str
    spec: PointSpec
    tag_type: TagType = TagType.FLOAT
    writable: bool = False
    min: float | None = None
    max: float | None = None
    poll_s: float | None = None
    config: Any = None


_READ_ONLY_TABLE = {Kind.DISCRETE: "a discrete input", Kind.INPUT: "an input register"}


def check_write(target: PointBinding | TagDef, value: Any) -> Any:
    """Return ``value`` coerced to the target's type; raise a :class:`WriteRejected` subclass.

    ``target`` is a device point (its table must be writable too; messages name the device)
    or a tag definition. Checks: writable (:class:`NotWritable`), the type
    (:class:`WrongType`, NaN and ±inf included), ``min``/``max`` of numeric non-bool tags (:class:`OutOfRange`).
    The wire type's own range is the codec's, checked when the value is encoded.
    """
    device: str | None
    if isinstance(target, PointBinding):
        tag, device, ttype = target.tag, target.device, target.tag_type
        label = f"tag {tag} (device {device})"
    else:
        tag, device, ttype = target.name, target.device, target.type
        label = f"tag {tag}"
    if not target.writable:
        raise NotWritable(f"{label} is not writable", tag, device)
    if isinstance(target, PointBinding) and target.spec.kind not in WRITABLE_KINDS:
        raise NotWritable(f"{label} is {_READ_ONLY_TABLE[target.spec.kind]}", tag, device)
    try:
        coerced = ttype.coerce(value)
    except (TypeError, ValueError, OverflowError) as exc:  # Overflow: an int beyond a float
        raise WrongType(f"{label}: {exc}", tag, device) from None
    if isinstance(coerced, int | float) and not isinstance(coerced, bool):  # int and float tags
        if not math.isfinite(coerced):  # NaN/inf: no device takes them, JSON cannot carry them
            raise WrongType(f"{label}: expected a finite number, got {coerced!r}", tag, device)
        if target.min is not None and coerced < target.min:
            raise OutOfRange(f"{label}: {coerced} is below min {target.min}", tag, device)
        if target.max is not None and coerced > target.max:
            raise OutOfRange(f"{label}: {coerced} is above max {target.max}", tag, device)
    return coerced


@dataclass(frozen=True, slots=True)
class DeviceBinding:
    """One enabled device on a channel: unit id, poll period and its points by name."""

    id: str
    unit: int
    poll_s: float
    points: Mapping[str, PointBinding] = field(default_factory=dict)
    config: Any = None


class Driver(Protocol):
    """A running channel driver (Modbus or CAN). Loop-thread only."""

    channel_id: str

    @property
    def devices(self) -> Mapping[str, DeviceBinding]:
        """The channel's devices by id (read-only here: a driver may keep a dict)."""
        ...

    async def start(self) -> None:
        """Open the connection and start polling/listening in background tasks."""

    async def stop(self) -> None:
        """Stop background tasks and close the connection; idempotent."""

    async def poll_once(self) -> None:
        """Read every point of every device once (the ``scada poll --once`` path)."""

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Write an already checked value, read it back, report the outcome."""
