"""Pydantic models of channels, device templates, points and devices (the drivers' config).

Every model forbids unknown keys and is frozen (:class:`configbase.model.ConfigModel`). The
Modbus data model (point types, tables, register sizes, byte/word order, which tables are
bit tables or writable) is :mod:`drivers.codec`'s; the channel defaults are
:mod:`drivers.defaults`'. Protocol-dependent and cross-reference rules (a Modbus device's
points need an address, a device's template must exist, ...) are checked by the site loader
(``scada.config``), which knows where each value was written.
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from configbase.model import ConfigModel, Id
from configbase.secrets import Secret
from drivers import defaults
from drivers.cjt188 import ITEMS as CJT188_ITEMS
from drivers.codec import BIT_KINDS, INT_TYPES, REGISTERS, WRITABLE_KINDS, Kind, Order, PointType
from drivers.plan import MAX_READ_BITS, MAX_READ_REGISTERS
from tags.config import MAX_STEP_DOC, MIN_INTERVAL_DOC, command_limit
from tags.model import TagType

__all__ = [
    "CJT188_PROTOCOLS",
    "DLT645_PROTOCOLS",
    "MBUS_PROTOCOLS",
    "MODBUS_PROTOCOLS",
    "POINT_PATTERN",
    "STATUS_POINTS",
    "CanChannel",
    "CanFrame",
    "ChannelConfig",
    "Cjt188Channel",
    "Cjt188TcpChannel",
    "DeviceConfig",
    "Dlt645Channel",
    "Dlt645TcpChannel",
    "MbusChannel",
    "MbusTcpChannel",
    "ModbusRtuChannel",
    "ModbusRtuOverTcpChannel",
    "ModbusTcpChannel",
    "PointConfig",
    "PointName",
    "PointOverride",
    "Role",
    "TemplateConfig",
]

#: Point names become the last part of a tag name: an identifier.
POINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PointName = Annotated[str, StringConstraints(pattern=POINT_PATTERN)]

#: What a device is, for the simulator's physics.
Role = Literal["heat_meter", "valve", "electricity_meter", "thermostat", "substation", "generic"]
#: Status tags every device gets (``<device>.online`` ...), written by the drivers.
STATUS_POINTS = ("online", "last_ok", "errors", "latency_ms")
MODBUS_PROTOCOLS = frozenset({"modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp"})
DLT645_PROTOCOLS = frozenset({"dlt645", "dlt645-tcp"})
MBUS_PROTOCOLS = frozenset({"mbus", "mbus-tcp"})
CJT188_PROTOCOLS = frozenset({"cjt188", "cjt188-tcp"})
#: Most TCP connections one Modbus TCP channel may poll over (``connections``).
MAX_CONNECTIONS = 16
_NOT_NUMERIC = frozenset({PointType.BOOL, PointType.BIT, PointType.STR})


# --------------------------------------------------------------------------- channels


class _ChannelBase(ConfigModel):
    id: Id
    description: str = ""
    timeout_s: float = Field(defaults.TIMEOUT_S, gt=0, description="reply timeout of one request")
    retries: int = Field(
        defaults.RETRIES,
        ge=0,
        description="retries of a failed request before the device counts as failing",
    )
    poll_s: float = Field(
        defaults.POLL_S, gt=0, description="default poll period of the devices on this channel"
    )
    max_gap: int = Field(
        defaults.MAX_GAP,
        ge=0,
        description="unused registers one read may span to coalesce two blocks",
    )
    max_gap_bits: int = Field(
        defaults.MAX_GAP_BITS, ge=0, description="unused coils/discretes one read may span"
    )
    max_registers: int = Field(
        MAX_READ_REGISTERS,
        ge=1,
        le=MAX_READ_REGISTERS,
        description=f"registers per read request (Modbus limit {MAX_READ_REGISTERS})",
    )
    max_bits: int = Field(
        MAX_READ_BITS,
        ge=1,
        le=MAX_READ_BITS,
        description=f"coils/discretes per read request (Modbus limit {MAX_READ_BITS})",
    )
    backoff_max_s: float = Field(
        defaults.BACKOFF_MAX_S, gt=0, description="longest wait between reconnect attempts"
    )
    offline_probe_s: float = Field(
        defaults.OFFLINE_PROBE_S, gt=0, description="how often an offline device is probed"
    )


class ModbusTcpChannel(_ChannelBase):
    """Modbus TCP to ``host:port``; devices are addressed by unit id."""

    protocol: Literal["modbus-tcp"]
    host: str
    port: int = Field(502, ge=1, le=65535)
    connections: int = Field(
        1,
        ge=1,
        le=MAX_CONNECTIONS,
        description="TCP connections polling the channel's devices in parallel, each device on "
        "one (a gateway or concentrator that answers several connections at once); "
        "docs/drivers.md",
    )


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
    silence_timeout_s: float = Field(
        defaults.SILENCE_TIMEOUT_S, gt=0, description="a node silent this long is offline"
    )


class _Dlt645Base(_ChannelBase):
    password: Secret | None = Field(
        None,
        description="relay-control password, 8 hex digits: level + 6 digits; write it as a "
        "${ENV} or ${file:...} reference",
    )
    operator: str = Field(
        "00000000", pattern=r"^[0-9A-Fa-f]{8}$", description="operator code sent with relay control"
    )
    frame_gap_s: float = Field(
        0.02,
        ge=0,
        description="quiet time on the bus between an answer and the next request",
    )
    time_sync: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="local time of the daily broadcast time synchronisation (HH:MM); none: off",
    )

    @field_validator("password")
    @classmethod
    def _password(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not re.fullmatch(r"[0-9A-Fa-f]{8}", v.get_secret_value()):
            raise ValueError("the DL/T 645 password must be 8 hex digits (level + 6 digits)")
        return v


class Dlt645Channel(_Dlt645Base):
    """DL/T 645-2007 meters on a local serial port (RS-485, 2400 baud 8E1 by default)."""

    protocol: Literal["dlt645"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or COM3")
    baudrate: int = Field(2400, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class Dlt645TcpChannel(_Dlt645Base):
    """DL/T 645-2007 frames through a serial server (raw frames over a TCP socket)."""

    protocol: Literal["dlt645-tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


class _MbusBase(_ChannelBase):
    frame_gap_s: float = Field(
        0.05,
        ge=0,
        description="quiet time on the bus between an answer and the next request "
        "(EN 13757-2: at least 11 bit times)",
    )


class MbusChannel(_MbusBase):
    """M-Bus (EN 13757-2) meters on a local serial port through a level converter (2400 baud 8E1)."""

    protocol: Literal["mbus"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or COM3")
    baudrate: int = Field(2400, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class MbusTcpChannel(_MbusBase):
    """M-Bus frames through a serial server or M-Bus gateway (raw frames over a TCP socket)."""

    protocol: Literal["mbus-tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


class _Cjt188Base(_ChannelBase):
    meter_type: int = Field(
        0x20,
        ge=0x20,
        le=0x29,
        description="CJ/T 188 meter type T of the channel's meters: 0x20 heat, 0x21 cooling "
        "(heat meters are 0x20..0x29)",
    )
    frame_gap_s: float = Field(
        0.02,
        ge=0,
        description="quiet time on the bus between an answer and the next request",
    )


class Cjt188Channel(_Cjt188Base):
    """CJ/T 188-2004 heat meters on a local serial port (RS-485 or M-Bus, 2400 baud 8E1 by default)."""

    protocol: Literal["cjt188"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or COM3")
    baudrate: int = Field(2400, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class Cjt188TcpChannel(_Cjt188Base):
    """CJ/T 188-2004 frames through a serial server (raw frames over a TCP socket)."""

    protocol: Literal["cjt188-tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


ChannelConfig = Annotated[
    ModbusTcpChannel
    | ModbusRtuChannel
    | ModbusRtuOverTcpChannel
    | CanChannel
    | Dlt645Channel
    | Dlt645TcpChannel
    | MbusChannel
    | MbusTcpChannel
    | Cjt188Channel
    | Cjt188TcpChannel,
    Field(discriminator="protocol"),
]

# --------------------------------------------------------------------------- points


class CanFrame(ConfigModel):
    """Where a CAN value sits: frame id, first data byte and an optional multiplexer byte."""

    can_id: int = Field(ge=0, le=0x1FFFFFFF)
    start_byte: int = Field(0, ge=0, le=63)
    mux: int | None = Field(
        None, ge=0, le=255, description="data[0] must equal this to select the frame"
    )


class PointConfig(ConfigModel):
    """One data point of a device (becomes the tag ``<device id>.<point name>``).

    Modbus points have ``address`` (0-based protocol address, so holding register 40001 is
    ``address: 0, kind: holding``) and ``kind``; CAN points have ``can_id``/``start_byte``/``mux``;
    DL/T 645 points a data identifier ``di`` (or ``relay: true``, the meter's relay); M-Bus
    points a ``record``; CJ/T 188 points an ``item`` of the heat meter's current data.
    Values are ``raw * scale + offset``. ``type``, ``kind`` and the orders are the codec's
    (:mod:`drivers.codec`).
    """

    type: PointType
    address: int | None = Field(None, ge=0, le=65535, description="0-based protocol address")
    kind: Kind | None = None
    count: int | None = Field(
        None, ge=1, le=MAX_READ_REGISTERS, description="registers of a str point"
    )
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
    min_interval_s: float | None = Field(None, gt=0, description=MIN_INTERVAL_DOC)
    max_step: float | None = Field(None, gt=0, description=MAX_STEP_DOC)
    description: str = ""
    poll_s: float | None = Field(
        None, gt=0, description="poll period of this point (overrides the device's)"
    )
    historize: bool = True
    can_id: int | None = Field(None, ge=0, le=0x1FFFFFFF)
    start_byte: int = Field(0, ge=0, le=63)
    mux: int | None = Field(None, ge=0, le=255)
    write: CanFrame | None = Field(None, description="CAN command frame for writes")
    di: str | None = Field(
        None,
        pattern=r"^[0-9A-Fa-f]{8}$",
        description='DL/T 645 data identifier as written in the standard, e.g. "02010100"',
    )
    relay: bool = Field(
        False, description="DL/T 645: the meter's relay (true = closed), written with control 1C"
    )
    record: str | None = Field(
        None,
        description="M-Bus: the data record by its kind (energy, volume, flow_temp, return_temp, "
        "power, volume_flow, ...), converted to the point's unit",
    )
    storage: int = Field(0, ge=0, description="M-Bus: storage number of the record (0 = current)")
    tariff: int = Field(0, ge=0, description="M-Bus: tariff of the record (0 = total)")
    item: str | None = Field(
        None,
        description="CJ/T 188: the item of the heat meter's current data (DI 901F): "
        "cold_energy, heat_energy (kWh), power (kW), flow (m3/h), volume (m3), supply_temp, "
        "return_temp (degC), work_hours (h) or status (ST1 + 256 x ST2)",
    )

    @field_validator("min_interval_s")
    @classmethod
    def _min_interval(cls, v: float | None, info: ValidationInfo) -> float | None:
        return command_limit("min_interval_s", v, info)

    @field_validator("max_step")
    @classmethod
    def _max_step(cls, v: float | None, info: ValidationInfo) -> float | None:
        return command_limit("max_step", v, info, not_numeric=_NOT_NUMERIC)

    @model_validator(mode="after")
    def _check(self) -> PointConfig:
        problems: list[str] = []
        if self.kind in BIT_KINDS and self.type is not PointType.BOOL:
            problems.append(f"a {self.kind} point must have type bool, not {self.type}")
        if self.type is PointType.BIT and self.bit is None:
            problems.append("type bit needs `bit` (0..15)")
        if self.bit is not None and self.type is not PointType.BIT:
            problems.append("`bit` is only for type bit")
        if self.type is PointType.STR and self.count is None:
            problems.append("type str needs `count` (registers)")
        if self.count is not None and self.type is not PointType.STR:
            problems.append("`count` is only for type str")
        if (self.address is None) != (self.kind is None):
            problems.append("a Modbus point needs both `address` and `kind`")
        if self.can_id is not None and self.kind is not None:
            problems.append("a point is either Modbus (address, kind) or CAN (can_id), not both")
        if (self.di is not None or self.relay) and (
            self.kind is not None or self.can_id is not None
        ):
            problems.append("a DL/T 645 point (di or relay) has no Modbus or CAN address")
        if self.record is not None and (
            self.kind is not None or self.can_id is not None or self.di is not None or self.relay
        ):
            problems.append("an M-Bus point (record) has no Modbus, CAN or DL/T 645 address")
        if self.item is not None and (
            self.kind is not None
            or self.can_id is not None
            or self.di is not None
            or self.relay
            or self.record is not None
        ):
            problems.append("a CJ/T 188 point (item) has no Modbus, CAN, DL/T 645 or M-Bus address")
        if self.item is not None and self.item not in CJT188_ITEMS:
            problems.append(f"CJ/T 188 item {self.item!r} is not one of {', '.join(CJT188_ITEMS)}")
        if self.di is not None and self.relay:
            problems.append("a relay point has no `di` (its state is read from status word 3)")
        if self.relay and self.type is not PointType.BOOL:
            problems.append("a relay point must have type bool")
        if self.write is not None and self.can_id is None:
            problems.append("`write` frames are for CAN points (with can_id)")
        if (
            self.writable
            and self.kind not in WRITABLE_KINDS
            and self.write is None
            and not self.relay
        ):
            # a DL/T 645 relay point is writable too; the message keeps to the common case
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
        return self.count or 1 if self.type is PointType.STR else REGISTERS[self.type]

    @property
    def tag_type(self) -> TagType:
        """Runtime type of the point's tag: ints stay ints only without scaling."""
        if self.type in (PointType.BOOL, PointType.BIT):
            return TagType.BOOL
        if self.type is PointType.STR:
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
        # annotation is typed `type | None`, but every model field has one (a runtime type)
        fields[name] = (info.annotation | None, optional)  # type: ignore[operator]
    return fields


#: A device's partial override of a template point (or an extra point): every key optional;
#: the merged result is validated as a PointConfig.
PointOverride: type[BaseModel] = create_model(
    "PointOverride",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="Keys of a template point to change for one device (or a whole extra point).",
    **_optional_fields(PointConfig),
)

# --------------------------------------------------------------------------- templates, devices


class TemplateConfig(ConfigModel):
    """A device type: its points (like an Ignition UDT). ``role`` tells the simulator the physics."""

    points: dict[PointName, PointConfig]
    role: Role | None = None
    description: str = ""
    poll_s: float | None = Field(None, gt=0)


class DeviceConfig(ConfigModel):
    """One field device: a template instance on a channel at a unit id (Modbus 1..247, CAN node id).

    A DL/T 645 meter has its 12-digit ``address`` instead (``unit`` is then unused), a CJ/T 188
    meter its 14-digit ``address``.
    """

    id: Id
    template: str
    channel: str
    unit: int = Field(0, ge=0, le=255)
    address: str | None = Field(
        None,
        pattern=r"^([0-9]{12}|[0-9]{14}|[0-9]{1,3})$",
        description="DL/T 645 meter address (12 digits), CJ/T 188 meter address (14 digits) "
        "or M-Bus primary address (1..250)",
    )
    secondary: str | None = Field(
        None, pattern=r"^[0-9]{8}$", description="M-Bus secondary address: the 8-digit ident"
    )
    poll_s: float | None = Field(None, gt=0)
    points: dict[PointName, PointOverride] = Field(default_factory=dict)
    enabled: bool = True
    description: str = ""
    building: str | None = None
    household: str | None = None

    @field_validator("address", mode="before")
    @classmethod
    def _address_text(cls, v: Any) -> Any:
        # an M-Bus primary address is written as a number (`address: 5`)
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v
