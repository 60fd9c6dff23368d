"""DL/T 645-2007 driver: electricity meters on a serial bus (``dlt645``) or a serial server (``dlt645-tcp``).

One driver per channel, like :class:`~drivers.modbus.ModbusDriver`: the devices' points are
read one data identifier (``di``) per request, each point on its own period (the point's
``poll_s``, else the device's), with the reads of a channel's devices spread over the
period. The bus is half-duplex: one request at a time under a lock, each sent with the
``FE FE FE FE`` wake-up preamble, and ``frame_gap_s`` of silence after each answer before
the next request.

Comm loss is :mod:`drivers.status`'s, as for Modbus: a failed request ends the device's
scan for the round, ``retries`` consecutive failures mark every tag of the device
``bad/comm_lost`` with the cause as the quality detail, and an offline device is probed
with one request every ``offline_probe_s``. Causes: ``timeout: no answer within N s``,
``truncated frame: ...``, ``wrong checksum: ...``, ``malformed frame: ...``, ``answer
from wrong address X``, ``meter error NN: ...`` (an abnormal answer), ``connection
lost``, ``connection refused by host:port``.

Writes: the relay point (``relay: true``, a bool, true = closed) is tripped or closed with
control code 1C using the channel's ``password`` and ``operator``; the result is read back
from meter run status word 3 (DI 04000503, bit 4 = relay open).

Serial ports are opened with pyserial, its blocking reads run in a worker thread (the
venv has no pyserial-asyncio). Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from drivers import defaults
from drivers.base import DeviceBinding, PointBinding, WriteResult, WriteState
from drivers.codec import PointType
from drivers.dlt645 import (
    ANSWER,
    PREAMBLE,
    RELAY_STATE_BIT,
    Control,
    Frame,
    FrameError,
    RelayAction,
    decode_frame,
    decode_value,
    encode_frame,
    error_text,
    find_frame,
    read_request,
    relay_request,
)
from drivers.modbus import next_slot
from drivers.status import Backoff, DeviceStatus, DeviceTags
from tags.model import Quality, Reason

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = ["STATUS_WORD_3", "Dlt645Driver", "RequestFailed"]

log = logging.getLogger(__name__)

#: Meter run status word 3: bit 4 is the relay state (1 = open).
STATUS_WORD_3 = 0x04000503
#: How long a relay command stays valid (N3..N8 of the 1C request), seconds.
RELAY_VALID_S = 600.0


class RequestFailed(Exception):
    """A request got no valid answer; the message is the cause, for people."""


def _get(cfg: Any, name: str, default: Any) -> Any:
    value = getattr(cfg, name, None)
    return default if value is None else value


# --------------------------------------------------------------------------- links


class _Link(Protocol):
    connected: bool

    async def open(self, timeout_s: float) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def receive(self, timeout_s: float) -> bytes:
        """Return the bytes that arrived within ``timeout_s`` (b"" if none); raise on a closed link."""
        ...

    def close(self) -> None: ...


class _TcpLink:
    """Raw frames over TCP (a serial device server)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.connected = False

    async def open(self, timeout_s: float) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout_s
        )
        self.connected = True

    async def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def receive(self, timeout_s: float) -> bytes:
        assert self._reader is not None
        try:
            data = await asyncio.wait_for(self._reader.read(512), max(timeout_s, 0.0))
        except TimeoutError:
            return b""
        if not data:
            self.close()
            raise ConnectionError("connection lost")
        return data

    def close(self) -> None:
        self.connected = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._reader = None


class _SerialLink:
    """A local serial port through pyserial; blocking reads run in a worker thread."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._port: Any = None
        self.connected = False

    async def open(self, timeout_s: float) -> None:
        import serial

        ch = self.channel

        def _open() -> Any:
            return serial.serial_for_url(
                str(ch.port),
                baudrate=int(_get(ch, "baudrate", 2400)),
                parity=str(_get(ch, "parity", "E")),
                stopbits=int(_get(ch, "stopbits", 1)),
                bytesize=int(_get(ch, "bytesize", 8)),
                timeout=0.05,
            )

        self._port = await asyncio.wait_for(asyncio.to_thread(_open), timeout_s)
        self.connected = True

    async def send(self, data: bytes) -> None:
        port = self._port
        assert port is not None
        await asyncio.to_thread(port.write, data)

    async def receive(self, timeout_s: float) -> bytes:
        port = self._port
        assert port is not None
        if timeout_s <= 0:  # only what is already there (a non-blocking ioctl)
            waiting = int(port.in_waiting)
            return bytes(port.read(waiting)) if waiting else b""
        deadline = time.monotonic() + timeout_s
        while True:
            data = await asyncio.to_thread(port.read, 512)  # returns within its 50 ms timeout
            if data or time.monotonic() >= deadline:
                return bytes(data)

    def close(self) -> None:
        self.connected = False
        if self._port is not None:
            self._port.close()
            self._port = None


def make_link(channel: Any) -> _Link:
    """Return the unopened link of a ``dlt645`` or ``dlt645-tcp`` channel."""
    protocol = str(getattr(channel.protocol, "value", channel.protocol))
    if protocol == "dlt645-tcp":
        return _TcpLink(str(channel.host), int(channel.port))
    if protocol == "dlt645":
        return _SerialLink(channel)
    raise ValueError(f"channel {channel.id}: protocol {protocol!r} is not DL/T 645")


# --------------------------------------------------------------------------- the driver


@dataclass(slots=True)
class _Read:
    """One point's read: the DI it asks for, how its value is made, when it is due."""

    device: str
    address: str
    point: PointBinding
    di: int
    tag_id: int
    period_s: float
    phase: float
    next_due: float = 0.0

    def value(self, data: bytes) -> float:
        """Return the point's engineering value from the answer's data (DI excluded)."""
        raw = decode_value(self.di, data)
        cfg = self.point.config
        if getattr(cfg, "relay", False):
            return 0.0 if (int(raw) >> RELAY_STATE_BIT) & 1 else 1.0  # true = closed
        spec = self.point.spec
        if spec.type is PointType.BIT:
            return float((int(raw) >> spec.bit) & 1)
        if spec.type is PointType.BOOL:
            return 1.0 if raw else 0.0
        return raw * spec.scale + spec.offset


def _di_of(point: PointBinding) -> int | None:
    cfg = point.config
    if getattr(cfg, "relay", False):
        return STATUS_WORD_3
    di = getattr(cfg, "di", None)
    return int(di, 16) if di else None


class Dlt645Driver:
    """Poll and write the DL/T 645 meters of one channel.

    ``devices`` carry their meter address in ``config.address`` (12 digits). Nothing
    happens until :meth:`start` (background polling) or :meth:`poll_once`.
    """

    def __init__(
        self,
        channel: Any,
        devices: Sequence[DeviceBinding],
        db: TagDatabase,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.channel_id: str = channel.id
        self.devices = {d.id: d for d in devices}
        self.db = db
        self._clock = clock
        self._wall = wall_clock
        self._lock = asyncio.Lock()
        self._link: _Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._quiet_at = 0.0  # monotonic time the bus may carry the next request
        self._connect_cause = ""
        self.requests_sent = 0
        self._timeout_s = float(_get(channel, "timeout_s", defaults.TIMEOUT_S))
        self._gap_s = float(_get(channel, "frame_gap_s", 0.02))
        retries = int(_get(channel, "retries", defaults.RETRIES))
        probe_s = float(_get(channel, "offline_probe_s", defaults.OFFLINE_PROBE_S))
        backoff_max = float(_get(channel, "backoff_max_s", defaults.BACKOFF_MAX_S))
        self._backoff = Backoff(base_s=min(0.5, backoff_max), max_s=backoff_max)
        self.status = {d.id: DeviceStatus(d.id, retries, probe_s) for d in devices}
        self._tags = {
            d.id: DeviceTags.build(db, d.id, [p.tag for p in d.points.values()]) for d in devices
        }
        self.addresses: dict[str, str] = {}
        self._by_device: dict[str, list[_Read]] = {}
        for n, d in enumerate(devices):
            address = getattr(d.config, "address", None)
            if not address:
                raise ValueError(f"device {d.id} on DL/T 645 channel {channel.id} has no address")
            self.addresses[d.id] = str(address)
            ids = dict(
                zip(
                    [p.tag for p in d.points.values()],
                    self._tags[d.id].point_ids.tolist(),
                    strict=True,
                )
            )
            for p in d.points.values():
                di = _di_of(p)
                if di is None:
                    continue
                period = float(p.poll_s or d.poll_s)
                self._by_device.setdefault(d.id, []).append(
                    _Read(d.id, str(address), p, di, ids[p.tag], period, period * n / len(devices))
                )
        self._reads = [r for reads in self._by_device.values() for r in reads]
        self._heap: list[tuple[float, int, _Read]] = []
        self._order = {id(r): k for k, r in enumerate(self._reads)}

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    @property
    def endpoint(self) -> str:
        """Where the channel connects: ``host:port``, or the serial port."""
        host = getattr(self.channel, "host", None)
        return f"{host}:{self.channel.port}" if host else str(self.channel.port)

    async def start(self) -> None:
        """Start the background poll loop (connects on its own, with backoff)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"dlt645-{self.channel_id}")

    async def stop(self) -> None:
        """Stop polling and close the link; idempotent."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def probe_now(self, device: str) -> None:
        """Make an offline device's probe due at once (after a repair, from the HMI or a test)."""
        self.status[device].next_probe = self._clock()
        self._wake.set()

    async def _connect(self) -> bool:
        if self.connected:
            return True
        self._link = make_link(self.channel)
        try:
            await self._link.open(self._timeout_s)
        except ConnectionRefusedError:
            self._connect_cause = f"connection refused by {self.endpoint}"
        except TimeoutError:
            self._connect_cause = f"no connection to {self.endpoint} within {self._timeout_s:g} s"
        except (OSError, ImportError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            self._connect_cause = f"cannot connect to {self.endpoint}: {reason}"
        else:
            log.info("channel %s connected to %s", self.channel_id, self.endpoint)
            self._backoff.reset()
            now = self._clock()
            for st in self.status.values():
                st.next_probe = now
            for r in self._reads:
                r.next_due = min(r.next_due, now)
            self._rebuild_heap()
            return True
        log.debug("channel %s: %s", self.channel_id, self._connect_cause)
        self._link = None
        return False

    def _connection_failed(self) -> None:
        cause = self._connect_cause or f"cannot connect to {self.endpoint}"
        for dev in self.devices:
            self._record_failure(dev, f"channel {self.channel_id}: {cause}", cause)

    # -- polling ---------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Connect if needed and read every point of every device once."""
        if not await self._connect():
            self._connection_failed()
            return
        failed: set[str] = set()
        for r in self._reads:
            if r.device in failed:
                continue
            if not await self._execute(r):
                failed.add(r.device)
                if not self.connected and not await self._connect():
                    self._connection_failed()
                    return

    async def _run(self) -> None:
        while not self._closing:
            if not self.connected and not await self._connect():
                self._connection_failed()
                await self._sleep(self._backoff.next_delay())
                continue
            await self._scan_due()
            due = [self._heap[0][0]] if self._heap else []
            due += [st.next_probe for st in self.status.values() if st.online is False]
            await self._sleep(max(0.0, min(due) - self._clock()) if due else 3600.0)

    def _rebuild_heap(self) -> None:
        self._heap = [(r.next_due, self._order[id(r)], r) for r in self._reads]
        heapq.heapify(self._heap)

    def _push(self, r: _Read) -> None:
        heapq.heappush(self._heap, (r.next_due, self._order[id(r)], r))

    async def _sleep(self, delay_s: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay_s)

    async def _scan_due(self) -> None:
        """Probe offline devices that are due, then execute every due read."""
        for dev, st in self.status.items():
            if self._closing or st.online is not False or not st.probe_due(self._clock()):
                continue
            reads = self._by_device.get(dev)
            if not reads:
                continue
            if await self._execute(reads[0]):
                now = self._clock()
                for r in reads:  # back online: read the rest now
                    r.next_due = now
                self._rebuild_heap()
            elif not self.connected:
                return
        failed: set[str] = set()
        while self._heap and not self._closing:
            due, _, r = self._heap[0]
            if due != r.next_due:  # superseded by a rebuild
                heapq.heappop(self._heap)
                continue
            now = self._clock()
            if due > now:
                break
            heapq.heappop(self._heap)
            if r.device in failed or self.status[r.device].online is False:
                r.next_due = next_slot(r.phase, r.period_s, now)  # waits for its probe
                self._push(r)
                continue
            ok = await self._execute(r)
            r.next_due = next_slot(r.phase, r.period_s, self._clock())
            self._push(r)
            if not ok:
                failed.add(r.device)
                if not self.connected:
                    return

    async def _transact(self, address: str, request: Frame, expect: int) -> Frame:
        """Send ``request`` and return the meter's answer; hold the lock. Raise :class:`RequestFailed`."""
        link = self._link
        if link is None or not link.connected:
            raise RequestFailed("connection lost")
        wait = self._quiet_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # the bus's inter-frame silence
        self.requests_sent += 1
        try:
            with contextlib.suppress(Exception):
                await link.receive(0)  # drop what is left of an earlier, late answer
            await link.send(encode_frame(request))
            answer = await self._receive(link, request)
        except (ConnectionError, OSError) as exc:
            link.close()
            raise RequestFailed("connection lost") from exc
        finally:
            self._quiet_at = time.monotonic() + self._gap_s
        if answer.address != address:
            raise RequestFailed(f"answer from wrong address {answer.address} (asked {address})")
        if answer.is_error:
            code = answer.data[0] if answer.data else 0
            raise RequestFailed(error_text(code))
        if answer.control != expect:
            raise RequestFailed(
                f"malformed frame: control {answer.control:02X}, expected {expect:02X}"
            )
        return answer

    async def _receive(self, link: _Link, request: Frame) -> Frame:
        """Return the first answer frame (an echo of the request on the bus is skipped)."""
        buf = bytearray()
        deadline = time.monotonic() + self._timeout_s
        while True:
            span = find_frame(buf)
            if span is not None:
                start, end = span
                raw = bytes(buf[start:end])
                del buf[:end]
                try:
                    frame = decode_frame(raw)
                except FrameError as exc:
                    raise RequestFailed(str(exc)) from None
                if frame.control & ANSWER:
                    return frame
                continue  # our own request, echoed by a two-wire adapter
            left = deadline - time.monotonic()
            if left <= 0:
                body = bytes(buf).lstrip(PREAMBLE[:1])
                if body:
                    raise RequestFailed(f"truncated frame: {len(body)} bytes, then silence")
                raise RequestFailed(f"timeout: no answer within {self._timeout_s:g} s")
            buf += await link.receive(left)

    async def _read_di(self, address: str, di: int) -> tuple[bytes, float]:
        """Return the data of ``di`` (DI stripped) and the latency in seconds."""
        async with self._lock:
            t0 = time.perf_counter()
            answer = await self._transact(address, read_request(address, di), Control.READ | ANSWER)
            latency = time.perf_counter() - t0
        if answer.di != di:
            got = "none" if answer.di is None else f"{answer.di:08X}"
            raise RequestFailed(f"malformed frame: answer for DI {got}, asked {di:08X}")
        return answer.data[4:], latency

    async def _execute(self, r: _Read) -> bool:
        try:
            data, latency = await self._read_di(r.address, r.di)
            value = r.value(data)
        except (RequestFailed, ValueError) as exc:
            cause = str(exc) if isinstance(exc, RequestFailed) else f"malformed frame: {exc}"
            self._record_failure(
                r.device,
                f"device {r.device} (address {r.address}): DI {r.di:08X}: {cause}",
                f"{cause}, DI {r.di:08X}",
            )
            return False
        ts = self._wall()
        st = self.status[r.device]
        st.ok(self._clock(), latency)
        st.last_ok = ts
        keys, status = self._tags[r.device].status_row(st, ts)
        self.db.update_many(
            np.asarray([r.tag_id, *keys], dtype=np.int64),
            np.asarray([value, *status], dtype=np.float64),
            Quality.GOOD,
            ts,
            Reason.NONE,
        )
        return True

    def _record_failure(self, device: str, message: str, cause: str) -> None:
        """Count a failure of ``device``: ``message`` for the log, ``cause`` for its tags."""
        st = self.status[device]
        log.debug("%s", message)
        ts = self._wall()
        st.failed(self._clock(), message, cause)
        if st.online is False:
            self._tags[device].comm_lost(ts, st.cause)
        self._tags[device].publish(st, ts, st.last_ok)

    # -- writes ----------------------------------------------------------------------------

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Trip (false) or close (true) the relay of ``device`` and read the status word back."""
        binding = self.devices[device].points[point]
        tag = binding.tag
        address = self.addresses[device]
        label = f"tag {tag} (device {device}, address {address})"

        def result(state: WriteState, message: str, read_back: Any = None) -> WriteResult:
            return WriteResult(tag, device, state, value, read_back, message)

        if not getattr(binding.config, "relay", False):
            return result(WriteState.FAILED, f"{label}: only the relay point is writable")
        secret = getattr(self.channel, "password", None)
        password = secret.get_secret_value() if secret is not None else ""
        if not password:
            return result(
                WriteState.FAILED, f"{label}: channel {self.channel_id} has no relay password"
            )
        if not self.connected and not await self._connect():
            return result(WriteState.FAILED, f"{label}: {self._connect_cause}")
        action = RelayAction.CLOSE if value else RelayAction.TRIP
        until = datetime.fromtimestamp(self._wall() + RELAY_VALID_S)
        request = relay_request(
            address, action, password, str(_get(self.channel, "operator", "00000000")), until
        )
        try:
            async with self._lock:
                await self._transact(address, request, Control.RELAY | ANSWER)
            data, _ = await self._read_di(address, STATUS_WORD_3)
        except RequestFailed as exc:
            return result(WriteState.FAILED, f"{label}: {action.name.lower()}: {exc}")
        try:
            word = int(decode_value(STATUS_WORD_3, data))
        except ValueError as exc:
            return result(WriteState.FAILED, f"{label}: read-back: malformed frame: {exc}")
        closed = not (word >> RELAY_STATE_BIT) & 1
        ts = self._wall()
        self.db.update_many(
            np.asarray(self.db.ids_of([tag]), dtype=np.int64),
            np.asarray([1.0 if closed else 0.0]),
            Quality.GOOD,
            ts,
            Reason.NONE,
        )
        if closed == bool(value):
            return result(WriteState.CONFIRMED, "", closed)
        return result(
            WriteState.MISMATCH, f"{label}: wrote {bool(value)!r}, read back {closed!r}", closed
        )
