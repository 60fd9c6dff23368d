"""Pydantic models of channels, device templates, points, devices and memory/computed tags.

Every model forbids unknown keys and is frozen: a configuration is parsed once, at the edge,
and read-only afterwards. Protocol-dependent and cross-reference rules (a Modbus device's
points need an address, a device's template must exist, ...) are checked by the loader,
which knows where each value was written.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from tags.model import TagType

#: Ids of channels, devices, buildings, households and tag names: dot-separated parts of
#: letters, digits, ``_`` and ``-`` (no glob characters, no empty parts).
ID_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
#: Point names become the last part of a tag name: an identifier.
POINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
PointName = Annotated[str, StringConstraints(pattern=POINT_PATTERN)]

Kind = Literal["coil", "discrete", "input", "holding"]
PointType = Literal[
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "str",
    "bit",
]
Order = Literal["big", "little"]
Role = Literal["heat_meter", "valve", "electricity_meter", "thermostat", "generic"]
ValueType = Literal["bool", "int", "float", "str"]

#: Registers (16-bit words) a value of each point type occupies; ``str`` uses ``count``.
REGISTERS: dict[str, int] = {
    "bool": 1,
    "bit": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
INT_TYPES = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})
BIT_KINDS = frozenset({"coil", "discrete"})
WRITABLE_KINDS = frozenset({"coil", "holding"})
STATUS_POINTS = ("online", "last_ok", "errors", "latency_ms")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_MIN_INTERVAL_DOC = (
    "shortest time between two operated commands on this tag (s); protects relays and "
    "actuators (scada/services/commands.py)"
)
_MAX_STEP_DOC = "largest change from the current value in one command (numeric writable tags)"
_NOT_NUMERIC = frozenset({"bool", "bit", "str"})


def _command_limit(
    name: str, value: float | None, info: ValidationInfo, *, numeric: bool
) -> float | None:
    """Check a command limit against the fields validated before it (type, writable).

    A field that failed its own validation is missing from ``info.data``: nothing to add then.
    """
    if value is None:
        return value
    if info.data.get("writable") is False:
        raise ValueError(f"{name} is only for writable points")
    typ = info.data.get("type")
    if numeric and typ in _NOT_NUMERIC:
        raise ValueError(f"{name} is only for numeric points, not type {typ}")
    return value


# --------------------------------------------------------------------------- channels


class _ChannelBase(_Model):
    id: Id
    description: str = ""
    timeout_s: float = Field(1.0, gt=0, description="reply timeout of one request")
    retries: int = Field(
        3, ge=0, description="retries of a failed request before the device counts as failing"
    )
    poll_s: float = Field(
        10.0, gt=0, description="default poll period of the devices on this channel"
    )
    max_gap: int = Field(
        8, ge=0, description="unused registers one read may span to coalesce two blocks"
    )
    max_gap_bits: int = Field(32, ge=0, description="unused coils/discretes one read may span")
    max_registers: int = Field(
        125, ge=1, le=125, description="registers per read request (Modbus limit 125)"
    )
    max_bits: int = Field(
        2000, ge=1, le=2000, description="coils/discretes per read request (Modbus limit 2000)"
    )
    backoff_max_s: float = Field(60.0, gt=0, description="longest wait between reconnect attempts")
    offline_probe_s: float = Field(30.0, gt=0, description="how often an offline device is probed")


class ModbusTcpChannel(_ChannelBase):
    """Modbus TCP: one connection to ``host:port``; devices are addressed by unit id."""

    protocol: Literal["modbus-tcp"]
    host: str
    port: int = Field(502, ge=1, le=65535)


class ModbusRtuChannel(_ChannelBase):
    """Modbus RTU on a local serial port (RS-485)."""

    protocol: Literal["modbus-rtu"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or COM3")
    baudrate: int = Field(9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class ModbusRtuOverTcpChannel(_ChannelBase):
    """Modbus RTU frames through a serial server (transparent TCP socket)."""

    protocol: Literal["modbus-rtu-over-tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


class CanChannel(_ChannelBase):
    """A CAN bus through python-can (``interface: socketcan`` on Linux, ``virtual`` in tests)."""

    protocol: Literal["can"]
    interface: str = Field(description="python-can interface: socketcan, virtual, pcan, ...")
    channel: str = Field(description="bus name, e.g. can0")
    bitrate: int | None = Field(None, gt=0)
    silence_timeout_s: float = Field(30.0, gt=0, description="a node silent this long is offline")


ChannelConfig = Annotated[
    ModbusTcpChannel | ModbusRtuChannel | ModbusRtuOverTcpChannel | CanChannel,
    Field(discriminator="protocol"),
]
MODBUS_PROTOCOLS = frozenset({"modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp"})

# --------------------------------------------------------------------------- points


class CanFrame(_Model):
    """Where a CAN value sits: frame id, first data byte and an optional multiplexer byte."""

    can_id: int = Field(ge=0, le=0x1FFFFFFF)
    start_byte: int = Field(0, ge=0, le=63)
    mux: int | None = Field(
        None, ge=0, le=255, description="data[0] must equal this to select the frame"
    )


class PointConfig(_Model):
    """One data point of a device (becomes the tag ``<device id>.<point name>``).

    Modbus points have ``address`` (0-based protocol address, so holding register 40001 is
    ``address: 0, kind: holding``) and ``kind``; CAN points have ``can_id``/``start_byte``/``mux``.
    Values are ``raw * scale + offset``.
    """

    type: PointType
    address: int | None = Field(None, ge=0, le=65535, description="0-based protocol address")
    kind: Kind | None = None
    count: int | None = Field(None, ge=1, le=125, description="registers of a str point")
    bit: int | None = Field(None, ge=0, le=15, description="bit of the register for type bit")
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    deadband: float = Field(0.0, ge=0)
    writable: bool = False
    min: float | None = None
    max: float | None = None
    min_interval_s: float | None = Field(None, gt=0, description=_MIN_INTERVAL_DOC)
    max_step: float | None = Field(None, gt=0, description=_MAX_STEP_DOC)
    description: str = ""
    poll_s: float | None = Field(
        None, gt=0, description="poll period of this point (overrides the device's)"
    )
    historize: bool = True
    can_id: int | None = Field(None, ge=0, le=0x1FFFFFFF)
    start_byte: int = Field(0, ge=0, le=63)
    mux: int | None = Field(None, ge=0, le=255)
    write: CanFrame | None = Field(None, description="CAN command frame for writes")

    @field_validator("min_interval_s")
    @classmethod
    def _min_interval(cls, v: float | None, info: ValidationInfo) -> float | None:
        return _command_limit("min_interval_s", v, info, numeric=False)

    @field_validator("max_step")
    @classmethod
    def _max_step(cls, v: float | None, info: ValidationInfo) -> float | None:
        return _command_limit("max_step", v, info, numeric=True)

    @model_validator(mode="after")
    def _check(self) -> PointConfig:
        problems: list[str] = []
        if self.kind in BIT_KINDS and self.type != "bool":
            problems.append(f"a {self.kind} point must have type bool, not {self.type}")
        if self.type == "bit" and self.bit is None:
            problems.append("type bit needs `bit` (0..15)")
        if self.bit is not None and self.type != "bit":
            problems.append("`bit` is only for type bit")
        if self.type == "str" and self.count is None:
            problems.append("type str needs `count` (registers)")
        if self.count is not None and self.type != "str":
            problems.append("`count` is only for type str")
        if (self.address is None) != (self.kind is None):
            problems.append("a Modbus point needs both `address` and `kind`")
        if self.can_id is not None and self.kind is not None:
            problems.append("a point is either Modbus (address, kind) or CAN (can_id), not both")
        if self.write is not None and self.can_id is None:
            problems.append("`write` frames are for CAN points (with can_id)")
        if self.writable and self.kind not in WRITABLE_KINDS and self.write is None:
            problems.append(
                "only coil and holding points (or CAN points with a `write` frame) can be writable"
            )
        if self.scale == 0:
            problems.append("scale must not be 0")
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(f"min {self.min} is greater than max {self.max}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def registers(self) -> int:
        """Registers (or bits, for coil/discrete) the point occupies."""
        if self.kind in BIT_KINDS:
            return 1
        return self.count or 1 if self.type == "str" else REGISTERS[self.type]

    @property
    def tag_type(self) -> TagType:
        """Runtime type of the point's tag: ints stay ints only without scaling."""
        if self.type in ("bool", "bit"):
            return TagType.BOOL
        if self.type == "str":
            return TagType.STR
        if self.type in INT_TYPES and self.scale == 1 and self.offset == 0:
            return TagType.INT
        return TagType.FLOAT


def _optional_fields(model: type[BaseModel]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        optional = copy.copy(info)  # keeps ge/le/description; only the default changes
        optional.default = None
        optional.default_factory = None
        fields[name] = (info.annotation | None, optional)  # type: ignore[operator]
    return fields


#: A device's partial override of a template point (or an extra point): every key optional;
#: the merged result is validated as a PointConfig.
PointOverride: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "PointOverride",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="Keys of a template point to change for one device (or a whole extra point).",
    **_optional_fields(PointConfig),
)

# --------------------------------------------------------------------------- templates, devices


class TemplateConfig(_Model):
    """A device type: its points (like an Ignition UDT). ``role`` tells the simulator the physics."""

    points: dict[PointName, PointConfig]
    role: Role | None = None
    description: str = ""
    poll_s: float | None = Field(None, gt=0)


class DeviceConfig(_Model):
    """One field device: a template instance on a channel at a unit id (Modbus 1..247, CAN node id)."""

    id: Id
    template: str
    channel: str
    unit: int = Field(ge=0, le=255)
    poll_s: float | None = Field(None, gt=0)
    points: dict[PointName, PointOverride] = Field(default_factory=dict)  # type: ignore[valid-type]
    enabled: bool = True
    description: str = ""
    building: str | None = None
    household: str | None = None


# --------------------------------------------------------------------------- tags


class MemoryTagConfig(_Model):
    """A tag set by operators, the API or other services (a note, a mode, a manual value)."""

    name: Id
    type: ValueType = "float"
    unit: str = ""
    description: str = ""
    initial: Any = None
    writable: bool = True
    min: float | None = None
    max: float | None = None
    min_interval_s: float | None = Field(None, gt=0, description=_MIN_INTERVAL_DOC)
    max_step: float | None = Field(None, gt=0, description=_MAX_STEP_DOC)
    deadband: float = Field(0.0, ge=0)
    historize: bool = True

    @field_validator("min_interval_s")
    @classmethod
    def _min_interval(cls, v: float | None, info: ValidationInfo) -> float | None:
        return _command_limit("min_interval_s", v, info, numeric=False)

    @field_validator("max_step")
    @classmethod
    def _max_step(cls, v: float | None, info: ValidationInfo) -> float | None:
        v = _command_limit("max_step", v, info, numeric=True)
        if v is not None and "initial" in info.data and info.data["initial"] is None:
            raise ValueError("max_step needs an `initial` value (the first command steps from it)")
        return v

    @model_validator(mode="after")
    def _check_initial(self) -> MemoryTagConfig:
        if self.initial is not None:
            try:
                TagType(self.type).coerce(self.initial)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"initial value does not fit type {self.type}: {exc}") from None
        return self


class ComputedTagConfig(_Model):
    """A tag computed from other tags by ``expr`` (see tags/expr.py for the language)."""

    name: Id
    type: ValueType = "float"
    expr: str = Field(min_length=1)
    unit: str = ""
    description: str = ""
    deadband: float = Field(0.0, ge=0)
    historize: bool = True

    @field_validator("expr")
    @classmethod
    def _strip(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty expression")
        return v


def _tag_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "computed" if "expr" in value else "memory"
    return "computed" if hasattr(value, "expr") else "memory"


#: An item of ``tags:``: computed when it has ``expr``, memory otherwise.
TagConfig = Annotated[
    Annotated[MemoryTagConfig, Tag("memory")] | Annotated[ComputedTagConfig, Tag("computed")],
    Discriminator(_tag_kind),
]
