"""Fault injection for simulated devices: offline, slow, garbage; switchable at run time.

- ``offline``: the device does not answer at all (the master times out);
- ``slow``: every answer is delayed by ``delay_s`` seconds (wall clock);
- ``garbage``: every answer is wrong: ``mode="exception"`` (an exception response with
  ``code``, default 4 = device failure), ``"short"`` (a read answer one register or one
  byte of bits short) or ``"crc"`` (RTU framing: a corrupted CRC; on Modbus TCP the same
  as ``short``) or ``"address"`` (DL/T 645: an answer from another meter address; on
  Modbus the same as ``short``). On CAN, garbage frames have a wrong length. On DL/T 645,
  ``crc`` is a wrong checksum and ``short`` a truncated frame.

Faults can also come from a small YAML/JSON file (the demo's remote control): a mapping
``device id -> {kind: ..., <params>}``; :class:`FaultFile` reloads it when it changes.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Fault", "FaultError", "FaultFile", "FaultKind", "GarbageMode", "parse_fault"]

log = logging.getLogger(__name__)


class FaultError(ValueError):
    """A fault request names an unknown device, kind or parameter."""


class FaultKind(enum.StrEnum):
    """What is wrong with a device."""

    OFFLINE = "offline"
    SLOW = "slow"
    GARBAGE = "garbage"


class GarbageMode(enum.StrEnum):
    """How a garbage answer is wrong."""

    EXCEPTION = "exception"
    SHORT = "short"
    CRC = "crc"
    ADDRESS = "address"  # DL/T 645: the answer comes from another meter address


@dataclass(frozen=True, slots=True)
class Fault:
    """One active fault of a device."""

    kind: FaultKind
    delay_s: float = 0.0
    mode: GarbageMode = GarbageMode.EXCEPTION
    code: int = 4


_PARAMS: dict[FaultKind, frozenset[str]] = {
    FaultKind.OFFLINE: frozenset(),
    FaultKind.SLOW: frozenset({"delay_s"}),
    FaultKind.GARBAGE: frozenset({"mode", "code"}),
}


def parse_fault(device_id: str, kind: str | FaultKind, params: dict[str, Any]) -> Fault:
    """Return the :class:`Fault` for ``kind`` and ``params``; raise :class:`FaultError` naming the device."""
    try:
        k = FaultKind(str(kind))
    except ValueError:
        raise FaultError(
            f"device {device_id}: unknown fault kind {kind!r}; expected offline, slow or garbage"
        ) from None
    unknown = set(params) - _PARAMS[k]
    if unknown:
        raise FaultError(
            f"device {device_id}: fault {k} takes no parameter {', '.join(sorted(unknown))}"
        )
    try:
        if k is FaultKind.SLOW:
            delay_s = float(params.get("delay_s", 2.0))
            if not delay_s >= 0:
                raise ValueError(f"delay_s must be >= 0, got {delay_s}")
            return Fault(k, delay_s=delay_s)
        if k is FaultKind.GARBAGE:
            code = int(params.get("code", 4))
            if not 1 <= code <= 255:
                raise ValueError(f"code must be 1..255, got {code}")
            mode = str(params.get("mode", "exception"))
            if mode not in GarbageMode.__members__.values():
                raise ValueError(
                    f"unknown mode {mode!r}; expected exception, short, crc or address"
                )
            return Fault(k, mode=GarbageMode(mode), code=code)
    except ValueError as exc:
        raise FaultError(f"device {device_id}: fault {k}: {exc}") from None
    return Fault(k)


class FaultFile:
    """A YAML/JSON file of faults, re-read when its modification time changes.

    ``poll()`` returns the new ``{device id: Fault}`` mapping when the file changed (an
    empty mapping when it was deleted), else ``None``. A malformed file is logged and
    ignored, so a typo in the demo's control file does not stop the simulator.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[float, int] | None = None

    def poll(self) -> dict[str, Fault] | None:
        """Return the faults if the file changed since the last call, else ``None``."""
        try:
            st = self.path.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            return {}
        try:
            text = self.path.read_text(encoding="utf-8")
            data = (json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)) or {}
            if not isinstance(data, dict):
                raise FaultError(f"{self.path}: expected a mapping of device id -> fault")
            faults: dict[str, Fault] = {}
            for device_id, spec in data.items():
                if isinstance(spec, str):
                    spec = {"kind": spec}
                if not isinstance(spec, dict) or "kind" not in spec:
                    raise FaultError(f"{self.path}: {device_id}: expected {{kind: ..., ...}}")
                params = {k: v for k, v in spec.items() if k != "kind"}
                faults[str(device_id)] = parse_fault(str(device_id), spec["kind"], params)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error("fault file ignored: %s", exc)
            return None
        return faults
