"""CJ/T 188-2004 frame codec: Chinese heat (and water, gas) meters on RS-485 or M-Bus.

A frame is ``68 T A0..A6 C L DATA CS 16``:

- ``T`` the meter type (``0x20``..``0x29`` heat meters: ``0x20`` heat, ``0x21`` cooling; ``0x10``
  water ...); ``A0..A6`` the address, 14 BCD digits sent least significant byte first
  (``A`` nibbles: the wildcard address ``AAAAAAAAAAAAAA``);
- ``C`` the control code: bit 7 set in an answer, bit 6 set in an abnormal answer; function
  ``01`` read data, ``03`` read address;
- ``L`` the length of ``DATA``, which starts with the data identifier ``DI0 DI1`` (the DI's low
  byte first: ``901F`` is sent ``1F 90``) and the sequence number ``SER``;
- ``CS`` the sum of every byte from the first ``68`` to the end of ``DATA``, modulo 256.

Unlike DL/T 645 there is no +0x33 on the data and no second ``68``; the framing and checksum
checks, the errors (:class:`FrameError` and its subclasses) and the BCD numbers (least
significant byte first) are the DL/T 645 codec's (:func:`drivers.dlt645.checked_body`,
:func:`~drivers.dlt645.decode_bcd`). A master sends a wake-up preamble of ``FE`` bytes (two or
more) before the frame; an answer may carry one as well.

The current data of a heat meter (DI ``901F``, :class:`HeatData`) is, after ``DI SER``:
settlement-day (or cooling) energy ``XXXXXX.XX`` + unit, current heat energy ``XXXXXX.XX`` +
unit, thermal power ``XXXXXX.XX`` + unit, flow ``XXXX.XXXX`` + unit, cumulative volume
``XXXXXX.XX`` + unit, supply and return temperature ``XXXX.XX`` degC (3 bytes each), working
hours ``XXXXXX`` (3 bytes), the meter's real time ``YYYYMMDDhhmmss`` (7 bytes) and the status
``ST`` (2 bytes: ``ST1`` then ``ST2``). The unit codes (:data:`UNITS`) are converted to kWh, kW,
m3/h and m3.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from drivers.dlt645 import (
    ChecksumError,
    FrameError,
    MalformedFrame,
    TruncatedFrame,
    checked_body,
    decode_bcd,
    encode_bcd,
    frame_span,
)

__all__ = [
    "ANSWER",
    "DI_ADDRESS",
    "DI_CURRENT",
    "ERROR_ANSWER",
    "HEAT_METER",
    "ITEMS",
    "PREAMBLE",
    "UNITS",
    "WILDCARD_ADDRESS",
    "ChecksumError",
    "Control",
    "Frame",
    "FrameError",
    "HeatData",
    "MalformedFrame",
    "TruncatedFrame",
    "check_address",
    "decode_frame",
    "decode_heat_data",
    "encode_frame",
    "encode_heat_data",
    "find_frame",
    "is_heat_meter",
    "read_request",
]

PREAMBLE = b"\xfe\xfe"
START = 0x68
END = 0x16
WILDCARD_ADDRESS = "AAAAAAAAAAAAAA"
ANSWER = 0x80  # control-code bit: sent by the meter
ERROR_ANSWER = 0x40  # control-code bit: an abnormal answer
HEAT_METER = 0x20
COOLING_METER = 0x21
#: Current data of the meter (heat meters: :class:`HeatData`).
DI_CURRENT = 0x901F
#: The meter's address (answered by the one meter on the bus to the wildcard address).
DI_ADDRESS = 0x810A
_HEADER = 11  # 68 + T + 7 address bytes + C + L
_ADDRESS = re.compile(r"^[0-9A]{14}$")
#: Length of a heat meter's 901F data after DI and SER.
HEAT_DATA_LEN = 43


class Control(enum.IntEnum):
    """Function of a control code (bits 0..5)."""

    READ_DATA = 0x01
    READ_ADDRESS = 0x03


#: Unit code -> (quantity, factor to kWh / kW / m3 / m3/h).
UNITS: dict[int, tuple[str, float]] = {
    0x01: ("energy", 1 / 3.6e6),  # J
    0x02: ("energy", 1e-3),  # Wh
    0x05: ("energy", 1.0),  # kWh
    0x08: ("energy", 1e3),  # MWh
    0x0A: ("energy", 1e5),  # MWh x 100
    0x0B: ("energy", 1 / 3600),  # kJ
    0x0E: ("energy", 1 / 3.6),  # MJ
    0x11: ("energy", 1e3 / 3.6),  # GJ
    0x13: ("energy", 1e5 / 3.6),  # GJ x 100
    0x14: ("power", 1e-3),  # W
    0x17: ("power", 1.0),  # kW
    0x1A: ("power", 1e3),  # MW
    0x29: ("volume", 1e-3),  # L
    0x2C: ("volume", 1.0),  # m3
    0x32: ("flow", 1e-3),  # L/h
    0x35: ("flow", 1.0),  # m3/h
}
#: Point items of a heat meter's current data (``item:`` of a CJ/T 188 point), in frame order.
ITEMS = (
    "cold_energy",
    "heat_energy",
    "power",
    "flow",
    "volume",
    "supply_temp",
    "return_temp",
    "work_hours",
    "status",
)


def is_heat_meter(meter_type: int) -> bool:
    """Return whether ``meter_type`` is a heat (or cooling) meter type, 0x20..0x29."""
    return 0x20 <= meter_type <= 0x29


def check_address(address: str) -> str:
    """Return ``address`` upper-cased if it is 14 BCD digits (``A`` as wildcard); else raise ValueError."""
    text = address.upper()
    if not _ADDRESS.match(text):
        raise ValueError(f"CJ/T 188 address must be 14 digits (A as wildcard), not {address!r}")
    return text


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: meter ``type``, ``address`` (14 digits), ``control`` code and ``data`` (DI, SER, ...)."""

    type: int
    address: str
    control: int
    data: bytes = b""

    @property
    def is_answer(self) -> bool:
        return bool(self.control & ANSWER)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR_ANSWER)

    @property
    def function(self) -> int:
        """The function bits (``0x01`` for both a read request and its answer ``0x81``)."""
        return self.control & 0x3F

    @property
    def di(self) -> int | None:
        """The data identifier (``0x901F``), from the first two data bytes."""
        return int.from_bytes(self.data[:2], "little") if len(self.data) >= 2 else None

    @property
    def ser(self) -> int | None:
        """The sequence number the master chose and the meter echoes."""
        return self.data[2] if len(self.data) >= 3 else None


def encode_frame(frame: Frame, *, preamble: bool = True) -> bytes:
    """Return ``frame`` as wire bytes (with the ``FE FE`` preamble unless ``preamble=False``)."""
    if len(frame.data) > 255:
        raise ValueError(f"CJ/T 188 data field of {len(frame.data)} bytes (at most 255)")
    body = (
        bytes([START, frame.type & 0xFF])
        + bytes.fromhex(check_address(frame.address))[::-1]
        + bytes([frame.control & 0xFF, len(frame.data)])
        + frame.data
    )
    return (PREAMBLE if preamble else b"") + body + bytes([sum(body) & 0xFF, END])


def find_frame(buf: bytes | bytearray) -> tuple[int, int] | None:
    """Return ``(start, end)`` of the first complete frame in ``buf`` (by its length byte).

    Leading ``FE`` bytes and noise before the first ``68`` are skipped. ``None`` means more
    bytes are needed (a truncated frame, if none come). The frame is not checked here:
    pass ``buf[start:end]`` to :func:`decode_frame`.
    """
    return frame_span(buf, _HEADER)


def decode_frame(raw: bytes | bytearray) -> Frame:
    """Return the frame in ``raw`` (preamble allowed); raise a :class:`FrameError` subclass."""
    body = checked_body(raw, _HEADER)
    return Frame(body[1], body[2:9][::-1].hex().upper(), body[9], body[_HEADER:])


def read_request(meter_type: int, address: str, di: int = DI_CURRENT, ser: int = 0) -> Frame:
    """Return the read-data request (control 01) of ``di`` to the meter at ``address``."""
    return Frame(meter_type, address, Control.READ_DATA, di.to_bytes(2, "little") + bytes([ser]))


# --------------------------------------------------------------------------- heat data


@dataclass(frozen=True, slots=True)
class HeatData:
    """A heat meter's current data (DI 901F) in kWh, kW, m3/h, m3, degC and hours."""

    cold_energy: float
    heat_energy: float
    power: float
    flow: float
    volume: float
    supply_temp: float
    return_temp: float
    work_hours: float
    meter_time: datetime | None = None
    status: int = 0

    def item(self, name: str) -> float:
        """Return the value of point item ``name`` (one of :data:`ITEMS`); KeyError if unknown."""
        if name not in ITEMS:
            raise KeyError(f"CJ/T 188 item {name!r} is not one of {', '.join(ITEMS)}")
        return float(getattr(self, name))


#: (item, quantity, decimals) of the five fields with a unit code, in frame order.
_UNIT_FIELDS = (
    ("cold_energy", "energy", 2),
    ("heat_energy", "energy", 2),
    ("power", "power", 2),
    ("flow", "flow", 4),
    ("volume", "volume", 2),
)
#: The unit codes the encoder writes (kWh, kW, m3/h, m3).
_CANONICAL = {"energy": 0x05, "power": 0x17, "flow": 0x35, "volume": 0x2C}


def decode_heat_data(data: bytes) -> HeatData:
    """Return the heat data in ``data`` (after DI and SER); raise :class:`MalformedFrame`.

    Every number must be BCD and every unit code one of :data:`UNITS` of its quantity. A
    real time that is no date (all zeros on some meters) is ``meter_time=None``.
    """
    if len(data) < HEAT_DATA_LEN:
        raise MalformedFrame(
            f"malformed frame: heat data of {len(data)} bytes, expected {HEAT_DATA_LEN}"
        )
    values: dict[str, float] = {}
    try:
        for n, (item, quantity, decimals) in enumerate(_UNIT_FIELDS):
            field = data[n * 5 : n * 5 + 5]
            unit = UNITS.get(field[4])
            if unit is None or unit[0] != quantity:
                raise MalformedFrame(
                    f"malformed frame: unit code {field[4]:02X} of {item} is no {quantity} unit"
                )
            values[item] = decode_bcd(field[:4]) / 10**decimals * unit[1]
        values["supply_temp"] = decode_bcd(data[25:28]) / 100
        values["return_temp"] = decode_bcd(data[28:31]) / 100
        values["work_hours"] = float(decode_bcd(data[31:34]))
        stamp = decode_bcd(data[34:41])
    except MalformedFrame:
        raise
    except ValueError as exc:
        raise MalformedFrame(f"malformed frame: {exc}") from None
    try:
        meter_time: datetime | None = datetime.strptime(f"{stamp:014d}", "%Y%m%d%H%M%S")
    except ValueError:
        meter_time = None
    status = int.from_bytes(data[41:43], "little")
    return HeatData(**values, meter_time=meter_time, status=status)


def encode_heat_data(heat: HeatData) -> bytes:
    """Return ``heat`` as 901F data (after DI and SER) in kWh, kW, m3/h and m3; ValueError if it does not fit."""
    out = bytearray()
    for item, quantity, decimals in _UNIT_FIELDS:
        value = float(getattr(heat, item))
        out += encode_bcd(round(value * 10**decimals), 4) + bytes([_CANONICAL[quantity]])
    out += encode_bcd(round(heat.supply_temp * 100), 3)
    out += encode_bcd(round(heat.return_temp * 100), 3)
    out += encode_bcd(round(heat.work_hours), 3)
    stamp = heat.meter_time.strftime("%Y%m%d%H%M%S") if heat.meter_time else "0" * 14
    out += encode_bcd(int(stamp), 7)
    out += (heat.status & 0xFFFF).to_bytes(2, "little")
    return bytes(out)
