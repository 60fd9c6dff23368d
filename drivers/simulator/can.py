"""CAN serving of simulated devices: periodic status frames, command frames from the master.

A :class:`CanNode` opens the channel's python-can bus (``interface: virtual`` in tests) and

- every ``period_s`` (wall clock) sends each device's status frames: the points with the
  same ``(can_id, mux)`` share one frame (``data[0] = mux``), encoded with the CAN driver's
  own :func:`drivers.can.encode_can` so both sides agree on byte order and scaling;
- answers a command frame (a point's ``write`` frame: ``can_id``, ``mux``, ``start_byte``)
  by applying the value to the model and sending the device's status frames at once, so the
  driver's read-back does not wait a whole period.

Faults: ``offline`` devices send nothing and ignore commands; ``slow`` ones send their
frames ``delay_s`` late; ``garbage`` ones send frames cut short (a wrong length). Frames
shared by several devices follow the first device's fault: give each device its own frames
to inject faults per device.

Loop-thread only; python-can's notifier thread hands frames over through an asyncio reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import can

from drivers.can import decode_can, encode_can
from drivers.codec import EncodeError
from drivers.manager import device_bindings
from drivers.simulator.faults import FaultKind

if TYPE_CHECKING:
    from drivers.base import PointBinding
    from drivers.simulator.simulator import Simulator

__all__ = ["CanNode"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Frame:
    can_id: int
    mux: int | None
    devices: list[str] = field(default_factory=list)
    points: list[tuple[PointBinding, int]] = field(default_factory=list)  # (point, start byte)


class CanNode:
    """The simulated devices of one CAN channel, on their bus."""

    def __init__(
        self, sim: Simulator, channel: Any, *, period_s: float = 1.0, bus: can.BusABC | None = None
    ) -> None:
        self.sim = sim
        self.channel = channel
        self.period_s = period_s
        self._bus = bus
        self._own_bus = bus is None
        self._frames: dict[tuple[int, int | None], _Frame] = {}
        self._commands: dict[tuple[int, int | None], list[tuple[PointBinding, int]]] = {}
        self._by_device: dict[str, list[_Frame]] = {}
        self._notifier: can.Notifier | None = None
        self._reader: can.AsyncBufferedReader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._next_send: dict[str, float] = {}
        self.frames_sent = 0
        for device in device_bindings(sim.site, channel.id):
            for p in device.points.values():
                cfg = p.config
                if getattr(cfg, "can_id", None) is not None:
                    key = (int(cfg.can_id), cfg.mux)
                    frame = self._frames.setdefault(key, _Frame(int(cfg.can_id), cfg.mux))
                    frame.points.append((p, int(cfg.start_byte or 0)))
                    if device.id not in frame.devices:
                        frame.devices.append(device.id)
                        self._by_device.setdefault(device.id, []).append(frame)
                cmd = getattr(cfg, "write", None)
                if cmd is not None:
                    self._commands.setdefault((int(cmd.can_id), cmd.mux), []).append(
                        (p, int(cmd.start_byte or 0))
                    )

    @property
    def address(self) -> str:
        """``interface:channel`` of the bus."""
        return f"{self.channel.interface}:{self.channel.channel}"

    async def start(self) -> None:
        """Open the bus, start sending status frames and listening for commands."""
        if self._bus is None:
            kwargs: dict[str, Any] = {
                "interface": self.channel.interface,
                "channel": self.channel.channel,
            }
            if getattr(self.channel, "bitrate", None):
                kwargs["bitrate"] = self.channel.bitrate
            try:
                self._bus = can.Bus(**kwargs)
            except (can.CanError, OSError, ValueError) as exc:
                raise OSError(
                    f"simulator: cannot open CAN channel {self.channel.id} ({self.address}): {exc}"
                ) from None
        loop = asyncio.get_running_loop()
        self._reader = can.AsyncBufferedReader()
        self._notifier = can.Notifier(self._bus, [self._reader], timeout=0.1, loop=loop)
        self._tasks = [
            loop.create_task(self._send_loop(), name=f"sim-can-{self.channel.id}-send"),
            loop.create_task(self._receive_loop(), name=f"sim-can-{self.channel.id}-recv"),
        ]
        log.info(
            "simulator serving CAN channel %s on %s (%d frames)",
            self.channel.id,
            self.address,
            len(self._frames),
        )

    async def stop(self) -> None:
        """Stop sending and listening; close the bus if this node opened it. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._notifier is not None:
            notifier, self._notifier = self._notifier, None
            await asyncio.to_thread(notifier.stop)
        if self._bus is not None and self._own_bus:
            self._bus.shutdown()
            self._bus = None

    # ------------------------------------------------------------------ sending

    def build(self, frame: _Frame) -> can.Message:
        """Return the status frame ``frame`` with the points' current values."""
        size = 8
        chunks: list[tuple[int, bytes]] = []
        for p, start in frame.points:
            try:
                payload = encode_can(p, self.sim.value(p.device, p.name))
            except (EncodeError, ValueError, TypeError) as exc:
                log.debug("CAN %s: %s", self.channel.id, exc)
                continue
            chunks.append((start, payload))
            size = max(size, start + len(payload))
        if size > 8:
            size = next(n for n in (12, 16, 20, 24, 32, 48, 64) if n >= size)
        data = bytearray(size)
        if frame.mux is not None:
            data[0] = frame.mux
        for start, payload in chunks:
            if len(payload) == 1:
                data[start] |= payload[0]  # bit points share a byte
            else:
                data[start : start + len(payload)] = payload
        return can.Message(
            arbitration_id=frame.can_id,
            data=bytes(data),
            is_extended_id=frame.can_id > 0x7FF,
            is_fd=size > 8,
        )

    def _send_device(self, device_id: str) -> None:
        fault = self.sim.fault_of(device_id)
        if fault is not None and fault.kind is FaultKind.OFFLINE:
            return
        for frame in self._by_device.get(device_id, ()):
            if frame.devices[0] != device_id:
                continue  # a shared frame goes out with its first device
            msg = self.build(frame)
            if fault is not None and fault.kind is FaultKind.GARBAGE:
                msg.data = msg.data[:1]
                msg.dlc = 1
                msg.is_fd = False
            self._send(msg)

    def _send(self, msg: can.Message) -> None:
        assert self._bus is not None
        try:
            self._bus.send(msg, timeout=0.1)
            self.frames_sent += 1
        except can.CanError as exc:
            log.warning("CAN %s: send failed: %s", self.channel.id, exc)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for device_id in self._by_device:
                fault = self.sim.fault_of(device_id)
                delay = fault.delay_s if fault is not None and fault.kind is FaultKind.SLOW else 0.0
                due = self._next_send.get(device_id, now)
                if now >= due:
                    self._send_device(device_id)
                    self._next_send[device_id] = now + self.period_s + delay
            await asyncio.sleep(min(self.period_s, 0.1))

    # ------------------------------------------------------------------ receiving

    async def _receive_loop(self) -> None:
        assert self._reader is not None
        while True:
            msg = await self._reader.get_message()
            if msg.is_error_frame or msg.is_remote_frame:
                continue
            self.handle_command(msg)

    def handle_command(self, msg: can.Message) -> None:
        """Apply a command frame to the devices it addresses and answer with their status frames."""
        data = bytes(msg.data)
        mux = data[0] if data else None
        targets = self._commands.get((msg.arbitration_id, mux)) or self._commands.get(
            (msg.arbitration_id, None)
        )
        if not targets:
            return
        answered: set[str] = set()
        for p, start in targets:
            fault = self.sim.fault_of(p.device)
            if fault is not None and fault.kind is FaultKind.OFFLINE:
                continue
            try:
                value = decode_can(p, data, start)
            except ValueError as exc:
                log.warning("CAN %s: bad command frame for %s: %s", self.channel.id, p.tag, exc)
                continue
            self.sim.can_write(p.device, p.name, value)
            log.info("CAN %s: %s <- %r", self.channel.id, p.tag, value)
            answered.add(p.device)
        for device_id in answered:
            self._send_device(device_id)
