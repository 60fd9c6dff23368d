"""Register codec: decode blocks of Modbus registers/bits into point values, encode writes.

Conventions (the ones Modbus devices in the seed sites use):

- registers are unsigned 16-bit words; ``byte_order: big`` means the high byte of each
  register comes first on the wire (standard Modbus), ``little`` swaps the two bytes of
  every register;
- ``word_order: big`` means the register at the lowest address holds the most significant
  word of a 32/64-bit value, ``little`` reverses the words;
- engineering value = raw * ``scale`` + ``offset``; writes apply the inverse and round
  integers half to even;
- ``bit`` is bit ``n`` (0 = least significant) of one register; ``bool`` on a register kind
  is "register != 0"; coils and discrete inputs are plain bits;
- ``str`` spans ``count`` registers, two characters per register (UTF-8), padded with NUL.

Decoding a block is vectorised with numpy: points of the same layout are gathered with one
fancy index and reinterpreted with one ``view``; values come back as float64 (the tag
database's storage). 64-bit integers beyond 2**53 lose precision there; use
:func:`decode_point` for exact scalar decoding.

The codec knows nothing of the site configuration classes: :meth:`PointSpec.of` reads any
object with the point attributes (``address``, ``kind``, ``type``, ...).
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "BIT_KINDS",
    "INT_TYPES",
    "REGISTERS",
    "WRITABLE_KINDS",
    "BlockCodec",
    "EncodeError",
    "Kind",
    "Order",
    "PointSpec",
    "PointType",
    "decode_point",
    "encode_point",
    "register_count",
]


class Kind(enum.StrEnum):
    """Modbus data table of a point."""

    COIL = "coil"
    DISCRETE = "discrete"
    INPUT = "input"
    HOLDING = "holding"


#: Tables of single bits (a point there is type ``bool``); the others hold 16-bit registers.
BIT_KINDS = frozenset({Kind.COIL, Kind.DISCRETE})
#: Tables a master may write (discrete inputs and input registers are read-only).
WRITABLE_KINDS = frozenset({Kind.COIL, Kind.HOLDING})

#: Byte order within a register / word order of a multi-register value (module docstring).
Order = Literal["big", "little"]


class PointType(enum.StrEnum):
    """Wire type of a point (the order is the one config error messages list)."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STR = "str"
    BIT = "bit"


# type -> (registers, struct code, numpy big-endian dtype)
_NUMERIC: dict[PointType, tuple[int, str, str]] = {
    PointType.INT16: (1, "h", ">i2"),
    PointType.UINT16: (1, "H", ">u2"),
    PointType.INT32: (2, "i", ">i4"),
    PointType.UINT32: (2, "I", ">u4"),
    PointType.INT64: (4, "q", ">i8"),
    PointType.UINT64: (4, "Q", ">u8"),
    PointType.FLOAT32: (2, "f", ">f4"),
    PointType.FLOAT64: (4, "d", ">f8"),
}
_INT_RANGE: dict[PointType, tuple[int, int]] = {
    PointType.INT16: (-(2**15), 2**15 - 1),
    PointType.UINT16: (0, 2**16 - 1),
    PointType.INT32: (-(2**31), 2**31 - 1),
    PointType.UINT32: (0, 2**32 - 1),
    PointType.INT64: (-(2**63), 2**63 - 1),
    PointType.UINT64: (0, 2**64 - 1),
}
_FLOAT_MAX = {PointType.FLOAT32: float(np.finfo(np.float32).max), PointType.FLOAT64: math.inf}
#: Registers (16-bit words) a value of each fixed-size type occupies; ``str`` uses ``count``.
REGISTERS: dict[PointType, int] = {
    PointType.BOOL: 1,
    PointType.BIT: 1,
    **{t: layout[0] for t, layout in _NUMERIC.items()},
}
#: Integer wire types (they stay ints in the tag database when unscaled).
INT_TYPES = frozenset(_INT_RANGE)


class EncodeError(ValueError):
    """A value cannot be represented by the point's wire type (range, type, length)."""


def _enum_value(x: Any) -> str:
    return str(getattr(x, "value", x))


def _order(x: Any) -> Order:
    """Return a byte/word order given as text or None (None: ``big``)."""
    value = _enum_value(x or "big")
    if value not in ("big", "little"):
        raise ValueError(f"byte/word order must be big or little, got {value!r}")
    return "little" if value == "little" else "big"


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Wire layout of one point, normalised from a config point (see :meth:`of`)."""

    address: int
    kind: Kind = Kind.HOLDING
    type: PointType = PointType.UINT16
    count: int = 1  # registers of a ``str`` point
    bit: int = 0  # bit number of a ``bit`` point
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError(
                f"point {self.name or self.address}: scale must be finite and non-zero"
            )
        if self.type is PointType.BIT and not 0 <= self.bit <= 15:
            raise ValueError(
                f"point {self.name or self.address}: bit must be 0..15, got {self.bit}"
            )
        if self.kind in BIT_KINDS and self.type is not PointType.BOOL:
            raise ValueError(
                f"point {self.name or self.address}: {self.kind} points must be type bool"
            )
        if self.type is PointType.STR and self.count < 1:
            raise ValueError(f"point {self.name or self.address}: str needs count >= 1 registers")

    @classmethod
    def of(cls, point: Any, name: str = "") -> PointSpec:
        """Return the spec of ``point`` (a config point, a mapping or a PointSpec)."""
        if isinstance(point, PointSpec):
            return point
        get: Callable[..., Any] = (
            point.get if isinstance(point, dict) else lambda k, d=None: getattr(point, k, d)
        )
        ptype = PointType(_enum_value(get("type", "uint16")))
        count = get("count", None)
        bit = get("bit", None)
        return cls(
            address=int(get("address")),
            kind=Kind(_enum_value(get("kind", "holding"))),
            type=ptype,
            count=int(count) if count is not None else 1,
            bit=int(bit) if bit is not None else 0,
            word_order=_order(get("word_order", "big")),
            byte_order=_order(get("byte_order", "big")),
            scale=float(get("scale", 1.0) if get("scale", None) is not None else 1.0),
            offset=float(get("offset", 0.0) if get("offset", None) is not None else 0.0),
            name=name or str(get("name", "") or ""),
        )

    @property
    def width(self) -> int:
        """Registers (or bits, for coils/discrete inputs) the point occupies."""
        return register_count(self)

    @property
    def end(self) -> int:
        """One past the last address the point occupies."""
        return self.address + self.width

    @property
    def is_str(self) -> bool:
        return self.type is PointType.STR

    @property
    def is_bool(self) -> bool:
        return self.type in (PointType.BOOL, PointType.BIT)

    @property
    def is_int(self) -> bool:
        return self.type in _INT_RANGE


def register_count(point: PointSpec) -> int:
    """Return how many registers (or bits for coil/discrete) ``point`` occupies."""
    if point.kind in BIT_KINDS:
        return 1
    if point.type is PointType.STR:
        return point.count
    return REGISTERS[point.type]


def _swap_bytes(words: np.ndarray) -> np.ndarray:
    w = words.astype(np.uint16, copy=False)
    return ((w >> 8) | (w << 8)).astype(np.uint16)


class BlockCodec:
    """Decode one read block (registers or bits starting at ``start``) into point values.

    Build once per planned read; :meth:`decode` is then a handful of numpy operations
    regardless of the number of points. Output order is the order of ``points``.
    """

    def __init__(self, points: Sequence[PointSpec], start: int, length: int | None = None) -> None:
        self.points = tuple(points)
        self.start = start
        if not self.points:
            raise ValueError("a block needs at least one point")
        kinds = {p.kind in BIT_KINDS for p in self.points}
        if len(kinds) != 1:
            raise ValueError("a block holds either bit points or register points, not both")
        self.bits = kinds.pop()
        end = max(p.end for p in self.points)
        self.length = length if length is not None else end - start
        for p in self.points:
            if p.address < start or p.end > start + self.length:
                raise ValueError(f"point {p.name or p.address} outside block {start}+{self.length}")
        self.str_positions = [i for i, p in enumerate(self.points) if p.is_str]
        self._groups: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]] = []
        self._bit_pos = np.empty(0, np.intp)
        self._bit_idx = np.empty(0, np.intp)
        self._bit_shift = np.empty(0, np.uint16)
        self._bool_pos = np.empty(0, np.intp)
        self._bool_idx = np.empty(0, np.intp)
        if self.bits:
            self._bool_pos = np.arange(len(self.points), dtype=np.intp)
            self._bool_idx = np.array([p.address - start for p in self.points], dtype=np.intp)
            return
        groups: dict[tuple[PointType, str, str], list[int]] = {}
        bit_pos: list[int] = []
        bool_pos: list[int] = []
        for i, p in enumerate(self.points):
            if p.type is PointType.BIT:
                bit_pos.append(i)
            elif p.type is PointType.BOOL:
                bool_pos.append(i)
            elif p.type in _NUMERIC:
                groups.setdefault((p.type, p.word_order, p.byte_order), []).append(i)
        self._bit_pos = np.array(bit_pos, dtype=np.intp)
        self._bit_idx = np.array([self.points[i].address - start for i in bit_pos], dtype=np.intp)
        self._bit_shift = np.array([self.points[i].bit for i in bit_pos], dtype=np.uint16)
        self._bool_pos = np.array(bool_pos, dtype=np.intp)
        self._bool_idx = np.array([self.points[i].address - start for i in bool_pos], dtype=np.intp)
        for (ptype, word_order, byte_order), pos in groups.items():
            nwords, _, dtype = _NUMERIC[ptype]
            cols = np.arange(nwords)
            if word_order == "little":
                cols = cols[::-1]
            idx = (
                np.array([self.points[i].address - start for i in pos], dtype=np.intp)[:, None]
                + cols
            )
            scale = np.array([self.points[i].scale for i in pos], dtype=np.float64)
            offset = np.array([self.points[i].offset for i in pos], dtype=np.float64)
            self._groups.append(
                (dtype, np.array(pos, dtype=np.intp), idx, scale, offset, byte_order == "little")
            )

    def decode(self, data: Sequence[int] | Sequence[bool] | np.ndarray) -> np.ndarray:
        """Return float64 values in point order (bools as 0/1, ``str`` points as NaN).

        ``data`` is the block as read: registers (uint16) or bits. Raise ``ValueError`` if it
        is shorter than the block.
        """
        arr = np.asarray(data)
        if arr.shape[0] < self.length:
            raise ValueError(
                f"block at {self.start} needs {self.length} values, got {arr.shape[0]}"
            )
        out = np.full(len(self.points), np.nan)
        if self.bits:
            out[self._bool_pos] = arr[self._bool_idx].astype(bool)
            return out
        regs = arr.astype(np.uint16, copy=False)
        if self._bool_pos.size:
            out[self._bool_pos] = regs[self._bool_idx] != 0
        if self._bit_pos.size:
            out[self._bit_pos] = (regs[self._bit_idx] >> self._bit_shift) & 1
        for dtype, pos, idx, scale, offset, swap in self._groups:
            words = regs[idx]
            if swap:
                words = _swap_bytes(words)
            raw = np.ascontiguousarray(words.astype(">u2")).view(dtype).reshape(-1)
            out[pos] = raw.astype(np.float64) * scale + offset
        return out

    def decode_strings(self, data: Sequence[int] | np.ndarray) -> list[str]:
        """Return the values of the ``str`` points, in the order of :attr:`str_positions`."""
        result = []
        for i in self.str_positions:
            p = self.points[i]
            off = p.address - self.start
            result.append(_decode_str(p, data[off : off + p.count]))
        return result


def _decode_str(point: PointSpec, regs: Sequence[int] | np.ndarray) -> str:
    raw = bytearray()
    for r in regs:
        r = int(r)
        hi, lo = (r >> 8) & 0xFF, r & 0xFF
        raw += bytes((lo, hi) if point.byte_order == "little" else (hi, lo))
    return bytes(raw).split(b"\x00", 1)[0].decode("utf-8", errors="replace").rstrip()


def _words_to_bytes(point: PointSpec, regs: Sequence[int]) -> bytes:
    words = [int(r) & 0xFFFF for r in regs]
    if point.word_order == "little":
        words.reverse()
    if point.byte_order == "little":
        words = [((w >> 8) | (w << 8)) & 0xFFFF for w in words]
    return b"".join(w.to_bytes(2, "big") for w in words)


def _bytes_to_words(point: PointSpec, data: bytes) -> list[int]:
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.byte_order == "little":
        words = [((w >> 8) | (w << 8)) & 0xFFFF for w in words]
    if point.word_order == "little":
        words.reverse()
    return words


def decode_point(
    point: PointSpec, data: Sequence[int] | Sequence[bool]
) -> bool | int | float | str:
    """Decode one point from its own registers/bits (``data[0]`` is at ``point.address``).

    Exact (Python int) for integer types without scaling; float when scaled; bool for
    bool/bit; str for strings.
    """
    if point.kind in BIT_KINDS:
        return bool(data[0])
    if point.type is PointType.BOOL:
        return int(data[0]) != 0
    if point.type is PointType.BIT:
        return bool((int(data[0]) >> point.bit) & 1)
    if point.type is PointType.STR:
        return _decode_str(point, data[: point.count])
    nwords, code, _ = _NUMERIC[point.type]
    if len(data) < nwords:
        raise ValueError(
            f"point {point.name or point.address}: needs {nwords} registers, got {len(data)}"
        )
    (raw,) = struct.unpack(">" + code, _words_to_bytes(point, data[:nwords]))
    if point.scale == 1.0 and point.offset == 0.0:
        return raw
    return float(raw) * point.scale + point.offset


def encode_point(
    point: PointSpec, value: Any, current: int | None = None
) -> list[int] | list[bool]:
    """Encode ``value`` (engineering units) into the point's registers, or ``[bool]`` for bits.

    ``current`` is the present content of the register of a ``bit`` point (the other 15
    bits are kept; default 0). Raise :class:`EncodeError` if the value has the wrong type,
    is not finite, or does not fit the wire type after inverse scaling.
    """
    label = point.name or f"address {point.address}"
    if point.kind in BIT_KINDS or point.type in (PointType.BOOL, PointType.BIT):
        if isinstance(value, str) or value not in (0, 1, True, False):
            raise EncodeError(f"point {label}: expected a bool (0/1/true/false), got {value!r}")
        on = bool(value)
        if point.kind in BIT_KINDS:
            return [on]
        if point.type is PointType.BOOL:
            return [1 if on else 0]
        reg = int(current or 0)
        mask = 1 << point.bit
        return [(reg | mask) if on else (reg & ~mask & 0xFFFF)]
    if point.type is PointType.STR:
        if not isinstance(value, str):
            raise EncodeError(f"point {label}: expected a string, got {value!r}")
        data = value.encode("utf-8")
        if len(data) > 2 * point.count:
            raise EncodeError(
                f"point {label}: string of {len(data)} bytes does not fit {point.count} registers"
            )
        data = data.ljust(2 * point.count, b"\x00")
        words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        if point.byte_order == "little":
            words = [((w >> 8) | (w << 8)) & 0xFFFF for w in words]
        return words
    if isinstance(value, (str, bytes)) or value is None:
        raise EncodeError(f"point {label}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EncodeError(f"point {label}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise EncodeError(f"point {label}: value must be finite, got {value!r}")
    _nwords, code, _ = _NUMERIC[point.type]
    if point.type in _INT_RANGE:
        lo, hi = _INT_RANGE[point.type]
        if point.scale == 1.0 and point.offset == 0.0 and isinstance(value, int):
            raw_int = int(value)  # exact for 64-bit integers beyond 2**53
        else:
            raw_int = round((number - point.offset) / point.scale)
        if not lo <= raw_int <= hi:
            raise EncodeError(
                f"point {label}: {value!r} is outside the {point.type} range "
                f"{lo * point.scale + point.offset:g}..{hi * point.scale + point.offset:g}"
            )
        packed = struct.pack(">" + code, raw_int)
    else:
        raw = (number - point.offset) / point.scale
        if abs(raw) > _FLOAT_MAX[point.type]:
            raise EncodeError(f"point {label}: {value!r} overflows {point.type}")
        packed = struct.pack(">" + code, raw)
    return _bytes_to_words(point, packed)
