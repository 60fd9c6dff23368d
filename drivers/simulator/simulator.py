"""The building simulator: a site's physics served over real Modbus, CAN and DL/T 645 endpoints.

``Simulator(site)`` builds the model of every building and a register image per device;
``await start()`` opens one Modbus server per endpoint (``(host, port)`` of a TCP or
RTU-over-TCP channel, or a serial port path given in ``serial_ports``), one CAN node
per CAN channel and one DL/T 645, M-Bus or CJ/T 188 server per ``dlt645-tcp`` / ``mbus-tcp`` / ``cjt188-tcp`` channel, and advances simulated time with the wall clock times ``speed``.
``step(dt_s)`` advances simulated time directly (tests use it with ``tick_s=None`` so
that nothing moves on its own).

Loop-thread only: every method must be called on the event loop that ran ``start()``
(or, before ``start()``, from any single thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

from pymodbus.constants import ExcCodes

from drivers.codec import Kind, PointSpec
from drivers.simulator.faults import Fault, FaultError, FaultFile, parse_fault
from drivers.simulator.image import DeviceImage
from drivers.simulator.model import ModelParams, SiteModel
from drivers.simulator.server import EndpointSpec, ModbusEndpoint

__all__ = ["Simulator", "SimulatorError"]

log = logging.getLogger(__name__)

_TCP_FRAMERS = {"modbus-tcp": "socket", "modbus-rtu-over-tcp": "rtu"}


class SimulatorError(ValueError):
    """The site cannot be simulated as configured (names the channel or devices)."""


def _protocol(channel: Any) -> str:
    return str(getattr(channel.protocol, "value", channel.protocol))


class Simulator:
    """Simulate every building and device of ``site`` (a ``SiteConfig``).

    - ``speed``: simulated seconds per wall-clock second while running;
    - ``seed``: the same seed, start time and steps give the same values;
    - ``start_ts``: simulated epoch seconds at the start (default: now);
    - ``tick_s``: wall-clock period of the physics while running (``None``: only ``step()``
      moves time);
    - ``serial_ports``: channel id -> serial port path to serve a ``modbus-rtu``, ``dlt645``, ``mbus`` or ``cjt188`` channel on
      (the other end of the port the driver opens, e.g. a ``socat`` pty);
    - ``bind_host``: serve every TCP channel on this host instead of the configured one;
    - ``port_offset``: add this to every TCP port (to run beside another simulator);
    - ``fault_file``: YAML/JSON file of faults, re-read while running (see ``faults``);
    - ``can_period_s``: wall-clock period of the CAN devices' status frames.
    """

    def __init__(
        self,
        site: Any,
        *,
        speed: float = 1.0,
        seed: int = 0,
        start_ts: float | None = None,
        tick_s: float | None = 0.5,
        serial_ports: Mapping[str, str] | None = None,
        bind_host: str | None = None,
        port_offset: int = 0,
        fault_file: str | os.PathLike[str] | None = None,
        params: ModelParams | None = None,
        can_period_s: float = 1.0,
    ) -> None:
        if not speed > 0:
            raise SimulatorError(f"speed must be > 0, got {speed}")
        self.site = site
        self.speed = float(speed)
        self.seed = int(seed)
        self.tick_s = tick_s
        self.can_period_s = can_period_s
        self.model = SiteModel(
            site, seed=seed, start_ts=time.time() if start_ts is None else start_ts, params=params
        )
        self._serial_ports = dict(serial_ports or {})
        self._bind_host = bind_host
        self._port_offset = int(port_offset)
        self._fault_file = FaultFile(fault_file) if fault_file is not None else None
        self._faults: dict[str, Fault] = {}
        self._file_faults: dict[str, Fault] = {}
        self._images: dict[str, DeviceImage] = {}
        self._image_version: dict[str, int] = {}
        self._can_devices: dict[str, dict[str, Any]] = {}  # CAN device -> point -> config
        self._can_values: dict[str, dict[str, Any]] = {}  # CAN generic values
        self._units: dict[str, dict[int, str]] = {}  # endpoint key -> unit -> device
        self._specs: dict[str, EndpointSpec] = {}
        self._can_channels: dict[str, Any] = {}
        self.endpoints: dict[str, ModbusEndpoint] = {}
        self._channel_endpoint: dict[str, str] = {}
        self._can_nodes: dict[str, Any] = {}  # channel id -> CanNode
        #: channel id -> (channel, host, port), or (channel, serial port path, -1)
        self._dlt_channels: dict[str, tuple[Any, str, int]] = {}
        #: channel id -> Dlt645Endpoint / MbusEndpoint / Cjt188Endpoint
        self._dlt_endpoints: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        #: Called at each local midnight ``step`` crosses (the meters' daily freeze), then after each step.
        self.midnight_hooks: list[Callable[[], None]] = []
        self._build()

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        site = self.site
        for channel in site.channels:
            proto = _protocol(channel)
            if proto == "can":
                self._can_channels[channel.id] = channel
                continue
            if proto in ("dlt645-tcp", "mbus-tcp", "cjt188-tcp"):
                port = int(channel.port) + self._port_offset
                if not 0 <= port <= 65535:
                    raise SimulatorError(
                        f"channel {channel.id}: port {port} (with offset) out of range"
                    )
                self._dlt_channels[channel.id] = (channel, self._bind_host or channel.host, port)
                continue
            if proto in ("dlt645", "mbus", "cjt188"):
                path = self._serial_ports.get(channel.id)
                if path is None:
                    log.warning(
                        "simulator: channel %s (%s on %s) not served: no serial port given for it",
                        channel.id,
                        proto,
                        channel.port,
                    )
                else:
                    self._dlt_channels[channel.id] = (channel, path, -1)
                continue
            if proto in _TCP_FRAMERS:
                host = self._bind_host or channel.host
                port = int(channel.port) + self._port_offset
                if not 0 <= port <= 65535:
                    raise SimulatorError(
                        f"channel {channel.id}: port {port} (with offset) out of range"
                    )
                key = f"{host}:{port}"
                spec = EndpointSpec(key, framer=_TCP_FRAMERS[proto], host=host, port=port)
            elif proto == "modbus-rtu":
                path = self._serial_ports.get(channel.id)
                if path is None:
                    log.warning(
                        "simulator: channel %s (modbus-rtu on %s) not served: no serial port given for it",
                        channel.id,
                        channel.port,
                    )
                    continue
                key = f"serial:{path}"
                spec = EndpointSpec(
                    key,
                    framer="rtu",
                    serial_port=path,
                    baudrate=channel.baudrate,
                    parity=channel.parity,
                    stopbits=channel.stopbits,
                    bytesize=channel.bytesize,
                )
            else:
                log.warning(
                    "simulator: channel %s has unknown protocol %s; not served", channel.id, proto
                )
                continue
            old = self._specs.get(key)
            if old is not None and old.framer != spec.framer:
                raise SimulatorError(
                    f"channels on {key} mix Modbus TCP and RTU-over-TCP framing (channel {channel.id})"
                )
            channels = [*(old.channels if old is not None else ()), channel.id]
            self._specs[key] = dataclasses.replace(spec, channels=tuple(channels))
            self._channel_endpoint[channel.id] = key
            self._units.setdefault(key, {})
        for device in site.devices:
            if not getattr(device, "enabled", True):
                continue
            points = site.points(device.id)
            if device.channel in self._can_channels:
                self._can_devices[device.id] = dict(points)
                self._can_values[device.id] = {
                    n: _initial(p)
                    for n, p in points.items()
                    if n not in self.model.bindings.get(device.id, {})
                }
                continue
            endpoint_key = self._channel_endpoint.get(device.channel)
            bindings = self.model.bindings.get(device.id, {})
            specs = {
                n: PointSpec.of(p, name=n)
                for n, p in points.items()
                if getattr(p, "kind", None) is not None
            }
            protected = [n for n in bindings if not points[n].writable]  # measured: refuse writes
            image = DeviceImage(device.id, specs, protected)
            for name, p in points.items():
                if name in specs and name not in bindings:
                    image.put(name, _initial(p))
            self._images[device.id] = image
            self._image_version[device.id] = -1
            if endpoint_key is None:
                continue
            units = self._units[endpoint_key]
            other = units.get(int(device.unit))
            if other is not None:
                raise SimulatorError(
                    f"devices {other} and {device.id} share unit {device.unit} on {endpoint_key}"
                )
            units[int(device.unit)] = device.id

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open every endpoint and start the clock; raise ``OSError`` naming a channel that cannot listen."""
        try:
            for key, spec in self._specs.items():
                endpoint = ModbusEndpoint(self, spec)
                await endpoint.start()
                self.endpoints[key] = endpoint
            if self._can_channels:
                from drivers.simulator.can import CanNode

                for channel in self._can_channels.values():
                    node = CanNode(self, channel, period_s=self.can_period_s)
                    await node.start()
                    self._can_nodes[channel.id] = node
            if self._dlt_channels:
                from drivers.simulator.cjt188 import Cjt188Endpoint
                from drivers.simulator.dlt645 import Dlt645Endpoint
                from drivers.simulator.framebus import FrameServer
                from drivers.simulator.mbus import MbusEndpoint

                kinds: dict[str, type[FrameServer[Any]]] = {
                    "mbus": MbusEndpoint,
                    "cjt188": Cjt188Endpoint,
                }
                for channel, where, port in self._dlt_channels.values():
                    # the frame endpoints: DL/T 645, M-Bus or CJ/T 188 meters behind a serial server
                    kind = kinds.get(_protocol(channel).removesuffix("-tcp"), Dlt645Endpoint)
                    if port < 0:  # a serial port path
                        dlt = kind(self, channel, serial_port=where)
                    else:
                        dlt = kind(self, channel, where, port)
                    await dlt.start()
                    self._dlt_endpoints[channel.id] = dlt
        except BaseException:
            await self.stop()
            raise
        if self.tick_s:
            self._task = asyncio.get_running_loop().create_task(
                self._run(self.tick_s), name="simulator-clock"
            )
        log.info(
            "simulator started: %d endpoints, %d CAN channels",
            len(self.endpoints),
            len(self._can_nodes),
        )

    async def stop(self) -> None:
        """Stop the clock, close every endpoint and CAN node. Safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        endpoints, self.endpoints = list(self.endpoints.values()), {}
        for endpoint in endpoints:
            await endpoint.stop()
        nodes, self._can_nodes = list(self._can_nodes.values()), {}
        for node in nodes:
            await node.stop()
        dlts, self._dlt_endpoints = list(self._dlt_endpoints.values()), {}
        for dlt in dlts:
            await dlt.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self, tick_s: float) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            self.poll_fault_file()
            await asyncio.sleep(tick_s)
            now = loop.time()
            self.step((now - last) * self.speed)
            last = now

    def poll_fault_file(self) -> None:
        """Re-read the fault file if it changed (the clock does this every tick while running)."""
        if self._fault_file is None:
            return
        faults = self._fault_file.poll()
        if faults is None:
            return
        unknown = sorted(set(faults) - self.device_ids())
        for dev in unknown:
            log.error("fault file %s: no device %s; ignored", self._fault_file.path, dev)
            faults.pop(dev)
        self._file_faults = faults
        log.info(
            "faults from %s: %s",
            self._fault_file.path,
            {d: f.kind.value for d, f in faults.items()} or "none",
        )

    # ------------------------------------------------------------------ public API

    @property
    def now(self) -> float:
        """Simulated time, epoch seconds."""
        return self.model.now_s

    def step(self, dt_s: float) -> None:
        """Advance simulated time by ``dt_s`` seconds (in the model's fixed quanta).

        With :attr:`midnight_hooks`, the step stops at each local midnight it crosses and calls them.
        """
        left = float(dt_s)
        while self.midnight_hooks and left > 0:
            local = datetime.fromtimestamp(self.model.now_s, UTC).astimezone(self.model.tz)
            midnight = datetime.combine(local.date() + timedelta(days=1), dtime(), self.model.tz)
            gap = max(midnight.timestamp() - self.model.now_s, 1e-6)
            if gap > left:
                break
            self.model.step(gap)
            left -= gap
            for hook in list(self.midnight_hooks):
                hook()
        self.model.step(left)
        for hook in list(self.midnight_hooks):
            hook()

    def device_ids(self) -> set[str]:
        """Return the ids of every simulated device."""
        return set(self._images) | set(self._can_devices)

    def address(self, channel_id: str) -> tuple[str, int] | str | None:
        """Return where channel ``channel_id`` is served once started, else ``None``.

        ``(host, port)`` for TCP, the serial port path for RTU, ``interface:channel`` for CAN.
        """
        if channel_id in self._can_nodes:
            return str(self._can_nodes[channel_id].address)
        if channel_id in self._dlt_endpoints:
            where: tuple[str, int] | str = self._dlt_endpoints[channel_id].address
            return where
        key = self._channel_endpoint.get(channel_id)
        endpoint = self.endpoints.get(key) if key else None
        return endpoint.address if endpoint else None

    def value(self, device_id: str, point: str) -> Any:
        """Return the engineering value point ``point`` of ``device_id`` shows now.

        Bound points come from the model (exact, before wire encoding); generic points are
        what was last written. Raise ``KeyError`` naming the device or point.
        """
        binding = self.model.bindings.get(device_id, {}).get(point)
        if binding is not None:
            return binding.get()
        if device_id in self._can_values:
            values = self._can_values[device_id]
            if point not in values:
                raise KeyError(f"simulator: device {device_id} has no point {point!r}")
            return values[point]
        image = self._images.get(device_id)
        if image is None:
            raise KeyError(f"simulator: no device {device_id!r}")
        if point not in image.points:
            raise KeyError(f"simulator: device {device_id} has no point {point!r}")
        return image.get(point)

    def counter_tags(self) -> list[str]:
        """Return the tag names (``<device>.<point>``) of the counter points ``resume_counters`` sets."""
        return [
            f"{device_id}.{point}"
            for device_id, points in self.model.bindings.items()
            for point, binding in points.items()
            if binding.resume is not None
        ]

    def counter_values(self) -> dict[str, float]:
        """Return every counter point's value now, by tag name (for ``resume_counters``)."""
        out: dict[str, float] = {}
        for tag in self.counter_tags():
            device_id, point = tag.rsplit(".", 1)
            out[tag] = float(self.value(device_id, point))
        return out

    def resume_counters(self, last: Mapping[str, Any]) -> int:
        """Put every counter point (energy, volume, valve open time) back to its stored value.

        ``last`` maps tag names (``<device>.<point>``) to the value last stored (a number or
        anything with ``numeric``, e.g. a historian ``Sample``); points without a finite,
        non-negative value keep the model's. A restarted simulator so continues from the
        historised state instead of its random defaults: counters never go backwards.
        Returns the number of points restored.
        """
        n = 0
        for device_id, points in self.model.bindings.items():
            for point, binding in points.items():
                if binding.resume is None:
                    continue
                v = last.get(f"{device_id}.{point}")
                x = getattr(v, "numeric", v)
                if isinstance(x, bool) or not isinstance(x, int | float):
                    continue
                if math.isfinite(x) and x >= 0:
                    binding.resume(float(x))
                    self._image_version[device_id] = -1
                    n += 1
        return n

    def set_value(self, device_id: str, point: str, value: Any) -> None:
        """Set a point as a master's write would (model variables included); KeyError if unknown."""
        binding = self.model.bindings.get(device_id, {}).get(point)
        if binding is not None and binding.set is not None:
            binding.set(value)
        elif device_id in self._can_values and point in self._can_values[device_id]:
            self._can_values[device_id][point] = value
        elif (
            device_id in self._images
            and point in self._images[device_id].points
            and binding is None
        ):
            self._images[device_id].put(point, value)
        else:
            raise KeyError(f"simulator: device {device_id} has no settable point {point!r}")
        self._image_version[device_id] = -1

    def release_valve(self, device_id: str) -> None:
        """Hand a valve commanded remotely back to its thermostat."""
        i = self.model.household_of.get(device_id)
        if i is None:
            raise KeyError(f"simulator: device {device_id} is no valve or thermostat")
        self.model.rooms.release(i)
        self._image_version[device_id] = -1

    def set_fault(self, device_id: str, kind: str, **params: Any) -> None:
        """Make ``device_id`` misbehave: ``offline``, ``slow`` (``delay_s``) or ``garbage`` (``mode``, ``code``).

        Takes effect with the next request. Raise :class:`FaultError` naming the device.
        """
        if device_id not in self.device_ids():
            raise FaultError(f"simulator: no device {device_id!r}")
        self._faults[device_id] = parse_fault(device_id, kind, params)
        log.info("device %s: fault %s %s", device_id, kind, params or "")

    def clear_fault(self, device_id: str) -> None:
        """Make ``device_id`` answer normally again (a fault from the fault file stays)."""
        self._faults.pop(device_id, None)

    def fault_of(self, device_id: str) -> Fault | None:
        """Return the device's active fault, or ``None``."""
        return self._faults.get(device_id) or self._file_faults.get(device_id)

    # ------------------------------------------------------------------ Modbus backend

    def device_at(self, endpoint: str, unit: int) -> str | None:
        """Return the device at ``unit`` behind ``endpoint`` (``ModbusBackend``)."""
        return self._units.get(endpoint, {}).get(unit)

    def image(self, device_id: str) -> DeviceImage:
        """Return the device's register image, refreshed from the model."""
        image = self._images[device_id]
        if self._image_version[device_id] != self.model.version:
            for name, binding in self.model.bindings.get(device_id, {}).items():
                if name in image.points:
                    image.put(name, binding.get())
            self._image_version[device_id] = self.model.version
        return image

    def read_table(
        self, device_id: str, kind: Kind, address: int, count: int
    ) -> list[int] | list[bool] | ExcCodes:
        """Return registers/bits of a device (``ModbusBackend``)."""
        return self.image(device_id).read(kind, address, count)

    def write_table(
        self, device_id: str, kind: Kind, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Apply a master's write to a device's image and model (``ModbusBackend``)."""
        image = self.image(device_id)
        touched = image.write(kind, address, values)
        if isinstance(touched, ExcCodes):
            return touched
        bindings = self.model.bindings.get(device_id, {})
        for name in touched:
            binding = bindings.get(name)
            if binding is not None and binding.set is not None:
                binding.set(image.get(name))
            log.info("device %s: %s written", device_id, name)
        self._image_version[device_id] = -1  # show the model's answer to the write
        return None

    # ------------------------------------------------------------------ CAN backend

    def can_write(self, device_id: str, point: str, value: Any) -> None:
        """Apply a CAN command to a device point."""
        binding = self.model.bindings.get(device_id, {}).get(point)
        if binding is not None:
            if binding.set is not None:
                binding.set(value)
            return
        self._can_values[device_id][point] = value


def _initial(point: Any) -> Any:
    """Return the value a generic point shows before anyone writes it."""
    ptype = str(point.type)
    if ptype in ("bool", "bit"):
        return False
    if ptype == "str":
        return ""
    lo = point.min
    return lo if lo is not None and lo > 0 else 0
