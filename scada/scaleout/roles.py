"""The collector and central roles of ``scada run --role``, as the runtime wires them.

* ``filter_site(site, buildings)``: the part of a site one collector serves (its
  buildings' devices and channels; memory and computed tags stay at the central).
* ``CollectorRole``: owns the ``RedisBus`` its ``TagDatabase`` publishes to, the
  publisher with its spool (``<data dir>/collector-spool.sqlite``), the stream trimmer
  and its backlog status tags (``collector.<building>.backlog``, ``.backlog_high``,
  ``.lost``: published to the central like device tags), the command server and the
  heartbeats.
* ``CentralRole``: owns the ``Central`` consumer and the ``RemoteWriter`` (its
  ``writer.write(tag, value)`` is what the command service calls in central mode).

Constructors do no I/O; ``start``/``stop`` do. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from scada.scaleout.backlog import (
    Backlog,
    BacklogPolicy,
    BacklogTrimmer,
    backlog_tag_defs,
    backlog_tag_names,
)
from scada.scaleout.central import CENTRAL_GROUP, Central, link_tag_defs
from scada.scaleout.commands import CommandServer, RemoteWriter
from scada.scaleout.redis_bus import RedisBus, StreamPublisher
from scada.scaleout.spool import Spool
from scada.scaleout.wire import (
    KIND_SNAPSHOT,
    NO_BUILDING,
    StreamKeys,
    device_building,
    tag_buildings,
)
from tags.database import TagDatabase
from tags.model import TagDef

__all__ = ["CentralRole", "CollectorRole", "connect", "filter_site"]

log = logging.getLogger(__name__)

SPOOL_FILE = "collector-spool.sqlite"


def connect(url: str) -> Redis:
    """Return a Redis client for ``url`` (no I/O yet) that fails fast when Redis is down.

    One immediate retry covers a pooled connection that died with a Redis restart;
    the scale-out loops do their own back-off.
    """
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 1),
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=0,
    )


def filter_site(site: Any, buildings: Iterable[str] | None) -> Any:
    """Return a copy of ``site`` with only the devices and channels of ``buildings``.

    ``None`` keeps every device. Memory, computed tags and alarms are dropped (the
    central owns them). Raises ``ValueError`` naming unknown buildings.
    """
    known = {b.id for b in site.buildings} | {device_building(site, d) for d in site.devices}
    wanted = set(known if buildings is None else buildings)
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown building(s) {', '.join(unknown)}; the site has "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    devices = [d for d in site.devices if device_building(site, d) in wanted]
    channel_ids = {d.channel for d in devices}
    sub = site.model_copy(
        update={
            "devices": devices,
            "channels": [c for c in site.channels if c.id in channel_ids],
            "buildings": [b for b in site.buildings if b.id in wanted],
            "tags": [],
            "alarms": [],
        }
    )
    sub._index = None
    return sub


class CollectorRole:
    """Publish a collector's device tags to Redis and run the commands sent to it.

    ``site`` is the filtered site (``filter_site``). Create the ``TagDatabase`` with
    ``bus=role.bus`` and the site's tags plus ``role.tag_defs()``, then
    ``await start(db, writer)`` with ``DriverManager.write``. ``backlog`` sets the
    streams' hard cap and warning level (default ``BacklogPolicy()``).
    """

    def __init__(
        self,
        site: Any,
        redis_url: str,
        data_dir: str | Path,
        *,
        node_id: str | None = None,
        backlog: BacklogPolicy | None = None,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.site = site
        self.keys = StreamKeys(site.site.id)
        self.tag_building = tag_buildings(site)
        self.buildings = sorted(set(self.tag_building.values()))
        for b in self.buildings:  # the backlog tags travel to the central with the changes
            self.tag_building.update(dict.fromkeys(backlog_tag_names(b).values(), b))
        self.node_id = node_id or "collector-" + ("-".join(self.buildings) or NO_BUILDING)
        self.heartbeat_s = heartbeat_s
        self.redis = connect(redis_url)
        self.trimmer = BacklogTrimmer(
            self.redis,
            {self.keys.changes(b): b for b in self.buildings},
            self.keys.lost,
            backlog,
            on_status=self._on_backlog,
        )
        self.publisher = StreamPublisher(
            self.redis, Spool(Path(data_dir) / SPOOL_FILE), on_sent=self.trimmer.note_sent
        )
        self.bus = RedisBus(self.publisher, self.keys, self.tag_building)
        self.commands: CommandServer | None = None
        self.db: TagDatabase | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def tag_defs(self) -> list[TagDef]:
        """Return the collector's backlog status tags (``collector.<building>.backlog`` ...)."""
        return backlog_tag_defs(self.buildings)

    async def start(self, db: TagDatabase, writer: Callable[[str, Any], Awaitable[Any]]) -> None:
        """Start publishing (spooled entries first), trimming, heartbeats and commands."""
        self.db = db
        await self.publisher.start()
        await self.trimmer.start()
        self.commands = CommandServer(
            self.redis, self.keys, self.buildings, writer, self.resync, consumer=self.node_id
        )
        await self.commands.start()
        self._heartbeat = asyncio.create_task(self._beat(), name="scaleout-heartbeat")
        log.info("collector %s: publishing buildings %s", self.node_id, ", ".join(self.buildings))

    def resync(self, building: str) -> int:
        """Publish the current state of every tag of ``building``; return the entry count."""
        if self.db is None:
            return 0
        tags = [t for t, b in self.tag_building.items() if b == building and t in self.db]
        if not tags:
            return 0
        return self.bus.forward(self.db.snapshot_batch(tags), KIND_SNAPSHOT)

    def _on_backlog(self, state: Backlog) -> None:
        """Write one stream's backlog into the status tags (if the database has them)."""
        if self.db is None:
            return
        names = backlog_tag_names(state.building)
        for field, value in (
            ("backlog", state.backlog),
            ("backlog_high", state.high),
            ("lost", state.lost_total),
        ):
            if names[field] in self.db:
                self.db.update(names[field], value)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s / 2)
            self.bus.heartbeat(self.heartbeat_s)

    async def stop(self) -> None:
        """Stop heartbeats and commands, send (or spool) what is queued, close Redis."""
        if self.db is not None:
            self.db.flush()  # changes the stopped drivers left pending
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self.commands is not None:
            await self.commands.stop()
            self.commands = None
        await self.trimmer.stop()
        await self.publisher.stop()
        await self.redis.aclose()


class CentralRole:
    """Consume every building stream into the central database; route writes to collectors."""

    def __init__(
        self,
        site: Any,
        redis_url: str,
        *,
        node_id: str = "central-1",
        group: str = CENTRAL_GROUP,
        claim_idle_ms: int = 30_000,
        offline_after_s: float | None = 15.0,
        command_timeout_s: float = 10.0,
    ) -> None:
        self.site = site
        self.keys = StreamKeys(site.site.id)
        self.tag_building = tag_buildings(site)
        self.buildings = sorted(set(self.tag_building.values()))
        self.node_id = node_id
        self.redis = connect(redis_url)
        self.writer = RemoteWriter(
            self.redis,
            self.keys,
            self.tag_building,
            central_id=node_id,
            timeout_s=command_timeout_s,
        )
        self._group = group
        self._claim_idle_ms = claim_idle_ms
        self._offline_after_s = offline_after_s
        self.central: Central | None = None

    def tag_defs(self) -> list[TagDef]:
        """Return the central's link and backlog tags (``collector.<building>.online`` ...)."""
        return [*link_tag_defs(self.buildings), *backlog_tag_defs(self.buildings)]

    async def start(self, db: TagDatabase) -> None:
        """Start the result reader and the consumer (which first seeds ``db`` from Redis)."""
        await self.writer.start()
        self.central = Central(
            self.redis,
            self.keys,
            db,
            self.tag_building,
            group=self._group,
            consumer=self.node_id,
            claim_idle_ms=self._claim_idle_ms,
            offline_after_s=self._offline_after_s,
            resync=self.writer.resync,
        )
        await self.central.start()
        log.info("central %s: consuming %d building streams", self.node_id, len(self.buildings))

    async def stop(self) -> None:
        """Stop consuming and close Redis (uncommitted entries stay pending)."""
        if self.central is not None:
            await self.central.stop()
        await self.writer.stop()
        await self.redis.aclose()
