"""CAN driver (python-can): decode broadcast frames into tags, send command frames.

Concentrators of wireless valves and sensors broadcast status frames; a point is located by
``can_id``, ``start_byte`` and an optional ``mux`` byte (``data[0] == mux`` selects the set
of points carried by that frame). Values are decoded with the point's ``type``,
``byte_order`` (the frame's byte order; ``word_order`` is ignored on CAN), ``scale`` and
``offset``: ``bool`` is ``data[start] != 0``, ``bit`` is bit ``n`` of ``data[start]``.

A device that sends no frame for ``silence_timeout_s`` goes offline: all its tags become
``bad/comm_lost``, with the detail ``silent: no frame for N s``. A frame too short for a
point is a failure of its device (detail ``malformed frame: ...``): the device goes
offline when none of its points in that frame could be read, otherwise only the points
that could not be read become ``bad/comm_lost``. Writes send the point's ``write`` frame
(``can_id``, ``start_byte``, ``mux``) and wait up to ``timeout_s`` for a status frame that
carries the new value.

Frames arrive on python-can's notifier thread and are handed to the event loop with
``call_soon_threadsafe``; everything else is loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import can
import numpy as np

from drivers import defaults
from drivers.base import DeviceBinding, OutOfRange, PointBinding, WriteResult, WriteState
from drivers.codec import EncodeError, PointType
from drivers.status import DeviceStatus, DeviceTags, StatusChange
from tags.model import Quality, Reason

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = ["CanDriver", "decode_can", "encode_can"]

log = logging.getLogger(__name__)

_STRUCT = {
    PointType.INT16: "h",
    PointType.UINT16: "H",
    PointType.INT32: "i",
    PointType.UINT32: "I",
    PointType.INT64: "q",
    PointType.UINT64: "Q",
    PointType.FLOAT32: "f",
    PointType.FLOAT64: "d",
}


def _size(p: PointBinding) -> int:
    t = p.spec.type
    if t in (PointType.BOOL, PointType.BIT):
        return 1
    if t is PointType.STR:
        return 2 * p.spec.count
    return struct.calcsize(_STRUCT[t])


def decode_can(p: PointBinding, data: bytes | bytearray, start: int) -> bool | float | str:
    """Decode point ``p`` from frame ``data`` at byte ``start``; raise ValueError if too short."""
    size = _size(p)
    if len(data) < start + size:
        raise ValueError(f"tag {p.tag}: frame of {len(data)} bytes, needs {start + size}")
    chunk = bytes(data[start : start + size])
    t = p.spec.type
    if t is PointType.BOOL:
        return chunk[0] != 0
    if t is PointType.BIT:
        return bool((chunk[0] >> p.spec.bit) & 1)
    if t is PointType.STR:
        return chunk.split(b"\x00", 1)[0].decode("utf-8", errors="replace").rstrip()
    order = "<" if p.spec.byte_order == "little" else ">"
    (raw,) = struct.unpack(order + _STRUCT[t], chunk)
    return float(raw) * p.spec.scale + p.spec.offset


def encode_can(p: PointBinding, value: Any) -> bytes:
    """Encode ``value`` for point ``p`` (inverse scaling); raise EncodeError if it does not fit."""
    t = p.spec.type
    if t in (PointType.BOOL, PointType.BIT):
        if isinstance(value, str) or value not in (0, 1, True, False):
            raise EncodeError(f"tag {p.tag}: expected a bool, got {value!r}")
        return bytes([(1 << p.spec.bit) if (t is PointType.BIT and value) else int(bool(value))])
    if t is PointType.STR:
        data = str(value).encode("utf-8")
        if len(data) > _size(p):
            raise EncodeError(f"tag {p.tag}: string longer than {_size(p)} bytes")
        return data.ljust(_size(p), b"\x00")
    raw = (float(value) - p.spec.offset) / p.spec.scale
    code = _STRUCT[t]
    if code not in "fd":
        raw = round(raw)
    order = "<" if p.spec.byte_order == "little" else ">"
    try:
        return struct.pack(order + code, raw)
    except (struct.error, OverflowError) as exc:
        raise EncodeError(f"tag {p.tag}: {value!r} does not fit {t}: {exc}") from None


@dataclass(slots=True)
class _FramePoint:
    binding: PointBinding
    mux: int | None
    start: int
    tag_id: int  # -1 for str tags


class CanDriver:
    """Listen to one CAN channel and map frames onto the tags of its devices.

    ``channel`` has ``id``, ``interface``, ``channel``, ``bitrate``, ``silence_timeout_s``,
    ``timeout_s``. The bus is opened in :meth:`start` (``bus`` may be injected for tests).
    """

    def __init__(
        self,
        channel: Any,
        devices: Sequence[DeviceBinding],
        db: TagDatabase,
        *,
        bus: can.BusABC | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.channel_id: str = channel.id
        self.devices = {d.id: d for d in devices}
        self.db = db
        self._bus = bus
        self._own_bus = bus is None
        self._clock = clock
        self._wall = wall_clock
        self._notifier: can.Notifier | None = None
        self._watch: asyncio.Task[None] | None = None
        self._heard = asyncio.Event()
        self._silence_s = float(
            getattr(channel, "silence_timeout_s", None) or defaults.SILENCE_TIMEOUT_S
        )
        self._timeout_s = float(getattr(channel, "timeout_s", None) or defaults.TIMEOUT_S)
        self.status = {d.id: DeviceStatus(d.id, 1, self._silence_s) for d in devices}
        self._tags = {
            d.id: DeviceTags.build(db, d.id, [p.tag for p in d.points.values()]) for d in devices
        }
        self._last_frame: dict[str, float] = {}
        self._frames: dict[int, list[tuple[str, _FramePoint]]] = {}
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self.frames_received = 0
        for d in devices:
            for p in d.points.values():
                cfg = p.config
                can_id = getattr(cfg, "can_id", None)
                if can_id is None:
                    continue
                tag_id = -1 if p.spec.type is PointType.STR else int(db.ids_of([p.tag])[0])
                fp = _FramePoint(
                    p, getattr(cfg, "mux", None), int(getattr(cfg, "start_byte", 0) or 0), tag_id
                )
                self._frames.setdefault(int(can_id), []).append((d.id, fp))

    async def start(self) -> None:
        """Open the bus and start listening and the silence watch."""
        if self._notifier is not None:
            return
        if self._bus is None:
            kwargs: dict[str, Any] = {
                "interface": self.channel.interface,
                "channel": self.channel.channel,
            }
            if getattr(self.channel, "bitrate", None):
                kwargs["bitrate"] = self.channel.bitrate
            self._bus = can.Bus(**kwargs)
        now = self._clock()
        for dev in self.devices:
            self._last_frame.setdefault(dev, now)
        self._notifier = can.Notifier(
            self._bus, [self._on_frame], timeout=0.1, loop=asyncio.get_running_loop()
        )
        self._watch = asyncio.create_task(
            self._silence_watch(), name=f"can-{self.channel_id}-silence"
        )

    async def stop(self) -> None:
        """Stop listening and close the bus if this driver opened it; idempotent."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._notifier is not None:
            notifier, self._notifier = self._notifier, None
            await asyncio.to_thread(notifier.stop)
        if self._bus is not None and self._own_bus:
            self._bus.shutdown()
            self._bus = None

    async def poll_once(self) -> None:
        """Listen until every device has sent a frame, or ``silence_timeout_s`` passed."""
        started = self._notifier is None
        if started:
            await self.start()
        try:
            deadline = self._clock() + self._silence_s
            while any(st.online is not True for st in self.status.values()):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._heard.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._heard.wait(), timeout=remaining)
            self._check_silence(self._clock())
        finally:
            if started:
                await self.stop()

    # -- receive ---------------------------------------------------------------------------

    def _on_frame(self, msg: can.Message) -> None:
        """Handle one frame (on the event loop, via the notifier)."""
        entries = self._frames.get(msg.arbitration_id)
        if not entries or msg.is_remote_frame or msg.is_error_frame:
            return
        self.frames_received += 1
        data = msg.data
        ts = self._wall()
        now = self._clock()
        ids: list[int] = []
        values: list[float] = []
        devices: set[str] = set()
        malformed: dict[str, tuple[list[str], str]] = {}  # device -> (tags, first cause)
        for dev, fp in entries:
            if fp.mux is not None and (not data or data[0] != fp.mux):
                continue
            try:
                value = decode_can(fp.binding, data, fp.start)
            except ValueError as exc:
                tags, _cause = malformed.setdefault(dev, ([], f"malformed frame: {exc}"))
                tags.append(fp.binding.tag)
                continue
            devices.add(dev)
            if fp.tag_id < 0:
                self.db.update(fp.binding.tag, value, Quality.GOOD, ts, Reason.NONE)
            else:
                ids.append(fp.tag_id)
                values.append(float(value))
            for fut in self._waiters.get(fp.binding.tag, ()):
                if not fut.done():
                    fut.set_result(value)
        if ids:
            self.db.update_many(
                np.asarray(ids, dtype=np.int64), np.asarray(values), Quality.GOOD, ts, Reason.NONE
            )
        for dev, (tags, cause) in malformed.items():
            log.debug("channel %s: frame 0x%X: %s", self.channel_id, msg.arbitration_id, cause)
            if dev in devices:  # the device talks; only these points could not be read
                self.db.set_quality(self.db.ids_of(tags), Quality.BAD, Reason.COMM_LOST, ts, cause)
                continue
            st = self.status[dev]
            st.failed(now, f"channel {self.channel_id}: device {dev}: {cause}", cause)
            if st.online is False:
                self._tags[dev].comm_lost(ts, st.cause)
            self._tags[dev].publish(st, ts, st.last_ok)
        for dev in devices:
            self._last_frame[dev] = now
            st = self.status[dev]
            st.ok(now, math.nan)
            st.last_ok = ts
            self._tags[dev].publish(st, ts, ts)
        if devices:
            self._heard.set()

    def _check_silence(self, now: float) -> None:
        for dev, st in self.status.items():
            last = self._last_frame.get(dev, now)
            if st.online is not False and now - last >= self._silence_s:
                ts = self._wall()
                cause = f"silent: no frame for {self._silence_s:g} s"
                if st.failed(now, f"device {dev}: {cause}", cause) == StatusChange.WENT_OFFLINE:
                    self._tags[dev].comm_lost(ts, st.cause)
                self._tags[dev].publish(st, ts, st.last_ok)

    async def _silence_watch(self) -> None:
        while True:
            now = self._clock()
            self._check_silence(now)
            pending = [
                self._last_frame.get(d, now) + self._silence_s
                for d, st in self.status.items()
                if st.online is not False
            ]
            await asyncio.sleep(max(0.05, (min(pending) - now) if pending else self._silence_s))

    # -- writes ----------------------------------------------------------------------------

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Send the point's command frame, then wait ``timeout_s`` for a status frame with the value."""
        p = self.devices[device].points[point]
        frame = getattr(p.config, "write", None)
        if frame is None:
            return WriteResult(
                p.tag,
                device,
                WriteState.FAILED,
                value,
                None,
                f"tag {p.tag} (device {device}): no CAN write frame configured",
            )
        try:
            payload = encode_can(p, value)
        except EncodeError as exc:
            raise OutOfRange(str(exc), p.tag, device) from None
        start = int(frame.start_byte or 0)
        data = bytearray(max(start + len(payload), 1))
        if frame.mux is not None:
            data[0] = frame.mux
        data[start : start + len(payload)] = payload
        msg = can.Message(
            arbitration_id=int(frame.can_id),
            data=bytes(data),
            is_extended_id=int(frame.can_id) > 0x7FF,
        )
        if self._bus is None:
            return WriteResult(
                p.tag,
                device,
                WriteState.FAILED,
                value,
                None,
                f"tag {p.tag} (device {device}): channel {self.channel_id} not started",
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        waiters = self._waiters.setdefault(p.tag, [])
        waiters.append(fut)
        try:
            try:
                await asyncio.to_thread(self._bus.send, msg, self._timeout_s)
            except can.CanError as exc:
                return WriteResult(
                    p.tag,
                    device,
                    WriteState.FAILED,
                    value,
                    None,
                    f"tag {p.tag} (device {device}): send failed: {exc}",
                )
            expected = decode_can(p, payload, 0)
            last: Any = None
            deadline = loop.time() + self._timeout_s
            while True:
                try:
                    last = await asyncio.wait_for(
                        asyncio.shield(fut), timeout=max(0.0, deadline - loop.time())
                    )
                except TimeoutError:
                    break
                if _same(last, expected):
                    return WriteResult(p.tag, device, WriteState.CONFIRMED, value, last, "")
                waiters.remove(fut)
                fut = loop.create_future()
                waiters.append(fut)
            if last is None:
                return WriteResult(
                    p.tag,
                    device,
                    WriteState.FAILED,
                    value,
                    None,
                    f"tag {p.tag} (device {device}): no status frame within {self._timeout_s:g} s",
                )
            return WriteResult(
                p.tag,
                device,
                WriteState.MISMATCH,
                value,
                last,
                f"tag {p.tag} (device {device}): wrote {value!r}, device reports {last!r}",
            )
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(p.tag, None)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)
