"""M-Bus serving of simulated heat meters: raw EN 13757-2 frames over TCP or a serial port.

An :class:`MbusEndpoint` listens on an ``mbus-tcp`` channel's ``host:port`` (or reads an
``mbus`` channel's serial port given to the simulator, e.g. one end of a ``socat`` pty pair)
and answers as the meters behind an M-Bus level converter would:

- ``SND_NKE`` to a meter's primary address (or to FD, the selected meter): ``E5``;
- ``SND_UD`` CI 52 to FD: selects the meter whose ident (``F`` digits are wildcards),
  manufacturer, version and medium (``FF`` wildcards) match, answers ``E5``; no match
  deselects and stays silent;
- ``REQ_UD2`` to a primary address or to FD: an ``RSP_UD`` (CI 72) from the same physics the
  Modbus heat meters use (:meth:`SiteModel.heat_meter`): energy (int32, 10 Wh), volume (int32,
  litres), power (real32, kW), volume flow (int32, l/h), flow and return temperature and
  their difference (int16, 0.01), the meter's date and time (type F), and the energy at the
  last local midnight as storage number 1.

A meter's primary address is its device's ``address`` (0 with only a ``secondary``); its ident
the ``secondary`` (else the primary address as 8 digits). Faults
(:mod:`drivers.simulator.faults`): ``offline`` meters stay silent, ``slow`` ones answer late,
``garbage`` ones answer with a wrong checksum (``crc``), a truncated frame (``short``), from
another primary address (``address``) or with collision noise (``exception``). Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drivers.mbus import (
    BROADCAST,
    CI_SELECT,
    FCB,
    NETWORK_LAYER,
    Control,
    FixedHeader,
    Frame,
    FrameError,
    decode_frame,
    encode_frame,
    encode_manufacturer,
    encode_record,
    encode_variable,
    find_frame,
)
from drivers.simulator.faults import FaultKind, GarbageMode

if TYPE_CHECKING:
    from drivers.simulator.simulator import Simulator

__all__ = ["MANUFACTURER", "MEDIUM_HEAT", "MbusEndpoint"]

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
_COLLISION = bytes.fromhex("68 4F 31 68 E5 08 FF")


@dataclass(slots=True)
class _Meter:
    device: str
    primary: int
    ident: str
    access_no: int = 0


class MbusEndpoint:
    """The simulated heat meters of one channel: on ``host:port``, or on ``serial_port`` (a pty)."""

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
        self.meters: list[_Meter] = []
        for d in sim.site.devices_on(channel.id):
            if not getattr(d, "enabled", True):
                continue
            primary = int(d.address) if d.address else 0
            ident = str(d.secondary) if d.secondary else f"{primary:08d}"
            self.meters.append(_Meter(d.id, primary, ident))
        self.selected: _Meter | None = None
        self._midnight: dict[str, tuple[datetime, float]] = {}
        self._server: asyncio.Server | None = None
        self._serial_task: asyncio.Task[None] | None = None
        self._stopping = False
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
            "simulator serving M-Bus channel %s on %s (%d meters)",
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
            self._serve_serial(port), name=f"sim-mbus-{ch.id}"
        )
        log.info("simulator serving M-Bus channel %s on %s", ch.id, path)

    def _take(self, buf: bytearray) -> list[bytes]:
        """Remove the complete frames at the start of ``buf`` and return them."""
        frames = []
        while (span := find_frame(buf)) is not None:
            _, end = span
            frames.append(bytes(buf[:end]))
            del buf[:end]
        return frames

    async def _serve_serial(self, port: Any) -> None:
        buf = bytearray()
        try:
            while not self._stopping:
                data = await asyncio.to_thread(port.read, 512)
                buf += data
                for raw in self._take(buf):
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
                for raw in self._take(buf):
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
            log.debug("simulator M-Bus %s: %s", self.channel.id, exc)
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
        fault = self.sim.fault_of(meter.device)
        if fault is not None and fault.kind is FaultKind.OFFLINE:
            return None, 0.0
        delay = fault.delay_s if fault is not None and fault.kind is FaultKind.SLOW else 0.0
        garbage = fault.mode if fault is not None and fault.kind is FaultKind.GARBAGE else None
        if garbage is GarbageMode.ADDRESS and not reply.ack:
            reply = Frame(reply.control, (reply.address + 1) % 251, reply.ci, reply.data)
        wire = encode_frame(reply)
        if garbage is not None and not reply.ack:
            if garbage is GarbageMode.CRC:
                wire = wire[:-2] + bytes([(wire[-2] + 1) & 0xFF]) + wire[-1:]
            elif garbage is GarbageMode.SHORT:
                wire = wire[:-3]
            elif garbage is GarbageMode.EXCEPTION:
                wire = _COLLISION
        return wire, delay

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
        energy = model.heat_meter(meter.device, "energy_kwh")
        if energy is not None:
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
            last = self._midnight.get(meter.device)
            if last is None or last[0] < midnight:
                last = self._midnight[meter.device] = (midnight, float(energy.get()))
            records += encode_record(0x04, last[1] * 100.0, coding=0x04, storage=1)
        header = FixedHeader(meter.ident, MANUFACTURER, VERSION, MEDIUM_HEAT, meter.access_no, 0x00)
        primary = meter.primary if address == NETWORK_LAYER else address
        return Frame(Control.RSP_UD, primary, 0x72, encode_variable(header, bytes(records)))
