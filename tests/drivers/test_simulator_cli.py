"""``scada simulate``: serves a config (the demo site too) and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.drivers.simulator_fixtures import SITE_YAML, free_port

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "demo-site.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """Start ``scada simulate ARGS --json`` and return the process and its endpoint line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scada.cli", "simulate", *args, "--json",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        err = (await proc.stderr.read()).decode()
        raise AssertionError(f"scada simulate exited {await proc.wait()}: {err}")
    return proc, json.loads(line)


async def _interrupt(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return int(proc.returncode or 0), err.decode()


async def test_simulate_serves_the_config_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, port2 = free_port(), free_port()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(SITE_YAML.format(port=port, port2=port2), encoding="utf-8")
    proc, info = await _start(str(cfg), "--seed", "5", "--speed", "10")
    try:
        assert info["endpoints"]["b1-bus"] == ["127.0.0.1", port]
        assert info["endpoints"]["b1-rs485"] == ["127.0.0.1", port2]
        assert info["devices"] == 7 and info["seed"] == 5 and info["speed"] == 10
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=4, device_id=1)
        client.close()
        assert not rr.isError()
        energy = struct.unpack(">d", struct.pack(">4H", *rr.registers))[0]
        assert 5_000 <= energy <= 60_000  # a plausible heat meter reading, in kWh
    finally:
        rc, err = await _interrupt(proc)
    assert rc == 0, err
    assert "Traceback" not in err


def _free_offset() -> int:
    """Return an offset that moves the demo's ports 5020 and 5021 to two free ports."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base - 5020
    raise RuntimeError("no two free neighbouring ports")


@pytest.mark.skipif(not DEMO.exists(), reason="the demo site config is not there yet")
async def test_demo_site_runs_under_simulate() -> None:
    offset = _free_offset()
    proc, info = await _start(str(DEMO), "--port-offset", str(offset))
    try:
        assert info["devices"] > 10
        host, port = info["endpoints"]["b1-bus"]
        assert port == 5020 + offset
        client = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
        assert await client.connect()
        rr = await client.read_coils(0, count=1, device_id=11)  # b1.101.valve.open
        client.close()
        assert not rr.isError()
    finally:
        rc, err = await _interrupt(proc)
    assert rc == 0, err


async def test_simulate_reports_config_errors_with_their_location(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(SITE_YAML.format(port=1, port2=2).replace("template: io-box", "template: io-bx"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scada.cli", "simulate", str(cfg),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"{cfg}:" in err.decode() and "io-bx" in err.decode()


async def test_scada_poll_reads_the_simulator(tmp_path: Path) -> None:
    """The project's own driver (``scada poll``) agrees with the model, tag by tag."""
    from drivers.simulator import Simulator
    from tests.drivers.simulator_fixtures import START_TS, load_site_text

    text = SITE_YAML.format(port=free_port(), port2=free_port())
    cfg = tmp_path / "site.yaml"
    cfg.write_text(text, encoding="utf-8")
    site = load_site_text(text, tmp_path)
    sim = Simulator(site, seed=9, start_ts=START_TS, tick_s=None)
    await sim.start()
    try:
        sim.step(3600)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scada.cli", "poll", str(cfg), "--once", "--json",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await sim.stop()
    values = json.loads(out)
    checked = 0
    for device in site.devices:
        for name, point in site.points(device.id).items():
            tag = values[f"{device.id}.{name}"]
            assert tag["quality"] == "good", (device.id, name, tag, err.decode())
            model = sim.value(device.id, name)
            if isinstance(model, (bool, str)):
                assert tag["value"] == model, (device.id, name)
            else:
                tol = max(abs(point.scale) / 2, abs(model) * 1e-6, 1e-6)
                assert abs(tag["value"] - model) <= tol, (device.id, name, tag["value"], model)
            checked += 1
    assert checked > 30
