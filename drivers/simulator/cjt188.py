"""CJ/T 188-2004 serving of simulated heat meters: raw frames over TCP or a serial port.

A :class:`Cjt188Endpoint` (a :class:`~drivers.simulator.framebus.FrameServer`) listens on a
``cjt188-tcp`` channel's ``host:port`` (or reads a ``cjt188`` channel's serial port given to the
simulator, e.g. one end of a ``socat`` pty pair) and answers as the heat meters behind an
RS-485 serial server would:

- read data (01) of DI ``901F`` to a meter's 14-digit address (or to the wildcard address
  when the channel has one meter): the current heat data from the same physics the Modbus
  and M-Bus heat meters use (:meth:`SiteModel.heat_meter`): heat energy (kWh), power (kW),
  flow (m3/h), volume (m3), supply and return temperature, working hours since the simulator
  started, the meter's local real time and status 0; the cooling energy is 0;
- read address (03, DI ``810A``) to the wildcard address: the one meter on the channel
  answers with its address;
- anything else addressed to a meter: an abnormal answer (control C1).

A request whose meter type is neither the channel's ``meter_type`` nor ``AA`` is ignored, as
is any other meter's frame. Faults (:mod:`drivers.simulator.faults`): ``offline`` meters do
not answer, ``slow`` ones answer late, ``garbage`` ones answer with a wrong checksum (``crc``),
a truncated frame (``short``), from another address (``address``) or abnormally
(``exception``). Loop-thread only.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from drivers.cjt188 import (
    ANSWER,
    DI_ADDRESS,
    DI_CURRENT,
    ERROR_ANSWER,
    WILDCARD_ADDRESS,
    Control,
    Frame,
    HeatData,
    decode_frame,
    encode_frame,
    encode_heat_data,
    find_frame,
)
from drivers.meterbus import setting
from drivers.simulator.faults import GarbageMode
from drivers.simulator.framebus import FrameServer, corrupt, fault_effects

__all__ = ["Cjt188Endpoint"]

log = logging.getLogger(__name__)

_ANY_TYPE = 0xAA


class Cjt188Endpoint(FrameServer[Frame]):
    """The simulated heat meters of one channel: on ``host:port``, or on ``serial_port`` (a pty)."""

    label = "CJ/T 188"
    find_frame = staticmethod(find_frame)
    decode_frame = staticmethod(decode_frame)

    def setup(self) -> None:
        self.meters: dict[str, str] = self.meters_by_address()  # address -> device id
        self.meter_type = int(setting(self.channel, "meter_type", 0x20))
        self._started_s = self.sim.model.now_s

    def answer(self, raw: bytes) -> tuple[bytes | None, float]:
        """Return the wire answer to request ``raw`` (None: silence) and its delay in seconds."""
        request = self.decode_request(raw)
        if request is None:
            return None, 0.0  # a meter ignores a frame it cannot check
        if request.is_answer or request.type not in (self.meter_type, _ANY_TYPE):
            return None, 0.0
        address = request.address
        if address == WILDCARD_ADDRESS and len(self.meters) == 1:
            address = next(iter(self.meters))
        device = self.meters.get(address)
        if device is None:
            return None, 0.0  # another meter's frame
        self.requests += 1
        effects = fault_effects(self.sim, device)
        if effects.silent:
            return None, 0.0
        frame = self._reply(device, address, request)
        if effects.garbage is GarbageMode.EXCEPTION:
            frame = _error(self.meter_type, address, request)
        elif effects.garbage is GarbageMode.ADDRESS:
            other = f"{(int(address) + 1) % 10**14:014d}"
            frame = Frame(frame.type, other, frame.control, frame.data)
        return corrupt(encode_frame(frame), effects.garbage), effects.delay_s

    def _reply(self, device: str, address: str, request: Frame) -> Frame:
        head = request.data[:3]
        if request.function == Control.READ_ADDRESS and request.di == DI_ADDRESS:
            data = head + bytes.fromhex(address)[::-1]
            return Frame(self.meter_type, address, Control.READ_ADDRESS | ANSWER, data)
        if request.function == Control.READ_DATA and request.di == DI_CURRENT:
            heat = self._heat(device)
            if heat is not None:
                try:
                    data = head + encode_heat_data(heat)
                except ValueError:  # a value the BCD fields cannot hold
                    return _error(self.meter_type, address, request)
                return Frame(self.meter_type, address, Control.READ_DATA | ANSWER, data)
        return _error(self.meter_type, address, request)

    def _heat(self, device: str) -> HeatData | None:
        model = self.sim.model

        def var(name: str) -> float:
            binding = model.heat_meter(device, name)
            value = float(binding.get()) if binding is not None else math.nan
            return max(value, 0.0) if math.isfinite(value) else 0.0

        if model.heat_meter(device, "energy_kwh") is None:
            return None
        local = datetime.fromtimestamp(model.now_s, UTC).astimezone(model.tz)
        return HeatData(
            cold_energy=0.0,
            heat_energy=var("energy_kwh"),
            power=var("power_kw"),
            flow=var("flow_m3h"),
            volume=var("volume_m3"),
            supply_temp=var("supply_c"),
            return_temp=var("return_c"),
            work_hours=float(int((model.now_s - self._started_s) // 3600)),
            meter_time=local.replace(tzinfo=None, microsecond=0),
            status=0,
        )


def _error(meter_type: int, address: str, request: Frame) -> Frame:
    """Return the abnormal answer to ``request``: its DI and SER, then status ST 00 00."""
    control = request.function | ANSWER | ERROR_ANSWER
    return Frame(meter_type, address, control, request.data[:3] + b"\x00\x00")
