"""``scada run [CONFIG]``: start the site (simulator, drivers, historian, ...) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from scada.cli import DEFAULT_CONFIG, add_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start the site runtime (default: the demo site)")
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"site config (default: {DEFAULT_CONFIG})")
    add_data_dir(p)
    sim = p.add_mutually_exclusive_group()
    sim.add_argument("--simulate", dest="simulate", action="store_true", default=None,
                     help="start the building simulator in-process (overrides the config)")
    sim.add_argument("--no-simulate", dest="simulate", action="store_false",
                     help="do not start the simulator even if the config says so")
    p.add_argument("--speed", type=float, default=None, help="simulator time acceleration")
    p.add_argument("--for-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from scada.config import ConfigError, load_site

    try:
        site = load_site(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    return asyncio.run(_serve(site, args))


async def _serve(site, args: argparse.Namespace) -> int:
    from scada.runtime import Runtime

    runtime = Runtime(site, args.data_dir, simulate=args.simulate, speed=args.speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    s = runtime.summary()
    print(f"{site.site.name}: running with {s['tags']} tags on {s['devices']} devices; "
          f"data in {args.data_dir}; Ctrl-C to stop", flush=True)
    try:
        if args.for_seconds is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.for_seconds)
        else:
            await stop.wait()
    finally:
        await runtime.stop()
    print("stopped cleanly", flush=True)
    return 0
