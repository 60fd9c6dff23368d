"""Driver manager: one driver per channel of a site, and the ``write(tag, value)`` entry point.

``DriverManager(site, db)`` builds a :class:`~drivers.modbus.ModbusDriver`, a
:class:`~drivers.can.CanDriver`, a :class:`~drivers.dlt645_driver.Dlt645Driver`, a
:class:`~drivers.mbus_driver.MbusDriver` or a :class:`~drivers.cjt188_driver.Cjt188Driver` per
channel that has enabled devices; :meth:`start` starts them (each polls/listens in its own task,
so channels run concurrently). Marking stale values (``db.check_stale``) is the caller's
housekeeping, not the drivers'. :meth:`write`
is what the command service (issue 6) calls: it checks the tag, type and limits
(:func:`~drivers.base.check_write`, raising a :class:`~drivers.base.WriteRejected`
subclass), then the channel's driver writes and reads back. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drivers.base import (
    DeviceBinding,
    Driver,
    PointBinding,
    UnknownTag,
    WriteResult,
    check_write,
)
from drivers.codec import Kind, PointSpec, PointType
from drivers.config import CJT188_PROTOCOLS, DLT645_PROTOCOLS, MBUS_PROTOCOLS, MODBUS_PROTOCOLS
from drivers.plan import MAX_READ_BITS, MAX_READ_REGISTERS

if TYPE_CHECKING:
    from drivers.meterbus import ArchiveSink
    from tags.database import TagDatabase

__all__ = ["DriverManager", "device_bindings"]

log = logging.getLogger(__name__)


def _protocol(channel: Any) -> str:
    return str(getattr(channel.protocol, "value", channel.protocol))


def _point_spec(name: str, point: Any) -> PointSpec:
    if getattr(point, "kind", None) is not None:
        return PointSpec.of(point, name=name)
    # CAN point: the codec fields that matter are type, byte order and scaling
    ptype = point.type
    return PointSpec(
        address=int(getattr(point, "start_byte", 0) or 0),
        kind=Kind.HOLDING,
        type=PointType(getattr(ptype, "value", ptype)),
        count=int(point.count or 1),
        bit=int(point.bit or 0),
        byte_order=point.byte_order,
        word_order=point.word_order,
        scale=float(point.scale),
        offset=float(point.offset),
        name=name,
    )


def device_bindings(site: Any, channel_id: str) -> list[DeviceBinding]:
    """Return the enabled devices of ``channel_id`` with their points resolved.

    Devices of one template share its point objects: each one's wire spec is made once.
    """
    channel = site.channel(channel_id)
    result: list[DeviceBinding] = []
    specs: dict[tuple[str, int], tuple[Any, PointSpec]] = {}

    def spec_of(name: str, p: Any) -> PointSpec:
        hit = specs.get((name, id(p)))
        if hit is None or hit[0] is not p:
            hit = specs[(name, id(p))] = (p, _point_spec(name, p))
        return hit[1]

    for d in site.devices_on(channel_id):
        if not d.enabled:
            continue
        template = site.template(d.template)
        poll_s = float(d.poll_s or getattr(template, "poll_s", None) or channel.poll_s)
        points: dict[str, PointBinding] = {}
        for name, p in site.points(d.id).items():
            points[name] = PointBinding(
                device=d.id,
                name=name,
                tag=f"{d.id}.{name}",
                spec=spec_of(name, p),
                tag_type=p.tag_type,
                writable=p.writable,
                min=p.min,
                max=p.max,
                poll_s=p.poll_s,
                config=p,
            )
        result.append(DeviceBinding(d.id, int(d.unit), poll_s, points, d))
    return result


def _modbus(channel: Any, devices: list[DeviceBinding], db: TagDatabase) -> Driver:
    """Return the Modbus driver of ``channel``: one, or its lanes (``connections: N``)."""
    from drivers.lanes import ChannelLanes, deal
    from drivers.modbus import ModbusDriver

    def one(part: list[DeviceBinding]) -> ModbusDriver:
        return ModbusDriver(
            channel,
            part,
            db,
            max_registers=int(getattr(channel, "max_registers", None) or MAX_READ_REGISTERS),
            max_bits=int(getattr(channel, "max_bits", None) or MAX_READ_BITS),
        )

    connections = int(getattr(channel, "connections", 1) or 1)
    if connections <= 1:
        return one(devices)
    return ChannelLanes(channel.id, [one(part) for part in deal(devices, connections)])


class DriverManager:
    """All drivers of a site. Construct, then ``await start()``; ``await stop()`` at the end."""

    def __init__(self, site: Any, db: TagDatabase, *, archive: ArchiveSink | None = None) -> None:
        """``archive(tag, [(ts, value), ...])`` takes device-archive readings (meter-bus drivers)."""
        self.site = site
        self.db = db
        self.drivers: dict[str, Driver] = {}
        self._points: dict[str, tuple[str, str, str]] = {}  # tag -> (channel, device, point)
        # meters keep the site's local time (archive dates, time sync)
        tz = ZoneInfo(str(getattr(getattr(site, "site", None), "timezone", None) or "UTC"))
        for channel in site.channels:
            devices = device_bindings(site, channel.id)
            if not devices:
                continue
            protocol = _protocol(channel)
            if protocol in MODBUS_PROTOCOLS:
                driver: Driver = _modbus(channel, devices, db)
            elif protocol == "can":
                from drivers.can import CanDriver

                driver = CanDriver(channel, devices, db)
            elif protocol in DLT645_PROTOCOLS:
                from drivers.dlt645_driver import Dlt645Driver

                driver = Dlt645Driver(channel, devices, db, tz=tz, archive=archive)
            elif protocol in MBUS_PROTOCOLS:
                from drivers.mbus_driver import MbusDriver

                driver = MbusDriver(channel, devices, db, tz=tz, archive=archive)
            elif protocol in CJT188_PROTOCOLS:
                from drivers.cjt188_driver import Cjt188Driver

                driver = Cjt188Driver(channel, devices, db, tz=tz, archive=archive)
            else:  # pragma: no cover - the config rejects unknown protocols
                raise ValueError(f"channel {channel.id}: unsupported protocol {protocol!r}")
            self.drivers[channel.id] = driver
            for d in devices:
                for name, p in d.points.items():
                    self._points[p.tag] = (channel.id, d.id, name)

    async def start(self) -> None:
        """Start every driver; channels run concurrently."""
        for driver in self.drivers.values():
            await driver.start()
        log.info("drivers started: %d channels", len(self.drivers))

    async def stop(self) -> None:
        """Stop every driver; idempotent."""
        await asyncio.gather(*(d.stop() for d in self.drivers.values()), return_exceptions=True)

    async def __aenter__(self) -> DriverManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def poll_once(self) -> None:
        """Poll every device of every channel once, channels concurrently."""
        await asyncio.gather(*(d.poll_once() for d in self.drivers.values()))

    def channel_of(self, tag: str) -> str:
        """Return the id of the channel polling ``tag``; raise :class:`UnknownTag`."""
        try:
            return self._points[tag][0]
        except KeyError:
            raise UnknownTag(f"tag {tag} is not a point of an enabled device", tag) from None

    def binding(self, tag: str) -> PointBinding:
        """Return the device point behind ``tag``; raise :class:`UnknownTag`."""
        try:
            channel, device, point = self._points[tag]
        except KeyError:
            raise UnknownTag(f"tag {tag} is not a point of an enabled device", tag) from None
        return self.drivers[channel].devices[device].points[point]

    async def write(self, tag: str, value: Any) -> WriteResult:
        """Write ``value`` to the device point behind ``tag`` and read it back.

        Raises ``UnknownTag``, ``NotWritable``, ``WrongType`` or ``OutOfRange`` (all
        ``WriteRejected``, a ``ValueError``) before anything is sent; otherwise returns a
        :class:`WriteResult` with state confirmed, mismatch or failed.
        """
        binding = self.binding(tag)
        checked = check_write(binding, value)
        channel, device, point = self._points[tag]
        result = await self.drivers[channel].write(device, point, checked)
        if not result.ok:
            log.warning("write %s = %r: %s %s", tag, value, result.state, result.message)
        return result
