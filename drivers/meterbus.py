"""The shared base of the request/response meter-bus drivers (DL/T 645, M-Bus, CJ/T 188).

Each of these protocols polls meters on a half-duplex bus, on a local serial port (RS-485
or an M-Bus level converter, through pyserial) or behind a serial server (raw frames over
TCP). What they share lives here, once:

- the links: :class:`SerialLink` (pyserial; its blocking reads run in a worker thread, the
  venv has no pyserial-asyncio) and :class:`TcpLink`, chosen by :func:`make_link` from the
  channel's protocol (``<name>`` is serial, ``<name>-tcp`` a serial server);
- the scheduling of :class:`MeterBusDriver`: one request at a time under a lock, each job
  (a point's read, or a device's telegram) on its own period with the devices of a channel
  spread over it (:func:`~drivers.modbus.next_slot`), ``frame_gap_s`` of silence after each
  answer before the next request, reconnection with backoff;
- the answer loop (:meth:`MeterBusDriver._exchange`): drop a late answer, send, collect bytes
  until a frame is complete, skip the echo of our own request, name a timeout or a truncated
  frame (the protocol's ``FE`` wake-up preamble alone is silence, not a frame);
- comm loss and quality, :mod:`drivers.status`'s as for Modbus: a failed request ends the
  device's scan for the round, ``retries`` consecutive failures mark every tag of the device
  ``bad/comm_lost`` with the cause as the quality detail, an offline device is probed every
  ``offline_probe_s``; failures are counted in ``<device>.errors``.

A protocol driver subclasses :class:`MeterBusDriver` and supplies its jobs, how a frame is
found and decoded and which frames are answers (:meth:`~MeterBusDriver.find_frame`,
:meth:`~MeterBusDriver.decode_frame`, :meth:`~MeterBusDriver.is_answer`) and what one job
does (:meth:`~MeterBusDriver.execute`). Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from drivers import defaults
from drivers.base import DeviceBinding, WriteResult, WriteState
from drivers.modbus import next_slot
from drivers.status import Backoff, DeviceStatus, DeviceTags
from tags.model import Quality, Reason

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = [
    "ArchiveSink",
    "Job",
    "Link",
    "MeterBusDriver",
    "RequestFailed",
    "SerialLink",
    "TcpLink",
    "make_link",
    "open_serial",
    "read_some",
    "setting",
]

log = logging.getLogger(__name__)


#: Where device-archive readings go: ``sink(tag, [(ts, value), ...])`` (blocking: the driver
#: calls it in a worker thread). The runtime writes them into history with reason ``archive``.
ArchiveSink = Callable[[str, Sequence[tuple[float, float]]], None]


class RequestFailed(Exception):
    """A request got no valid answer; the message is the cause, for people."""


def setting(cfg: Any, name: str, default: Any) -> Any:
    """Return ``cfg.name``, or ``default`` when it is missing or None."""
    value = getattr(cfg, name, None)
    return default if value is None else value


def open_serial(channel: Any, path: str) -> Any:
    """Open ``path`` with the channel's line settings (blocking: call it in a worker thread)."""
    import serial

    return serial.serial_for_url(
        path,
        baudrate=int(setting(channel, "baudrate", 2400)),
        parity=str(setting(channel, "parity", "E")),
        stopbits=int(setting(channel, "stopbits", 1)),
        bytesize=int(setting(channel, "bytesize", 8)),
        timeout=0.05,
    )


def read_some(port: Any) -> bytes:
    """Return the bytes that have arrived, waiting for the first up to the port's timeout (blocking).

    A ``read(512)`` would wait out the whole timeout on every answer shorter than 512 bytes.
    """
    first = port.read(1)
    if not first:
        return b""
    waiting = int(port.in_waiting)
    return bytes(first) + (bytes(port.read(waiting)) if waiting else b"")


# --------------------------------------------------------------------------- links


class Link(Protocol):
    connected: bool

    async def open(self, timeout_s: float) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def receive(self, timeout_s: float) -> bytes:
        """Return the bytes that arrived within ``timeout_s`` (b"" if none); raise on a closed link."""
        ...

    def close(self) -> None: ...


class TcpLink:
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


class SerialLink:
    """A local serial port through pyserial; blocking reads run in a worker thread."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._port: Any = None
        self.connected = False

    async def open(self, timeout_s: float) -> None:
        self._port = await asyncio.wait_for(
            asyncio.to_thread(open_serial, self.channel, str(self.channel.port)), timeout_s
        )
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
            data = await asyncio.to_thread(read_some, port)  # returns within its 50 ms timeout
            if data or time.monotonic() >= deadline:
                return data

    def close(self) -> None:
        self.connected = False
        if self._port is not None:
            self._port.close()
            self._port = None


def make_link(channel: Any, protocol: str, label: str) -> Link:
    """Return the unopened link of a ``protocol`` (serial) or ``protocol-tcp`` channel."""
    proto = str(getattr(channel.protocol, "value", channel.protocol))
    if proto == f"{protocol}-tcp":
        return TcpLink(str(channel.host), int(channel.port))
    if proto == protocol:
        return SerialLink(channel)
    raise ValueError(f"channel {channel.id}: protocol {proto!r} is not {label}")


# --------------------------------------------------------------------------- the driver


class Job(Protocol):
    """One scheduled request (or exchange) of one device, on its own period."""

    device: str
    period_s: float
    phase: float
    next_due: float


JobT = TypeVar("JobT", bound=Job)
FrameT = TypeVar("FrameT")


class MeterBusDriver(Generic[JobT, FrameT]):
    """Poll the meters of one channel: the half-duplex scheduling, links and comm loss.

    Subclasses set :attr:`protocol` (the serial protocol name, ``<name>-tcp`` is the
    serial server), :attr:`label`, :attr:`default_gap_s` and :attr:`preamble` and implement
    :meth:`build_jobs` (called by the constructor), :meth:`find_frame`,
    :meth:`decode_frame`, :meth:`is_answer` and :meth:`execute`. Nothing happens until :meth:`start`
    (background polling) or :meth:`poll_once`.
    """

    protocol: ClassVar[str] = ""
    label: ClassVar[str] = ""
    default_gap_s: ClassVar[float] = 0.02
    #: Wake-up bytes a frame may start with: a buffer of these alone is silence.
    preamble: ClassVar[bytes] = b""

    def __init__(
        self,
        channel: Any,
        devices: Sequence[DeviceBinding],
        db: TagDatabase,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        tz: tzinfo = UTC,
        archive: ArchiveSink | None = None,
    ) -> None:
        self.channel = channel
        self.tz = tz  # the site's: meters keep local time (archive dates, time sync)
        self.archive = archive
        self.archived = 0  # archive readings handed to ``archive`` (per tag)
        self.channel_id: str = channel.id
        self.devices = {d.id: d for d in devices}
        self.db = db
        self._clock = clock
        self._wall = wall_clock
        self._lock = asyncio.Lock()
        self._link: Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._quiet_at = 0.0  # monotonic time the bus may carry the next request
        self._connect_cause = ""
        self.requests_sent = 0
        self.bytes_sent = 0  # on the wire, wake-up preambles included (the poll bench)
        self.bytes_received = 0
        self.frame_bytes = 0  # of the frames alone: requests and answers, no wake-up bytes
        self._timeout_s = float(setting(channel, "timeout_s", defaults.TIMEOUT_S))
        self._gap_s = float(setting(channel, "frame_gap_s", self.default_gap_s))
        retries = int(setting(channel, "retries", defaults.RETRIES))
        probe_s = float(setting(channel, "offline_probe_s", defaults.OFFLINE_PROBE_S))
        backoff_max = float(setting(channel, "backoff_max_s", defaults.BACKOFF_MAX_S))
        self._backoff = Backoff(base_s=min(0.5, backoff_max), max_s=backoff_max)
        self.status = {d.id: DeviceStatus(d.id, retries, probe_s) for d in devices}
        self._tags = {
            d.id: DeviceTags.build(db, d.id, [p.tag for p in d.points.values()]) for d in devices
        }
        self.jobs: list[JobT] = []
        self._by_device: dict[str, list[JobT]] = {}
        self._heap: list[tuple[float, int, JobT]] = []
        self._order: dict[int, int] = {}
        self.set_jobs(self.build_jobs(devices))

    def point_ids(self, device: DeviceBinding) -> dict[str, int]:
        """Return tag name -> tag id of the device's points."""
        return dict(
            zip(
                [p.tag for p in device.points.values()],
                self._tags[device.id].point_ids.tolist(),
                strict=True,
            )
        )

    def phase_of(self, n: int, period_s: float) -> float:
        """Return the phase of the channel's ``n``-th device: the devices spread over the period."""
        return period_s * n / max(len(self.devices), 1)

    def set_jobs(self, jobs: Iterable[JobT]) -> None:
        """Schedule ``jobs`` (in this order for :meth:`poll_once`)."""
        self.jobs = list(jobs)
        self._by_device = {}
        for job in self.jobs:
            self._by_device.setdefault(job.device, []).append(job)
        self._order = {id(j): k for k, j in enumerate(self.jobs)}

    # -- what a protocol supplies ----------------------------------------------------------

    def build_jobs(self, devices: Sequence[DeviceBinding]) -> Iterable[JobT]:
        """Return the jobs of ``devices`` (in :meth:`poll_once` order); raise ValueError on bad config."""
        raise NotImplementedError

    def find_frame(self, buf: bytearray) -> tuple[int, int] | None:
        """Return ``(start, end)`` of the first complete frame in ``buf``, or None for more bytes."""
        raise NotImplementedError

    def decode_frame(self, raw: bytes) -> FrameT:
        """Return the frame in ``raw``; raise ValueError naming what is wrong."""
        raise NotImplementedError

    def is_answer(self, frame: FrameT) -> bool:
        """Return whether ``frame`` comes from a meter (not our own request, echoed)."""
        raise NotImplementedError

    async def execute(self, job: JobT) -> bool:
        """Run one job and publish its values or its failure; return whether it succeeded."""
        raise NotImplementedError

    def on_connect(self) -> None:
        """Called after each (re)connection, before the jobs run again."""

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
            name = f"{self.protocol}-{self.channel_id}"
            self._task = asyncio.create_task(self._run(), name=name)

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

    async def connect(self) -> bool:
        """Open the link if it is closed; return whether it is open (the cause is kept)."""
        if self.connected:
            return True
        self._link = make_link(self.channel, self.protocol, self.label)
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
            for job in self.jobs:
                job.next_due = min(job.next_due, now)
            self.on_connect()
            self._rebuild_heap()
            return True
        log.debug("channel %s: %s", self.channel_id, self._connect_cause)
        self._link = None
        return False

    def _connection_failed(self) -> None:
        cause = self._connect_cause or f"cannot connect to {self.endpoint}"
        for dev in self.devices:
            self.record_failure(dev, f"channel {self.channel_id}: {cause}", cause)

    # -- polling ---------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Connect if needed and run every job of every device once."""
        if not await self.connect():
            self._connection_failed()
            return
        failed: set[str] = set()
        for job in self.jobs:
            if job.device in failed:
                continue
            if not await self.execute(job):
                failed.add(job.device)
                if not self.connected and not await self.connect():
                    self._connection_failed()
                    return

    async def _run(self) -> None:
        while not self._closing:
            if not self.connected and not await self.connect():
                self._connection_failed()
                await self._sleep(self._backoff.next_delay())
                continue
            await self._scan_due()
            due = [self._heap[0][0]] if self._heap else []
            due += [st.next_probe for st in self.status.values() if st.online is False]
            await self._sleep(max(0.0, min(due) - self._clock()) if due else 3600.0)

    def _rebuild_heap(self) -> None:
        self._heap = [(j.next_due, self._order[id(j)], j) for j in self.jobs]
        heapq.heapify(self._heap)

    def _push(self, job: JobT) -> None:
        heapq.heappush(self._heap, (job.next_due, self._order[id(job)], job))

    async def _sleep(self, delay_s: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay_s)

    async def _scan_due(self) -> None:
        """Probe offline devices that are due, then execute every due job."""
        for dev, st in self.status.items():
            if self._closing or st.online is not False or not st.probe_due(self._clock()):
                continue
            jobs = self._by_device.get(dev)
            if not jobs:
                continue
            if await self.execute(jobs[0]):
                now = self._clock()
                jobs[0].next_due = next_slot(jobs[0].phase, jobs[0].period_s, now)
                for job in jobs[1:]:  # back online: run the rest now
                    job.next_due = now
                self._rebuild_heap()
            elif not self.connected:
                return
        failed: set[str] = set()
        while self._heap and not self._closing:
            due, _, job = self._heap[0]
            if due != job.next_due:  # superseded by a rebuild
                heapq.heappop(self._heap)
                continue
            now = self._clock()
            if due > now:
                break
            heapq.heappop(self._heap)
            if job.device in failed or self.status[job.device].online is False:
                job.next_due = next_slot(job.phase, job.period_s, now)  # waits for its probe
                self._push(job)
                continue
            ok = await self.execute(job)
            job.next_due = next_slot(job.phase, job.period_s, self._clock())
            self._push(job)
            if not ok:
                failed.add(job.device)
                if not self.connected:
                    return

    # -- one exchange ----------------------------------------------------------------------

    async def exchange(self, wire: bytes) -> FrameT:
        """Send ``wire`` and return the answer frame; hold the lock. Raise :class:`RequestFailed`."""
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
            await link.send(wire)
            self.bytes_sent += len(wire)
            self.frame_bytes += len(wire.lstrip(self.preamble) if self.preamble else wire)
            return await self._receive(link)
        except (ConnectionError, OSError) as exc:
            link.close()
            raise RequestFailed("connection lost") from exc
        finally:
            self._quiet_at = time.monotonic() + self._gap_s

    async def broadcast(self, wire: bytes) -> None:
        """Send ``wire`` to every meter and expect no answer; take the lock. Raise :class:`RequestFailed`."""
        if not self.connected and not await self.connect():
            raise RequestFailed(self._connect_cause)
        async with self._lock:
            link = self._link
            if link is None or not link.connected:
                raise RequestFailed("connection lost")
            wait = self._quiet_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await link.send(wire)
                self.bytes_sent += len(wire)
            except (ConnectionError, OSError) as exc:
                link.close()
                raise RequestFailed("connection lost") from exc
            finally:
                self._quiet_at = time.monotonic() + self._gap_s

    def decode_answer(self, raw: bytes) -> FrameT | None:
        """Return the answer frame in ``raw``, None for an echo of a request; raise RequestFailed."""
        try:
            frame = self.decode_frame(raw)
        except ValueError as exc:
            raise RequestFailed(str(exc)) from None
        return frame if self.is_answer(frame) else None

    async def _receive(self, link: Link) -> FrameT:
        """Return the first answer frame (an echo of the request on the bus is skipped)."""
        buf = bytearray()
        deadline = time.monotonic() + self._timeout_s
        while True:
            span = self.find_frame(buf)
            if span is not None:
                start, end = span
                raw = bytes(buf[start:end])
                del buf[:end]
                self.frame_bytes += len(raw.lstrip(self.preamble) if self.preamble else raw)
                frame = self.decode_answer(raw)
                if frame is not None:
                    return frame
                continue  # our own request, echoed by a two-wire adapter
            left = deadline - time.monotonic()
            if left <= 0:
                body = bytes(buf).lstrip(self.preamble) if self.preamble else bytes(buf)
                if body:
                    raise RequestFailed(f"truncated frame: {len(body)} bytes, then silence")
                raise RequestFailed(f"timeout: no answer within {self._timeout_s:g} s")
            data = await link.receive(left)
            self.bytes_received += len(data)
            buf += data

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self, device: str, ids: Sequence[int], values: Sequence[float], latency_s: float
    ) -> float:
        """Publish good values of ``device`` with its status tags; return the timestamp used."""
        ts = self._wall()
        st = self.status[device]
        st.ok(self._clock(), latency_s)
        st.last_ok = ts
        keys, status = self._tags[device].status_row(st, ts)
        self.db.update_many(
            np.asarray([*ids, *keys], dtype=np.int64),
            np.asarray([*values, *status], dtype=np.float64),
            Quality.GOOD,
            ts,
            Reason.NONE,
        )
        return ts

    def gap_start(self, device: str) -> float | None:
        """Return when ``device``'s last good poll was if it is offline now (a gap to fill), else None."""
        st = self.status[device]
        return st.last_ok if st.online is False and self.archive is not None else None

    async def write_archive(
        self, device: str, tags: Sequence[str], rows: Sequence[tuple[float, float]]
    ) -> int:
        """Hand archive ``rows`` (ts, value) of ``tags`` to :attr:`archive`; return how many rows."""
        if self.archive is None or not rows or not tags:
            return 0
        rows = sorted(rows)
        for tag in tags:
            await asyncio.to_thread(self.archive, tag, rows)
        self.archived += len(rows)
        log.info("device %s: %d archive readings filled the comm gap", device, len(rows))
        return len(rows)

    def refuse_write(self, device: str, point: str, value: Any, why: str) -> WriteResult:
        """Return the failed result of a write to a read-only driver; ``why`` ends the message."""
        tag = self.devices[device].points[point].tag
        message = f"tag {tag} (device {device}): {why}"
        return WriteResult(tag, device, WriteState.FAILED, value, None, message)

    def record_failure(self, device: str, message: str, cause: str) -> None:
        """Count a failure of ``device``: ``message`` for the log, ``cause`` for its tags."""
        st = self.status[device]
        log.debug("%s", message)
        ts = self._wall()
        st.failed(self._clock(), message, cause)
        if st.online is False:
            self._tags[device].comm_lost(ts, st.cause)
        self._tags[device].publish(st, ts, st.last_ok)
