"""M-Bus driver: heat meters on a serial bus (``mbus``) or a serial server / gateway (``mbus-tcp``).

One driver per channel, like :class:`~drivers.dlt645_driver.Dlt645Driver`, but one request per
device and poll: a ``REQ_UD2`` whose ``RSP_UD`` telegram carries every record of the meter; the
device's points pick their record by kind (``record: energy``), ``storage`` and ``tariff``
and convert it to their unit. A device is reached by its primary ``address`` (1..250; a
``SND_NKE`` at first contact resets its frame count bit) or by its ``secondary`` address
(the 8-digit ident: selected with ``SND_UD`` CI 52 before each ``REQ_UD2`` to address FD).
The devices of a channel are spread over their poll period. Half-duplex: one exchange at a
time under a lock, ``frame_gap_s`` of silence after each answer.

Comm loss is :mod:`drivers.status`'s, as for Modbus and DL/T 645: ``retries`` consecutive
failures mark every tag of the device ``bad/comm_lost`` with the cause as the quality detail;
an offline device is probed every ``offline_probe_s``. Causes: ``timeout: no answer within
N s``, ``truncated frame: ...``, ``wrong checksum: ...``, ``collision: ...``, ``malformed
frame: ...``, ``answer from wrong address X (asked Y)``, ``answer from wrong meter X (asked
Y)``, ``connection lost``, ``connection refused by host:port``. A record missing from the
telegram makes that point ``bad/config_error`` (the meter answers; the template is wrong).

Read-only: :meth:`MbusDriver.write` refuses. The serial and TCP links are the DL/T 645
driver's. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers import defaults
from drivers.base import DeviceBinding, PointBinding, WriteResult, WriteState
from drivers.dlt645_driver import _Link, _SerialLink, _TcpLink
from drivers.mbus import (
    CI_RESPONSE,
    NETWORK_LAYER,
    Control,
    Frame,
    FrameError,
    Telegram,
    decode_frame,
    decode_variable,
    encode_frame,
    find_frame,
    point_value,
    req_ud2,
    select_secondary,
    snd_nke,
    unit_factor,
)
from drivers.modbus import next_slot
from drivers.status import Backoff, DeviceStatus, DeviceTags
from tags.model import Quality, Reason

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = ["MbusDriver", "RequestFailed", "make_link"]

log = logging.getLogger(__name__)

_PRIMARY_BIT = 0x40  # set in the C field of every master frame (an echo on a two-wire adapter)


class RequestFailed(Exception):
    """An exchange got no valid answer; the message is the cause, for people."""


def _get(cfg: Any, name: str, default: Any) -> Any:
    value = getattr(cfg, name, None)
    return default if value is None else value


def make_link(channel: Any) -> _Link:
    """Return the unopened link of an ``mbus`` or ``mbus-tcp`` channel."""
    protocol = str(getattr(channel.protocol, "value", channel.protocol))
    if protocol == "mbus-tcp":
        return _TcpLink(str(channel.host), int(channel.port))
    if protocol == "mbus":
        return _SerialLink(channel)
    raise ValueError(f"channel {channel.id}: protocol {protocol!r} is not M-Bus")


@dataclass(slots=True)
class _Point:
    """One point: the record it names and its tag."""

    binding: PointBinding
    record: str
    storage: int
    tariff: int
    unit: str
    tag_id: int

    def value(self, telegram: Telegram) -> float:
        """Return the point's engineering value; raise LookupError if the record is missing."""
        raw = point_value(telegram, self.record, self.unit, self.storage, self.tariff)
        spec = self.binding.spec
        return raw * spec.scale + spec.offset


@dataclass(slots=True)
class _Poll:
    """One device's poll: how it is addressed, its points, when it is due."""

    device: str
    address: int | None
    secondary: str | None
    points: list[_Point]
    period_s: float
    phase: float
    next_due: float = 0.0
    fcb: bool = False
    initialised: bool = False
    missing: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        if self.secondary is not None:
            return f"device {self.device} (secondary {self.secondary})"
        return f"device {self.device} (address {self.address})"


class MbusDriver:
    """Poll the M-Bus meters of one channel (read-only).

    ``devices`` carry ``config.address`` (primary, 1..250) or ``config.secondary`` (8-digit
    ident). Nothing happens until :meth:`start` (background polling) or :meth:`poll_once`.
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
        self._quiet_at = 0.0
        self._connect_cause = ""
        self.requests_sent = 0
        self._timeout_s = float(_get(channel, "timeout_s", defaults.TIMEOUT_S))
        self._gap_s = float(_get(channel, "frame_gap_s", 0.05))
        retries = int(_get(channel, "retries", defaults.RETRIES))
        probe_s = float(_get(channel, "offline_probe_s", defaults.OFFLINE_PROBE_S))
        backoff_max = float(_get(channel, "backoff_max_s", defaults.BACKOFF_MAX_S))
        self._backoff = Backoff(base_s=min(0.5, backoff_max), max_s=backoff_max)
        self.status = {d.id: DeviceStatus(d.id, retries, probe_s) for d in devices}
        self._tags = {
            d.id: DeviceTags.build(db, d.id, [p.tag for p in d.points.values()]) for d in devices
        }
        self.polls: dict[str, _Poll] = {}
        for n, d in enumerate(devices):
            address = getattr(d.config, "address", None)
            secondary = getattr(d.config, "secondary", None)
            if not address and not secondary:
                raise ValueError(
                    f"device {d.id} on M-Bus channel {channel.id} has no address or secondary"
                )
            ids = dict(
                zip(
                    [p.tag for p in d.points.values()],
                    self._tags[d.id].point_ids.tolist(),
                    strict=True,
                )
            )
            points: list[_Point] = []
            for p in d.points.values():
                record = getattr(p.config, "record", None)
                if record is None:
                    continue
                unit = str(getattr(p.config, "unit", "") or "")
                unit_factor(record, None, unit)  # raise now on a unit of another dimension
                storage = int(getattr(p.config, "storage", 0) or 0)
                tariff = int(getattr(p.config, "tariff", 0) or 0)
                points.append(_Point(p, record, storage, tariff, unit, ids[p.tag]))
            period = float(d.poll_s)
            self.polls[d.id] = _Poll(
                d.id,
                int(address) if address else None,
                str(secondary) if secondary else None,
                points,
                period,
                period * n / len(devices),
            )
        self._heap: list[tuple[float, int, _Poll]] = []
        self._order = {dev: k for k, dev in enumerate(self.polls)}

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
            self._task = asyncio.create_task(self._run(), name=f"mbus-{self.channel_id}")

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
            for poll in self.polls.values():
                poll.next_due = min(poll.next_due, now)
                poll.initialised = False  # a new link: the meters get SND_NKE again
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
        """Connect if needed and read every device once (one telegram each)."""
        if not await self._connect():
            self._connection_failed()
            return
        for poll in self.polls.values():
            ok = await self._execute(poll)
            if not ok and not self.connected and not await self._connect():
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
        self._heap = [(p.next_due, self._order[p.device], p) for p in self.polls.values()]
        heapq.heapify(self._heap)

    async def _sleep(self, delay_s: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay_s)

    async def _scan_due(self) -> None:
        """Probe offline devices that are due, then poll every due device."""
        for dev, st in self.status.items():
            if self._closing or st.online is not False or not st.probe_due(self._clock()):
                continue
            if not await self._execute(self.polls[dev]) and not self.connected:
                return
        while self._heap and not self._closing:
            due, order, poll = self._heap[0]
            if due != poll.next_due:  # superseded by a rebuild
                heapq.heappop(self._heap)
                continue
            now = self._clock()
            if due > now:
                break
            heapq.heappop(self._heap)
            poll.next_due = next_slot(poll.phase, poll.period_s, now)
            heapq.heappush(self._heap, (poll.next_due, order, poll))
            if self.status[poll.device].online is False:
                continue  # waits for its probe
            if not await self._execute(poll) and not self.connected:
                return

    async def _exchange(self, request: Frame) -> Frame:
        """Send ``request`` and return the answer frame (the lock is held). Raise :class:`RequestFailed`."""
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
            return await self._receive(link)
        except (ConnectionError, OSError) as exc:
            link.close()
            raise RequestFailed("connection lost") from exc
        finally:
            self._quiet_at = time.monotonic() + self._gap_s

    async def _receive(self, link: _Link) -> Frame:
        """Return the first answer frame (an echo of the request on the bus is skipped)."""
        buf = bytearray()
        deadline = time.monotonic() + self._timeout_s
        while True:
            span = find_frame(buf)
            if span is not None:
                _, end = span
                raw = bytes(buf[:end])
                del buf[:end]
                try:
                    frame = decode_frame(raw)
                except FrameError as exc:
                    raise RequestFailed(str(exc)) from None
                if frame.ack or not frame.control & _PRIMARY_BIT:
                    return frame
                continue  # our own request, echoed by a two-wire adapter
            left = deadline - time.monotonic()
            if left <= 0:
                if buf:
                    raise RequestFailed(f"truncated frame: {len(buf)} bytes, then silence")
                raise RequestFailed(f"timeout: no answer within {self._timeout_s:g} s")
            buf += await link.receive(left)

    async def _read(self, poll: _Poll) -> tuple[Telegram, float]:
        """Return the device's telegram and the latency of its REQ_UD2 in seconds."""
        async with self._lock:
            if poll.secondary is not None:
                ack = await self._exchange(select_secondary(poll.secondary))
                if not ack.ack:
                    raise RequestFailed("malformed frame: no E5 to the secondary selection")
                address = NETWORK_LAYER
            else:
                assert poll.address is not None
                address = poll.address
                if not poll.initialised:
                    ack = await self._exchange(snd_nke(address))
                    if not ack.ack:
                        raise RequestFailed("malformed frame: no E5 to SND_NKE")
                    poll.initialised, poll.fcb = True, True
            t0 = time.perf_counter()
            answer = await self._exchange(req_ud2(address, poll.fcb))
            latency = time.perf_counter() - t0
            poll.fcb = not poll.fcb
        if answer.ack or answer.ci is None:
            raise RequestFailed("malformed frame: no long frame answering REQ_UD2")
        if answer.control & 0xCF != Control.RSP_UD:  # ACD/DFC bits may be set
            raise RequestFailed(f"malformed frame: C field {answer.control:02X}, not RSP_UD")
        if poll.secondary is None and answer.address != address:
            raise RequestFailed(f"answer from wrong address {answer.address} (asked {address})")
        if answer.ci != CI_RESPONSE:
            raise RequestFailed(f"malformed frame: CI {answer.ci:02X}, only 72 is decoded")
        try:
            telegram = decode_variable(answer.data)
        except FrameError as exc:
            raise RequestFailed(str(exc)) from None
        if poll.secondary is not None and telegram.header.ident != poll.secondary:
            raise RequestFailed(
                f"answer from wrong meter {telegram.header.ident} (asked {poll.secondary})"
            )
        return telegram, latency

    async def _execute(self, poll: _Poll) -> bool:
        try:
            telegram, latency = await self._read(poll)
        except RequestFailed as exc:
            poll.initialised = False
            self._record_failure(poll.device, f"{poll.label}: {exc}", str(exc))
            return False
        ids: list[int] = []
        values: list[float] = []
        bad: list[int] = []
        for point in poll.points:
            try:
                values.append(point.value(telegram))
                ids.append(point.tag_id)
            except LookupError as exc:
                bad.append(point.tag_id)
                if point.binding.name not in poll.missing:
                    poll.missing.add(point.binding.name)
                    log.warning("%s: point %s: %s", poll.label, point.binding.name, exc)
        ts = self._wall()
        st = self.status[poll.device]
        st.ok(self._clock(), latency)
        st.last_ok = ts
        keys, status = self._tags[poll.device].status_row(st, ts)
        self.db.update_many(
            np.asarray([*ids, *keys], dtype=np.int64),
            np.asarray([*values, *status], dtype=np.float64),
            Quality.GOOD,
            ts,
            Reason.NONE,
        )
        if bad:
            self.db.update_many(
                np.asarray(bad, dtype=np.int64),
                np.full(len(bad), np.nan),
                Quality.BAD,
                ts,
                Reason.CONFIG_ERROR,
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
        """Refuse: the M-Bus driver is read-only."""
        tag = self.devices[device].points[point].tag
        return WriteResult(
            tag,
            device,
            WriteState.FAILED,
            value,
            None,
            f"tag {tag} (device {device}): M-Bus points are read-only (the driver sends no SND_UD data)",
        )
