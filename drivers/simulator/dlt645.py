"""DL/T 645-2007 serving of simulated electricity meters: raw frames over TCP or a serial port.

A :class:`Dlt645Endpoint` listens on a ``dlt645-tcp`` channel's ``host:port`` (or reads a
``dlt645`` channel's serial port given to the simulator, e.g. one end of a ``socat`` pty
pair; pyserial's blocking reads run in a worker thread) and answers,
frame by frame, as the meters behind an RS-485 serial server would:

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

import asyncio
import contextlib
import logging
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drivers.dlt645 import (
    ANSWER,
    ERROR_ANSWER,
    RELAY_STATE_BIT,
    WILDCARD_ADDRESS,
    Control,
    DailyFrozen,
    Frame,
    FrameError,
    RelayAction,
    decode_frame,
    encode_frame,
    encode_value,
    find_frame,
)
from drivers.simulator.faults import FaultKind, GarbageMode

if TYPE_CHECKING:
    from drivers.simulator.simulator import Simulator

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


class Dlt645Endpoint:
    """The simulated meters of one channel: on ``host:port``, or on ``serial_port`` (a pty)."""

    def __init__(
        self,
        sim: Simulator,
        channel: Any,
        host: str = "",
        port: int = 0,
        *,
        serial_port: str | None = None,
    ) -> None:
        self.sim = sim
        self.channel = channel
        self.host, self.port = host, port
        self.serial_port = serial_port
        self._serial_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.meters: dict[str, str] = {}  # address -> device id
        for d in sim.site.devices_on(channel.id):
            if getattr(d, "enabled", True) and d.address:
                self.meters[str(d.address)] = d.id
        secret = getattr(channel, "password", None)
        self.password = secret.get_secret_value().upper() if secret is not None else None
        self._frozen: dict[str, DailyFrozen] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.requests = 0

    @property
    def address(self) -> tuple[str, int] | str:
        """``(host, port)`` the endpoint listens on (the real port once started), or the serial port."""
        if self.serial_port is not None:
            return self.serial_port
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return str(host), int(port)
        return self.host, self.port

    async def start(self) -> None:
        """Listen (or open the serial port); raise ``OSError`` naming the channel on failure."""
        if self.serial_port is not None:
            await self._open_serial()
            return
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise OSError(
                f"simulator: channel {self.channel.id} cannot listen on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from None
        log.info(
            "simulator serving DL/T 645 channel %s on %s (%d meters)",
            self.channel.id,
            self.address,
            len(self.meters),
        )

    async def stop(self) -> None:
        """Close the listener and every connection (or the serial port); idempotent."""
        self._stopping = True
        serial_task, self._serial_task = self._serial_task, None
        if serial_task is not None:
            await serial_task  # its reads return within 50 ms and see ``_stopping``
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.wait_closed()

    async def _open_serial(self) -> None:
        import serial

        ch, path = self.channel, self.serial_port

        def _open() -> Any:
            return serial.serial_for_url(
                path,
                baudrate=int(getattr(ch, "baudrate", 2400)),
                parity=str(getattr(ch, "parity", "E")),
                stopbits=int(getattr(ch, "stopbits", 1)),
                bytesize=int(getattr(ch, "bytesize", 8)),
                timeout=0.05,
            )

        try:
            port = await asyncio.to_thread(_open)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"simulator: channel {ch.id} cannot open serial port {path}: {exc}"
            ) from None
        self._stopping = False
        self._serial_task = asyncio.get_running_loop().create_task(
            self._serve_serial(port), name=f"sim-dlt645-{ch.id}"
        )
        log.info("simulator serving DL/T 645 channel %s on %s", ch.id, path)

    async def _serve_serial(self, port: Any) -> None:
        buf = bytearray()
        try:
            while not self._stopping:
                data = await asyncio.to_thread(port.read, 512)
                if not data:
                    continue
                buf += data
                while (span := find_frame(buf)) is not None:
                    start, end = span
                    raw = bytes(buf[start:end])
                    del buf[:end]
                    reply, delay_s = self.answer(raw)
                    if reply is None:
                        continue
                    if delay_s:
                        await asyncio.sleep(delay_s)
                    await asyncio.to_thread(port.write, reply)
        finally:
            port.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        buf = bytearray()
        try:
            while data := await reader.read(512):
                buf += data
                while (span := find_frame(buf)) is not None:
                    start, end = span
                    raw = bytes(buf[start:end])
                    del buf[:end]
                    reply, delay_s = self.answer(raw)
                    if reply is None:
                        continue
                    if delay_s:
                        await asyncio.sleep(delay_s)
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    # ------------------------------------------------------------------ answers

    def answer(self, raw: bytes) -> tuple[bytes | None, float]:
        """Return the wire answer to request ``raw`` (None: silence) and its delay in seconds."""
        try:
            request = decode_frame(raw)
        except FrameError as exc:
            log.debug("simulator DL/T 645 %s: %s", self.channel.id, exc)
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
        fault = self.sim.fault_of(device)
        if fault is not None and fault.kind is FaultKind.OFFLINE:
            return None, 0.0
        frame = self._reply(device, address, request)
        delay = fault.delay_s if fault is not None and fault.kind is FaultKind.SLOW else 0.0
        if fault is not None and fault.kind is FaultKind.GARBAGE:
            if fault.mode is GarbageMode.EXCEPTION:
                frame = _error(address, request, fault.code)
            elif fault.mode is GarbageMode.ADDRESS:
                other = f"{(int(address) + 1) % 10**12:012d}"
                frame = Frame(other, frame.control, frame.data)
        wire = encode_frame(frame)
        if fault is not None and fault.kind is FaultKind.GARBAGE:
            if fault.mode is GarbageMode.CRC:
                wire = wire[:-2] + bytes([(wire[-2] + 1) & 0xFF]) + wire[-1:]
            elif fault.mode is GarbageMode.SHORT:
                wire = wire[:-3]
        return wire, delay

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
