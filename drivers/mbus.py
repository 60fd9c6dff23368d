"""M-Bus (EN 13757-2/-3) frames and variable data: encode, find in a byte stream, decode.

Frames on the wire (EN 13757-2, FT 1.2):

- single character ``E5``: the acknowledgement (answer to ``SND_NKE`` and to a selection);
- short frame ``10 C A CS 16``: ``SND_NKE`` (``40``, initialise the slave), ``REQ_UD2``
  (``5B``/``7B``, the frame count bit FCB toggles between requests);
- long frame ``68 L L 68 C A CI DATA CS 16``: ``L`` counts C, A, CI and the data; ``CS`` is the
  sum mod 256 of C, A, CI and the data. ``RSP_UD`` (``C = 08``, bits 4-5 are ACD/DFC) with CI
  ``72`` carries the variable data structure; ``SND_UD`` (``53``/``73``) with CI ``52`` selects
  a slave by secondary address (primary address ``FD``).

The variable data structure (EN 13757-3, CI ``72``): a 12-byte fixed header (ident number 8
BCD digits, manufacturer as three letters, version, medium, access number, status,
signature) and data records, each ``DIF [DIFE...] VIF [VIFE...] value``. :func:`decode_variable`
returns them as :class:`Record` values in base units (Wh, J, m3, W, m3/h, degC, K, s) with their
storage number, tariff and subunit; :func:`encode_record` builds one (the simulator's answers).

Errors are :class:`FrameError` subclasses whose message is the cause people see in a comm-loss
detail (``wrong checksum``, ``truncated frame``, ``collision``, ...). Pure functions; no I/O.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "ACK",
    "BROADCAST",
    "CI_RESPONSE",
    "CI_SELECT",
    "FCB",
    "NETWORK_LAYER",
    "RECORDS",
    "ChecksumError",
    "CollisionError",
    "Control",
    "FixedHeader",
    "Frame",
    "FrameError",
    "MalformedFrame",
    "Quantity",
    "Record",
    "Telegram",
    "TruncatedFrame",
    "check_secondary",
    "decode_bcd",
    "decode_frame",
    "decode_manufacturer",
    "decode_variable",
    "encode_bcd",
    "encode_frame",
    "encode_manufacturer",
    "encode_record",
    "encode_variable",
    "find_frame",
    "point_value",
    "req_ud2",
    "select_secondary",
    "snd_nke",
    "unit_factor",
]

ACK = 0xE5
SHORT = 0x10
LONG = 0x68
END = 0x16
#: Primary address of the slave selected by secondary address.
NETWORK_LAYER = 0xFD
#: Primary address every slave obeys without answering.
BROADCAST = 0xFF
CI_SELECT = 0x52
CI_RESPONSE = 0x72
_SECONDARY = re.compile(r"^[0-9Ff]{8}$")


class Control(enum.IntEnum):
    """C fields used here (``REQ_UD2 | FCB`` is ``7B``)."""

    SND_NKE = 0x40
    SND_UD = 0x53
    REQ_UD2 = 0x5B
    RSP_UD = 0x08


FCB = 0x20  # frame count bit of a master's REQ_UD2 / SND_UD


class FrameError(ValueError):
    """Bytes that are not a valid M-Bus frame; the message names the cause."""


class TruncatedFrame(FrameError):
    """The frame ends before its length says it should."""


class ChecksumError(FrameError):
    """The checksum byte does not match the frame."""


class MalformedFrame(FrameError):
    """A wrong stop byte, a frame too short for its kind, or variable data that make no sense."""


class CollisionError(FrameError):
    """Bytes that start no frame or whose two length bytes differ: two slaves answered at once."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: ``ack`` (E5), a short frame (``ci is None``) or a long frame with ``ci`` and ``data``."""

    control: int = 0
    address: int = 0
    ci: int | None = None
    data: bytes = b""
    ack: bool = False


def _checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_frame(frame: Frame) -> bytes:
    """Return ``frame`` as wire bytes."""
    if frame.ack:
        return bytes([ACK])
    if frame.ci is None:
        body = bytes([frame.control & 0xFF, frame.address & 0xFF])
        return bytes([SHORT]) + body + bytes([_checksum(body), END])
    if len(frame.data) > 252:
        raise ValueError(f"M-Bus long frame data of {len(frame.data)} bytes (at most 252)")
    body = bytes([frame.control & 0xFF, frame.address & 0xFF, frame.ci & 0xFF]) + frame.data
    n = len(body)
    return bytes([LONG, n, n, LONG]) + body + bytes([_checksum(body), END])


def find_frame(buf: bytes | bytearray) -> tuple[int, int] | None:
    """Return ``(0, end)`` of the frame at the start of ``buf``, or ``None`` if more bytes are needed.

    A buffer that starts with no start byte (``E5``, ``10``, ``68``) is returned whole, for
    :func:`decode_frame` to name (a collision). The frame is not checked here.
    """
    if not buf:
        return None
    first = buf[0]
    if first == ACK:
        return 0, 1
    if first == SHORT:
        return (0, 5) if len(buf) >= 5 else None
    if first == LONG:
        if len(buf) < 4:
            return None
        if buf[1] != buf[2] or buf[3] != LONG:
            return 0, len(buf)  # garbled header: decode_frame names it
        end = buf[1] + 6
        return (0, end) if len(buf) >= end else None
    return 0, len(buf)


def decode_frame(raw: bytes | bytearray) -> Frame:
    """Return the frame in ``raw``; raise a :class:`FrameError` subclass naming what is wrong."""
    raw = bytes(raw)
    if not raw:
        raise TruncatedFrame("truncated frame: no bytes")
    first = raw[0]
    if first == ACK:
        if len(raw) > 1:
            raise CollisionError(f"collision: {len(raw) - 1} bytes after the single ack E5")
        return Frame(ack=True)
    if first == SHORT:
        if len(raw) < 5:
            raise TruncatedFrame(f"truncated frame: short frame of {len(raw)} of 5 bytes")
        body, cs, end = raw[1:3], raw[3], raw[4]
        if len(raw) > 5:
            raise CollisionError(f"collision: {len(raw) - 5} bytes after a short frame")
        if end != END:
            raise MalformedFrame(f"malformed frame: stop byte {end:02X}, not 16")
        if _checksum(body) != cs:
            raise ChecksumError(f"wrong checksum: {cs:02X}, frame sums to {_checksum(body):02X}")
        return Frame(body[0], body[1])
    if first != LONG:
        raise CollisionError(f"collision: garbage {raw[:8].hex(' ').upper()} (no start byte)")
    if len(raw) < 4:
        raise TruncatedFrame(f"truncated frame: {len(raw)} bytes of a long frame header")
    if raw[1] != raw[2] or raw[3] != LONG:
        raise CollisionError(
            f"collision: long frame header {raw[:4].hex(' ').upper()} (length bytes differ)"
        )
    length = raw[1]
    need = length + 6
    if len(raw) < need:
        raise TruncatedFrame(f"truncated frame: {len(raw)} of {need} bytes")
    if len(raw) > need:
        raise CollisionError(f"collision: {len(raw) - need} bytes after the frame")
    if length < 3:
        raise MalformedFrame(f"malformed frame: L = {length}, a long frame has C, A and CI")
    body, cs, end = raw[4 : need - 2], raw[need - 2], raw[need - 1]
    if end != END:
        raise MalformedFrame(f"malformed frame: stop byte {end:02X}, not 16")
    if _checksum(body) != cs:
        raise ChecksumError(f"wrong checksum: {cs:02X}, frame sums to {_checksum(body):02X}")
    return Frame(body[0], body[1], body[2], body[3:])


# --------------------------------------------------------------------------- requests


def snd_nke(address: int) -> Frame:
    """Return ``SND_NKE`` (initialise) to primary ``address`` (answer: ``E5``)."""
    return Frame(Control.SND_NKE, address)


def req_ud2(address: int, fcb: bool = False) -> Frame:
    """Return ``REQ_UD2`` (class 2 data) to ``address``, with the frame count bit ``fcb``."""
    return Frame(Control.REQ_UD2 | (FCB if fcb else 0), address)


def check_secondary(ident: str) -> str:
    """Return ``ident`` upper-cased if it is 8 digits (``F`` as wildcard); else raise ValueError."""
    if not _SECONDARY.match(ident):
        raise ValueError(f"M-Bus secondary address must be 8 digits (F as wildcard), not {ident!r}")
    return ident.upper()


def select_secondary(
    ident: str,
    manufacturer: int = 0xFFFF,
    version: int = 0xFF,
    medium: int = 0xFF,
    fcb: bool = False,
) -> Frame:
    """Return the ``SND_UD`` CI 52 selection of ``ident`` (``F`` digits and ``FF`` bytes are wildcards)."""
    ident_raw = bytes.fromhex(check_secondary(ident))[::-1]
    data = ident_raw + manufacturer.to_bytes(2, "little") + bytes([version, medium])
    return Frame(Control.SND_UD | (FCB if fcb else 0), NETWORK_LAYER, CI_SELECT, data)


# --------------------------------------------------------------------------- BCD, manufacturer


def encode_bcd(value: int, size: int) -> bytes:
    """Return ``value`` as ``size`` BCD bytes, least significant first (negative: ``F`` top nibble)."""
    digits = f"{abs(value):0{size * 2}d}"
    room = size * 2 - (1 if value < 0 else 0)  # a negative value gives its top nibble to the sign
    if abs(value) >= 10**room:
        raise ValueError(f"{value} does not fit {room} BCD digits")
    if value < 0:
        digits = "F" + digits[1:]
    return bytes.fromhex(digits)[::-1]


def decode_bcd(raw: bytes) -> int:
    """Return the BCD integer in ``raw`` (LSB first; an ``F`` top nibble is a minus sign)."""
    text = raw[::-1].hex().upper()
    negative = text.startswith("F")
    if negative:
        text = "0" + text[1:]
    if not text.isdigit():
        raise ValueError(f"not BCD: {bytes(raw).hex(' ').upper()}")
    value = int(text) if text else 0
    return -value if negative else value


def decode_manufacturer(code: int) -> str:
    """Return the three letters of a manufacturer code (``0x4D82`` -> ``"SLB"``)."""
    return "".join(chr(((code >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


def encode_manufacturer(letters: str) -> int:
    """Return the code of three upper-case letters (the FLAG id)."""
    if not re.fullmatch(r"[A-Z]{3}", letters):
        raise ValueError(f"manufacturer must be three letters A-Z, not {letters!r}")
    a, b, c = (ord(ch) - 64 for ch in letters)
    return (a << 10) | (b << 5) | c


# --------------------------------------------------------------------------- variable data


class Quantity(enum.Enum):
    """What a data record holds (from its VIF); the value is in the base unit named."""

    ENERGY = "energy"  # Wh
    ENERGY_J = "energy_j"  # J
    VOLUME = "volume"  # m3
    MASS = "mass"  # kg
    POWER = "power"  # W
    POWER_J = "power_j"  # J/h
    VOLUME_FLOW = "volume_flow"  # m3/h
    MASS_FLOW = "mass_flow"  # kg/h
    FLOW_TEMP = "flow_temp"  # degC
    RETURN_TEMP = "return_temp"  # degC
    TEMP_DIFF = "temp_diff"  # K
    EXTERNAL_TEMP = "external_temp"  # degC
    PRESSURE = "pressure"  # bar
    ON_TIME = "on_time"  # s
    OPERATING_TIME = "operating_time"  # s
    DATE = "date"  # datetime (type G)
    DATETIME = "datetime"  # datetime (type F)
    FABRICATION_NO = "fabrication_no"
    OTHER = "other"  # extension tables, manufacturer specific, plain text, ...


UNITS = {
    Quantity.ENERGY: "Wh",
    Quantity.ENERGY_J: "J",
    Quantity.VOLUME: "m3",
    Quantity.MASS: "kg",
    Quantity.POWER: "W",
    Quantity.POWER_J: "J/h",
    Quantity.VOLUME_FLOW: "m3/h",
    Quantity.MASS_FLOW: "kg/h",
    Quantity.FLOW_TEMP: "degC",
    Quantity.RETURN_TEMP: "degC",
    Quantity.TEMP_DIFF: "K",
    Quantity.EXTERNAL_TEMP: "degC",
    Quantity.PRESSURE: "bar",
    Quantity.ON_TIME: "s",
    Quantity.OPERATING_TIME: "s",
}
_TIME_UNITS_S = (1.0, 60.0, 3600.0, 86400.0)


def _vif(vif: int) -> tuple[Quantity, float]:
    """Return the quantity and the multiplier to its base unit of primary VIF ``vif`` (bit 7 masked)."""
    v = vif & 0x7F
    n3, n2 = v & 0x07, v & 0x03
    table: tuple[tuple[int, int, Quantity, float], ...] = (
        (0x78, 0x00, Quantity.ENERGY, 10.0 ** (n3 - 3)),
        (0x78, 0x08, Quantity.ENERGY_J, 10.0**n3),
        (0x78, 0x10, Quantity.VOLUME, 10.0 ** (n3 - 6)),
        (0x78, 0x18, Quantity.MASS, 10.0 ** (n3 - 3)),
        (0x7C, 0x20, Quantity.ON_TIME, _TIME_UNITS_S[n2]),
        (0x7C, 0x24, Quantity.OPERATING_TIME, _TIME_UNITS_S[n2]),
        (0x78, 0x28, Quantity.POWER, 10.0 ** (n3 - 3)),
        (0x78, 0x30, Quantity.POWER_J, 10.0**n3),
        (0x78, 0x38, Quantity.VOLUME_FLOW, 10.0 ** (n3 - 6)),
        (0x78, 0x40, Quantity.VOLUME_FLOW, 60.0 * 10.0 ** (n3 - 7)),  # m3/min
        (0x78, 0x48, Quantity.VOLUME_FLOW, 3600.0 * 10.0 ** (n3 - 9)),  # m3/s
        (0x78, 0x50, Quantity.MASS_FLOW, 10.0 ** (n3 - 3)),
        (0x7C, 0x58, Quantity.FLOW_TEMP, 10.0 ** (n2 - 3)),
        (0x7C, 0x5C, Quantity.RETURN_TEMP, 10.0 ** (n2 - 3)),
        (0x7C, 0x60, Quantity.TEMP_DIFF, 10.0 ** (n2 - 3)),
        (0x7C, 0x64, Quantity.EXTERNAL_TEMP, 10.0 ** (n2 - 3)),
        (0x7C, 0x68, Quantity.PRESSURE, 10.0 ** (n2 - 3)),
        (0x7F, 0x6C, Quantity.DATE, 1.0),
        (0x7F, 0x6D, Quantity.DATETIME, 1.0),
        (0x7F, 0x78, Quantity.FABRICATION_NO, 1.0),
    )
    for mask, code, quantity, factor in table:
        if v & mask == code:
            return quantity, factor
    return Quantity.OTHER, 1.0


@dataclass(frozen=True, slots=True)
class Record:
    """One data record: what it is, its value in the base unit, and where it sits.

    ``value`` is a float in :data:`UNITS`' unit of ``quantity``, a datetime for
    :attr:`Quantity.DATE`/:attr:`Quantity.DATETIME`, or raw bytes (text, manufacturer data).
    ``function``: 0 instantaneous, 1 maximum, 2 minimum, 3 value during error state.
    """

    quantity: Quantity
    value: float | datetime | bytes | None
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    function: int = 0
    dif: int = 0
    vif: int = 0

    @property
    def unit(self) -> str:
        return UNITS.get(self.quantity, "")


@dataclass(frozen=True, slots=True)
class FixedHeader:
    """The 12-byte fixed data header of a CI 72 response."""

    ident: str  # 8 BCD digits, as printed on the meter
    manufacturer: str  # three letters
    version: int
    medium: int
    access_no: int
    status: int
    signature: int = 0

    def encode(self) -> bytes:
        return (
            bytes.fromhex(check_secondary(self.ident))[::-1]
            + encode_manufacturer(self.manufacturer).to_bytes(2, "little")
            + bytes([self.version, self.medium, self.access_no, self.status])
            + self.signature.to_bytes(2, "little")
        )


@dataclass(frozen=True, slots=True)
class Telegram:
    """A decoded RSP_UD: the fixed header and the data records; ``more`` if the slave has more."""

    header: FixedHeader
    records: tuple[Record, ...] = field(default_factory=tuple)
    more: bool = False

    def find(
        self, quantity: Quantity, storage: int = 0, tariff: int = 0, subunit: int = 0
    ) -> Record | None:
        """Return the first instantaneous record of ``quantity`` at that storage/tariff/subunit."""
        for r in self.records:
            if (r.quantity, r.storage, r.tariff, r.subunit, r.function) == (
                quantity,
                storage,
                tariff,
                subunit,
                0,
            ):
                return r
        return None


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 6: 6, 7: 8}
_BCD_SIZES = {9: 1, 10: 2, 11: 3, 12: 4, 14: 6}


def _decode_date(raw: bytes, with_time: bool) -> datetime | None:
    if with_time:
        if raw[0] & 0x80:  # the invalid bit
            return None
        minute, hour = raw[0] & 0x3F, raw[1] & 0x1F
        day_b, month_b = raw[2], raw[3]
    else:
        minute = hour = 0
        day_b, month_b = raw[0], raw[1]
    year = ((day_b & 0xE0) >> 5) | ((month_b & 0xF0) >> 1)
    try:
        return datetime(2000 + year, month_b & 0x0F, day_b & 0x1F, hour, minute)
    except ValueError:
        return None  # "no date" (all zeros) and out-of-range fields


def _encode_date(at: datetime, with_time: bool) -> bytes:
    y = at.year % 100
    day_b = (at.day & 0x1F) | ((y & 0x07) << 5)
    month_b = (at.month & 0x0F) | ((y & 0x78) << 1)
    if with_time:
        return bytes([at.minute & 0x3F, at.hour & 0x1F, day_b, month_b])
    return bytes([day_b, month_b])


def decode_variable(data: bytes) -> Telegram:
    """Return the telegram in the data of a CI 72 response (after CI); raise :class:`MalformedFrame`."""
    if len(data) < 12:
        raise MalformedFrame(f"malformed frame: fixed header of {len(data)} of 12 bytes")
    ident = data[:4][::-1].hex().upper()
    header = FixedHeader(
        ident,
        decode_manufacturer(int.from_bytes(data[4:6], "little")),
        data[6],
        data[7],
        data[8],
        data[9],
        int.from_bytes(data[10:12], "little"),
    )
    records: list[Record] = []
    pos, more = 12, False
    try:
        while pos < len(data):
            dif = data[pos]
            pos += 1
            if dif == 0x2F:  # idle filler
                continue
            if dif in (0x0F, 0x1F):  # manufacturer data to the end (1F: more telegrams follow)
                more = dif == 0x1F
                records.append(Record(Quantity.OTHER, bytes(data[pos:]), dif=dif))
                break
            storage, tariff, subunit = (dif >> 6) & 1, 0, 0
            ext, n = dif & 0x80, 0
            while ext:
                dife = data[pos]
                pos += 1
                storage |= (dife & 0x0F) << (1 + 4 * n)
                tariff |= ((dife >> 4) & 0x03) << (2 * n)
                subunit |= ((dife >> 6) & 0x01) << n
                ext, n = dife & 0x80, n + 1
            vif = data[pos]
            pos += 1
            quantity, factor = _vif(vif)
            if vif in (0xFB, 0xFD, 0xFF, 0x7F, 0xEF):  # extension tables, manufacturer specific
                quantity = Quantity.OTHER
            ext = vif & 0x80
            while ext:  # VIFEs: combinable extensions are skipped
                ext = data[pos] & 0x80
                pos += 1
            if vif & 0x7F == 0x7C:  # plain-text unit after the VIFEs: length, then ASCII
                pos += 1 + data[pos]
                quantity = Quantity.OTHER
            coding = dif & 0x0F
            value: float | datetime | bytes | None
            if coding == 0x0D:
                lvar = data[pos]
                pos += 1
                size = lvar if lvar < 0xC0 else (lvar & 0x0F) * (1 if lvar < 0xE0 else 2)
                value = bytes(data[pos : pos + size])
            elif coding in _INT_SIZES:
                size = _INT_SIZES[coding]
                raw = data[pos : pos + size]
                if quantity in (Quantity.DATE, Quantity.DATETIME):
                    value = _decode_date(raw, quantity is Quantity.DATETIME)
                else:
                    value = int.from_bytes(raw, "little", signed=True) * factor
            elif coding == 0x05:
                size = 4
                value = struct.unpack("<f", data[pos : pos + 4])[0] * factor
            elif coding in _BCD_SIZES:
                size = _BCD_SIZES[coding]
                value = decode_bcd(data[pos : pos + size]) * factor
            elif coding in (0x00, 0x08):
                size, value = 0, None
            else:
                raise MalformedFrame(f"malformed frame: DIF {dif:02X} coding {coding:X}")
            if pos + size > len(data):
                raise MalformedFrame(f"malformed frame: record at byte {pos} runs past the end")
            pos += size
            function = (dif >> 4) & 0x03
            records.append(Record(quantity, value, storage, tariff, subunit, function, dif, vif))
    except IndexError:
        raise MalformedFrame("malformed frame: a data record runs past the end") from None
    except ValueError as exc:
        raise MalformedFrame(f"malformed frame: {exc}") from None
    return Telegram(header, tuple(records), more)


def encode_record(
    vif: int, value: float | datetime, *, coding: int = 0x04, storage: int = 0, tariff: int = 0
) -> bytes:
    """Return one data record: DIF (``coding``: 0x01-0x04 int, 0x05 real, 0x09-0x0C BCD), DIFEs, VIF, value.

    ``value`` is in the VIF's scaled unit (a raw count: 1234 for 12.34 m3 with VIF 0x14);
    a datetime for the date VIFs (``6C``/``6D``).
    """
    dif = coding | ((storage & 1) << 6)
    difes = bytearray()
    rest_storage, rest_tariff = storage >> 1, tariff
    while rest_storage or rest_tariff:
        difes.append((rest_storage & 0x0F) | ((rest_tariff & 0x03) << 4))
        rest_storage >>= 4
        rest_tariff >>= 2
    if difes:
        dif |= 0x80
        for k in range(len(difes) - 1):
            difes[k] |= 0x80
    if isinstance(value, datetime):
        raw = _encode_date(value, vif & 0x7F == 0x6D)
    elif coding == 0x05:
        raw = struct.pack("<f", float(value))
    elif coding in _BCD_SIZES:
        raw = encode_bcd(round(value), _BCD_SIZES[coding])
    elif coding in _INT_SIZES:
        raw = round(value).to_bytes(_INT_SIZES[coding], "little", signed=True)
    else:
        raise ValueError(f"DIF coding {coding:X} is not encoded here")
    return bytes([dif]) + bytes(difes) + bytes([vif]) + raw


def encode_variable(header: FixedHeader, records: bytes) -> bytes:
    """Return the data of a CI 72 response: the fixed header, then the encoded records."""
    return header.encode() + records


# --------------------------------------------------------------------------- points


#: A point's ``record:`` name -> the quantities that satisfy it (the first found wins).
RECORDS: dict[str, tuple[Quantity, ...]] = {
    "energy": (Quantity.ENERGY, Quantity.ENERGY_J),
    "volume": (Quantity.VOLUME,),
    "mass": (Quantity.MASS,),
    "power": (Quantity.POWER, Quantity.POWER_J),
    "volume_flow": (Quantity.VOLUME_FLOW,),
    "mass_flow": (Quantity.MASS_FLOW,),
    "flow_temp": (Quantity.FLOW_TEMP,),
    "return_temp": (Quantity.RETURN_TEMP,),
    "temp_diff": (Quantity.TEMP_DIFF,),
    "external_temp": (Quantity.EXTERNAL_TEMP,),
    "pressure": (Quantity.PRESSURE,),
    "on_time": (Quantity.ON_TIME,),
    "operating_time": (Quantity.OPERATING_TIME,),
}
#: Units a point may ask for, per dimension, as multiples of the dimension's base unit.
_DIMENSIONS: dict[str, dict[str, float]] = {
    "energy": {"J": 1.0, "kJ": 1e3, "MJ": 1e6, "GJ": 1e9, "Wh": 3600.0, "kWh": 3.6e6, "MWh": 3.6e9},
    "power": {"W": 1.0, "kW": 1e3, "MW": 1e6, "J/h": 1 / 3600.0, "GJ/h": 1e9 / 3600.0},
    "volume": {"m3": 1.0, "l": 1e-3},
    "volume_flow": {"m3/h": 1.0, "l/h": 1e-3},
    "mass": {"kg": 1.0, "t": 1e3},
    "mass_flow": {"kg/h": 1.0, "t/h": 1e3},
    "temperature": {"degC": 1.0, "°C": 1.0, "C": 1.0},
    "temp_diff": {"K": 1.0},
    "pressure": {"bar": 1.0, "kPa": 0.01},
    "time": {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0},
}
#: Dimension and base-unit factor of each quantity's base unit (UNITS).
_BASE: dict[Quantity, tuple[str, float]] = {
    Quantity.ENERGY: ("energy", 3600.0),
    Quantity.ENERGY_J: ("energy", 1.0),
    Quantity.VOLUME: ("volume", 1.0),
    Quantity.MASS: ("mass", 1.0),
    Quantity.POWER: ("power", 1.0),
    Quantity.POWER_J: ("power", 1 / 3600.0),
    Quantity.VOLUME_FLOW: ("volume_flow", 1.0),
    Quantity.MASS_FLOW: ("mass_flow", 1.0),
    Quantity.FLOW_TEMP: ("temperature", 1.0),
    Quantity.RETURN_TEMP: ("temperature", 1.0),
    Quantity.EXTERNAL_TEMP: ("temperature", 1.0),
    Quantity.TEMP_DIFF: ("temp_diff", 1.0),
    Quantity.PRESSURE: ("pressure", 1.0),
    Quantity.ON_TIME: ("time", 1.0),
    Quantity.OPERATING_TIME: ("time", 1.0),
}


def unit_factor(record: str, quantity: Quantity | None, unit: str) -> float:
    """Return the factor from ``quantity``'s base unit to ``unit`` (``""``: the base unit itself).

    ``quantity`` None checks ``unit`` against the record's first quantity. Raise ValueError
    for an unknown record name or a unit of another dimension.
    """
    if record not in RECORDS:
        raise ValueError(f"unknown M-Bus record {record!r} (one of {', '.join(RECORDS)})")
    q = quantity or RECORDS[record][0]
    dimension, base = _BASE[q]
    if not unit:
        return 1.0
    units = _DIMENSIONS[dimension]
    if unit not in units:
        raise ValueError(f"unit {unit!r} is not one of record {record!r}'s: {', '.join(units)}")
    return base / units[unit]


def point_value(
    telegram: Telegram, record: str, unit: str, storage: int = 0, tariff: int = 0
) -> float:
    """Return the value of the point naming ``record`` (at ``storage``/``tariff``) in ``unit``.

    Raise LookupError if the telegram has no such record.
    """
    for quantity in RECORDS[record]:
        r = telegram.find(quantity, storage, tariff)
        if r is not None and isinstance(r.value, float):
            return r.value * unit_factor(record, quantity, unit)
    raise LookupError(f"no {record} record (storage {storage}, tariff {tariff}) in the telegram")
