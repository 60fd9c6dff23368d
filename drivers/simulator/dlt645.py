"""DL/T 645-2007 serving of simulated electricity meters: raw frames over TCP or a serial port.

A :class:`Dlt645Endpoint` is a :class:`~drivers.simulator.framebus.FrameServer`: it listens on
a ``dlt645-tcp`` channel's ``host:port`` (or reads a ``dlt645`` channel's serial port given to
the simulator, e.g. one end of a ``socat`` pty pair) and answers, frame by frame, as the meters behind an RS-485 serial server would:

- read data (11) from the same physics the Modbus meters use (:meth:`SiteModel.meter`):
  energy (00000000, 00010000), phase A voltage and current, active power, power factor,
  status word 3 (bit 4 = relay open) and the last daily freeze (05060001 time,
  05060101 energy; the energy is taken at the first read after local midnight);
  an unknown DI gets an abnormal answer (D1, error 02 "no data requested");
- read address (13) to the wildcard address: the one meter on the channel answers;
- relay control (1C): trip or close with the channel's password (a wrong one: DC, 04);
- broadcast time sync (08): accepted silently.

Faults (:mod:`drivers.simulator.faults`): ``offline`` meters do not answer, ``slow`` ones
answer late, ``garbage`` ones answer with a wrong checksum (``crc``), a truncated frame
(``short``), from another address (``address``) or abnormally (``exception``, the fault's
``code`` as error byte). Loop-thread only.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from drivers.dlt645 import (
    ANSWER,
    ERROR_ANSWER,
    RELAY_STATE_BIT,
    WILDCARD_ADDRESS,
    Control,
    DailyFrozen,
    Frame,
    RelayAction,
    decode_frame,
    encode_frame,
    encode_value,
    find_frame,
)
from drivers.simulator.faults import GarbageMode
from drivers.simulator.framebus import FrameServer, corrupt, fault_effects

__all__ = ["Dlt645Endpoint"]

log = logging.getLogger(__name__)

#: Model variable of each data identifier served.
_VARS = {
    0x00000000: "energy_kwh",
    0x00010000: "energy_kwh",
    0x02010100: "voltage_v",
    0x02020100: "current_a",
    0x02030000: "power_kw",
    0x02060000: "power_factor",
}
_NO_DATA = 0x02
_UNAUTHORISED = 0x04


class Dlt645Endpoint(FrameServer[Frame]):
    """The simulated meters of one channel: on ``host:port``, or on ``serial_port`` (a pty)."""

    label = "DL/T 645"
    find_frame = staticmethod(find_frame)
    decode_frame = staticmethod(decode_frame)

    def setup(self) -> None:
        self.meters: dict[str, str] = self.meters_by_address()  # address -> device id
        secret = getattr(self.channel, "password", None)
        self.password = secret.get_secret_value().upper() if secret is not None else None
        self._frozen: dict[str, DailyFrozen] = {}

    # ------------------------------------------------------------------ answers

    def answer(self, raw: bytes) -> tuple[bytes | None, float]:
        """Return the wire answer to request ``raw`` (None: silence) and its delay in seconds."""
        request = self.decode_request(raw)
        if request is None:
            return None, 0.0  # a meter ignores a frame it cannot check
        if request.is_answer:
            return None, 0.0
        address = request.address
        if address == WILDCARD_ADDRESS and len(self.meters) == 1:
            address = next(iter(self.meters))
        device = self.meters.get(address)
        if device is None:
            return None, 0.0  # another meter's frame, or a broadcast (time sync)
        self.requests += 1
        effects = fault_effects(self.sim, device)
        if effects.silent:
            return None, 0.0
        frame = self._reply(device, address, request)
        if effects.garbage is GarbageMode.EXCEPTION:
            frame = _error(address, request, effects.code)
        elif effects.garbage is GarbageMode.ADDRESS:
            other = f"{(int(address) + 1) % 10**12:012d}"
            frame = Frame(other, frame.control, frame.data)
        wire = corrupt(encode_frame(frame), effects.garbage)
        return wire, effects.delay_s

    def _reply(self, device: str, address: str, request: Frame) -> Frame:
        fn = request.function
        if fn == Control.READ_ADDRESS:
            return Frame(address, Control.READ_ADDRESS | ANSWER, bytes.fromhex(address)[::-1])
        if fn == Control.READ and len(request.data) >= 4:
            di = int.from_bytes(request.data[:4], "little")
            data = self._read(device, di)
            if data is None:
                return _error(address, request, _NO_DATA)
            return Frame(address, Control.READ | ANSWER, request.data[:4] + data)
        if fn == Control.RELAY and len(request.data) >= 10:
            pw = request.data[:4]
            password = (pw[:1] + pw[1:4][::-1]).hex().upper()
            if self.password is not None and password != self.password:
                return _error(address, request, _UNAUTHORISED)
            action = request.data[8]
            if action not in (RelayAction.TRIP, RelayAction.CLOSE):
                return _error(address, request, 0x01)
            relay = self.sim.model.meter(device, "relay")
            if relay is None or relay.set is None:
                return _error(address, request, 0x01)
            relay.set(action == RelayAction.CLOSE)
            log.info("simulator: meter %s relay %s", device, RelayAction(action).name.lower())
            return Frame(address, Control.RELAY | ANSWER)
        return _error(address, request, 0x01)

    def _read(self, device: str, di: int) -> bytes | None:
        model = self.sim.model
        var = _VARS.get(di)
        try:
            if var is not None:
                binding = model.meter(device, var)
                if binding is None:
                    return None
                value = float(binding.get())
                return encode_value(di, value if math.isfinite(value) else 0.0)
            if di == 0x04000503:
                relay = model.meter(device, "relay")
                if relay is None:
                    return None
                word = 0 if relay.get() else (1 << RELAY_STATE_BIT) | (1 << 6)
                return encode_value(di, float(word))
            if di in (0x05060001, 0x05060101):
                frozen = self._daily_frozen(device)
                if frozen is None:
                    return None
                stamp, energy = frozen.encode()
                return stamp if di == 0x05060001 else energy
        except ValueError:  # a value the BCD field cannot hold
            return None
        return None

    def _daily_frozen(self, device: str) -> DailyFrozen | None:
        energy = self.sim.model.meter(device, "energy_kwh")
        if energy is None:
            return None
        model = self.sim.model
        local = datetime.fromtimestamp(model.now_s, UTC).astimezone(model.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        last = self._frozen.get(device)
        if last is None or last.at < midnight:
            total = round(float(energy.get()), 2)
            # the whole day in the flat tariff (T3): the simulator has no tariff clock
            last = self._frozen[device] = DailyFrozen(midnight, (total, 0.0, 0.0, total, 0.0))
        return last


def _error(address: str, request: Frame, code: int) -> Frame:
    return Frame(address, request.function | ANSWER | ERROR_ANSWER, bytes([code]))
