"""Poll planner and driver throughput: planned vs per-point polling, RS-485 wire time.

Part 1 serves ``--devices`` simulated meters of ``--points`` points each with pymodbus
servers on loopback (at most 247 unit ids per port) and scans them all once with the
planned driver (``DriverManager.poll_once``) and once with a naive poller that sends one
request per point, in the same run: requests per scan and scan time.

Part 2 computes, from Modbus RTU frame sizes, the wire time of one planned scan of a
32-meter RS-485 bus at 9600 baud (1.042 ms per character, 3.5-character silent gaps)
against the theoretical minimum (one request per device and register table, reading
exactly the points' registers) and against per-point polling.

Part 3 (:mod:`scada.bench.poll_meterbus`) scans 32 simulated DL/T 645, M-Bus and CJ/T 188
meters over a socat pty pair and prints the wire time per scan at 2400 and 9600 baud against
the protocol's minimum. ``--meterbus-only`` runs part 3 alone; ``--no-meterbus`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scada.config import SiteConfig
    from tags.database import TagDatabase

__all__ = ["add_arguments", "meter_points", "run", "wire_time_s"]

UNITS_PER_PORT = 200  # <= 247 unit ids per Modbus endpoint
CHAR_S = 10 / 9600  # 8N1: 10 bits per character at 9600 baud = 1.042 ms
GAP_CHARS = 3.5


def meter_points(n: int = 20) -> dict[str, dict[str, Any]]:
    """Return a realistic electricity-meter point map of ``n`` points (gaps as in real maps)."""
    points: dict[str, dict[str, Any]] = {}
    layout: list[tuple[str, dict[str, Any]]] = [
        ("energy_kwh", {"type": "float32"}),
        ("energy_sharp_kwh", {"type": "float32"}),
        ("energy_peak_kwh", {"type": "float32"}),
        ("energy_flat_kwh", {"type": "float32"}),
        ("energy_valley_kwh", {"type": "float32"}),
        ("power_kw", {"type": "float32"}),
        ("voltage_a_v", {"type": "uint16", "scale": 0.1}),
        ("voltage_b_v", {"type": "uint16", "scale": 0.1}),
        ("voltage_c_v", {"type": "uint16", "scale": 0.1}),
        ("current_a_a", {"type": "int16", "scale": 0.01}),
        ("current_b_a", {"type": "int16", "scale": 0.01}),
        ("current_c_a", {"type": "int16", "scale": 0.01}),
        ("power_factor", {"type": "int16", "scale": 0.001}),
        ("frequency_hz", {"type": "uint16", "scale": 0.01}),
        ("relay_state", {"type": "uint16"}),
        ("balance", {"type": "int32", "scale": 0.01, "gap": 1}),
        ("alarm_level", {"type": "uint16", "gap": 2}),
        ("serial", {"type": "str", "count": 4, "gap": 4}),
    ]
    widths = {"float32": 2, "int32": 2, "uint16": 1, "int16": 1}
    addr = 0
    for name, spec in layout[: max(0, n - 2)]:
        spec = dict(spec)
        addr += spec.pop("gap", 0)
        points[name] = {"address": addr, "kind": "holding", **spec}
        addr += spec.get("count", 0) if spec["type"] == "str" else widths[spec["type"]]
    extra = 0
    while len(points) < n:  # meter temperature and status word live in input registers
        points[f"input_{extra}"] = {
            "address": extra,
            "kind": "input",
            "type": "int16",
            "scale": 0.1,
        }
        extra += 1
    return points


def site_data(devices: int, points: int, base_port: int) -> dict[str, Any]:
    """Return a site config (as data) with ``devices`` meters on loopback TCP channels."""
    ports = math.ceil(devices / UNITS_PER_PORT)
    return {
        "site": {"id": "bench", "name": "poll bench"},
        "channels": [
            {
                "id": f"ch{i}",
                "protocol": "modbus-tcp",
                "host": "127.0.0.1",
                "port": base_port + i,
                "timeout_s": 5.0,
                "retries": 3,
                "poll_s": 10,
                "max_gap": 8,
            }
            for i in range(ports)
        ],
        "templates": {"meter": {"points": meter_points(points)}},
        "devices": [
            {
                "id": f"m{i:04d}",
                "template": "meter",
                "channel": f"ch{i // UNITS_PER_PORT}",
                "unit": 1 + i % UNITS_PER_PORT,
            }
            for i in range(devices)
        ],
    }


def _frame_chars(kind: str, count: int) -> float:
    """Characters on the wire for one RTU read transaction, gaps included."""
    request = 8  # unit, fc, start(2), count(2), crc(2)
    data = 2 * count if kind in ("holding", "input") else math.ceil(count / 8)
    response = 5 + data  # unit, fc, byte count, data, crc(2)
    return request + GAP_CHARS + response + GAP_CHARS


def wire_time_s(reads: list[tuple[str, int]]) -> float:
    """Return the wire time of RTU reads ``[(kind, count), ...]`` at 9600 baud 8N1."""
    return sum(_frame_chars(k, c) for k, c in reads) * CHAR_S


def rs485_figures(meters: int = 32, points: int = 20, max_gap: int = 8) -> dict[str, float]:
    """Return wire times of one scan of an RS-485 bus: planned, minimum, per point."""
    from drivers.codec import PointSpec
    from drivers.plan import plan_device

    specs = {name: PointSpec.of(p, name=name) for name, p in meter_points(points).items()}
    planned = plan_device("m", 1, specs, 10.0, max_gap=max_gap, max_gap_bits=max_gap)
    per_device = [(r.kind.value, r.count) for r in planned]
    kinds: dict[str, int] = {}
    for s in specs.values():
        kinds[s.kind.value] = kinds.get(s.kind.value, 0) + s.width
    minimum = [(k, c) for k, c in kinds.items()]  # one request per table, no gap registers
    naive = [(s.kind.value, s.width) for s in specs.values()]
    return {
        "planned_s": meters * wire_time_s(per_device),
        "minimum_s": meters * wire_time_s(minimum),
        "per_point_s": meters * wire_time_s(naive),
        "requests_planned": meters * len(per_device),
        "requests_per_point": meters * len(naive),
    }


async def _serve(site: SiteConfig) -> list[Any]:
    """Start one stock pymodbus TCP server per channel with every meter's registers filled."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from drivers.codec import PointSpec, encode_point
    from drivers.config import ModbusTcpChannel

    rng = np.random.default_rng(1)
    servers = []
    for ch in site.channels:
        if not isinstance(ch, ModbusTcpChannel):
            raise ValueError(f"channel {ch.id}: the bench serves Modbus TCP channels only")
        devices = []
        for d in site.devices_on(ch.id):
            regs = {"holding": [0] * 64, "input": [0] * 16}
            for name, p in site.points(d.id).items():
                spec = PointSpec.of(p, name=name)
                value: Any = (
                    f"SN{int(rng.integers(1_000_000)):06d}"
                    if spec.is_str
                    else float(rng.integers(0, 30))
                )
                regs[spec.kind.value][spec.address : spec.end] = encode_point(spec, value)
            devices.append(
                SimDevice(
                    d.unit,
                    simdata=(
                        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                        [SimData(0, values=regs["holding"], datatype=DataType.REGISTERS)],
                        [SimData(0, values=regs["input"], datatype=DataType.REGISTERS)],
                    ),
                )
            )
        server = ModbusTcpServer(devices, address=(ch.host, ch.port))
        await server.serve_forever(background=True)
        servers.append(server)
    return servers


async def _naive_scan(site: SiteConfig, db: TagDatabase) -> int:
    """Poll every point with its own request (one client per channel); return requests sent."""
    from pymodbus.client import AsyncModbusTcpClient

    from drivers.codec import PointSpec, decode_point
    from tags.model import Quality

    async def channel_scan(ch: Any) -> int:
        client = AsyncModbusTcpClient(
            ch.host, port=ch.port, timeout=ch.timeout_s, retries=0, reconnect_delay=0
        )
        await client.connect()
        sent = 0
        try:
            for d in site.devices_on(ch.id):
                for name, p in site.points(d.id).items():
                    spec = PointSpec.of(p, name=name)
                    read = (
                        client.read_holding_registers
                        if spec.kind.value == "holding"
                        else client.read_input_registers
                    )
                    rr = await read(spec.address, count=spec.width, device_id=d.unit)
                    sent += 1
                    db.update(f"{d.id}.{name}", decode_point(spec, rr.registers), Quality.GOOD)
        finally:
            client.close()
        return sent

    return sum(await asyncio.gather(*(channel_scan(ch) for ch in site.channels)))


async def _bench(devices: int, points: int, base_port: int) -> dict[str, float]:
    import yaml

    from drivers.manager import DriverManager
    from scada.config import load_site_text
    from tags.database import TagDatabase

    site = load_site_text(yaml.safe_dump(site_data(devices, points, base_port), sort_keys=False))
    servers = await _serve(site)
    try:
        db = TagDatabase(site.tag_defs())
        manager = DriverManager(site, db)
        t0 = time.perf_counter()
        await manager.poll_once()
        planned_s = time.perf_counter() - t0
        planned_requests = sum(d.requests_sent for d in manager.drivers.values())  # type: ignore[attr-defined]  # the bench site is Modbus only
        offline = [
            dev
            for drv in manager.drivers.values()
            for dev, st in drv.status.items()  # type: ignore[attr-defined]  # not in the Driver protocol
            if st.online is not True
        ]
        await manager.stop()
        db2 = TagDatabase(site.tag_defs())
        t0 = time.perf_counter()
        naive_requests = await _naive_scan(site, db2)
        naive_s = time.perf_counter() - t0
        mismatched = sum(
            1
            for name in db.names
            if name.endswith(("_kwh", "_v", "balance"))
            and db.read(name).value != db2.read(name).value
        )
    finally:
        for s in servers:
            await s.shutdown()
    return {
        "planned_requests": planned_requests,
        "planned_s": planned_s,
        "naive_requests": naive_requests,
        "naive_s": naive_s,
        "offline": len(offline),
        "mismatched": mismatched,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=1000, help="simulated meters (default 1000)")
    parser.add_argument("--points", type=int, default=20, help="points per meter (default 20)")
    parser.add_argument(
        "--base-port", type=int, default=15020, help="first loopback port (one per 200 meters)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--meterbus-only",
        action="store_true",
        help="only the DL/T 645 / M-Bus / CJ/T 188 wire times (32 meters over a pty pair)",
    )
    group.add_argument(
        "--no-meterbus", action="store_true", help="skip the meter-bus wire times (needs socat)"
    )


def _meterbus() -> bool:
    """Run and print part 3; return whether every meter answered."""
    from scada.bench.poll_meterbus import METERS, meterbus_figures, print_figures

    try:
        figures = meterbus_figures()
    except RuntimeError as exc:  # no socat
        print(f"Meter buses: skipped: {exc}")
        return True
    print_figures(figures)
    return all(f.online == METERS for f in figures)


def run(args: argparse.Namespace) -> int:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.meterbus_only:
        return 0 if _meterbus() else 1
    r = asyncio.run(_bench(args.devices, args.points, args.base_port))
    ports = math.ceil(args.devices / UNITS_PER_PORT)
    print(
        f"poll bench: {args.devices} meters x {args.points} points over {ports} loopback TCP ports"
    )
    print(
        f"  planned   : {r['planned_requests']:>7.0f} requests/scan  {r['planned_s']:7.2f} s/scan"
    )
    print(f"  per point : {r['naive_requests']:>7.0f} requests/scan  {r['naive_s']:7.2f} s/scan")
    ratio = r["naive_requests"] / max(1, r["planned_requests"])
    print(
        f"  ratio     : {ratio:.1f}x fewer requests (goal >= 10x), {r['naive_s'] / r['planned_s']:.1f}x faster scan"
    )
    if r["offline"] or r["mismatched"]:
        print(
            f"  WARNING: {r['offline']:.0f} devices did not answer, {r['mismatched']:.0f} values differ"
        )
    w = rs485_figures(32, args.points)
    print("RS-485 bus: 32 meters at 9600 baud (1.042 ms/char, 3.5-char gaps), wire time per scan")
    print(
        f"  planned   : {w['planned_s']:6.2f} s  ({w['requests_planned']:.0f} requests; goal <= 10 s)"
    )
    print(f"  minimum   : {w['minimum_s']:6.2f} s  (one request per table, no gap registers)")
    print(f"  per point : {w['per_point_s']:6.2f} s  ({w['requests_per_point']:.0f} requests)")
    ok = ratio >= 10 and w["planned_s"] <= 10 and not r["offline"]
    meters_ok = True if args.no_meterbus else _meterbus()
    return 0 if ok and meters_ok else 1
