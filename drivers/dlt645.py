"""DL/T 645-2007 frames: encode, find in a byte stream, decode; data identifiers and their values.

A frame on the wire is ``[FE FE FE FE] 68 A0..A5 68 C L DATA CS 16``:

- an optional wake-up preamble of ``FE`` bytes (masters send four, meters may answer with
  none or several);
- the meter address, 12 BCD digits, least significant byte first (``AA`` is a wildcard
  digit pair: ``AAAAAAAAAAAA`` reaches any single meter on the bus);
- the control code ``C`` (bit 7: answer, bit 6: error answer, bits 0-4: function);
- ``L`` data bytes, each sent as ``byte + 0x33`` (mod 256);
- ``CS``: the sum mod 256 of every byte from the first ``68`` to the last data byte.

Addresses are strings of the 12 digits as printed on the meter's name plate
(``"000000000161"``); :class:`Frame` keeps ``data`` without the 0x33 offset. Data
identifiers (DI) are ints written as in the standard (``0x02010100`` for phase A voltage)
and go on the wire least significant byte first. :data:`DATA_ITEMS` lists the identifiers
this code decodes, with their BCD format.

Errors are :class:`FrameError` subclasses whose message is the cause people see in a
comm-loss detail (``wrong checksum``, ``truncated frame``, ...). Pure functions; no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "ANSWER",
    "BROADCAST_ADDRESS",
    "DATA_ITEMS",
    "ERROR_ANSWER",
    "FROZEN_DAYS",
    "PREAMBLE",
    "RELAY_STATE_BIT",
    "WILDCARD_ADDRESS",
    "ChecksumError",
    "Control",
    "DailyFrozen",
    "DataItem",
    "Frame",
    "FrameError",
    "MalformedFrame",
    "RelayAction",
    "TruncatedFrame",
    "check_address",
    "checked_body",
    "decode_bcd",
    "decode_frame",
    "decode_value",
    "encode_bcd",
    "encode_frame",
    "encode_value",
    "error_text",
    "find_frame",
    "frame_span",
    "frozen_dis",
    "frozen_index",
    "read_request",
    "relay_request",
    "time_sync_request",
]

PREAMBLE = b"\xfe\xfe\xfe\xfe"
START = 0x68
END = 0x16
OFFSET = 0x33
WILDCARD_ADDRESS = "AAAAAAAAAAAA"
BROADCAST_ADDRESS = "999999999999"
ANSWER = 0x80  # control-code bit: sent by the meter
ERROR_ANSWER = 0x40  # control-code bit: an abnormal answer (one error byte follows)
#: Bit of meter run status word 3 (DI 04000503) that is 1 while the relay is open (tripped).
RELAY_STATE_BIT = 4
_HEADER = 10  # 68 + 6 address bytes + 68 + C + L
_ADDRESS = re.compile(r"^[0-9A]{12}$")


class Control(enum.IntEnum):
    """Function codes of the master's requests (the answer is ``code | 0x80``)."""

    BROADCAST_TIME = 0x08
    READ = 0x11
    READ_ADDRESS = 0x13
    RELAY = 0x1C


class RelayAction(enum.IntEnum):
    """``N1`` of a relay-control (1C) request."""

    TRIP = 0x1A
    CLOSE = 0x1B


#: Bits of the error byte of an abnormal answer (DL/T 645-2007, table of 错误信息字 ERR).
_ERROR_BITS = (
    "other error",
    "no data requested",
    "password wrong / unauthorised",
    "baud rate cannot be changed",
    "annual time zones exceeded",
    "daily time slots exceeded",
    "tariffs exceeded",
)


class FrameError(ValueError):
    """Bytes that are not a valid frame (DL/T 645, or CJ/T 188 that shares it); the message says why."""


class TruncatedFrame(FrameError):
    """The frame ends before its length says it should."""


class ChecksumError(FrameError):
    """The checksum byte does not match the frame."""


class MalformedFrame(FrameError):
    """No start byte, a wrong end byte, or fields that make no sense."""


def check_address(address: str) -> str:
    """Return ``address`` upper-cased if it is 12 BCD digits (``A`` as wildcard); else raise ValueError."""
    text = address.upper()
    if not _ADDRESS.match(text):
        raise ValueError(f"DL/T 645 address must be 12 digits (A as wildcard), not {address!r}")
    return text


def _address_bytes(address: str) -> bytes:
    return bytes.fromhex(check_address(address))[::-1]


def _address_text(raw: bytes) -> str:
    return raw[::-1].hex().upper()


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: ``address`` (12 digits), ``control`` code and ``data`` without the +0x33."""

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
        """The function bits (``0x11`` for both a read request and its answer ``0x91``)."""
        return self.control & 0x1F

    @property
    def di(self) -> int | None:
        """The data identifier a read request or answer carries (first 4 data bytes)."""
        if self.function != Control.READ or len(self.data) < 4 or self.is_error:
            return None
        return int.from_bytes(self.data[:4], "little")


def _checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_frame(frame: Frame, *, preamble: bool = True) -> bytes:
    """Return ``frame`` as wire bytes (with the ``FE`` preamble unless ``preamble=False``)."""
    if len(frame.data) > 255:
        raise ValueError(f"DL/T 645 data field of {len(frame.data)} bytes (at most 255)")
    body = (
        bytes([START])
        + _address_bytes(frame.address)
        + bytes([START, frame.control & 0xFF, len(frame.data)])
        + bytes((b + OFFSET) & 0xFF for b in frame.data)
    )
    return (PREAMBLE if preamble else b"") + body + bytes([_checksum(body), END])


def frame_span(buf: bytes | bytearray, header: int = _HEADER) -> tuple[int, int] | None:
    """Return ``(start, end)`` of the first complete ``68 ... CS 16`` frame in ``buf``.

    For the frames of this family (DL/T 645, CJ/T 188) whose ``header`` bytes, counted from
    the first ``68``, end with the length byte of the data. Leading ``FE`` bytes and noise
    before the first ``68`` are skipped. ``None`` means more bytes are needed (a truncated
    frame, if none come). The frame is not checked here.
    """
    start = bytes(buf).find(bytes([START]))
    if start < 0 or len(buf) - start < header:
        return None
    end = start + header + buf[start + header - 1] + 2
    if len(buf) < end:
        return None
    return start, end


def checked_body(
    raw: bytes | bytearray,
    header: int = _HEADER,
    check_header: Callable[[bytes], None] | None = None,
) -> bytes:
    """Return the body of the frame in ``raw`` (``68`` to the end of the data) once it checks out.

    The checks of the ``68 ... CS 16`` family (see :func:`frame_span`): a start byte after
    nothing but ``FE``, the length, nothing after the end, the end byte ``16`` and the
    checksum (sum mod 256 from the first ``68``); ``check_header(frame)`` runs once the header
    is complete. Raise a :class:`FrameError` subclass naming the cause.
    """
    raw = bytes(raw)
    start = raw.find(bytes([START]))
    if start < 0 or raw[:start].strip(b"\xfe"):
        raise MalformedFrame("malformed frame: no start byte 68")
    frame = raw[start:]
    if len(frame) < header + 2:
        raise TruncatedFrame(f"truncated frame: {len(frame)} bytes, header alone is {header + 2}")
    if check_header is not None:
        check_header(frame)
    need = header + frame[header - 1] + 2
    if len(frame) < need:
        raise TruncatedFrame(f"truncated frame: {len(frame)} of {need} bytes")
    if len(frame) > need:
        raise MalformedFrame(f"malformed frame: {len(frame) - need} bytes after the end")
    body, cs, end = frame[: need - 2], frame[need - 2], frame[need - 1]
    if end != END:
        raise MalformedFrame(f"malformed frame: end byte {end:02X}, not 16")
    if _checksum(body) != cs:
        raise ChecksumError(f"wrong checksum: {cs:02X}, frame sums to {_checksum(body):02X}")
    return body


def find_frame(buf: bytes | bytearray) -> tuple[int, int] | None:
    """Return ``(start, end)`` of the first complete frame in ``buf`` (by its length byte).

    Leading ``FE`` bytes and noise before the first ``68`` are skipped. ``None`` means more
    bytes are needed (a truncated frame, if none come). The frame is not checked here:
    pass ``buf[start:end]`` to :func:`decode_frame`.
    """
    return frame_span(buf)


def _second_start(frame: bytes) -> None:
    if frame[7] != START:
        raise MalformedFrame("malformed frame: no second start byte 68 after the address")


def decode_frame(raw: bytes | bytearray) -> Frame:
    """Return the frame in ``raw`` (preamble allowed); raise a :class:`FrameError` subclass."""
    body = checked_body(raw, _HEADER, _second_start)
    data = bytes((b - OFFSET) & 0xFF for b in body[_HEADER:])
    return Frame(_address_text(body[1:7]), body[8], data)


def error_text(code: int) -> str:
    """Return the error byte of an abnormal answer as text (``"meter error 02: no data requested"``)."""
    names = [name for bit, name in enumerate(_ERROR_BITS) if code & (1 << bit)]
    return f"meter error {code:02X}" + (f": {', '.join(names)}" if names else "")


# --------------------------------------------------------------------------- BCD values


def encode_bcd(value: int, size: int, *, signed: bool = False) -> bytes:
    """Return ``value`` as ``size`` BCD bytes, least significant first (``signed``: bit 7 of the top byte)."""
    negative = value < 0
    if negative and not signed:
        raise ValueError(f"{value} is negative; the field is unsigned")
    digits = f"{abs(value):0{size * 2}d}"
    limit = size * 2 - (1 if signed else 0)
    if len(digits) > size * 2 or (signed and digits[0] not in "01234567"):
        raise ValueError(f"{value} does not fit {limit} BCD digits")
    raw = bytearray(bytes.fromhex(digits)[::-1])
    if negative:
        raw[-1] |= 0x80
    return bytes(raw)


def decode_bcd(raw: bytes, *, signed: bool = False) -> int:
    """Return the BCD integer in ``raw`` (least significant byte first); raise ValueError on a non-BCD nibble."""
    msb_first = bytearray(raw[::-1])
    negative = False
    if signed and msb_first and msb_first[0] & 0x80:
        negative = True
        msb_first[0] &= 0x7F
    text = msb_first.hex()
    if not text.isdigit():
        raise ValueError(f"not BCD: {bytes(raw).hex(' ').upper()}")
    value = int(text) if text else 0
    return -value if negative else value


@dataclass(frozen=True, slots=True)
class DataItem:
    """A data identifier: its value is ``size`` BCD bytes with ``decimals`` (``binary``: an unsigned word)."""

    di: int
    name: str
    size: int
    decimals: int = 0
    unit: str = ""
    signed: bool = False
    binary: bool = False
    count: int = 1  # values in a block (the daily frozen energy: total and four tariffs)


#: The data identifiers decoded here (DL/T 645-2007 appendix A), by DI.
DATA_ITEMS: dict[int, DataItem] = {
    item.di: item
    for item in (
        DataItem(0x00000000, "combined active energy, total", 4, 2, "kWh"),
        DataItem(0x00010000, "forward active energy, total", 4, 2, "kWh"),
        DataItem(0x00020000, "reverse active energy, total", 4, 2, "kWh"),
        DataItem(0x02010100, "phase A voltage", 2, 1, "V"),
        DataItem(0x02020100, "phase A current", 3, 3, "A", signed=True),
        DataItem(0x02030000, "total active power", 3, 4, "kW", signed=True),
        DataItem(0x02060000, "total power factor", 2, 3, "", signed=True),
        DataItem(0x04000503, "meter run status word 3", 2, binary=True),
        DataItem(0x05060001, "daily frozen time (last)", 5),
        DataItem(0x05060101, "daily frozen forward active energy (last)", 4, 2, "kWh", count=5),
    )
}


#: Daily frozen readings a meter keeps: DI 050600NN (time) and 050601NN (energy), NN = 01..3E.
FROZEN_DAYS = 62
_FROZEN_TIME, _FROZEN_ENERGY = 0x05060001, 0x05060101


def frozen_dis(n: int) -> tuple[int, int]:
    """Return the DIs (time, forward active energy) of the ``n``-th last daily freeze (1 = the last)."""
    if not 1 <= n <= FROZEN_DAYS:
        raise ValueError(f"daily freeze {n}: DL/T 645-2007 keeps the last 1..{FROZEN_DAYS}")
    return _FROZEN_TIME + n - 1, _FROZEN_ENERGY + n - 1


def frozen_index(di: int) -> int | None:
    """Return ``n`` when ``di`` is the time or energy DI of the ``n``-th last daily freeze, else None."""
    for base in (_FROZEN_TIME, _FROZEN_ENERGY):
        if 0 <= di - base < FROZEN_DAYS:
            return di - base + 1
    return None


def _item(di: int) -> DataItem:
    n = frozen_index(di)
    if n is not None:  # every freeze of the archive has the format of the last one
        return DATA_ITEMS[di - n + 1]
    try:
        return DATA_ITEMS[di]
    except KeyError:
        raise ValueError(f"data identifier {di:08X} is not supported") from None


def decode_value(di: int, raw: bytes) -> float:
    """Return the first (or only) value of data identifier ``di`` from its data bytes (DI excluded).

    The status word comes back as its integer value; the daily frozen block as its total.
    Raise ValueError if ``raw`` is too short or not BCD.
    """
    item = _item(di)
    if len(raw) < item.size:
        raise ValueError(f"DI {di:08X}: {len(raw)} data bytes, expected {item.size * item.count}")
    field = raw[: item.size]
    if item.binary:
        return float(int.from_bytes(field, "little"))
    return decode_bcd(field, signed=item.signed) / 10**item.decimals


def encode_value(di: int, value: float | list[float]) -> bytes:
    """Return the data bytes of data identifier ``di`` for ``value`` (a list for a block)."""
    item = _item(di)
    values = value if isinstance(value, list) else [value] * item.count
    if len(values) != item.count:
        raise ValueError(f"DI {di:08X} holds {item.count} values, got {len(values)}")
    if item.binary:
        return int(values[0]).to_bytes(item.size, "little")
    scale = 10**item.decimals
    return b"".join(encode_bcd(round(v * scale), item.size, signed=item.signed) for v in values)


@dataclass(frozen=True, slots=True)
class DailyFrozen:
    """A daily frozen reading: when it was frozen and the forward active energy (total, T1..T4)."""

    at: datetime
    energy_kwh: tuple[float, ...]

    @classmethod
    def decode(cls, time_raw: bytes, energy_raw: bytes) -> DailyFrozen:
        """Decode the answers to DI 05060001 (YYMMDDhhmm) and 05060101 (5 x XXXXXX.XX kWh)."""
        if len(time_raw) < 5:
            raise ValueError(f"daily frozen time: {len(time_raw)} bytes, expected 5")
        mi, hh, dd, mm, yy = (decode_bcd(bytes([b])) for b in time_raw[:5])
        item = DATA_ITEMS[_FROZEN_ENERGY]
        if len(energy_raw) < item.size * item.count:
            raise ValueError(
                f"daily frozen energy: {len(energy_raw)} bytes, expected {item.size * item.count}"
            )
        energy = tuple(decode_bcd(energy_raw[k * 4 : k * 4 + 4]) / 100.0 for k in range(item.count))
        return cls(datetime(2000 + yy, mm, dd, hh, mi), energy)

    def encode(self) -> tuple[bytes, bytes]:
        """Return the data bytes of DI 05060001 and 05060101 (the simulator's answers)."""
        t = self.at
        stamp = bytes(encode_bcd(x, 1)[0] for x in (t.minute, t.hour, t.day, t.month, t.year % 100))
        return stamp, encode_value(0x05060101, list(self.energy_kwh))


# --------------------------------------------------------------------------- requests


def read_request(address: str, di: int) -> Frame:
    """Return the read-data (11) request of ``di`` to ``address``."""
    return Frame(address, Control.READ, di.to_bytes(4, "little"))


def relay_request(
    address: str, action: RelayAction, password: str, operator: str, valid_until: datetime
) -> Frame:
    """Return a relay-control (1C) request: password, operator code, N1 (trip/close), N2, N3..N8.

    ``password`` is 8 hex digits as written on the meter's sheet: the permission level
    first (``02``), then the six password digits; ``operator`` 8 hex digits. Both go on the
    wire least significant byte first, the level byte leading the password.
    """
    if not re.fullmatch(r"[0-9A-Fa-f]{8}", password) or not re.fullmatch(
        r"[0-9A-Fa-f]{8}", operator
    ):
        raise ValueError("DL/T 645 password and operator code must be 8 hex digits each")
    pw = bytes.fromhex(password)
    pw_wire = pw[:1] + pw[1:][::-1]
    op_wire = bytes.fromhex(operator)[::-1]
    t = valid_until
    until = bytes(
        encode_bcd(x, 1)[0] for x in (t.second, t.minute, t.hour, t.day, t.month, t.year % 100)
    )
    return Frame(address, Control.RELAY, pw_wire + op_wire + bytes([action, 0x00]) + until)


def time_sync_request(at: datetime) -> Frame:
    """Return the broadcast time-sync (08) frame: ``ssmmhhDDMMYY`` to address 999999999999."""
    data = bytes(
        encode_bcd(x, 1)[0]
        for x in (at.second, at.minute, at.hour, at.day, at.month, at.year % 100)
    )
    return Frame(BROADCAST_ADDRESS, Control.BROADCAST_TIME, data)
