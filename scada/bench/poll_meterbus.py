"""Wire time of a DL/T 645, M-Bus and CJ/T 188 scan: 32 meters over a socat pty pair.

For each protocol the simulator serves 32 meters of the protocol's template on one end of a
``socat`` pty pair and the driver scans them once (``poll_once``) from the other: the bench
counts the requests and the bytes on the wire (wake-up preambles included) and times the scan.
A pty has no baud rate, so the wire time at 2400 and 9600 baud is computed from the bytes
counted, at 11 bits a character (8E1: start, 8 data, parity, stop):

- **driver**: every byte the driver and the meters sent, plus, per request, the meter's
  minimum turnaround and the driver's ``frame_gap_s`` (its silence after each answer);
- **minimum**: the frames alone (no wake-up bytes) plus the standard's gaps only.

The standard's gaps: DL/T 645-2007, a meter answers 20 ms after a request at the earliest
(Td >= 20 ms) and the master may send at once; M-Bus (EN 13757-2), 11 bit times before the
meter's answer and 11 after it; CJ/T 188-2004 uses DL/T 645's link timing (taken as 20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PROTOCOLS", "MeterBusFigures", "meterbus_figures", "socat_pair"]

ROOT = Path(__file__).resolve().parents[2]
BITS_PER_CHAR = 11  # 8E1
METERS = 32


@dataclass(frozen=True, slots=True)
class _Proto:
    template_file: str
    template: str
    #: the standard's minimum silence per request: before the answer, after it (seconds, bits)
    turnaround_s: float = 0.0
    turnaround_bits: int = 0

    def address(self, n: int) -> str:
        if self.template.startswith("mbus"):
            return str(n)
        width = 14 if self.template.startswith("cjt188") else 12
        return f'"{n:0{width}d}"'


PROTOCOLS: dict[str, _Proto] = {
    "dlt645": _Proto("acrel-dlt645.yaml", "acrel-ddsy1352-dlt645", turnaround_s=0.020),
    "mbus": _Proto("mbus-heat.yaml", "mbus-heat-meter", turnaround_bits=22),
    "cjt188": _Proto("cjt188-heat.yaml", "cjt188-heat-meter", turnaround_s=0.020),
}


@dataclass(frozen=True, slots=True)
class MeterBusFigures:
    """One protocol's scan of 32 meters: counts, the pty scan time, wire times by baud."""

    protocol: str
    requests: int
    bytes_on_wire: int
    frame_bytes: int
    frame_gap_s: float
    pty_scan_s: float
    online: int
    driver_s: dict[int, float]
    minimum_s: dict[int, float]


@contextlib.contextmanager
def socat_pair() -> Iterator[tuple[str, str]]:
    """Yield two linked pseudo-terminals made by socat; raise RuntimeError without socat."""
    exe = shutil.which("socat")
    if exe is None:
        raise RuntimeError("socat is not installed (apt-get install -y socat)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pty-"))
    a, b = tmp / "meters", tmp / "driver"
    proc = subprocess.Popen(
        [exe, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # socat logs this once both ptys exist
        if "starting data transfer loop" in line:
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    try:
        yield str(a), str(b)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


def _site_text(protocol: str, port: str) -> str:
    spec = PROTOCOLS[protocol]
    template = (ROOT / "config" / "templates" / spec.template_file).read_text(encoding="utf-8")
    body = template.split("templates:\n", 1)[1]
    devices = "\n".join(
        f"  - {{id: m{n:02d}, template: {spec.template}, channel: bus, address: {spec.address(n)}}}"
        for n in range(1, METERS + 1)
    )
    return (
        f"site: {{id: bench, name: meter-bus bench, timezone: Asia/Shanghai}}\n"
        f"channels:\n  - {{id: bus, protocol: {protocol}, port: {port}, baudrate: 9600,\n"
        f"      timeout_s: 1.0, retries: 1}}\n"
        f"templates:\n{body}\n"
        f"devices:\n{devices}\n"
    )


def wire_s(chars: int, requests: int, baud: int, gap_s: float, gap_bits: int) -> float:
    """Return the seconds ``chars`` characters and ``requests`` times the gaps take at ``baud``."""
    return (chars * BITS_PER_CHAR + requests * gap_bits) / baud + requests * gap_s


async def _scan(protocol: str, bauds: tuple[int, ...]) -> MeterBusFigures:
    from drivers.manager import DriverManager
    from drivers.meterbus import MeterBusDriver
    from drivers.simulator import Simulator
    from scada.config import load_site_text
    from tags.database import TagDatabase

    spec = PROTOCOLS[protocol]
    with socat_pair() as (meters_end, driver_end):
        site = load_site_text(_site_text(protocol, driver_end))
        sim = Simulator(site, seed=1, tick_s=None, serial_ports={"bus": meters_end})
        await sim.start()
        manager = DriverManager(site, TagDatabase(site.tag_defs()))
        try:
            driver = manager.drivers["bus"]
            assert isinstance(driver, MeterBusDriver)
            await driver.connect()
            t0 = time.perf_counter()
            await driver.poll_once()
            pty_s = time.perf_counter() - t0
        finally:
            await manager.stop()
            await sim.stop()
    requests = driver.requests_sent
    on_wire = driver.bytes_sent + driver.bytes_received
    gap = float(driver._gap_s)
    return MeterBusFigures(
        protocol=protocol,
        requests=requests,
        bytes_on_wire=on_wire,
        frame_bytes=driver.frame_bytes,
        frame_gap_s=gap,
        pty_scan_s=pty_s,
        online=sum(1 for st in driver.status.values() if st.online is True),
        driver_s={
            b: wire_s(on_wire, requests, b, spec.turnaround_s + gap, spec.turnaround_bits)
            for b in bauds
        },
        minimum_s={
            b: wire_s(driver.frame_bytes, requests, b, spec.turnaround_s, spec.turnaround_bits)
            for b in bauds
        },
    )


def meterbus_figures(
    protocols: tuple[str, ...] = tuple(PROTOCOLS), bauds: tuple[int, ...] = (2400, 9600)
) -> list[MeterBusFigures]:
    """Scan 32 meters of each protocol over a pty pair; return the figures (needs socat)."""

    async def all_of() -> list[MeterBusFigures]:
        return [await _scan(p, bauds) for p in protocols]

    return asyncio.run(all_of())


def print_figures(figures: list[MeterBusFigures], out: Any = None) -> None:
    """Print the figures as the bench's third part."""
    print(f"Meter buses: {METERS} meters a scan over a socat pty pair; wire time at 11 bits/char")
    for f in figures:
        print(
            f"  {f.protocol:<7}: {f.requests:4d} requests, {f.bytes_on_wire:6d} bytes "
            f"({f.frame_bytes} in frames), {f.online}/{METERS} online, pty scan {f.pty_scan_s:5.2f} s, "
            f"frame_gap_s {f.frame_gap_s:g}",
            file=out,
        )
        for baud in sorted(f.driver_s):
            print(
                f"           {baud:5d} baud: driver {f.driver_s[baud]:6.2f} s, "
                f"minimum {f.minimum_s[baud]:6.2f} s "
                f"({f.driver_s[baud] / f.minimum_s[baud]:.2f}x)",
                file=out,
            )
