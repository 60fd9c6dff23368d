"""``scada run [CONFIG]``: start the site (simulator, drivers, historian, ...) until Ctrl-C.

The server's address is checked first: a port in use is reported (with ``HOST:PORT``) before
the minutes a first start can spend simulating history.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
from typing import TYPE_CHECKING

from scada import loops
from scada.cli import DEFAULT_CONFIG, add_data_dir

if TYPE_CHECKING:
    from scada.config import SiteConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start the site runtime (default: the demo site)")
    p.add_argument(
        "config", nargs="?", default=DEFAULT_CONFIG, help=f"site config (default: {DEFAULT_CONFIG})"
    )
    add_data_dir(p)
    sim = p.add_mutually_exclusive_group()
    sim.add_argument(
        "--simulate",
        dest="simulate",
        action="store_true",
        default=None,
        help="start the building simulator in-process (overrides the config)",
    )
    sim.add_argument(
        "--no-simulate",
        dest="simulate",
        action="store_false",
        help="do not start the simulator even if the config says so",
    )
    p.add_argument("--speed", type=float, default=None, help="simulator time acceleration")
    p.add_argument("--for-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--role",
        choices=("all", "collector", "central"),
        default="all",
        help="all: everything in this process (default); collector: drivers of "
        "--buildings publishing to Redis; central: fed from Redis",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("SCADA_REDIS"),
        help="Redis URL for the collector/central roles, e.g. redis://redis:6379/0 "
        "(default: $SCADA_REDIS)",
    )
    p.add_argument(
        "--buildings",
        metavar="IDS",
        type=lambda v: [b for b in v.split(",") if b],
        default=None,
        help="collector: comma-separated building ids (default: all)",
    )
    p.add_argument(
        "--node-id",
        default=None,
        help="name of this collector/central in the Redis consumer groups",
    )
    p.add_argument(
        "--backlog-max-entries",
        type=int,
        default=5_000_000,
        help="collector: hard cap of each building stream in entries while the central has "
        "not acknowledged them (default 5000000; drops beyond it are counted and logged)",
    )
    p.add_argument(
        "--backlog-max-mb",
        type=float,
        default=2048.0,
        help="collector: Redis memory budget of each building stream in MiB (default 2048)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the server listens on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port of the server: REST, websocket, metrics, HMI (default 8080; 0: any free)",
    )
    p.add_argument(
        "--ws-batch-ms",
        type=float,
        default=50.0,
        help="websocket batching step: the shortest time between two changes messages "
        "to a client (default 50; 10 to 100)",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=None,
        metavar="ADDR",
        help="a reverse proxy (address or network, repeatable) whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed: client addresses in the audit log and "
        "the login rate limit, Secure cookies when it ends TLS",
    )
    p.add_argument("--tls-cert", default=None, help="TLS certificate (PEM) to serve HTTPS")
    p.add_argument("--tls-key", default=None, help="TLS private key (PEM) of --tls-cert")
    loops.add_argument(p)
    p.set_defaults(func=main)


SWITCH_INTERVAL_S = 0.0005  # see main()


def main(args: argparse.Namespace) -> int:
    from scada.config import ConfigError, load_site

    try:
        site = load_site(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    for warning in site.warnings():  # secrets written inline
        print(warning, file=sys.stderr)
    # The event loop thread gives up the GIL at every socket call (thousands a second on a
    # large estate). While a worker thread (the historian writer, a report) runs Python code,
    # taking it back waits for that thread's switch interval: 5 ms by default, which made
    # each flush of the historian a stall of the whole loop. 0.5 ms bounds that wait.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return loops.run(_serve(site, args), getattr(args, "loop", "auto"))


async def _serve(site: SiteConfig, args: argparse.Namespace) -> int:
    from configbase.bulk import paused_gc
    from scada.runtime import Runtime
    from scada.scaleout.backlog import BacklogPolicy

    try:
        backlog = BacklogPolicy(
            max_entries=getattr(args, "backlog_max_entries", 5_000_000),
            max_bytes=int(getattr(args, "backlog_max_mb", 2048.0) * 1024 * 1024),
        )
        with paused_gc():  # a large estate's tag database and services: no GC passes
            runtime = Runtime(
                site,
                args.data_dir,
                simulate=args.simulate,
                speed=args.speed,
                role=getattr(args, "role", "all"),
                buildings=getattr(args, "buildings", None),
                redis_url=getattr(args, "redis", None),
                node_id=getattr(args, "node_id", None),
                serve=getattr(args, "role", "all") != "collector",
                host=args.host,
                port=args.port,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                ws_batch_s=args.ws_batch_ms / 1000,
                trusted_proxies=args.trusted_proxy,
                backlog=backlog,
            )
    except ValueError as exc:
        print(f"scada run: {exc}", file=sys.stderr)
        return 2
    if runtime.serve:
        taken = _cannot_listen(args.host, args.port)
        if taken is not None:
            print(f"scada run: {taken}", file=sys.stderr)
            return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    from scada.backup import BackupError

    if runtime.simulate and site.simulate.backfill_days > 0:
        print(
            f"simulating up to {site.simulate.backfill_days:g} days of history first ...",
            flush=True,
        )
    try:
        await runtime.start()
    except (OSError, BackupError) as exc:  # e.g. the server's port is taken, data dir in use
        where = f" ({_address(args.host, args.port)})" if _in_use(exc) else ""
        print(f"scada run: cannot start: {exc}{where}", file=sys.stderr)
        return 1
    s = runtime.summary()
    print(
        f"{site.site.name}: running with {s['tags']} tags on {s['devices']} devices; "
        f"data in {args.data_dir}; Ctrl-C to stop",
        flush=True,
    )
    filled = runtime.backfill_result
    if filled is not None:
        print(
            f"history: {filled.samples:,} simulated samples of {filled.tags} tags written "
            f"in {filled.elapsed_s:.1f} s",
            flush=True,
        )
    if runtime.server is not None:
        print(f"serving {runtime.server.url} (API: /api/openapi.json, websocket: /ws)", flush=True)
        if runtime.server.setup_token:
            print(
                f"no admin user yet: open {runtime.server.url}/setup and enter the one-time "
                f"setup token {runtime.server.setup_token}\n(or: scada user add "
                f"{args.config} NAME --role admin --password-stdin --data-dir {args.data_dir})",
                flush=True,
            )
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


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _in_use(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE


def _cannot_listen(host: str, port: int) -> str | None:
    """Return why the server cannot listen on ``host:port`` now, or None if it can.

    Binds the sockets the server will bind (tornado's ``bind_sockets``, same options) and
    closes them again; port 0 (any free port) always can.
    """
    from tornado.netutil import bind_sockets

    if port == 0:
        return None
    try:
        sockets = bind_sockets(port, host or None)
    except OSError as exc:
        hint = " (is another `scada run` serving there? choose another with --port)"
        return f"cannot listen on {_address(host, port)}: {exc.strerror or exc}" + (
            hint if _in_use(exc) else ""
        )
    for sock in sockets:
        sock.close()
    return None
