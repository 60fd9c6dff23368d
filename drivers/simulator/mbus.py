"""M-Bus serving of simulated heat meters: raw EN 13757-2 frames over TCP or a serial port.

An :class:`MbusEndpoint` (a :class:`~drivers.simulator.framebus.FrameServer`) listens on an ``mbus-tcp`` channel's ``host:port`` (or reads an
``mbus`` channel's serial port given to the simulator, e.g. one end of a ``socat`` pty pair)
and answers as the meters behind an M-Bus level converter would:

- ``SND_NKE`` to a meter's primary address (or to FD, the selected meter): ``E5``;
- ``SND_UD`` CI 52 to FD: selects the meter whose ident (``F`` digits are wildcards),
  manufacturer, version and medium (``FF`` wildcards) match, answers ``E5``; no match
  deselects and stays silent;
- ``REQ_UD2`` to a primary address or to FD: an ``RSP_UD`` (CI 72) from the same physics the
  Modbus heat meters use (:meth:`SiteModel.heat_meter`): energy (int32, 10 Wh), volume (int32,
  litres), power (real32, kW), volume flow (int32, l/h), flow and return temperature and
  their difference (int16, 0.01), the meter's date and time (type F), and its historic
  values: the energy at each of the last :data:`STORAGES` local midnights as storage numbers
  1 (the last) to 12, each with its date (type G) at the same storage number. Each meter
  freezes its counter at every local midnight the simulated time crosses
  (:attr:`Simulator.midnight_hooks`), and once at start-up (the day's value as the meter is
  found).

A meter's primary address is its device's ``address`` (0 with only a ``secondary``); its ident
the ``secondary`` (else the primary address as 8 digits). Faults
(:mod:`drivers.simulator.faults`): ``offline`` meters stay silent, ``slow`` ones answer late,
``garbage`` ones answer with a wrong checksum (``crc``), a truncated frame (``short``), from
another primary address (``address``) or with collision noise (``exception``). Loop-thread only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from drivers.mbus import (
    BROADCAST,
    CI_SELECT,
    FCB,
    NETWORK_LAYER,
    Control,
    FixedHeader,
    Frame,
    decode_frame,
    encode_frame,
    encode_manufacturer,
    encode_record,
    encode_variable,
    find_frame,
)
from drivers.simulator.faults import GarbageMode
from drivers.simulator.framebus import FrameServer, corrupt, fault_effects

__all__ = ["MANUFACTURER", "MEDIUM_HEAT", "STORAGES", "MbusEndpoint"]

log = logging.getLogger(__name__)

MANUFACTURER = "SIM"
MEDIUM_HEAT = 0x04  # heat, outlet (return) mounted
VERSION = 1
_MANUFACTURER_CODE = encode_manufacturer(MANUFACTURER)
#: (model variable, VIF, DIF coding, factor to the VIF's scaled unit) of each record served.
_RECORDS = (
    ("energy_kwh", 0x04, 0x04, 100.0),  # 10 Wh
    ("volume_m3", 0x13, 0x04, 1000.0),  # litres
    ("power_kw", 0x2E, 0x05, 1.0),  # kW, real
    ("flow_m3h", 0x3B, 0x04, 1000.0),  # l/h
    ("supply_c", 0x59, 0x02, 100.0),  # 0.01 degC
    ("return_c", 0x5D, 0x02, 100.0),
    ("delta_t_k", 0x61, 0x02, 100.0),  # 0.01 K
)
#: Historic values a meter keeps (storage numbers 1..12): the telegram stays one long frame.
STORAGES = 12
_COLLISION = bytes.fromhex("68 4F 31 68 E5 08 FF")


@dataclass(slots=True)
class _Meter:
    device: str
    primary: int
    ident: str
    access_no: int = 0


class MbusEndpoint(FrameServer[Frame]):
    """The simulated heat meters of one channel: on ``host:port``, or on ``serial_port`` (a pty)."""

    label = "M-Bus"
    find_frame = staticmethod(find_frame)
    decode_frame = staticmethod(decode_frame)

    def setup(self) -> None:
        sim, channel = self.sim, self.channel
        self.meters: list[_Meter] = []
        for d in sim.site.devices_on(channel.id):
            if not getattr(d, "enabled", True):
                continue
            primary = int(d.address) if d.address else 0
            ident = str(d.secondary) if d.secondary else f"{primary:08d}"
            self.meters.append(_Meter(d.id, primary, ident))
        self.selected: _Meter | None = None
        #: device -> its historic values (local midnight, energy kWh), the last first
        self.archive: dict[str, list[tuple[datetime, float]]] = {}
        self.freeze()
        self.sim.midnight_hooks.append(self.freeze)

    async def stop(self) -> None:
        """Stop serving; the meters stop freezing."""
        if self.freeze in self.sim.midnight_hooks:
            self.sim.midnight_hooks.remove(self.freeze)
        await super().stop()

    def freeze(self) -> None:
        """Store each meter's counter for today (local) unless it holds today's value already."""
        model = self.sim.model
        local = datetime.fromtimestamp(model.now_s, UTC).astimezone(model.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        for meter in self.meters:
            energy = model.heat_meter(meter.device, "energy_kwh")
            if energy is None:
                continue
            days = self.archive.setdefault(meter.device, [])
            if days and days[0][0] >= midnight:
                continue
            days.insert(0, (midnight, float(energy.get())))
            del days[STORAGES:]

    # ------------------------------------------------------------------ answers

    def answer(self, raw: bytes) -> tuple[bytes | None, float]:
        """Return the wire answer to request ``raw`` (None: silence) and its delay in seconds."""
        request = self.decode_request(raw)
        if request is None:
            return None, 0.0  # a meter ignores a frame it cannot check
        if request.ack or not request.control & 0x40 or request.address == BROADCAST:
            return None, 0.0
        if request.ci == CI_SELECT and request.address == NETWORK_LAYER:
            self.selected = self._select(request.data)
            meter = self.selected
            if meter is None:
                return None, 0.0
            reply: Frame = Frame(ack=True)
        else:
            meter = self._meter(request.address)
            if meter is None:
                return None, 0.0
            function = request.control & ~FCB & 0xFF
            if function == Control.SND_NKE:
                reply = Frame(ack=True)
            elif function == Control.REQ_UD2 and request.ci is None:
                reply = self._rsp_ud(meter, request.address)
            else:
                return None, 0.0
        self.requests += 1
        effects = fault_effects(self.sim, meter.device)
        if effects.silent:
            return None, 0.0
        garbage = effects.garbage
        if garbage is GarbageMode.ADDRESS and not reply.ack:
            reply = Frame(reply.control, (reply.address + 1) % 251, reply.ci, reply.data)
        wire = encode_frame(reply)
        if garbage is not None and not reply.ack:
            wire = _COLLISION if garbage is GarbageMode.EXCEPTION else corrupt(wire, garbage)
        return wire, effects.delay_s

    def _meter(self, address: int) -> _Meter | None:
        if address == NETWORK_LAYER:
            return self.selected
        for m in self.meters:
            if m.primary == address and address != 0:
                return m
        return None

    def _select(self, data: bytes) -> _Meter | None:
        if len(data) < 8:
            return None
        want = data[:4][::-1].hex().upper()
        manufacturer = int.from_bytes(data[4:6], "little")
        version, medium = data[6], data[7]
        if manufacturer not in (0xFFFF, _MANUFACTURER_CODE) or version not in (0xFF, VERSION):
            return None
        if medium not in (0xFF, MEDIUM_HEAT):
            return None
        found = [
            m for m in self.meters if all(w in ("F", c) for w, c in zip(want, m.ident, strict=True))
        ]
        return found[0] if len(found) == 1 else None

    def _rsp_ud(self, meter: _Meter, address: int) -> Frame:
        model = self.sim.model
        meter.access_no = (meter.access_no + 1) & 0xFF
        records = bytearray()
        for var, vif, coding, factor in _RECORDS:
            binding = model.heat_meter(meter.device, var)
            value = float(binding.get()) if binding is not None else math.nan
            if not math.isfinite(value):
                continue
            records += encode_record(
                vif, value * factor if coding != 0x05 else value, coding=coding
            )
        local = datetime.fromtimestamp(model.now_s, UTC).astimezone(model.tz)
        records += encode_record(0x6D, local.replace(tzinfo=None), coding=0x04)
        for n, (day, kwh) in enumerate(self.archive.get(meter.device, []), start=1):
            records += encode_record(0x04, kwh * 100.0, coding=0x04, storage=n)
            records += encode_record(0x6C, day, coding=0x02, storage=n)
        header = FixedHeader(meter.ident, MANUFACTURER, VERSION, MEDIUM_HEAT, meter.access_no, 0x00)
        primary = meter.primary if address == NETWORK_LAYER else address
        return Frame(Control.RSP_UD, primary, 0x72, encode_variable(header, bytes(records)))
