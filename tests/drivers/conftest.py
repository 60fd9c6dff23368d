"""Fixtures for driver tests: a real pymodbus server built from a site config, with faults.

``FieldServer`` serves the devices of one channel (TCP or RTU) with pymodbus' SimDevice
datastore; values are set and read per point through the codec. Faults per unit id:
``offline`` (no answer at all), ``exception`` (exception code 4 to every request),
``short`` (TCP: a response with one register missing), ``crc`` (RTU: a corrupted CRC),
``clamp`` (writes stored as 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.codec import BIT_KINDS, Kind, PointSpec, decode_point, encode_point
from tags.database import TagDatabase

REG_KINDS = {Kind.HOLDING: "h", Kind.INPUT: "i", Kind.COIL: "c", Kind.DISCRETE: "d"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_site(data: dict[str, Any]) -> Any:
    """Validate a site config given as a dict (through the real loader when present)."""
    import yaml

    try:
        from scada.config import load_site_text  # type: ignore[attr-defined]
    except ImportError:
        load_site_text = None
    if load_site_text is not None:
        return load_site_text(yaml.safe_dump(data, sort_keys=False))
    from scada.config.site import SiteConfig

    return SiteConfig.model_validate(data)


class FieldServer:
    """A pymodbus server for the devices of ``channel_id`` of ``site``."""

    def __init__(self, site: Any, channel_id: str) -> None:
        self.site = site
        self.channel_id = channel_id
        self.faults: dict[int, str] = {}
        self.requests: Counter[int] = Counter()  # requests seen per unit id
        self.units: dict[str, int] = {}
        self.specs: dict[str, dict[str, PointSpec]] = {}
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self._task: asyncio.Task[Any] | None = None
        self.changed = asyncio.Event()  # set on every served request
        for d in site.devices_on(channel_id):
            self.units[d.id] = d.unit
            self.specs[d.id] = {
                n: PointSpec.of(p, name=n)
                for n, p in site.points(d.id).items()
                if p.kind is not None
            }

    def _devices(self) -> list[SimDevice]:
        out = []
        for dev, unit in self.units.items():
            ends = {k: 16 for k in Kind}
            for p in self.specs[dev].values():
                ends[p.kind] = max(ends[p.kind], p.end + 8)

            def regs(kind: Kind, ends: dict[Kind, int] = ends) -> list[SimData]:
                return [SimData(0, count=ends[kind], values=0, datatype=DataType.REGISTERS)]

            def bits(kind: Kind, ends: dict[Kind, int] = ends) -> list[SimData]:
                n = (ends[kind] + 15) // 16 * 16
                return [SimData(0, values=[False] * n, datatype=DataType.BITS)]

            out.append(
                SimDevice(
                    unit,
                    simdata=(
                        bits(Kind.COIL),
                        bits(Kind.DISCRETE),
                        regs(Kind.HOLDING),
                        regs(Kind.INPUT),
                    ),
                    action=self._make_action(unit),
                )
            )
        return out

    def _make_action(self, unit: int) -> Callable[..., Any]:
        async def action(fc, start, address, count, registers, set_values):
            self.requests[unit] += 1
            self.changed.set()
            fault = self.faults.get(unit)
            if fault == "offline":
                raise NoSuchIdException(f"unit {unit} offline")  # ignore_missing_devices: silence
            if fault == "exception":
                return ExcCodes.DEVICE_FAILURE
            if fault == "clamp" and set_values:
                for i in range(len(set_values)):
                    set_values[i] = False if isinstance(set_values[i], bool) else 0
            return None

        return action

    def _trace(self, rtu: bool) -> Callable[[bool, bytes], bytes]:
        def trace(sending: bool, data: bytes) -> bytes:
            if not sending or len(data) < 3:
                return data
            unit = data[0] if rtu else data[6]
            fault = self.faults.get(unit)
            if rtu and fault == "crc":
                return data[:-1] + bytes([data[-1] ^ 0xFF])
            if fault != "short" or rtu:
                return data
            pdu = bytearray(data[7:])
            if pdu[0] in (3, 4) and pdu[1] >= 2:
                pdu[1] -= 2
                pdu = pdu[:-2]
                header = bytearray(data[:7])
                header[4:6] = (len(pdu) + 1).to_bytes(2, "big")
                return bytes(header + pdu)
            return data

        return trace

    async def start_tcp(self, port: int, framer: FramerType = FramerType.SOCKET) -> None:
        self.server = ModbusTcpServer(
            self._devices(),
            framer=framer,
            address=("127.0.0.1", port),
            ignore_missing_devices=True,
            trace_packet=self._trace(framer is FramerType.RTU),
        )
        await self.server.serve_forever(background=True)

    async def start_serial(self, port: str, baudrate: int = 9600) -> None:
        self.server = ModbusSerialServer(
            self._devices(),
            framer=FramerType.RTU,
            port=port,
            baudrate=baudrate,
            ignore_missing_devices=True,
            trace_packet=self._trace(True),
        )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    # -- memory access ---------------------------------------------------------------------

    def _block(self, device: str, kind: Kind) -> tuple[int, list[int]]:
        assert self.server is not None
        runtime = self.server.context.devices[self.units[device]]
        start, _, registers, _ = runtime.block[REG_KINDS[kind]]
        return start, registers

    def set(self, device: str, point: str, value: Any) -> None:
        """Store ``value`` (engineering units) in the point's registers/bit."""
        spec = self.specs[device][point]
        start, registers = self._block(device, spec.kind)
        if spec.kind in BIT_KINDS:
            word, bit = divmod(spec.address, 16)
            reg = registers[word - start]
            registers[word - start] = (reg | (1 << bit)) if value else (reg & ~(1 << bit))
            return
        current = registers[spec.address - start]
        regs = encode_point(spec, value, current=current)
        registers[spec.address - start : spec.address - start + len(regs)] = regs

    def raw(self, device: str, point: str) -> list[int] | list[bool]:
        spec = self.specs[device][point]
        start, registers = self._block(device, spec.kind)
        if spec.kind in BIT_KINDS:
            word, bit = divmod(spec.address, 16)
            return [bool((registers[word - start] >> bit) & 1)]
        return list(registers[spec.address - start : spec.end - start])

    def get(self, device: str, point: str) -> Any:
        return decode_point(self.specs[device][point], self.raw(device, point))


async def wait_until(
    db: TagDatabase, pattern: str, predicate: Callable[[], bool], timeout: float = 5.0
) -> None:
    """Wait (event-driven, via db.subscribe) until ``predicate()`` holds; fail after ``timeout``."""
    if predicate():
        return
    event = asyncio.Event()

    def on_change(_batch: Any) -> None:
        if predicate():
            event.set()

    unsubscribe = db.subscribe(pattern, on_change)
    try:
        if predicate():
            return
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {pattern}")
    finally:
        unsubscribe()


@pytest.fixture
def socat_pair() -> Iterator[tuple[str, str]]:
    """Yield two linked pseudo-terminals made by socat (skip without socat unless CI=true)."""
    exe = shutil.which("socat")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("socat is required in CI (apt-get install -y socat)")
        pytest.skip("socat not installed (apt-get install -y socat); RTU tests need a pty pair")
    tmp = Path(tempfile.mkdtemp(prefix="rtu-"))
    a, b = tmp / "server", tmp / "client"
    proc = subprocess.Popen(
        [exe, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # socat logs "starting data transfer loop" once both ptys exist
        if "starting data transfer loop" in line:
            break
    assert a.exists() and b.exists(), "socat did not create the pty pair"
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
    try:
        yield str(a), str(b)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


def is_good(db: TagDatabase, tag: str) -> bool:
    """Return whether ``tag`` holds a good value (the meter-bus driver tests' common check)."""
    from tags.model import Quality

    return db.read(tag).quality is Quality.GOOD


def heat_model(sim: Any, dev: str, var: str) -> float:
    """Return the simulator's value of heat meter ``dev``'s variable ``var``."""
    binding = sim.model.heat_meter(dev, var)
    assert binding is not None, (dev, var)
    return float(binding.get())
