"""Scale-out: collectors -> Redis Streams -> one central; changes/s end to end, latency p99.

Each collector is its own process with a real ``TagDatabase`` on a ``RedisBus`` (publisher,
spool, pipelines, stream trimmer: the production path). Its database is fed synthetically,
not by Modbus polls: every round changes every point of every device (``--devices`` x
``--points``) and rounds come every ``--interval`` seconds (0: as fast as possible). One central in this
process consumes with ``XREADGROUP``, applies to its ``TagDatabase``, commits with the Lua
script and acknowledges. Latency is commit time at the central minus publish time at the
collector, per entry. Uses ``--redis URL`` or starts a private ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collectors",
        default="1,2,4",
        help="comma-separated collector counts to measure (default 1,2,4)",
    )
    parser.add_argument("--devices", type=int, default=2500, help="devices per collector")
    parser.add_argument("--points", type=int, default=4, help="points per device")
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="rounds per collector in the saturated run (back to back)",
    )
    parser.add_argument(
        "--paced-rounds",
        type=int,
        default=4,
        help="rounds per collector in the paced run (latency at a steady load)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between rounds of the paced run"
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="use this Redis (it is FLUSHALLed!) instead of a private redis-server",
    )


def _tags(building: str, devices: int, points: int) -> list[str]:
    return [f"{building}.d{i}.p{j}" for i in range(devices) for j in range(points)]


def _collector(
    url: str,
    building: str,
    devices: int,
    points: int,
    rounds: int,
    interval: float,
    spool_dir: str,
    go: Any,
    done: Any,
) -> None:
    """Child process: publish ``rounds`` rounds of changes for one building."""
    asyncio.run(
        _collector_main(url, building, devices, points, rounds, interval, spool_dir, go, done)
    )


async def _collector_main(
    url: str,
    building: str,
    devices: int,
    points: int,
    rounds: int,
    interval: float,
    spool_dir: str,
    go: Any,
    done: Any,
) -> None:
    from scada.scaleout.backlog import BacklogTrimmer
    from scada.scaleout.redis_bus import RedisBus, StreamPublisher
    from scada.scaleout.roles import connect
    from scada.scaleout.spool import Spool
    from scada.scaleout.wire import StreamKeys
    from tags.database import TagDatabase
    from tags.model import TagDef, TagType

    names = _tags(building, devices, points)
    redis = connect(url)
    keys = StreamKeys("bench")
    trimmer = BacklogTrimmer(redis, {keys.changes(building): building}, keys.lost)
    publisher = StreamPublisher(
        redis, Spool(Path(spool_dir) / f"{building}.sqlite"), on_sent=trimmer.note_sent
    )
    bus = RedisBus(publisher, keys, dict.fromkeys(names, building))
    db = TagDatabase([TagDef(n, TagType.FLOAT) for n in names], bus=bus)
    ids = db.ids_of(names)
    base = np.arange(ids.size, dtype=np.float64)
    await publisher.start()
    await trimmer.start()
    await redis.ping()
    done.put(("ready", building))
    await asyncio.to_thread(go.wait)
    start = time.perf_counter()
    for r in range(rounds):
        db.update_many(ids, base + r * 0.5)
        db.flush()
        due = start + (r + 1) * interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    await publisher.wait_idle()
    done.put((building, bus.entries, publisher.spooled))
    await trimmer.stop()
    await publisher.stop()
    await redis.aclose()


async def _measure(url: str, n: int, args: argparse.Namespace, spool_dir: str) -> dict[str, Any]:
    from scada.scaleout.central import Central
    from scada.scaleout.roles import connect
    from scada.scaleout.wire import StreamKeys
    from tags.database import TagDatabase
    from tags.model import TagDef, TagType

    admin = connect(url)
    await admin.flushall()
    buildings = [f"b{k}" for k in range(n)]
    tag_building = {t: b for b in buildings for t in _tags(b, args.devices, args.points)}
    db = TagDatabase([TagDef(t, TagType.FLOAT) for t in tag_building])
    central = Central(
        connect(url), StreamKeys("bench"), db, tag_building, offline_after_s=None, count=50
    )
    central.keep_latencies = True
    first_commit: list[float] = []
    central.on_commit = lambda *_: first_commit.append(time.time()) if not first_commit else None
    await central.start()
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_collector,
            args=(
                url,
                b,
                args.devices,
                args.points,
                args.rounds,
                args.interval,
                spool_dir,
                go,
                done,
            ),
        )
        for b in buildings
    ]
    for p in procs:
        p.start()
    for _ in procs:  # wait until every child has connected
        await asyncio.to_thread(done.get, True, 120)
    expected = n * args.rounds * args.devices * args.points
    t0 = time.time()
    go.set()
    try:
        await asyncio.wait_for(
            central.wait_until(lambda: central.applied_records >= expected), 60 + 10 * args.rounds
        )
        t1 = time.time()
        for _ in procs:  # each child reports (building, entries, spooled) when done
            await asyncio.to_thread(done.get, True, 60)
    finally:
        t1 = locals().get("t1", time.time())
        for p in procs:
            await asyncio.to_thread(p.join, 30)
        await central.stop()
        await central.redis.aclose()
        await admin.aclose()
    lat = np.asarray(central.latencies) * 1000.0
    return {
        "collectors": n,
        "records": central.applied_records,
        "entries": central.applied_entries,
        "seconds": t1 - t0,
        "rate": central.applied_records / (t1 - t0),
        "offered": (n * args.devices * args.points / args.interval) if args.interval else None,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
    }


def _private_redis(directory: Path) -> tuple[subprocess.Popen[str], str]:
    import socket

    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("scada bench scaleout: redis-server not found; pass --redis URL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            return proc, f"redis://127.0.0.1:{port}/0"
    raise SystemExit("scada bench scaleout: redis-server did not start")


def run(args: argparse.Namespace) -> int:
    counts = [int(c) for c in args.collectors.split(",") if c]
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        url = args.redis
        if url is None:
            proc, url = _private_redis(Path(tmp))
        try:
            print(
                f"scale-out bench: {args.devices} devices x {args.points} points per collector; "
                "collector databases fed synthetically (every point changes every round; no "
                f"Modbus polling); Redis at {url}",
                flush=True,
            )
            print(
                f"saturated: {args.rounds} rounds back to back; paced: {args.paced_rounds} rounds "
                f"every {args.interval:g} s"
            )
            print(
                f"{'collectors':>10} | {'saturated changes/s':>19} {'p99 ms':>8} | "
                f"{'paced offered/s':>15} {'p50 ms':>7} {'p99 ms':>7}"
            )
            for n in counts:
                sat = asyncio.run(
                    _measure(url, n, argparse.Namespace(**{**vars(args), "interval": 0.0}), tmp)
                )
                paced = asyncio.run(
                    _measure(
                        url,
                        n,
                        argparse.Namespace(**{**vars(args), "rounds": args.paced_rounds}),
                        tmp,
                    )
                )
                print(
                    f"{n:>10} | {sat['rate']:>19.0f} {sat['p99_ms']:>8.0f} | "
                    f"{paced['offered']:>15.0f} {paced['p50_ms']:>7.1f} {paced['p99_ms']:>7.1f}",
                    flush=True,
                )
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
    return 0
