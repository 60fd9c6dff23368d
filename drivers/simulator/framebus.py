"""Serving of a frame protocol's simulated meters over TCP or a serial port (DL/T 645, M-Bus, CJ/T 188).

A :class:`FrameServer` listens on a ``<protocol>-tcp`` channel's ``host:port`` (as the
meters behind a serial device server) or reads a serial channel's port given to the
simulator (e.g. one end of a ``socat`` pty pair; pyserial's blocking reads run in a worker
thread), cuts the incoming bytes into frames with the protocol's :meth:`~FrameServer.find_frame`
and writes :meth:`~FrameServer.answer`'s reply to each, after its delay. A protocol subclasses
it with its frame finder and its answers; :func:`fault_effects` and :func:`corrupt` apply the
simulator's fault injection (:mod:`drivers.simulator.faults`) the same way for each.
Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from drivers.meterbus import open_serial, read_some
from drivers.simulator.faults import FaultKind, GarbageMode

if TYPE_CHECKING:
    from drivers.simulator.simulator import Simulator

__all__ = ["FaultEffects", "FrameServer", "corrupt", "fault_effects"]

log = logging.getLogger(__name__)

FrameT = TypeVar("FrameT")


@dataclass(frozen=True, slots=True)
class FaultEffects:
    """What the fault of a device does to its answer."""

    silent: bool = False
    delay_s: float = 0.0
    garbage: GarbageMode | None = None
    code: int = 0


def fault_effects(sim: Simulator, device: str) -> FaultEffects:
    """Return the effects of ``device``'s injected fault (none: a plain answer)."""
    fault = sim.fault_of(device)
    if fault is None:
        return FaultEffects()
    if fault.kind is FaultKind.OFFLINE:
        return FaultEffects(silent=True)
    if fault.kind is FaultKind.SLOW:
        return FaultEffects(delay_s=fault.delay_s)
    if fault.kind is FaultKind.GARBAGE:
        return FaultEffects(garbage=fault.mode, code=fault.code)
    return FaultEffects()


def corrupt(wire: bytes, mode: GarbageMode | None) -> bytes:
    """Return ``wire`` (a frame ending in checksum and stop byte) with a wrong checksum or cut short."""
    if mode is GarbageMode.CRC:
        return wire[:-2] + bytes([(wire[-2] + 1) & 0xFF]) + wire[-1:]
    if mode is GarbageMode.SHORT:
        return wire[:-3]
    return wire


class FrameServer(Generic[FrameT]):
    """The simulated meters of one channel: on ``host:port``, or on ``serial_port`` (a pty).

    Subclasses set :attr:`label` and implement :meth:`setup` (which fills :attr:`meters`),
    :meth:`decode_frame`, :meth:`find_frame` and :meth:`answer`.
    """

    label: ClassVar[str] = ""
    #: The meters served (for the log).
    meters: Sized

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
        self._server: asyncio.Server | None = None
        self._serial_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._conns: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.setup()

    # -- what a protocol supplies ----------------------------------------------------------

    def setup(self) -> None:
        """Build the served meters from ``self.sim`` and ``self.channel`` (called by the constructor)."""
        raise NotImplementedError

    def find_frame(self, buf: bytearray) -> tuple[int, int] | None:
        """Return ``(start, end)`` of the first complete frame in ``buf``, or None for more bytes."""
        raise NotImplementedError

    def decode_frame(self, raw: bytes) -> FrameT:
        """Return the frame in ``raw``; raise ValueError naming what is wrong."""
        raise NotImplementedError

    def answer(self, raw: bytes) -> tuple[bytes | None, float]:
        """Return the wire answer to request ``raw`` (None: silence) and its delay in seconds."""
        raise NotImplementedError

    def meters_by_address(self) -> dict[str, str]:
        """Return address -> device id of the channel's enabled devices that have an address."""
        return {
            str(d.address): d.id
            for d in self.sim.site.devices_on(self.channel.id)
            if getattr(d, "enabled", True) and d.address
        }

    def decode_request(self, raw: bytes) -> FrameT | None:
        """Return the request frame in ``raw``, or None for one a meter cannot check (it stays silent)."""
        try:
            return self.decode_frame(raw)
        except ValueError as exc:
            log.debug("simulator %s %s: %s", self.label, self.channel.id, exc)
            return None

    # -- serving ---------------------------------------------------------------------------

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
            await self._open_serial(self.serial_port)
            return
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise OSError(
                f"simulator: channel {self.channel.id} cannot listen on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from None
        log.info(
            "simulator serving %s channel %s on %s (%d meters)",
            self.label,
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

    async def _open_serial(self, path: str) -> None:
        ch = self.channel
        try:
            port = await asyncio.to_thread(open_serial, ch, path)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"simulator: channel {ch.id} cannot open serial port {path}: {exc}"
            ) from None
        self._stopping = False
        self._serial_task = asyncio.get_running_loop().create_task(
            self._serve_serial(port), name=f"sim-{self.label}-{ch.id}"
        )
        log.info("simulator serving %s channel %s on %s", self.label, ch.id, path)

    def _take(self, buf: bytearray) -> list[bytes]:
        """Remove the complete frames at the start of ``buf`` and return them."""
        frames = []
        while (span := self.find_frame(buf)) is not None:
            start, end = span
            frames.append(bytes(buf[start:end]))
            del buf[:end]
        return frames

    async def _replies(self, buf: bytearray) -> AsyncIterator[bytes]:
        """Yield the answer to each complete frame at the start of ``buf``, after its delay."""
        for raw in self._take(buf):
            reply, delay_s = self.answer(raw)
            if reply is None:
                continue
            if delay_s:
                await asyncio.sleep(delay_s)
            yield reply

    async def _serve_serial(self, port: Any) -> None:
        buf = bytearray()
        try:
            while not self._stopping:
                data = await asyncio.to_thread(read_some, port)
                if not data:
                    continue
                buf += data
                async for reply in self._replies(buf):
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
                async for reply in self._replies(buf):
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
