"""Driver interface, device/point bindings and the write result shared by every protocol.

A driver serves one channel (a TCP endpoint, a serial port, a CAN bus). It is started and
stopped explicitly, writes polled values straight into the tag database (drivers keep no
copy of current values) and executes writes with read-back. Loop-thread only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.codec import BIT_KINDS, PointSpec
from tags.model import TagType

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

    def check_write(self, value: Any) -> Any:
        """Return ``value`` coerced to the tag type; raise a :class:`WriteRejected` subclass."""
        if not self.writable:
            raise NotWritable(
                f"tag {self.tag} (device {self.device}) is not writable", self.tag, self.device
            )
        if self.spec.kind in BIT_KINDS and self.spec.kind.value == "discrete":
            raise NotWritable(
                f"tag {self.tag} (device {self.device}) is a discrete input", self.tag, self.device
            )
        if self.spec.kind.value == "input":
            raise NotWritable(
                f"tag {self.tag} (device {self.device}) is an input register", self.tag, self.device
            )
        try:
            coerced = self.tag_type.coerce(value)
        except (TypeError, ValueError) as exc:
            raise WrongType(
                f"tag {self.tag} (device {self.device}): {exc}", self.tag, self.device
            ) from None
        if self.tag_type.numeric and self.tag_type is not TagType.BOOL:
            if self.min is not None and coerced < self.min:
                raise OutOfRange(
                    f"tag {self.tag} (device {self.device}): {coerced} is below min {self.min}",
                    self.tag,
                    self.device,
                )
            if self.max is not None and coerced > self.max:
                raise OutOfRange(
                    f"tag {self.tag} (device {self.device}): {coerced} is above max {self.max}",
                    self.tag,
                    self.device,
                )
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
    devices: Mapping[str, DeviceBinding]

    async def start(self) -> None:
        """Open the connection and start polling/listening in background tasks."""

    async def stop(self) -> None:
        """Stop background tasks and close the connection; idempotent."""

    async def poll_once(self) -> None:
        """Read every point of every device once (the ``scada poll --once`` path)."""

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Write an already checked value, read it back, report the outcome."""
