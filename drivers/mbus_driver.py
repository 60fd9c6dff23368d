"""M-Bus driver: heat meters on a serial bus (``mbus``) or a serial server / gateway (``mbus-tcp``).

One driver per channel on the :class:`~drivers.meterbus.MeterBusDriver` base, like
:class:`~drivers.dlt645_driver.Dlt645Driver`, but one request per device and poll: a ``REQ_UD2`` whose ``RSP_UD`` telegram carries every record of the meter; the
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

Device archive: when a meter answers again after a comm loss, the historic values of the same
telegram (energy records with storage number >= 1, each dated by the date record of its storage
number) that fall in the gap are handed to ``archive`` for the device's current energy points
(``record: energy``, storage 0, tariff 0), converted to their unit, at local midnight of their
date (the runtime writes them into history with reason ``archive``).

Read-only: :meth:`MbusDriver.write` refuses. Links, scheduling, timing and comm loss are
:mod:`drivers.meterbus`'s. Loop-thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.base import DeviceBinding, PointBinding, WriteResult
from drivers.mbus import (
    CI_RESPONSE,
    NETWORK_LAYER,
    Control,
    Frame,
    FrameError,
    Quantity,
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
from drivers.meterbus import MeterBusDriver, RequestFailed
from tags.model import Quality, Reason

if TYPE_CHECKING:
    pass

__all__ = ["MbusDriver", "RequestFailed", "historic_values"]

log = logging.getLogger(__name__)

_PRIMARY_BIT = 0x40  # set in the C field of every master frame (an echo on a two-wire adapter)


def historic_values(telegram: Telegram, unit: str, tz: tzinfo) -> list[tuple[float, float]]:
    """Return ``(ts, energy in unit)`` of each storage number >= 1 with an energy and a date record.

    ``ts`` is the local midnight of the date (type G) or the time (type F) of that storage number.
    """
    out: list[tuple[float, float]] = []
    storages = sorted({r.storage for r in telegram.records if r.storage >= 1})
    for n in storages:
        dated = telegram.find(Quantity.DATE, n) or telegram.find(Quantity.DATETIME, n)
        if dated is None or not isinstance(dated.value, datetime):
            continue
        try:
            value = point_value(telegram, "energy", unit, storage=n)
        except LookupError:
            continue
        out.append((dated.value.replace(tzinfo=tz).timestamp(), value))
    return out


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


class MbusDriver(MeterBusDriver[_Poll, Frame]):
    """Poll the M-Bus meters of one channel (read-only).

    ``devices`` carry ``config.address`` (primary, 1..250) or ``config.secondary`` (8-digit
    ident). Nothing happens until :meth:`start` (background polling) or :meth:`poll_once`.
    """

    protocol = "mbus"
    label = "M-Bus"
    default_gap_s = 0.05

    def build_jobs(self, devices: Sequence[DeviceBinding]) -> list[_Poll]:
        self.polls: dict[str, _Poll] = {}
        for n, d in enumerate(devices):
            address = getattr(d.config, "address", None)
            secondary = getattr(d.config, "secondary", None)
            if not address and not secondary:
                raise ValueError(
                    f"device {d.id} on M-Bus channel {self.channel_id} has no address or secondary"
                )
            ids = self.point_ids(d)
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
                self.phase_of(n, period),
            )
        return list(self.polls.values())

    def on_connect(self) -> None:
        for poll in self.polls.values():
            poll.initialised = False  # a new link: the meters get SND_NKE again

    # -- frames ----------------------------------------------------------------------------

    find_frame = staticmethod(find_frame)
    decode_frame = staticmethod(decode_frame)

    def is_answer(self, frame: Frame) -> bool:
        return frame.ack or not frame.control & _PRIMARY_BIT  # else our own request, echoed

    async def _exchange(self, request: Frame) -> Frame:
        return await self.exchange(encode_frame(request))

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

    async def execute(self, job: _Poll) -> bool:
        poll = job
        gap_from = self.gap_start(poll.device)
        try:
            telegram, latency = await self._read(poll)
        except RequestFailed as exc:
            poll.initialised = False
            self.record_failure(poll.device, f"{poll.label}: {exc}", str(exc))
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
        ts = self.publish(poll.device, ids, values, latency)
        if bad:
            self.db.update_many(
                np.asarray(bad, dtype=np.int64),
                np.full(len(bad), np.nan),
                Quality.BAD,
                ts,
                Reason.CONFIG_ERROR,
            )
        if gap_from is not None:
            await self.backfill(poll, telegram, gap_from, ts)
        return True

    async def backfill(self, poll: _Poll, telegram: Telegram, since: float, until: float) -> int:
        """Hand the telegram's historic energy values dated in ``(since, until]`` to the archive."""
        total = 0
        for point in poll.points:
            if (point.record, point.storage, point.tariff) != ("energy", 0, 0):
                continue
            rows = [
                (ts, value)
                for ts, raw in historic_values(telegram, point.unit, self.tz)
                if since < ts <= until
                for value in [raw * point.binding.spec.scale + point.binding.spec.offset]
            ]
            total += await self.write_archive(poll.device, [point.binding.tag], rows)
        return total

    # -- writes ----------------------------------------------------------------------------

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Refuse: the M-Bus driver is read-only."""
        why = "M-Bus points are read-only (the driver sends no SND_UD data)"
        return self.refuse_write(device, point, value, why)
