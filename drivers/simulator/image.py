"""Register images of simulated devices: the four Modbus tables, addressed from 0.

A :class:`DeviceImage` holds the registers and bits a real device would answer with. The
site model writes engineering values into it (encoded with ``drivers.codec``); the Modbus
server reads and writes it on behalf of masters. Each table spans the lowest to the highest
address of its points; unused addresses inside read as 0 and refuse writes, addresses
outside do not exist (``ILLEGAL_ADDRESS``), as on a typical meter.

Not thread-safe: use it on the event loop thread only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymodbus.constants import ExcCodes

from drivers.codec import BIT_KINDS, Kind, PointSpec, PointType, decode_point, encode_point

__all__ = ["FC_KIND", "DeviceImage"]

# Modbus function code -> table it reads or writes.
FC_KIND: dict[int, Kind] = {
    1: Kind.COIL,
    5: Kind.COIL,
    15: Kind.COIL,
    2: Kind.DISCRETE,
    3: Kind.HOLDING,
    6: Kind.HOLDING,
    16: Kind.HOLDING,
    22: Kind.HOLDING,
    23: Kind.HOLDING,
    4: Kind.INPUT,
}


class DeviceImage:
    """The register image of one device.

    ``points`` maps point names to their wire layout; ``protected`` names the points a
    master may not write (the model drives them and they are not writable), so a write
    that touches them is refused with ``ILLEGAL_ADDRESS``.
    """

    def __init__(
        self, device_id: str, points: Mapping[str, PointSpec], protected: Iterable[str] = ()
    ) -> None:
        self.device_id = device_id
        self.points: dict[str, PointSpec] = dict(points)
        self.protected = frozenset(protected)
        self.tables: dict[Kind, dict[int, int | bool]] = {k: {} for k in Kind}
        self._owners: dict[Kind, dict[int, list[str]]] = {k: {} for k in Kind}
        for name, spec in self.points.items():
            for addr in range(spec.address, spec.end):
                self._owners[spec.kind].setdefault(addr, []).append(name)
        # a table spans its lowest to highest point address: gaps read as 0 (poll planners
        # read across small gaps), addresses outside it do not exist
        for kind, owners in self._owners.items():
            if owners:
                zero = False if kind in BIT_KINDS else 0
                self.tables[kind] = dict.fromkeys(range(min(owners), max(owners) + 1), zero)

    # ----------------------------------------------------------------- values

    def put(self, name: str, value: Any) -> None:
        """Encode ``value`` (engineering units) into point ``name``'s registers.

        Values that do not fit the wire type are clamped to its range rather than refused:
        a simulated meter must keep answering.
        """
        spec = self.points[name]
        table = self.tables[spec.kind]
        current = table.get(spec.address, 0) if spec.type is PointType.BIT else None
        try:
            words = encode_point(spec, value, current=current)
        except ValueError:
            words = encode_point(spec, _clamp(spec, value), current=current)
        for i, w in enumerate(words):
            table[spec.address + i] = w

    def get(self, name: str) -> Any:
        """Decode point ``name`` from the image."""
        spec = self.points[name]
        table = self.tables[spec.kind]
        return decode_point(spec, [table[a] for a in range(spec.address, spec.end)])

    # ----------------------------------------------------------------- protocol

    def read(self, kind: Kind, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        """Return ``count`` registers/bits from ``address``, or ``ILLEGAL_ADDRESS``."""
        table = self.tables[kind]
        try:
            return [table[a] for a in range(address, address + count)]
        except KeyError:
            return ExcCodes.ILLEGAL_ADDRESS

    def write(
        self, kind: Kind, address: int, values: list[int] | list[bool]
    ) -> list[str] | ExcCodes:
        """Store ``values`` from ``address``; return the names of the points touched.

        Refuses (``ILLEGAL_ADDRESS``, nothing stored) a write to an address no point uses or
        to a protected point.
        """
        table = self.tables[kind]
        owners = self._owners[kind]
        touched: list[str] = []
        for a in range(address, address + len(values)):
            if a not in owners:
                return ExcCodes.ILLEGAL_ADDRESS
            for name in owners[a]:
                if name in self.protected:
                    return ExcCodes.ILLEGAL_ADDRESS
                if name not in touched:
                    touched.append(name)
        for i, v in enumerate(values):
            table[address + i] = bool(v) if kind in BIT_KINDS else int(v) & 0xFFFF
        return touched


def _clamp(spec: PointSpec, value: Any) -> Any:
    """Return ``value`` clamped into the range ``spec``'s wire type can carry."""
    if spec.is_bool:
        return bool(value)
    if spec.is_str:
        return str(value).encode("utf-8")[: 2 * spec.count].decode("utf-8", errors="ignore")
    bits = {"int16": 15, "uint16": 16, "int32": 31, "uint32": 32, "int64": 63, "uint64": 64}
    if spec.type.value in bits:
        n = bits[spec.type.value]
        lo, hi = (0, 2**n - 1) if spec.type.value.startswith("u") else (-(2**n), 2**n - 1)
        raw = (float(value) - spec.offset) / spec.scale if value == value else 0.0
        raw = min(max(raw, lo), hi)
        return raw * spec.scale + spec.offset
    return 0.0 if value != value else max(min(float(value), 3.0e38), -3.0e38)
