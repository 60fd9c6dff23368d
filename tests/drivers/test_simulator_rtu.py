"""The simulator as Modbus RTU slaves on a serial port (a socat pty pair), and read by mbpoll."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from drivers.simulator import Simulator
from tests.drivers.simulator_fixtures import START_TS, load_site_text, sim_fixture, site_fixture  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install {tool})")
        pytest.skip(f"{tool} not installed")
    return path


@pytest.fixture
async def pty_pair() -> AsyncIterator[tuple[str, str]]:
    """Two connected pseudo-terminals made by socat: (simulator end, master end)."""
    socat = _need("socat")
    proc = await asyncio.create_subprocess_exec(
        socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0", stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    paths: list[str] = []
    try:
        while len(paths) < 2:
            line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
            if not line:
                raise RuntimeError("socat exited before opening its ptys")
            if m := re.search(r"PTY is (\S+)", line):
                paths.append(m.group(1))
        yield paths[0], paths[1]
    finally:
        proc.terminate()
        await proc.wait()


RTU_SITE = """
site: {{id: rtutest, timezone: UTC}}
channels:
  - {{id: rs485, protocol: modbus-rtu, port: {port}, baudrate: 9600}}
templates:
  meter:
    role: electricity_meter
    points:
      energy_kwh: {{address: 0, kind: holding, type: uint32, scale: 0.01}}
      power_kw:   {{address: 2, kind: holding, type: float32}}
      relay:      {{address: 0, kind: coil, type: bool, writable: true}}
devices:
  - {{id: m1, template: meter, channel: rs485, unit: 5}}
  - {{id: m2, template: meter, channel: rs485, unit: 6}}
"""


async def test_rtu_on_serial_port_reads_writes_and_faults(
    pty_pair: tuple[str, str], tmp_path: Path
) -> None:
    sim_end, master_end = pty_pair
    site = load_site_text(RTU_SITE.format(port=master_end), tmp_path)
    sim = Simulator(site, start_ts=START_TS, tick_s=None, serial_ports={"rs485": sim_end})
    await sim.start()
    client = AsyncModbusSerialClient(master_end, baudrate=9600, timeout=0.5, retries=0)
    try:
        assert sim.address("rs485") == sim_end
        sim.step(3600)
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=4, device_id=5)
        assert not rr.isError()
        energy = ((rr.registers[0] << 16) | rr.registers[1]) * 0.01
        assert energy == pytest.approx(sim.value("m1", "energy_kwh"), abs=0.006)
        power = struct.unpack(">f", struct.pack(">HH", *rr.registers[2:4]))[0]
        assert power == pytest.approx(sim.value("m1", "power_kw"), rel=1e-6)
        assert not (await client.write_coil(0, False, device_id=6)).isError()
        assert sim.value("m2", "relay") is False
        sim.set_fault("m1", "garbage", mode="crc")
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=2, device_id=5)
        sim.clear_fault("m1")
        assert not (await client.read_holding_registers(0, count=2, device_id=6)).isError()
    finally:
        client.close()
        await sim.stop()


async def test_mbpoll_reads_what_the_simulator_serves(sim: Simulator, site: Any) -> None:
    """An independent Modbus master (Debian's mbpoll) agrees with the model."""
    mbpoll = _need("mbpoll")
    host, port = sim.address("b1-bus")  # type: ignore[misc]
    sim.step(2 * 3600)
    # heat meter power_kw: float32 big-endian at holding 4 (mbpoll counts references from 1)
    proc = await asyncio.create_subprocess_exec(
        mbpoll, "-m", "tcp", "-p", str(port), "-a", "1", "-r", "5", "-c", "1", "-t", "4:float", "-B", "-1",
        host,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode()
    assert proc.returncode == 0, err.decode() + text
    values = re.findall(r"^\[\d+\]:\s+(\S+)", text, re.MULTILINE)
    assert values, text
    assert float(values[0]) == pytest.approx(sim.value("b1.hm", "power_kw"), rel=1e-5)
