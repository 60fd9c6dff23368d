"""Exactly-once at the central across a crash, and no loss across a Redis outage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from scada.runtime import Runtime
from scada.scaleout.central import CENTRAL_GROUP, Central
from scada.scaleout.redis_bus import RedisBus, StreamPublisher
from scada.scaleout.roles import connect
from scada.scaleout.spool import Spool
from scada.scaleout.wire import KIND_HEARTBEAT, StreamKeys, decode_entry
from tags.database import TagDatabase
from tags.model import Quality, TagDef, TagType
from tests.scada.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.scada.scaleout_site import all_good, load, wait_for

KEYS = StreamKeys("crash")
BUILDINGS = ["b1", "b2", "b3"]
TAGS = [f"{b}.m{i}.energy_kwh" for b in BUILDINGS for i in range(20)]


class Crash(Exception):
    """Stands for the process dying between applying entries and committing them."""


class CrashingCentral(Central):
    """A central that dies just before its ``commits``-th commit (after applying to its db)."""

    def __init__(self, *args: Any, commits: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits_left = commits

    async def _commit(self, keys: list[str], args: list[Any]) -> bool:
        if self.commits_left == 0:
            raise Crash
        self.commits_left -= 1
        return await super()._commit(keys, args)


def _collector_db(publisher: StreamPublisher) -> tuple[TagDatabase, RedisBus]:
    bus = RedisBus(publisher, KEYS, {t: t.split(".")[0] for t in TAGS})
    db = TagDatabase([TagDef(t, TagType.FLOAT) for t in TAGS], bus=bus)
    return db, bus


def _central_db() -> TagDatabase:
    return TagDatabase([TagDef(t, TagType.FLOAT) for t in TAGS])


def _publish_rounds(db: TagDatabase, first: int, rounds: int) -> None:
    ids = db.ids_of(TAGS)
    for r in range(first, first + rounds):
        # a different subset each round so entries differ in size and content
        sel = ids[(np.arange(ids.size) % 3) != (r % 3)]
        db.update_many(sel, np.full(sel.size, float(r)), ts=1_700_000_000.0 + r)
        db.flush()


async def _stats(redis: Redis) -> dict[str, int]:
    raw = await redis.hgetall(KEYS.stats(CENTRAL_GROUP))
    return {k.decode(): int(v) for k, v in raw.items()}


@pytest.mark.parametrize("successor", ["central-1", "central-2"])
async def test_a_central_crash_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    successor: str,
) -> None:
    """``central-1`` restarts as itself (own pending entries) or ``central-2`` takes over (claim)."""
    redis = connect(redis_server.url)
    publisher = StreamPublisher(redis, Spool(tmp_path / "spool.sqlite"), pipeline_entries=7)
    cdb, bus = _collector_db(publisher)
    tag_building = bus.tag_building
    await publisher.start()
    first = CrashingCentral(
        connect(redis_server.url),
        KEYS,
        _central_db(),
        tag_building,
        consumer="central-1",
        count=4,
        commits=5,
        offline_after_s=None,
    )
    try:
        await first.start()
        _publish_rounds(cdb, 0, 30)
        await publisher.wait_idle()
        with pytest.raises(Crash):
            await asyncio.wait_for(
                first._task, 20
            )  # it died mid-stream with entries read but not committed
        assert 0 < first.applied_entries < bus.entries
        pending = 0
        for b in BUILDINGS:
            pending += (await redis.xpending(KEYS.changes(b), CENTRAL_GROUP))["pending"]
        assert pending > 0
        _publish_rounds(cdb, 30, 20)  # more changes arrive while no central runs
        await publisher.wait_idle()

        second = Central(
            connect(redis_server.url),
            KEYS,
            _central_db(),
            tag_building,
            consumer=successor,
            claim_idle_ms=0,
            count=4,
            offline_after_s=None,
        )
        changes: list[tuple[str, float]] = []
        second.db.subscribe("*", lambda b: changes.extend((n, tv.ts) for n, tv in b.items()))
        await second.start()
        await asyncio.wait_for(
            second.wait_until(
                lambda: first.applied_entries + second.applied_entries >= bus.entries
            ),
            20,
        )
        stats = await _stats(redis)
        # every entry committed exactly once, over both lives of the central
        assert sum(stats[f"{b}:entries"] for b in BUILDINGS) == bus.entries
        assert first.applied_entries + second.applied_entries == bus.entries
        assert sum(stats[f"{b}:records"] for b in BUILDINGS) == sum(
            len(e) for e in await _all_entries(redis)
        )
        if successor == "central-2":
            assert second.claimed == pending
        # the successor's database equals the collector's, and saw each (tag, ts) once
        for name in TAGS:
            assert second.db.read(name) == cdb.read(name), name
        assert len(changes) == len(set(changes))
        # nothing left pending
        for b in BUILDINGS:
            assert (await redis.xpending(KEYS.changes(b), CENTRAL_GROUP))["pending"] == 0
        await second.stop()
        await second.redis.aclose()
    finally:
        await publisher.stop()
        await first.stop()
        await first.redis.aclose()
        await redis.aclose()


async def _all_entries(redis: Redis) -> list[list[str]]:
    """Return the names of every data entry in every stream (decoded)."""
    result = []
    for b in BUILDINGS:
        for _id, fields in await redis.xrange(KEYS.changes(b)):
            entry = decode_entry(fields[b"p"])
            if entry.kind != KIND_HEARTBEAT:
                result.append(entry.names)
    return result


async def test_duplicated_entries_from_a_replayed_pipeline_are_applied_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis = connect(redis_server.url)
    publisher = StreamPublisher(redis, Spool(tmp_path / "spool.sqlite"))
    cdb, bus = _collector_db(publisher)
    await publisher.start()
    central = Central(
        connect(redis_server.url), KEYS, _central_db(), bus.tag_building, offline_after_s=None
    )
    try:
        _publish_rounds(cdb, 0, 3)
        await publisher.wait_idle()
        # a pipeline that broke after Redis took some entries is replayed from the spool:
        # the same (epoch, seq) appears twice in the stream
        stream = KEYS.changes("b1")
        _id, fields = (await redis.xrange(stream))[1]
        await redis.xadd(stream, fields)
        await central.start()
        await asyncio.wait_for(
            central.wait_until(lambda: central.applied_entries >= bus.entries), 20
        )
        assert central.applied_entries == bus.entries
        assert central.duplicates == 1
        assert (await _stats(redis))["b1:entries"] == bus.entries // len(BUILDINGS)
    finally:
        await central.stop()
        await central.redis.aclose()
        await publisher.stop()
        await redis.aclose()


async def test_a_redis_outage_under_a_running_collector_loses_no_change(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    site = load(tmp_path)
    central = Runtime(site, tmp_path / "central", role="central", redis_url=redis_server.url)
    collector = Runtime(
        site,
        tmp_path / "c1",
        role="collector",
        buildings=["b1"],
        redis_url=redis_server.url,
        simulate=True,
    )
    seen: list[tuple[str, Any, int, int, float]] = []
    collector.db.subscribe(
        "*",
        lambda b: seen.extend(
            (n, tv.value, int(tv.quality), int(tv.reason), tv.ts) for n, tv in b.items()
        ),
    )
    watched = ["b1.hm.energy_kwh", "b1.101.valve.room_c"]
    await central.start()
    await collector.start()
    publisher = collector.scaleout.publisher
    try:
        await wait_for(central.db, watched, all_good(watched))
        await asyncio.to_thread(redis_server.stop)
        await publisher.wait_link(False)
        # the collector keeps polling: wait for several more change batches, all spooled
        more = asyncio.Event()
        count = len(seen)
        unsubscribe = collector.db.subscribe(
            "*", lambda _b: more.set() if publisher.spooled and len(seen) > count + 20 else None
        )
        await asyncio.wait_for(more.wait(), 20)
        unsubscribe()
        assert publisher.spooled > 0 and len(publisher.spool) > 0
        await asyncio.to_thread(redis_server.start)
        await publisher.wait_link(True)
        await asyncio.wait_for(publisher.wait_idle(), 20)
        # stop the source, send the last changes, let the central catch up
        await collector.drivers.stop()
        await collector.simulator.stop()
        collector.db.flush()
        await publisher.wait_idle()
        consumer = central.scaleout.central
        await asyncio.wait_for(
            consumer.wait_until(lambda: consumer.applied_entries >= collector.scaleout.bus.entries),
            20,
        )
        assert consumer.applied_entries == collector.scaleout.bus.entries
        # the stream holds every change the collector published, once, in order
        streamed: list[tuple[str, Any, int, int, float]] = []
        keys = collector.scaleout.keys
        sources: set[tuple[str, int]] = set()
        for _id, fields in await consumer.redis.xrange(keys.changes("b1")):
            entry = decode_entry(fields[b"p"])
            if entry.kind == KIND_HEARTBEAT or (entry.epoch, entry.seq) in sources:
                continue
            sources.add((entry.epoch, entry.seq))
            streamed.extend(
                zip(entry.names, entry.values, entry.quality, entry.reason, entry.ts, strict=True)
            )
        assert streamed == [(n, _plain(v), q, r, t) for n, v, q, r, t in seen]
        for name, value in collector.db.snapshot("*").items():
            assert central.db.read(name) == value, name
        assert (
            json.loads(await consumer.redis.hget(keys.current, "b1.hm.energy_kwh"))[0]
            == collector.db.read("b1.hm.energy_kwh").value
        )
        assert central.db.read("b1.hm.energy_kwh").quality is Quality.GOOD
    finally:
        await collector.stop()
        await central.stop()


def _plain(value: Any) -> Any:
    """Return ``value`` as it travels in JSON (bools and ints as float in numeric rows)."""
    return float(value) if isinstance(value, bool | int) else value
