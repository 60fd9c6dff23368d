"""Modbus driver: one pymodbus async client per channel (TCP, RTU serial, RTU over TCP).

Requests on a channel are serialised by an asyncio lock (RS-485 is half-duplex; a serial
device server behaves the same); channels run concurrently as separate drivers. The poll
loop executes the planned reads (:mod:`drivers.plan`) when due, decodes each block with
numpy and writes values straight into the tag database.

Comm-loss (see :mod:`drivers.status`): a failed request (timeout, exception code, short or
garbled response, lost connection) is an error for that device only and ends the device's
scan for this round; ``retries`` consecutive failures mark every tag of the device
``bad/comm_lost``. An offline device is probed with one request every ``offline_probe_s``.
A lost connection is re-opened with capped exponential backoff up to ``backoff_max_s``.

The cause of each failure is told apart (:func:`exception_text`, :class:`RequestFailed`)
and becomes the detail of the tags' ``comm_lost``: ``timeout`` (no byte came back),
``malformed answer`` (bytes came, but no valid response: a bad CRC or length, another
unit or function), ``short answer``, ``Modbus exception code N (name)``, ``connection
lost``, ``connection refused by host:port`` or ``cannot connect to ...``. pymodbus reports
a failed connect only as ``False``; the driver wraps the client's connect call to keep the
operating system's reason.

pymodbus' own retries and automatic reconnect are switched off: this module decides.
Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

from drivers import defaults
from drivers.base import DeviceBinding, OutOfRange, WriteResult, WriteState
from drivers.codec import BIT_KINDS, EncodeError, Kind, PointType, decode_point, encode_point
from drivers.plan import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    READ_FUNCTION_CODES,
    ReadRequest,
    plan_device,
)
from drivers.status import Backoff, DeviceStatus, DeviceTags
from tags.model import Quality, Reason

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = ["EXCEPTION_NAMES", "ModbusDriver", "RequestFailed", "exception_text", "make_client"]

log = logging.getLogger(__name__)

EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Modbus exception codes by number (Modbus Application Protocol V1.1b3, section 7)."""


def exception_text(code: object) -> str:
    """Return ``"Modbus exception code 2 (illegal data address)"`` for an exception code."""
    name = EXCEPTION_NAMES.get(code) if isinstance(code, int) else None
    return f"Modbus exception code {code}" + (f" ({name})" if name else "")


class RequestFailed(Exception):
    """A Modbus request got no valid answer; the message is the cause, for people."""


def _get(cfg: Any, name: str, default: Any) -> Any:
    value = getattr(cfg, name, None)
    return default if value is None else value


def make_client(
    channel: Any,
    *,
    trace_packet: Callable[[bool, bytes], bytes] | None = None,
    trace_connect: Callable[[bool], None] | None = None,
) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """Return an unconnected pymodbus async client for a channel config (no retries, no auto-reconnect).

    ``trace_packet`` and ``trace_connect`` are pymodbus' hooks (every raw packet sent or
    received; every connect and disconnect).
    """
    protocol = str(getattr(channel.protocol, "value", channel.protocol))
    timeout = float(_get(channel, "timeout_s", defaults.TIMEOUT_S))
    common: dict[str, Any] = {
        "timeout": timeout,
        "retries": 0,
        "reconnect_delay": 0,
        "name": channel.id,
        "trace_packet": trace_packet,
        "trace_connect": trace_connect,
    }
    if protocol == "modbus-tcp":
        return AsyncModbusTcpClient(channel.host, port=int(channel.port), **common)
    if protocol == "modbus-rtu-over-tcp":
        return AsyncModbusTcpClient(
            channel.host, port=int(channel.port), framer=FramerType.RTU, **common
        )
    if protocol == "modbus-rtu":
        return AsyncModbusSerialClient(
            str(channel.port),
            framer=FramerType.RTU,
            baudrate=int(_get(channel, "baudrate", 9600)),
            bytesize=int(_get(channel, "bytesize", 8)),
            parity=str(_get(channel, "parity", "N")),
            stopbits=int(_get(channel, "stopbits", 1)),
            **common,
        )
    raise ValueError(f"channel {channel.id}: protocol {protocol!r} is not a Modbus protocol")


@dataclass(slots=True)
class _Scheduled:
    """A planned read with its tag ids; its next due time is ``ModbusDriver._due[index]``."""

    req: ReadRequest
    num_pos: np.ndarray
    num_ids: np.ndarray
    str_tags: list[str]
    index: int = 0  # its place in the channel's schedule and due-time array
    probe_first: bool = False  # the request used to probe an offline device
    phase: float = 0.0  # its slots are phase + k * period (see ``next_slot``)


def next_slot(phase: float, period: float, done: float) -> float:
    """Return a read's next due time: its first slot ``phase + k * period`` after ``done``.

    Each device of a channel has its own phase (spread over the period by its place on the
    channel), so a channel's reads are spread evenly instead of all falling due together:
    hundreds of meters in lock-step made one burst per period in which the last meter waited
    for all the others (up to 20 s late at 50 buildings). A read that ran late, or all of
    them after a reconnect, fall back onto their own slots rather than into step; the gap
    to the next read is never more than one period.
    """
    k = math.floor((done - phase) / period) + 1
    return phase + k * period


class ModbusDriver:
    """Poll and write the devices of one Modbus channel.

    ``channel`` is a channel config (``id``, ``protocol``, address fields, ``timeout_s``,
    ``retries``, ``max_gap``, ``max_gap_bits``, ``backoff_max_s``, ``offline_probe_s``);
    ``devices`` the enabled devices on it; ``db`` the tag database. A setting the channel
    lacks takes its :mod:`drivers.defaults` value (the config model's default). Nothing
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
        max_registers: int = MAX_READ_REGISTERS,
        max_bits: int = MAX_READ_BITS,
    ) -> None:
        self.channel = channel
        self.channel_id: str = channel.id
        self.devices = {d.id: d for d in devices}
        self.db = db
        self._clock = clock
        self._wall = wall_clock
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.requests_sent = 0
        self._timeout_s = float(_get(channel, "timeout_s", defaults.TIMEOUT_S))
        self._rx_bytes = 0  # bytes received since the last request went out
        self._lost_at: float | None = None  # when the connection dropped (time.monotonic)
        self._connect_error: BaseException | None = None
        self._connect_cause = ""
        retries = int(_get(channel, "retries", defaults.RETRIES))
        probe_s = float(_get(channel, "offline_probe_s", defaults.OFFLINE_PROBE_S))
        backoff_max = float(_get(channel, "backoff_max_s", defaults.BACKOFF_MAX_S))
        self._backoff = Backoff(base_s=min(0.5, backoff_max), max_s=backoff_max)
        self.status = {d.id: DeviceStatus(d.id, retries, probe_s) for d in devices}
        self._tags = {
            d.id: DeviceTags.build(db, d.id, [p.tag for p in d.points.values()]) for d in devices
        }
        self._schedule: list[_Scheduled] = []
        numeric: dict[int, list[int]] = {}  # codec id -> positions of its non-string points
        for n, d in enumerate(devices):
            dev_tags = self._tags[d.id]
            id_of = dict(
                zip([p.tag for p in d.points.values()], dev_tags.point_ids.tolist(), strict=True)
            )
            specs = {name: p.spec for name, p in d.points.items()}
            overrides = {name: p.poll_s for name, p in d.points.items()}
            plan = plan_device(
                d.id,
                d.unit,
                specs,
                d.poll_s,
                overrides,
                max_gap=int(_get(channel, "max_gap", defaults.MAX_GAP)),
                max_gap_bits=int(_get(channel, "max_gap_bits", defaults.MAX_GAP_BITS)),
                max_registers=max_registers,
                max_bits=max_bits,
            )
            for i, req in enumerate(plan):
                tags = [d.points[n].tag for n in req.names]
                pos = numeric.get(id(req.codec))
                if pos is None:  # a codec is shared by the devices of one template
                    pos = numeric[id(req.codec)] = [
                        k for k, p in enumerate(req.points) if p.type is not PointType.STR
                    ]
                ids = np.array([id_of[tags[k]] for k in pos], dtype=np.int64)
                strs = [tags[k] for k in req.codec.str_positions]
                self._schedule.append(
                    _Scheduled(
                        req,
                        np.asarray(pos, dtype=np.intp),
                        ids,
                        strs,
                        index=len(self._schedule),
                        probe_first=i == 0,
                        phase=req.period_s * n / len(devices),
                    )
                )
        # The due times (monotonic seconds) of the schedule's reads, in schedule order: a
        # wake-up takes the earliest (``argmin``; ties in schedule order) instead of walking
        # every request of the channel (a 100-flat building has hundreds). An array rather
        # than a heap of tuples: a heap entry per read made ~1,400 tuples a second at 100
        # buildings that all lived into the garbage collector's oldest generation and made
        # each of its full passes (event-loop pauses) longer. Offline devices are probed
        # from ``_offline`` (their first request only); their other reads are skipped.
        self._due = np.zeros(len(self._schedule), dtype=np.float64)
        self._by_device: dict[str, list[_Scheduled]] = {}
        for x in self._schedule:
            self._by_device.setdefault(x.req.device, []).append(x)
        self._offline: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def plan(self) -> list[ReadRequest]:
        """The planned reads of every device, in scan order."""
        return [s.req for s in self._schedule]

    async def start(self) -> None:
        """Start the background poll loop (connects on its own, with backoff)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"modbus-{self.channel_id}")

    async def stop(self) -> None:
        """Stop polling and close the client; idempotent."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def endpoint(self) -> str:
        """Where the channel connects: ``host:port``, or the serial port."""
        host = getattr(self.channel, "host", None)
        return f"{host}:{self.channel.port}" if host else str(self.channel.port)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # pymodbus hands over every packet sent and every receive buffer (accumulated)
        if not sending:
            self._rx_bytes = max(self._rx_bytes, len(data))
        return data

    def _trace_connect(self, connected: bool) -> None:
        self._lost_at = None if connected else time.monotonic()

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        client = make_client(
            self.channel, trace_packet=self._trace_packet, trace_connect=self._trace_connect
        )
        # pymodbus logs why a connect failed and returns False; keep the reason (refused,
        # no route, no such serial port) by wrapping its connect call. Without that
        # attribute (another pymodbus) the cause is only "cannot connect".
        ctx = getattr(client, "ctx", None)
        create = getattr(ctx, "call_create", None)
        if ctx is not None and callable(create):

            async def call_create() -> Any:
                try:
                    return await create()
                except OSError as exc:
                    self._connect_error = exc
                    raise
                except asyncio.CancelledError:  # pymodbus' connect timeout
                    self._connect_error = TimeoutError()
                    raise

            ctx.call_create = call_create
        return client

    def _connect_failure(self) -> str:
        """Return why the last connect failed, for people."""
        exc, where = self._connect_error, self.endpoint
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(exc, TimeoutError):
            return f"no connection to {where} within {self._timeout_s:g} s"
        if isinstance(exc, OSError):
            return f"cannot connect to {where}: {exc.strerror or exc}"
        if exc is not None:
            return f"cannot connect to {where}: {exc}"
        return f"cannot connect to {where}"

    async def _connect(self) -> bool:
        if self._client is None:
            self._client = self._new_client()
        if self._client.connected:
            return True
        self._connect_error = None
        try:
            ok = bool(await self._client.connect())
        except (OSError, ModbusException) as exc:
            self._connect_error = exc
            ok = False
        if not ok:
            self._connect_cause = self._connect_failure()
            log.debug("channel %s: %s", self.channel_id, self._connect_cause)
        if ok:
            log.info("channel %s connected", self.channel_id)
            self._backoff.reset()
            now = self._clock()
            for st in self.status.values():
                st.next_probe = now  # probe offline devices at once after a reconnect
            np.minimum(self._due, now, out=self._due)
        return ok

    def _connection_failed(self) -> None:
        """Count a failure for every device of the channel (no connection, no answer)."""
        cause = self._connect_cause or f"cannot connect to {self.endpoint}"
        msg = f"channel {self.channel_id}: {cause}"
        for dev in self.devices:
            self._record_failure(dev, msg, cause)

    # -- polling ---------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Connect if needed and read every planned block once (offline devices included)."""
        if not await self._connect():
            self._connection_failed()
            return
        failed: set[str] = set()
        for s in self._schedule:
            if s.req.device in failed:
                continue
            if not await self._execute(s):
                failed.add(s.req.device)
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
            next_due = self._next_wake()
            if next_due is None:
                await self._sleep(3600.0)
                continue
            await self._sleep(max(0.0, next_due - self._clock()))

    # -- the schedule ----------------------------------------------------------------------

    def _next_wake(self) -> float | None:
        """Return when the next read or probe is due (None: nothing planned)."""
        due = [float(self._due.min())] if len(self._due) else []
        due += [self.status[d].next_probe for d in self._offline]
        return min(due) if due else None

    def _note_state(self, device: str) -> None:
        """Keep ``_offline`` in step with the device's status after an outcome."""
        if device not in self._by_device:
            return  # a device without reads has nothing to probe with
        if self.status[device].online is False:
            self._offline.add(device)
        else:
            self._offline.discard(device)

    async def _sleep(self, delay_s: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay_s)

    def probe_now(self, device: str) -> None:
        """Make an offline device's probe due at once (after a repair, from the HMI or a test)."""
        self.status[device].next_probe = self._clock()
        self._wake.set()

    async def _scan_due(self) -> None:
        """Execute every due read; skip the rest of a device after its first failure.

        An offline device gets a single request (its first) when its probe is due; when that
        succeeds its other reads follow at once.
        """
        for dev in sorted(self._offline, key=lambda d: self.status[d].next_probe):
            if self._closing or self.status[dev].next_probe > self._clock():
                continue
            first = self._by_device[dev][0]
            ok = await self._execute(first)
            done = self._clock()
            if ok:
                for s in self._by_device[dev]:  # back online: poll the rest now
                    self._due[s.index] = (
                        done if s is not first else next_slot(s.phase, s.req.period_s, done)
                    )
            elif not self.connected:
                return  # the loop reconnects with backoff
        failed: set[str] = set()
        due_at, schedule = self._due, self._schedule
        while len(due_at) and not self._closing:
            i = int(due_at.argmin())
            now = self._clock()
            if due_at[i] > now:
                break
            s = schedule[i]
            dev = s.req.device
            if dev in failed or dev in self._offline:
                due_at[i] = now + s.req.period_s  # an offline device waits for its probe
                continue
            ok = await self._execute(s)
            due_at[i] = next_slot(s.phase, s.req.period_s, self._clock())
            if not ok:
                failed.add(dev)
                if not self.connected:
                    return  # the loop reconnects with backoff

    async def _request(self, kind: Kind, start: int, count: int, unit: int) -> Sequence[int]:
        """Send one read under the channel lock; raise :class:`RequestFailed` on any bad answer."""
        client = self._client
        if client is None or not client.connected:
            raise RequestFailed("not connected" if self._lost_at is None else "connection lost")
        read = {
            Kind.COIL: client.read_coils,
            Kind.DISCRETE: client.read_discrete_inputs,
            Kind.HOLDING: client.read_holding_registers,
            Kind.INPUT: client.read_input_registers,
        }[kind]
        self.requests_sent += 1
        self._rx_bytes = 0
        sent_at = time.monotonic()
        try:
            rr = await read(start, count=count, device_id=unit)
        except (ModbusException, OSError) as exc:  # TimeoutError is an OSError
            raise RequestFailed(self._no_answer(exc, sent_at)) from None
        if rr.isError():
            raise RequestFailed(exception_text(getattr(rr, "exception_code", "?")))
        fc = READ_FUNCTION_CODES[kind]
        got = getattr(rr, "function_code", fc)
        if got != fc:
            raise RequestFailed(f"malformed answer: function code {got} to an FC{fc} request")
        data = getattr(rr, "bits" if kind in BIT_KINDS else "registers", None)
        if data is None:
            raise RequestFailed(f"malformed answer: {type(rr).__name__} without values")
        if len(data) < count:
            raise RequestFailed(f"short answer: {len(data)} of {count} values")
        return data[:count]

    def _no_answer(self, exc: BaseException, sent_at: float) -> str:
        """Return why a request sent at ``sent_at`` got no usable response (``exc``: pymodbus')."""
        if self._rx_bytes:
            return f"malformed answer: {self._rx_bytes} bytes that are not a valid response"
        # pymodbus itself closes the connection after a few timeouts in a row: only a drop
        # before the timeout ran out is the peer's doing
        lost = self._lost_at is not None and self._lost_at - sent_at < self._timeout_s
        if lost or isinstance(exc, ConnectionException):
            return "connection lost"
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            return f"connection error: {exc.strerror or exc}"
        return f"timeout: no answer within {self._timeout_s:g} s"

    async def _execute(self, s: _Scheduled) -> bool:
        req = s.req
        try:
            async with self._lock:
                t0 = time.perf_counter()
                data = await self._request(req.kind, req.start, req.count, req.unit)
                latency = time.perf_counter() - t0
            values = req.codec.decode(data)
        except (RequestFailed, ValueError) as exc:
            fc = req.function_code
            cause = str(exc) if isinstance(exc, RequestFailed) else f"malformed answer: {exc}"
            self._record_failure(
                req.device,
                f"device {req.device} (unit {req.unit}): FC{fc} {req.start}+{req.count}: {cause}",
                f"{cause}, FC{fc} {req.start}+{req.count}",
            )
            return False
        ts = self._wall()
        if s.str_tags:
            for tag, text in zip(s.str_tags, req.codec.decode_strings(data), strict=True):
                self.db.update(tag, text, Quality.GOOD, ts, Reason.NONE)
        st = self.status[req.device]
        st.ok(self._clock(), latency)
        self._offline.discard(req.device)
        st.last_ok = ts
        # the values and the device's status tags in one update: one call per request
        keys, status = self._tags[req.device].status_row(st, ts)
        self.db.update_many(
            np.concatenate((s.num_ids, np.asarray(keys, dtype=np.int64))),
            np.concatenate((values[s.num_pos], np.asarray(status, dtype=np.float64))),
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
        self._note_state(device)
        if st.online is False:  # went offline now, or a probe failed (maybe otherwise)
            self._tags[device].comm_lost(ts, st.cause)
        self._tags[device].publish(st, ts, st.last_ok)

    # -- writes ----------------------------------------------------------------------------

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Write a checked ``value`` to ``device``'s ``point``, read it back, report the state.

        FC 5 for coils, FC 6 for one register, FC 16 for several; a ``bit`` point reads its
        register first (FC 3) and writes it back with only that bit changed. Raise
        :class:`~drivers.base.OutOfRange` if the value does not fit the wire type.
        """
        binding = self.devices[device].points[point]
        dev = self.devices[device]
        spec = binding.spec
        tag = binding.tag

        def result(state: WriteState, message: str, read_back: Any = None) -> WriteResult:
            return WriteResult(tag, device, state, value, read_back, message)

        if spec.type is not PointType.BIT:
            try:
                encoded = encode_point(spec, value)
            except EncodeError as exc:
                raise OutOfRange(f"tag {tag} (device {device}): {exc}", tag, device) from None
        if not self.connected and not await self._connect():
            return result(
                WriteState.FAILED,
                f"tag {tag} (device {device}): channel {self.channel_id} not connected",
            )
        client = self._client
        assert client is not None
        try:
            async with self._lock:
                if spec.type is PointType.BIT:
                    (current,) = await self._request(Kind.HOLDING, spec.address, 1, dev.unit)
                    encoded = encode_point(spec, value, current=int(current))
                if spec.kind is Kind.COIL:
                    rr = await client.write_coil(spec.address, bool(encoded[0]), device_id=dev.unit)
                    fc = 5
                elif len(encoded) == 1:
                    rr = await client.write_register(
                        spec.address, int(encoded[0]), device_id=dev.unit
                    )
                    fc = 6
                else:
                    rr = await client.write_registers(
                        spec.address, [int(r) for r in encoded], device_id=dev.unit
                    )
                    fc = 16
                self.requests_sent += 1
                if rr.isError():
                    return result(
                        WriteState.FAILED,
                        f"tag {tag} (device {device}, unit {dev.unit}): FC{fc} rejected: "
                        + exception_text(getattr(rr, "exception_code", "?")),
                    )
                back = await self._request(spec.kind, spec.address, spec.width, dev.unit)
        except (RequestFailed, ModbusException, OSError, TimeoutError) as exc:
            return result(WriteState.FAILED, f"tag {tag} (device {device}, unit {dev.unit}): {exc}")
        read_back = decode_point(spec, back)
        ts = self._wall()
        if isinstance(read_back, str):
            self.db.update(tag, read_back, Quality.GOOD, ts, Reason.NONE)
        else:
            ids = np.asarray(self.db.ids_of([tag]), dtype=np.int64)
            self.db.update_many(ids, np.asarray([float(read_back)]), Quality.GOOD, ts, Reason.NONE)
        if read_back == decode_point(spec, encoded):
            return result(WriteState.CONFIRMED, "", read_back)
        return result(
            WriteState.MISMATCH,
            f"tag {tag} (device {device}): wrote {value!r}, read back {read_back!r}",
            read_back,
        )
