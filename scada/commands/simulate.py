"""``scada simulate CONFIG``: serve every device of a site from the building simulator.

Each Modbus TCP / RTU-over-TCP channel is served at its configured host and port (or on
``--bind HOST``), each CAN channel on its python-can bus; a ``modbus-rtu`` channel is served
on the serial port given with ``--serial CHANNEL=PATH`` (e.g. one end of a ``socat`` pty
pair). ``--speed`` and ``--seed`` default to the config's ``simulate:`` section.
``--faults FILE`` names a YAML file of device faults, re-read while running, e.g.
``b1.hm: offline`` or ``b1.101.valve: {kind: slow, delay_s: 3}``.

Prints one line per endpoint once listening (``--json``: one JSON object), then runs until
Ctrl-C (or SIGTERM) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING

from scada import loops

if TYPE_CHECKING:
    from scada.config import SiteConfig


def register(sub: argparse._SubParsersAction) -> None:
    from scada.cli import DEFAULT_CONFIG

    parser = sub.add_parser(
        "simulate",
        help="serve a site's devices from the building simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"site configuration (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="simulated seconds per wall-clock second (default: from config, else 1)",
    )
    parser.add_argument(
        "--seed", type=int, help="random seed; same seed, same run (default: from config, else 0)"
    )
    parser.add_argument(
        "--start",
        help="simulated start time (default: now): now, today, -2d or ISO 2025-01-15T06:00, "
        "local time of the site unless an offset is given",
    )
    parser.add_argument(
        "--bind",
        metavar="HOST",
        help="serve every TCP channel on HOST instead of its configured host",
    )
    parser.add_argument(
        "--port-offset", type=int, default=0, metavar="N", help="add N to every TCP port"
    )
    parser.add_argument(
        "--serial",
        action="append",
        default=[],
        metavar="CHANNEL=PATH",
        help="serve modbus-rtu channel CHANNEL on serial port PATH (repeatable)",
    )
    parser.add_argument(
        "--faults", metavar="FILE", help="YAML file of device faults, re-read while running"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the endpoints as one JSON object"
    )
    loops.add_argument(parser)
    parser.set_defaults(func=run)


def _parse_serial(items: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        channel, sep, path = item.partition("=")
        if not sep or not channel or not path:
            raise SystemExit(f"scada simulate: --serial expects CHANNEL=PATH, got {item!r}")
        result[channel] = path
    return result


def run(args: argparse.Namespace) -> int:
    from scada.config import ConfigError, load_site

    try:
        site = load_site(args.config)
    except FileNotFoundError:
        print(f"{args.config}: file not found", file=sys.stderr)
        return 1
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    start_ts = None
    if args.start:
        from scada.commands.times import parse_time

        try:
            start_ts = parse_time(args.start, site.site.timezone, what="--start")
        except ValueError as exc:
            print(f"scada simulate: {exc}", file=sys.stderr)
            return 2
    try:
        return loops.run(_serve(site, args, start_ts), getattr(args, "loop", "auto"))
    except OSError as exc:
        print(f"scada simulate: {exc}", file=sys.stderr)
        return 1


async def _serve(site: SiteConfig, args: argparse.Namespace, start_ts: float | None) -> int:
    from drivers.simulator import Simulator, SimulatorError

    cfg = site.simulate
    speed = args.speed if args.speed is not None else (cfg.speed if cfg.enabled else 1.0)
    seed = args.seed if args.seed is not None else cfg.seed
    try:
        sim = Simulator(
            site,
            speed=speed,
            seed=seed,
            start_ts=start_ts,
            serial_ports=_parse_serial(args.serial),
            bind_host=args.bind,
            port_offset=args.port_offset,
            fault_file=args.faults,
        )
    except SimulatorError as exc:
        print(f"scada simulate: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises KeyboardInterrupt
            loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        endpoints = {
            ch.id: (list(a) if isinstance(a := sim.address(ch.id), tuple) else a)
            for ch in site.channels
            if sim.address(ch.id) is not None
        }
        if args.json:
            print(
                json.dumps(
                    {
                        "devices": len(sim.device_ids()),
                        "speed": speed,
                        "seed": seed,
                        "endpoints": endpoints,
                    }
                )
            )
        else:
            print(
                f"simulating {len(sim.device_ids())} devices of {site.site.id} (speed {speed:g}, seed {seed})"
            )
            for channel, where in endpoints.items():
                shown = f"{where[0]}:{where[1]}" if isinstance(where, list) else where
                print(f"  {channel}: {shown}")
            print("Ctrl-C to stop")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await sim.stop()
    return 0
