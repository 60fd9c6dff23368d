"""One Modbus TCP channel polled over several connections (``connections: N``).

A Modbus TCP client has one request in flight at a time (pymodbus serialises its requests),
so a channel's throughput is one request per round trip. A gateway or concentrator that
serves several TCP connections at once (most do: 4 to 32) is polled faster over several:
the channel's devices are dealt round-robin to ``N`` lanes, each a :class:`ModbusDriver`
with its own connection, schedule and device statuses. A device stays on its lane, so
its requests keep their order and a write goes over the connection that polls it.

:class:`ChannelLanes` is the channel's one driver for everything else (the manager's
``drivers[channel_id]``, metrics, commands): devices and statuses merged, requests summed.
A serial bus (RTU) is half-duplex: the configuration allows ``connections`` only on
``modbus-tcp`` channels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.base import DeviceBinding, WriteResult
    from drivers.modbus import ModbusDriver
    from drivers.status import DeviceStatus

__all__ = ["ChannelLanes", "deal"]


def deal(devices: Sequence[DeviceBinding], lanes: int) -> list[list[DeviceBinding]]:
    """Return ``devices`` dealt round-robin to ``lanes`` lists (in order; none left empty)."""
    n = max(1, min(lanes, len(devices)))
    return [list(devices[k::n]) for k in range(n)]


class ChannelLanes:
    """The drivers of one channel's lanes, seen as one driver. Loop-thread only."""

    def __init__(self, channel_id: str, lanes: Sequence[ModbusDriver]) -> None:
        if not lanes:
            raise ValueError(f"channel {channel_id}: no lanes")
        self.channel_id = channel_id
        self.lanes = tuple(lanes)
        self._lane_of: dict[str, ModbusDriver] = {}
        self._devices: dict[str, DeviceBinding] = {}
        self.status: dict[str, DeviceStatus] = {}
        for lane in self.lanes:
            for device_id, binding in lane.devices.items():
                self._lane_of[device_id] = lane
                self._devices[device_id] = binding
                self.status[device_id] = lane.status[device_id]

    @property
    def devices(self) -> Mapping[str, DeviceBinding]:
        """Every device of the channel, by id."""
        return self._devices

    @property
    def requests_sent(self) -> int:
        """Read requests sent over all lanes."""
        return sum(lane.requests_sent for lane in self.lanes)

    @property
    def connected(self) -> bool:
        """True while every lane is connected."""
        return all(lane.connected for lane in self.lanes)

    async def start(self) -> None:
        """Start every lane's poll loop."""
        for lane in self.lanes:
            await lane.start()

    async def stop(self) -> None:
        """Stop every lane; idempotent."""
        await asyncio.gather(*(lane.stop() for lane in self.lanes))

    async def poll_once(self) -> None:
        """Read every device once, the lanes concurrently."""
        await asyncio.gather(*(lane.poll_once() for lane in self.lanes))

    async def write(self, device: str, point: str, value: Any) -> WriteResult:
        """Write over the lane that polls ``device`` (its requests stay in order)."""
        return await self._lane_of[device].write(device, point, value)
