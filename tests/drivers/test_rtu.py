"""Modbus RTU through a socat pseudo-terminal pair; mbpoll as an independent master.

A pymodbus RTU server listens on one pty, the driver (or ``scada poll`` in a subprocess,
or Debian's ``mbpoll``) talks on the other. The pair is a real serial line for both sides.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.manager import DriverManager
from tags.database import TagDatabase
from tags.model import Quality, Reason
from tests.drivers.conftest import FieldServer, make_site

ROOT = Path(__file__).resolve().parents[2]

POINTS = {
    "energy_kwh": {"address": 0, "kind": "holding", "type": "float32"},
    "power_kw": {"address": 2, "kind": "holding", "type": "float32"},
    "volume_m3": {"address": 4, "kind": "holding", "type": "int32", "scale": 0.01},
    "setpoint_c": {
        "address": 6,
        "kind": "holding",
        "type": "int16",
        "scale": 0.1,
        "writable": True,
    },
    "room_c": {"address": 0, "kind": "input", "type": "int16", "scale": 0.1},
    "relay": {"address": 1, "kind": "coil", "type": "bool", "writable": True},
}
VALUES = {
    "energy_kwh": 4321.25,
    "power_kw": 3.5,
    "volume_m3": 1234.56,
    "setpoint_c": 21.5,
    "room_c": 19.8,
    "relay": True,
}


def site_data(port: str) -> dict[str, Any]:
    return {
        "site": {"id": "rtu", "name": "RTU test"},
        "channels": [
            {
                "id": "rs485",
                "protocol": "modbus-rtu",
                "port": port,
                "baudrate": 9600,
                "parity": "N",
                "timeout_s": 0.5,
                "retries": 1,
                "poll_s": 0.1,
            }
        ],
        "templates": {"meter": {"points": POINTS}},
        "devices": [
            {"id": "m1", "template": "meter", "channel": "rs485", "unit": 1},
            {"id": "m2", "template": "meter", "channel": "rs485", "unit": 2},
        ],
    }


@pytest.fixture
async def rtu(socat_pair, tmp_path):
    server_port, client_port = socat_pair
    data = site_data(client_port)
    site = make_site(data)
    server = FieldServer(site, "rs485")
    await server.start_serial(server_port)
    for dev in ("m1", "m2"):
        for name, value in VALUES.items():
            server.set(dev, name, value)
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield site, server, config, client_port
    finally:
        await server.stop()


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scada.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def mbpoll(port: str, *args: str) -> list[str]:
    """Run mbpoll once on ``port`` (0-based references); return the value column."""
    exe = shutil.which("mbpoll")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mbpoll is required in CI (apt-get install -y mbpoll)")
        pytest.skip("mbpoll not installed (apt-get install -y mbpoll)")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-m",
        "rtu",
        "-b",
        "9600",
        "-P",
        "none",
        "-0",
        "-1",
        "-o",
        "1",
        *args,
        port,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode() + out.decode()
    return re.findall(r"^\[\d+\]:\s+(\S+)", out.decode(), re.M)


async def test_scada_poll_over_rtu_agrees_with_mbpoll(rtu):
    _site, _server, config, client_port = rtu
    code, out, err = await run_cli("poll", str(config), "--once", "--json", "--tags", "m1.*")
    assert code == 0, err
    rows = json.loads(out)
    assert set(rows) == {f"m1.{n}" for n in POINTS} | {
        f"m1.{s}" for s in ("online", "last_ok", "errors", "latency_ms")
    }
    for name, expected in VALUES.items():
        row = rows[f"m1.{name}"]
        assert row["quality"] == "good" and row["reason"] is None, name
        assert row["value"] == pytest.approx(expected), name
        assert row["ts"].endswith("+00:00")
    # mbpoll decodes on its own (float32 big-endian words, raw int16, coils)
    floats = await mbpoll(client_port, "-a", "1", "-t", "4:float", "-B", "-r", "0", "-c", "2")
    assert [float(x) for x in floats] == [
        rows["m1.energy_kwh"]["value"],
        rows["m1.power_kw"]["value"],
    ]
    ints = await mbpoll(client_port, "-a", "1", "-t", "4:int", "-B", "-r", "4", "-c", "1")
    assert int(ints[0]) * 0.01 == pytest.approx(rows["m1.volume_m3"]["value"])
    regs = await mbpoll(client_port, "-a", "1", "-t", "3", "-r", "0", "-c", "1")
    assert int(regs[0]) * 0.1 == pytest.approx(rows["m1.room_c"]["value"])
    coils = await mbpoll(client_port, "-a", "1", "-t", "0", "-r", "1", "-c", "1")
    assert bool(int(coils[0])) is rows["m1.relay"]["value"]


async def test_scada_poll_table_and_exit_code_when_a_device_is_silent(rtu):
    _site, server, config, _ = rtu
    server.faults[2] = "offline"
    code, out, err = await run_cli("poll", str(config), "--once")
    assert code == 2, err
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "good" in lines["m1.energy_kwh"]
    assert "bad" in lines["m2.energy_kwh"] and "comm_lost" in lines["m2.energy_kwh"]


async def test_rtu_driver_comm_loss_crc_garbage_and_write(rtu):
    site, server, _, _ = rtu
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
        assert db.read("m2.energy_kwh").value == pytest.approx(4321.25)
        result = await manager.write("m1.setpoint_c", 23.0)
        assert result.ok, result.message
        assert server.get("m1", "setpoint_c") == pytest.approx(23.0)
        # a CRC error on unit 2 is an error for unit 2 only
        server.faults[2] = "crc"
        await manager.poll_once()
        assert (db.read("m2.power_kw").quality, db.read("m2.power_kw").reason) == (
            Quality.BAD,
            Reason.COMM_LOST,
        )
        assert db.read("m1.power_kw").quality is Quality.GOOD
        server.faults[2] = "offline"
        server.set("m1", "power_kw", 8.0)
        await manager.poll_once()
        assert db.read("m1.power_kw").value == 8.0
        assert db.read("m2.online").value is False
        server.faults.clear()
        await manager.poll_once()
        assert db.read("m2.online").value is True and db.read("m2.power_kw").quality is Quality.GOOD
    finally:
        await manager.stop()


async def test_rtu_over_tcp_serial_server():
    """RS-485 behind a serial device server: RTU frames over a TCP socket."""
    from pymodbus import FramerType

    from tests.drivers.conftest import free_port

    port = free_port()
    data = site_data("unused")
    data["channels"] = [
        {
            "id": "rs485",
            "protocol": "modbus-rtu-over-tcp",
            "host": "127.0.0.1",
            "port": port,
            "timeout_s": 0.3,
            "retries": 1,
        }
    ]
    site = make_site(data)
    server = FieldServer(site, "rs485")
    await server.start_tcp(port, framer=FramerType.RTU)
    for name, value in VALUES.items():
        server.set("m1", name, value)
    server.faults[2] = "crc"
    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
        assert db.read("m1.energy_kwh").value == pytest.approx(4321.25)
        assert db.read("m1.online").value is True
        assert db.read("m2.online").value is False
        assert (await manager.write("m1.relay", False)).ok
        assert server.get("m1", "relay") is False
    finally:
        await manager.stop()
        await server.stop()
