"""DL/T 645-2007 serving of simulated electricity meters: raw frames over TCP or a serial port.

A :class:`Dlt645Endpoint` is a :class:`~drivers.simulator.framebus.FrameServer`: it listens on
a ``dlt645-tcp`` channel's ``host:port`` (or reads a ``dlt645`` channel's serial port given to
the simulator, e.g. one end of a ``socat`` pty pair) and answers, frame by frame, as the meters behind an RS-485 serial server would:

- read data (11) from the same physics the Modbus meters use (:meth:`SiteModel.meter`):
  energy (00000000, 00010000), phase A voltage and current, active power, power factor,
  status word 3 (bit 4 = relay open), the date and time of the meter's clock (04000101,
  04000102) and its archive of daily freezes (050600NN time, 050601NN forward active energy,
  NN = 01 the last of up to 62): each meter freezes its counter at every local midnight the
  simulated time crosses (:attr:`Simulator.midnight_hooks`), and once at start-up (the day's
  freeze as the meter is found); a freeze it does not hold gets "no data requested";
  an unknown DI gets an abnormal answer (D1, error 02 "no data requested");
- read address (13) to the wildcard address: the one meter on the channel answers;
- relay control (1C): trip or close with the channel's password (a wrong one: DC, 04);
- broadcast time sync (08, to 999999999999): every meter of the channel sets its clock to the
  time sent (a meter clock is the simulated local time plus its own offset, :attr:`clock_offset_s`).

Faults (:mod:`drivers.simulator.faults`): ``offline`` meters do not answer, ``slow`` ones
answer late, ``garbage`` ones answer with a wrong checksum (``crc``), a truncated frame
(``short``), from another address (``address``) or abnormally (``exception``, the fault's
``code`` as error byte). Loop-thread only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta

from drivers.dlt645 import (
    ANSWER,
    BROADCAST_ADDRESS,
    ERROR_ANSWER,
    FROZEN_DAYS,
    RELAY_STATE_BIT,
    WILDCARD_ADDRESS,
    Control,
    DailyFrozen,
    Frame,
    RelayAction,
    decode_bcd,
    decode_frame,
    encode_bcd,
    encode_frame,
    encode_value,
    find_frame,
    frozen_index,
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
        #: device -> its daily freezes, the last first
        self.archive: dict[str, list[DailyFrozen]] = {}
        #: device -> its clock minus the simulated local time, seconds
        self.clock_offset_s: dict[str, float] = dict.fromkeys(self.meters.values(), 0.0)
        #: set by each time sync (tests await it: a broadcast has no answer)
        self.time_synced = asyncio.Event()
        self.freeze()
        self.sim.midnight_hooks.append(self.freeze)

    async def stop(self) -> None:
        """Stop serving; the meters stop freezing."""
        if self.freeze in self.sim.midnight_hooks:
            self.sim.midnight_hooks.remove(self.freeze)
        await super().stop()

    def _local_now(self) -> datetime:
        model = self.sim.model
        return datetime.fromtimestamp(model.now_s, UTC).astimezone(model.tz).replace(tzinfo=None)

    def freeze(self) -> None:
        """Freeze each meter's counter for today (local) unless it holds today's freeze already."""
        midnight = self._local_now().replace(hour=0, minute=0, second=0, microsecond=0)
        for device in self.meters.values():
            energy = self.sim.model.meter(device, "energy_kwh")
            if energy is None:
                continue
            days = self.archive.setdefault(device, [])
            if days and days[0].at >= midnight:
                continue
            total = round(float(energy.get()), 2)
            # the whole day in the flat tariff (T3): the simulator has no tariff clock
            days.insert(0, DailyFrozen(midnight, (total, 0.0, 0.0, total, 0.0)))
            del days[FROZEN_DAYS:]

    def meter_clock(self, device: str) -> datetime:
        """Return the local date and time the meter's clock shows."""
        return self._local_now() + timedelta(seconds=self.clock_offset_s.get(device, 0.0))

    def _time_sync(self, request: Frame) -> None:
        d = request.data
        if len(d) < 6:
            return
        try:
            ss, mi, hh, dd, mm, yy = (decode_bcd(bytes([b])) for b in d[:6])
            at = datetime(2000 + yy, mm, dd, hh, mi, ss)
        except ValueError:
            return  # a meter ignores a time it cannot hold
        offset = (at - self._local_now()).total_seconds()
        for device in self.meters.values():
            self.clock_offset_s[device] = offset
        self.time_synced.set()
        log.info("simulator: %s channel %s clocks set to %s", self.label, self.channel.id, at)

    # ------------------------------------------------------------------ answers

    def answer(self, raw: bytes) -> tuple[bytes | None, float]:
        """Return the wire answer to request ``raw`` (None: silence) and its delay in seconds."""
        request = self.decode_request(raw)
        if request is None:
            return None, 0.0  # a meter ignores a frame it cannot check
        if request.is_answer:
            return None, 0.0
        if request.address == BROADCAST_ADDRESS:
            if request.function == Control.BROADCAST_TIME:
                self._time_sync(request)
            return None, 0.0  # a broadcast is never answered
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
            if di in (0x04000101, 0x04000102):
                return _clock_field(di, self.meter_clock(device))
            n = frozen_index(di)
            if n is not None:
                days = self.archive.get(device, [])
                if n > len(days):
                    return None
                stamp, energy = days[n - 1].encode()
                return stamp if di < 0x05060101 else energy
        except ValueError:  # a value the BCD field cannot hold
            return None
        return None


def _error(address: str, request: Frame, code: int) -> Frame:
    return Frame(address, request.function | ANSWER | ERROR_ANSWER, bytes([code]))


def _clock_field(di: int, at: datetime) -> bytes:
    """Return the data of 04000101 (date and week: WW DD MM YY) or 04000102 (time: ss mm hh)."""
    fields: tuple[int, ...]
    if di == 0x04000101:
        fields = (at.isoweekday() % 7, at.day, at.month, at.year % 100)
    else:
        fields = (at.second, at.minute, at.hour)
    return b"".join(encode_bcd(x, 1) for x in fields)
