"""A long central outage loses no change; the streams are trimmed to what is unacknowledged.

Real ``redis-server`` (fixture), real publisher, trimmer and central. The old collector
capped each stream with ``XADD MAXLEN ~ N``: a central away for more than N entries lost
the oldest. These tests publish five times the scale of such a cap while no central
reads, then let the central catch up.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scada.cli import main as cli_main
from scada.runtime import Runtime
from scada.scaleout.backlog import (
    ENTRY_OVERHEAD_BYTES,
    Backlog,
    BacklogPolicy,
    BacklogTrimmer,
    backlog_tag_defs,
    backlog_tag_names,
)
from scada.scaleout.central import CENTRAL_GROUP, Central
from scada.scaleout.redis_bus import RedisBus, StreamPublisher
from scada.scaleout.roles import CentralRole, CollectorRole, connect, filter_site
from scada.scaleout.spool import Spool
from scada.scaleout.wire import StreamKeys
from tags.database import TagDatabase
from tags.model import TagDef, TagType
from tests.scada.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.scada.scaleout_site import load, wait_for

KEYS = StreamKeys("outage")
BUILDINGS = ["b1", "b2"]
TAGS = [f"{b}.m{i}.energy_kwh" for b in BUILDINGS for i in range(10)]
TAG_BUILDING = {t: t.split(".")[0] for t in TAGS}
OLD_CAP = 1_000  # what ``XADD MAXLEN ~`` would have kept, scaled down for the test
ROUNDS = 5 * OLD_CAP
NODE_SLACK = 100  # stream-node-max-entries: approximate trimming keeps at most one node


class Collector:
    """A collector's database, bus, publisher and trimmer (the CollectorRole parts)."""

    def __init__(self, url: str, spool: Path, policy: BacklogPolicy) -> None:
        self.redis = connect(url)
        self.states: list[Backlog] = []
        self.trimmer = BacklogTrimmer(
            self.redis,
            {KEYS.changes(b): b for b in BUILDINGS},
            KEYS.lost,
            policy,
            on_status=self.states.append,
        )
        self.publisher = StreamPublisher(
            self.redis, Spool(spool), pipeline_entries=50, on_sent=self.trimmer.note_sent
        )
        self.bus = RedisBus(self.publisher, KEYS, TAG_BUILDING)
        self.db = TagDatabase([TagDef(t, TagType.FLOAT) for t in TAGS], bus=self.bus)
        self.ids = self.db.ids_of(TAGS)

    async def __aenter__(self) -> Collector:
        await self.publisher.start()
        await self.trimmer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.trimmer.stop()
        await self.publisher.stop()
        await self.redis.aclose()

    async def publish_rounds(self, first: int, rounds: int) -> None:
        """Set every tag to ``r`` in round ``r`` (one entry per building per round)."""
        for r in range(first, first + rounds):
            self.db.update_many(self.ids, np.full(self.ids.size, float(r)), ts=1.7e9 + r)
            self.db.flush()
            if r % 500 == 0:
                await asyncio.sleep(0)  # let the publisher and the trimmer run meanwhile
        await self.publisher.wait_idle()


def _central(url: str) -> Central:
    db = TagDatabase([TagDef(t, TagType.FLOAT) for t in TAGS])
    return Central(connect(url), KEYS, db, TAG_BUILDING, count=200, offline_after_s=None)


async def _stop(central: Central) -> None:
    await central.stop()
    await central.redis.aclose()


async def test_a_long_central_outage_loses_nothing_and_the_acknowledged_part_is_trimmed(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    policy = BacklogPolicy(max_entries=20 * OLD_CAP, trim_interval_s=0.02)
    async with Collector(redis_server.url, tmp_path / "spool.sqlite", policy) as col:
        first = _central(redis_server.url)
        await first.start()
        await col.publish_rounds(0, 100)
        await asyncio.wait_for(first.wait_until(lambda: first.applied_entries >= 200), 30)
        await _stop(first)  # the central goes away for a long time

        passes = col.trimmer.passes
        await col.publish_rounds(100, ROUNDS)
        await col.trimmer.trim()
        assert col.trimmer.passes > passes + 1  # trimming ran while the backlog grew
        redis = col.redis
        for b in BUILDINGS:
            stream = KEYS.changes(b)
            # nothing unacknowledged was trimmed: all 5,000 entries of the outage are there
            unacked = await redis.xrange(stream, min=f"({first._applied[b]}", max="+")
            assert len(unacked) == ROUNDS
            assert ROUNDS <= await redis.xlen(stream) <= ROUNDS + NODE_SLACK
            state = col.trimmer.last[b]
            assert (state.lost, state.lost_total, state.groups) == (0, 0, 1)

        # the central comes back: every change arrives exactly once, in order
        second = _central(redis_server.url)
        seen: dict[str, list[float]] = {t: [] for t in TAGS}

        def record(batch: Any) -> None:
            for name, tv in batch.items():
                seen[name].append(tv.value)

        second.db.subscribe("*", record)
        await second.start()
        await asyncio.wait_for(
            second.wait_until(lambda: second.applied_entries >= len(BUILDINGS) * ROUNDS), 120
        )
        await _stop(second)
        assert second.applied_entries == len(BUILDINGS) * ROUNDS
        assert second.duplicates == 0
        # seeded from the committed hash (round 99), then every round of the outage once
        expected = [float(r) for r in range(99, 100 + ROUNDS)]
        for name in TAGS:
            assert seen[name] == expected, name
        stats = await redis.hgetall(KEYS.stats(CENTRAL_GROUP))
        for b in BUILDINGS:
            assert int(stats[f"{b}:entries".encode()]) == 100 + ROUNDS

        # afterwards the stream is trimmed to what is unacknowledged: nothing but node slack
        states = await col.trimmer.trim()
        for b in BUILDINGS:
            stream = KEYS.changes(b)
            assert (await redis.xpending(stream, CENTRAL_GROUP))["pending"] == 0
            assert states[b].backlog == await redis.xlen(stream) < NODE_SLACK
            assert sum(s.trimmed for s in col.states if s.building == b) >= ROUNDS
            assert not states[b].high
        assert await redis.hgetall(KEYS.lost) == {}


async def test_a_stream_nobody_reads_yet_is_kept_up_to_its_cap(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    policy = BacklogPolicy(max_entries=20 * OLD_CAP, trim_interval_s=0.02)
    async with Collector(redis_server.url, tmp_path / "spool.sqlite", policy) as col:
        await col.publish_rounds(0, ROUNDS)  # no central has ever created its group
        states = await col.trimmer.trim()
        for b in BUILDINGS:
            assert await col.redis.xlen(KEYS.changes(b)) == ROUNDS
            assert (states[b].backlog, states[b].groups, states[b].lost) == (ROUNDS, 0, 0)

        central = _central(redis_server.url)  # creates its group at the start of the stream
        await central.start()
        await asyncio.wait_for(
            central.wait_until(lambda: central.applied_entries >= len(BUILDINGS) * ROUNDS), 120
        )
        await _stop(central)
        assert central.applied_entries == len(BUILDINGS) * ROUNDS
        states = await col.trimmer.trim()
        assert all(s.backlog < NODE_SLACK for s in states.values())


async def test_the_hard_cap_counts_logs_and_reports_the_loss(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="scada.scaleout.backlog")
    policy = BacklogPolicy(max_entries=OLD_CAP, warn_fraction=0.8, trim_interval_s=0.02)
    async with Collector(redis_server.url, tmp_path / "spool.sqlite", policy) as col:
        first = _central(redis_server.url)
        await first.start()  # the group exists, then the central is away
        await _stop(first)
        status = TagDatabase(backlog_tag_defs(BUILDINGS))

        def show(state: Backlog) -> None:
            names = backlog_tag_names(state.building)
            status.update(names["backlog"], state.backlog)
            status.update(names["backlog_high"], state.high)
            status.update(names["lost"], state.lost_total)

        col.trimmer.on_status = show
        await col.publish_rounds(0, ROUNDS)
        states = await col.trimmer.trim()
        redis = col.redis
        lost = await redis.hgetall(KEYS.lost)
        for b in BUILDINGS:
            assert await redis.xlen(KEYS.changes(b)) == OLD_CAP
            assert int(lost[b.encode()]) == ROUNDS - OLD_CAP  # every dropped entry counted
            assert states[b].lost_total == ROUNDS - OLD_CAP
            assert states[b].high
            assert status.read(f"collector.{b}.lost").value == ROUNDS - OLD_CAP
            assert status.read(f"collector.{b}.backlog").value == OLD_CAP
            assert status.read(f"collector.{b}.backlog_high").value is True
        messages = [(r.levelno, r.getMessage()) for r in caplog.records]
        for b in BUILDINGS:
            assert any(
                level == logging.WARNING and f"building {b}" in m and "a central is behind" in m
                for level, m in messages
            )
            dropped = sum(
                int(m.split("the ")[1].split(" oldest")[0])
                for level, m in messages
                if level == logging.ERROR and f"building {b})" in m
            )
            assert dropped == ROUNDS - OLD_CAP  # one error line per pass that dropped entries

        # the central gets the newest OLD_CAP changes of each building, each once
        second = _central(redis_server.url)
        await second.start()
        await asyncio.wait_for(
            second.wait_until(lambda: second.applied_entries >= len(BUILDINGS) * OLD_CAP), 60
        )
        await _stop(second)
        assert second.applied_entries == len(BUILDINGS) * OLD_CAP
        assert second.db.read(TAGS[0]).value == ROUNDS - 1
        states = await col.trimmer.trim()
        for b in BUILDINGS:
            assert not states[b].high
            assert states[b].lost_total == ROUNDS - OLD_CAP  # the count stays
        assert any("below 80 % of the cap again" in r.getMessage() for r in caplog.records)


def test_the_policy_validates_and_applies_the_byte_budget() -> None:
    policy = BacklogPolicy(max_entries=1_000_000, max_bytes=10 * 1024 * 1024)
    assert policy.cap(None) == 1_000_000
    assert policy.cap(1000 - ENTRY_OVERHEAD_BYTES) == 10 * 1024 * 1024 // 1000
    assert BacklogPolicy(max_entries=1000).cap(100.0) == 1000  # small entries: the entry cap
    with pytest.raises(ValueError, match="max_entries"):
        BacklogPolicy(max_entries=0)
    with pytest.raises(ValueError, match="warn_fraction"):
        BacklogPolicy(warn_fraction=1.5)
    with pytest.raises(ValueError, match="trim_interval_s"):
        BacklogPolicy(trim_interval_s=0)


def test_scada_run_rejects_a_bad_backlog_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "site.yaml"
    load(tmp_path)  # writes site.yaml
    argv = ["run", str(config), "--data-dir", str(tmp_path / "var"), "--role", "collector"]
    code = cli_main([*argv, "--redis", "redis://127.0.0.1:1/0", "--backlog-max-entries", "0"])
    assert code == 2
    assert "--backlog-max-entries" in capsys.readouterr().err


async def test_the_collector_role_publishes_its_backlog_tags_to_the_central(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    site = load(tmp_path)
    runtime = Runtime(
        site,
        tmp_path / "var",
        role="collector",
        buildings=["b1"],
        redis_url=redis_server.url,
        backlog=BacklogPolicy(max_entries=50, trim_interval_s=0.05),
    )
    assert "collector.b1.backlog" in runtime.db  # the runtime builds the status tags
    role = CollectorRole(
        filter_site(site, ["b1"]),
        redis_server.url,
        tmp_path / "col",
        backlog=BacklogPolicy(max_entries=50, trim_interval_s=0.05),
    )
    db = TagDatabase([*role.site.tag_defs(), *role.tag_defs()], bus=role.bus)
    central_role = CentralRole(site, redis_server.url)
    central_db = TagDatabase([*site.tag_defs(), *central_role.tag_defs()])
    central = Central(
        connect(redis_server.url),
        role.keys,
        central_db,
        role.tag_building,
        offline_after_s=None,
    )

    async def writer(tag: str, value: Any) -> Any:
        raise AssertionError("no writes in this test")

    await role.start(db, writer)
    try:
        await central.start()
        name = "b1.hm.power_kw"
        for k in range(5):
            db.update(name, float(k))
            db.flush()
        await role.publisher.wait_idle()
        await role.trimmer.trim()
        assert db.read("collector.b1.lost").value == 0
        assert db.read("collector.b1.backlog_high").value is False
        # the backlog tags reach the central like the building's device tags
        await wait_for(
            central_db,
            ["collector.b1.backlog"],
            lambda d: d.read("collector.b1.backlog").value is not None,
        )
        assert central.unknown_tags == 0
    finally:
        await _stop(central)
        await role.stop()
        await central_role.redis.aclose()
