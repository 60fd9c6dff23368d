"""CJ/T 188-2004 driver: heat meters on a serial bus (``cjt188``) or a serial server (``cjt188-tcp``).

One driver per channel on the :class:`~drivers.meterbus.MeterBusDriver` base, like the M-Bus
driver: one request per device and poll, a read-data request (control 01) of DI ``901F`` to the
meter's 14-digit ``address`` with the channel's ``meter_type`` (0x20 heat, 0x21 cooling, ...),
sent with the ``FE FE`` wake-up preamble; its answer carries every item of the meter's current
data (:class:`~drivers.cjt188.HeatData`) and the device's points pick theirs by ``item``
(``heat_energy`` in kWh, ``power`` kW, ``flow`` m3/h, ``volume`` m3, ``supply_temp`` /
``return_temp`` degC, ``work_hours`` h, ``status`` ST1 + 256 x ST2; a ``bit`` point reads one
status bit). The devices of a channel are spread over their poll period; ``frame_gap_s`` of
silence follows each answer.

Comm-loss causes (the quality detail of a device's tags once it is offline, as for the other
drivers): ``timeout: no answer within N s``, ``truncated frame: ...``, ``wrong checksum: ...``,
``malformed frame: ...``, ``answer from wrong address X (asked Y)``, ``meter error: ...`` (an
abnormal answer), ``connection lost``, ``connection refused by host:port``.

Read-only: :meth:`Cjt188Driver.write` refuses (valve control of water meters, DI A017, is not
for heat meters). Links, scheduling, timing and comm loss are :mod:`drivers.meterbus`'s.
Loop-thread only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drivers.base import DeviceBinding, PointBinding, WriteResult
from drivers.cjt188 import (
    DI_CURRENT,
    PREAMBLE,
    Control,
    Frame,
    FrameError,
    HeatData,
    decode_frame,
    decode_heat_data,
    encode_frame,
    find_frame,
    is_heat_meter,
    read_request,
)
from drivers.codec import PointType
from drivers.meterbus import MeterBusDriver, RequestFailed, setting

__all__ = ["Cjt188Driver", "RequestFailed"]


@dataclass(slots=True)
class _Point:
    """One point: the item of the heat data it shows, and its tag."""

    binding: PointBinding
    item: str
    tag_id: int

    def value(self, heat: HeatData) -> float:
        """Return the point's engineering value from the meter's heat data."""
        raw = heat.item(self.item)
        spec = self.binding.spec
        if spec.type is PointType.BIT:
            return float((int(raw) >> spec.bit) & 1)
        if spec.type is PointType.BOOL:
            return 1.0 if raw else 0.0
        return raw * spec.scale + spec.offset


@dataclass(slots=True)
class _Poll:
    """One device's poll: its address, its points, when it is due."""

    device: str
    address: str
    points: list[_Point]
    period_s: float
    phase: float
    next_due: float = 0.0

    @property
    def label(self) -> str:
        return f"device {self.device} (address {self.address})"


class Cjt188Driver(MeterBusDriver[_Poll, Frame]):
    """Poll the CJ/T 188 heat meters of one channel (read-only).

    ``devices`` carry their 14-digit meter address in ``config.address``. Nothing happens
    until :meth:`start` (background polling) or :meth:`poll_once`.
    """

    protocol = "cjt188"
    label = "CJ/T 188"
    default_gap_s = 0.02
    preamble = PREAMBLE[:1]

    def build_jobs(self, devices: Sequence[DeviceBinding]) -> list[_Poll]:
        self.meter_type = int(setting(self.channel, "meter_type", 0x20))
        self._ser = 0
        self.polls: dict[str, _Poll] = {}
        for n, d in enumerate(devices):
            address = getattr(d.config, "address", None)
            if not address:
                raise ValueError(
                    f"device {d.id} on CJ/T 188 channel {self.channel_id} has no address"
                )
            ids = self.point_ids(d)
            points = [
                _Point(p, str(p.config.item), ids[p.tag])
                for p in d.points.values()
                if getattr(p.config, "item", None)
            ]
            period = float(d.poll_s)
            poll = _Poll(d.id, str(address), points, period, self.phase_of(n, period))
            self.polls[d.id] = poll
        return list(self.polls.values())

    # -- frames ----------------------------------------------------------------------------

    find_frame = staticmethod(find_frame)
    decode_frame = staticmethod(decode_frame)

    def is_answer(self, frame: Frame) -> bool:
        return frame.is_answer  # else our own request, echoed

    async def _read(self, poll: _Poll) -> tuple[HeatData, float]:
        """Return the meter's current heat data and the latency of the request in seconds."""
        self._ser = (self._ser + 1) & 0xFF
        request = read_request(self.meter_type, poll.address, DI_CURRENT, self._ser)
        async with self._lock:
            t0 = time.perf_counter()
            answer = await self.exchange(encode_frame(request))
            latency = time.perf_counter() - t0
        if answer.address != poll.address:
            raise RequestFailed(
                f"answer from wrong address {answer.address} (asked {poll.address})"
            )
        if answer.is_error:
            detail = answer.data.hex(" ").upper() or "no data"
            raise RequestFailed(f"meter error: abnormal answer {answer.control:02X} ({detail})")
        if answer.function != Control.READ_DATA:
            raise RequestFailed(f"malformed frame: control {answer.control:02X}, expected 81")
        if not is_heat_meter(answer.type):
            raise RequestFailed(f"malformed frame: meter type {answer.type:02X} is no heat meter")
        if answer.di != DI_CURRENT:
            got = "none" if answer.di is None else f"{answer.di:04X}"
            raise RequestFailed(f"malformed frame: answer for DI {got}, asked {DI_CURRENT:04X}")
        try:
            heat = decode_heat_data(answer.data[3:])
        except FrameError as exc:
            raise RequestFailed(str(exc)) from None
        return heat, latency

    async def execute(self, job: _Poll) -> bool:
        try:
            heat, latency = await self._read(job)
        except RequestFailed as exc:
            self.record_failure(job.device, f"{job.label}: {exc}", str(exc))
            return False
        ids = [p.tag_id for p in job.points]
        self.publish(job.device, ids, [p.value(heat) for p in job.points], latency)
        return True

    # -- writes ----------------------------------------------------------------------------

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Refuse: the CJ/T 188 driver is read-only."""
        return self.refuse_write(device, point, value, "CJ/T 188 heat meter points are read-only")
