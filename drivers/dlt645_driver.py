"""DL/T 645-2007 driver: electricity meters on a serial bus (``dlt645``) or a serial server (``dlt645-tcp``).

One driver per channel on the :class:`~drivers.meterbus.MeterBusDriver` base: the devices'
points are read one data identifier (``di``) per request, each point on its own period (the
point's ``poll_s``, else the device's), with the reads of a channel's devices spread over
the period. Each request is sent with the ``FE FE FE FE`` wake-up preamble; ``frame_gap_s``
of silence follows each answer. Comm-loss causes: ``timeout: no answer within N s``,
``truncated frame: ...``, ``wrong checksum: ...``, ``malformed frame: ...``, ``answer
from wrong address X``, ``meter error NN: ...`` (an abnormal answer), ``connection
lost``, ``connection refused by host:port``.

Device archive: when a meter comes back after a comm loss, the driver reads its daily frozen
readings (DI 050600NN time, 050601NN forward active energy, NN = 1 the last day) back to the
last good poll and hands the freezes inside the gap to ``archive`` (the runtime writes them into
history as good samples with reason ``archive``, at their frozen times) for the points that read
forward (00010000) or combined (00000000) active energy: the simulated and the seeds' meters have
no export, so both equal the forward energy.

Time synchronisation: :meth:`Dlt645Driver.time_sync` broadcasts the site's local time (control
code 08 to 999999999999, no answer); a channel's ``time_sync: "HH:MM"`` does it daily.

Writes: the relay point (``relay: true``, a bool, true = closed) is tripped or closed with
control code 1C using the channel's ``password`` and ``operator``; the result is read back
from meter run status word 3 (DI 04000503, bit 4 = relay open).

Links, scheduling, timing and comm loss are :mod:`drivers.meterbus`'s. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.base import DeviceBinding, PointBinding, WriteResult, WriteState
from drivers.codec import PointType
from drivers.dlt645 import (
    ANSWER,
    PREAMBLE,
    RELAY_STATE_BIT,
    Control,
    DailyFrozen,
    Frame,
    RelayAction,
    decode_frame,
    decode_value,
    encode_frame,
    error_text,
    find_frame,
    frozen_dis,
    read_request,
    relay_request,
    time_sync_request,
)
from drivers.meterbus import MeterBusDriver, RequestFailed, setting
from tags.model import Quality, Reason

if TYPE_CHECKING:
    pass

__all__ = ["ENERGY_DIS", "STATUS_WORD_3", "Dlt645Driver", "RequestFailed"]

log = logging.getLogger(__name__)

#: Points the daily frozen forward active energy fills: forward and combined active energy.
ENERGY_DIS = (0x00010000, 0x00000000)

#: Meter run status word 3: bit 4 is the relay state (1 = open).
STATUS_WORD_3 = 0x04000503
#: How long a relay command stays valid (N3..N8 of the 1C request), seconds.
RELAY_VALID_S = 600.0


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


class Dlt645Driver(MeterBusDriver[_Read, Frame]):
    """Poll and write the DL/T 645 meters of one channel.

    ``devices`` carry their meter address in ``config.address`` (12 digits). Nothing
    happens until :meth:`start` (background polling) or :meth:`poll_once`.
    """

    protocol = "dlt645"
    label = "DL/T 645"
    default_gap_s = 0.02
    preamble = PREAMBLE[:1]

    _sync_task: asyncio.Task[None] | None = None

    def build_jobs(self, devices: Sequence[DeviceBinding]) -> list[_Read]:
        self.addresses: dict[str, str] = {}
        reads: list[_Read] = []
        for n, d in enumerate(devices):
            address = getattr(d.config, "address", None)
            if not address:
                raise ValueError(
                    f"device {d.id} on DL/T 645 channel {self.channel_id} has no address"
                )
            self.addresses[d.id] = str(address)
            ids = self.point_ids(d)
            for p in d.points.values():
                di = _di_of(p)
                if di is None:
                    continue
                period = float(p.poll_s or d.poll_s)
                phase = self.phase_of(n, period)
                reads.append(_Read(d.id, str(address), p, di, ids[p.tag], period, phase))
        return reads

    # -- frames ----------------------------------------------------------------------------

    find_frame = staticmethod(find_frame)
    decode_frame = staticmethod(decode_frame)

    def is_answer(self, frame: Frame) -> bool:
        return frame.is_answer

    async def _transact(self, address: str, request: Frame, expect: int) -> Frame:
        """Send ``request`` and return the meter's answer; hold the lock. Raise :class:`RequestFailed`."""
        answer = await self.exchange(encode_frame(request))
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

    async def execute(self, job: _Read) -> bool:
        gap_from = self.gap_start(job.device)
        try:
            data, latency = await self._read_di(job.address, job.di)
            value = job.value(data)
        except (RequestFailed, ValueError) as exc:
            cause = str(exc) if isinstance(exc, RequestFailed) else f"malformed frame: {exc}"
            self.record_failure(
                job.device,
                f"device {job.device} (address {job.address}): DI {job.di:08X}: {cause}",
                f"{cause}, DI {job.di:08X}",
            )
            return False
        self.publish(job.device, [job.tag_id], [value], latency)
        if gap_from is not None:
            await self.backfill(job.device, gap_from, self._wall())
        return True

    # -- device archive --------------------------------------------------------------------

    async def read_frozen(self, address: str, n: int) -> DailyFrozen:
        """Return the ``n``-th last daily freeze of the meter at ``address``; raise RequestFailed."""
        time_di, energy_di = frozen_dis(n)
        stamp, _ = await self._read_di(address, time_di)
        energy, _ = await self._read_di(address, energy_di)
        try:
            return DailyFrozen.decode(stamp, energy)
        except ValueError as exc:
            raise RequestFailed(f"malformed frame: {exc}") from None

    async def backfill(self, device: str, since: float, until: float) -> int:
        """Fill ``(since, until]`` of the device's energy points from its daily freezes.

        Reads freezes from the last one back until one is at or before ``since`` (or the
        archive ends); hands each inside the gap to :attr:`archive`. Return how many
        readings were written (per tag). A failed read ends the backfill (logged).
        """
        if self.archive is None:
            return 0
        tags = [p.tag for p in self.devices[device].points.values() if _di_of(p) in ENERGY_DIS]
        if not tags:
            return 0
        address = self.addresses[device]
        rows: list[tuple[float, float]] = []
        n = 1
        while True:
            try:
                frozen = await self.read_frozen(address, n)
            except (RequestFailed, ValueError) as exc:
                log.info("device %s: daily freeze %d: %s; backfill ends", device, n, exc)
                break
            ts = frozen.at.replace(tzinfo=self.tz).timestamp()
            if ts <= since:
                break
            if ts <= until:
                rows.append((ts, frozen.energy_kwh[0]))
            n += 1
        return await self.write_archive(device, tags, rows)

    # -- time synchronisation --------------------------------------------------------------

    async def time_sync(self) -> datetime:
        """Broadcast the site's local time to every meter of the channel; return the time sent."""
        at = datetime.fromtimestamp(self._wall(), self.tz).replace(tzinfo=None)
        await self.broadcast(encode_frame(time_sync_request(at)))
        log.info("channel %s: time synchronised to %s", self.channel_id, at.isoformat())
        return at

    def next_time_sync(self, now: float) -> float | None:
        """Return the wall time of the next daily time sync after ``now`` (None: off)."""
        when = getattr(self.channel, "time_sync", None)
        if not when:
            return None
        hh, mm = (int(x) for x in str(when).split(":"))
        local = datetime.fromtimestamp(now, self.tz)
        due = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if due.timestamp() <= now:
            due = datetime.combine(local.date() + timedelta(days=1), due.timetz())
        return due.timestamp()

    async def _time_sync_loop(self) -> None:
        while (due := self.next_time_sync(self._wall())) is not None:
            await asyncio.sleep(max(0.0, due - self._wall()))
            try:
                await self.time_sync()
            except RequestFailed as exc:
                log.warning("channel %s: time sync failed: %s", self.channel_id, exc)

    async def start(self) -> None:
        await super().start()
        if self._sync_task is None and getattr(self.channel, "time_sync", None):
            self._sync_task = asyncio.create_task(
                self._time_sync_loop(), name=f"dlt645-time-sync-{self.channel_id}"
            )

    async def stop(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

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
        if not self.connected and not await self.connect():
            return result(WriteState.FAILED, f"{label}: {self._connect_cause}")
        action = RelayAction.CLOSE if value else RelayAction.TRIP
        until = datetime.fromtimestamp(self._wall() + RELAY_VALID_S)
        operator = str(setting(self.channel, "operator", "00000000"))
        request = relay_request(address, action, password, operator, until)
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
