"""The central's side of the building streams: apply every change exactly once.

``Central`` reads every ``changes:<building>`` stream with one consumer group
(``XREADGROUP``), applies the entries to the central ``TagDatabase`` (so historian,
alarms, server and HMI subscribe as in a single process), then commits them.

The exactly-once rule: an entry's effect is *committed* by one Lua script that, in one
atomic step, writes the entries' values into the ``current`` hash, sets the building's
last applied entry id and source ``(epoch, seq)`` in ``applied:<group>``, counts them in
``stats:<group>`` and ``XACK``s them. The script refuses (and only acknowledges) entries
whose id is not above the stored last applied id, and the central skips entries whose
id or ``(epoch, seq)`` is not above the last applied one, so a redelivered or duplicated
entry is never committed twice. A central that dies after applying to its in-memory
database but before the commit loses that memory with it; its successor seeds its
database from the ``current`` hash and applies the uncommitted entries again, once.
Downstream writes made before the crash are repeated with the same tag and source
timestamp, which both historian backends treat as one sample (SQLite ``INSERT OR
REPLACE`` on ``(tag, ts)``; InfluxDB overwrites a point with the same series and time).

Recovery at start: entries another consumer of the group read but did not commit are
claimed (``XAUTOCLAIM``) once they have been idle ``claim_idle_ms``; then this consumer's
own pending entries are processed in id order, and only then new ones (``>``), which
keeps each building's order.

Collector link health: a building whose stream is silent for ``offline_after_s`` (the
collectors send heartbeats) gets ``collector.<building>.online = false`` and its good
tags ``uncertain/stale``; when it speaks again the central asks for a snapshot with
``resync`` (if given) so unchanged values come back good. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
from redis.exceptions import ResponseError

from scada.scaleout.redis_bus import LINK_ERRORS, raise_if_cancelled, stop_task
from scada.scaleout.wire import (
    KIND_DATA,
    KIND_HEARTBEAT,
    LUA_STREAM_IDS,
    Entry,
    StreamKeys,
    decode_entry,
)
from tags.catalog import KIND_STR
from tags.database import TagDatabase
from tags.model import Quality, Reason, Source, TagDef, TagType

__all__ = ["CENTRAL_GROUP", "Central", "CurrentValues", "link_tag_defs"]

log = logging.getLogger(__name__)

CENTRAL_GROUP = "central"
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0
_HSET_CHUNK = 1000

# KEYS: applied, current, stats, stream. ARGV: building, group, first id, last id, src,
# n_ack, ack ids..., data entries, records, field/value pairs...
_COMMIT_LUA = (
    LUA_STREAM_IDS
    + """
local b = ARGV[1]
local nack = tonumber(ARGV[6])
local function ack()
  for i = 1, nack, 500 do
    redis.call('XACK', KEYS[4], ARGV[2], unpack(ARGV, 6 + i, 6 + math.min(i + 499, nack)))
  end
end
local prev = redis.call('HGET', KEYS[1], b)
if prev and ge(prev, ARGV[3]) then
  ack()
  return prev
end
local pos = 7 + nack
local entries = tonumber(ARGV[pos])
local records = tonumber(ARGV[pos + 1])
pos = pos + 2
local last = #ARGV
for i = pos, last, 2000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 1999, last)))
end
redis.call('HSET', KEYS[1], b, ARGV[4], b .. ':src', ARGV[5])
redis.call('HINCRBY', KEYS[3], b .. ':entries', entries)
redis.call('HINCRBY', KEYS[3], b .. ':records', records)
ack()
return 1
"""
)


def link_tag_defs(buildings: list[str]) -> list[TagDef]:
    """Return the central's ``collector.<building>.online`` tags."""
    return [
        TagDef(
            f"collector.{b}.online",
            TagType.BOOL,
            source=Source.SYSTEM,
            building=b,
            description=f"the collector of building {b} is heard (stream not silent)",
        )
        for b in buildings
    ]


def _sid(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _sid_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


class Central:
    """Consume every building stream into ``db`` (see the module docstring).

    ``redis`` is a ``redis.asyncio.Redis`` (bytes responses) used only by this object
    (it blocks in ``XREADGROUP``). ``tag_building`` maps device tags to buildings: its
    buildings are the streams read. ``resync(building)`` is awaited when a silent
    building speaks again. ``on_commit(building, entries, records)`` is called after each
    commit (tests, metrics). Call ``await start()`` / ``await stop()``.
    """

    def __init__(
        self,
        redis: Any,
        keys: StreamKeys,
        db: TagDatabase,
        tag_building: Mapping[str, str],
        *,
        group: str = CENTRAL_GROUP,
        consumer: str = "central-1",
        claim_idle_ms: int = 30_000,
        count: int = 100,
        block_ms: int = 1000,
        offline_after_s: float | None = 15.0,
        resync: Callable[[str], Awaitable[Any]] | None = None,
        on_commit: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.db = db
        self.tag_building = dict(tag_building)
        self.buildings = sorted(set(self.tag_building.values()))
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.count = count
        self.block_ms = block_ms
        self.offline_after_s = offline_after_s
        self.resync = resync
        self.on_commit = on_commit
        self._clock = clock
        self.applied_entries = 0
        self.applied_records = 0
        self.duplicates = 0
        self.claimed = 0
        self.unknown_tags = 0
        self.latencies: list[float] = []  # commit time - publish time per data entry
        self.keep_latencies = False
        self._applied: dict[str, str] = {}
        self._src: dict[str, tuple[str, int]] = {}
        self._heard: dict[str, float] = {}
        self._online: dict[str, bool] = {}
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._script: Any = None
        self._by_building: dict[str, list[str]] = {}
        for tag, b in self.tag_building.items():
            self._by_building.setdefault(b, []).append(tag)

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Seed the database from the committed hash, create the groups, start consuming.

        Raises a redis ``ConnectionError`` if Redis cannot be reached at start.
        """
        self._script = self.redis.register_script(_COMMIT_LUA)
        await self._seed()
        for b in self.buildings:
            try:
                await self.redis.xgroup_create(
                    self.keys.changes(b), self.group, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        applied = await self.redis.hgetall(self.keys.applied(self.group))
        for k, v in applied.items():
            key, value = _sid(k), _sid(v)
            if key.endswith(":src"):
                epoch, _, seq = value.rpartition(":")
                self._src[key[:-4]] = (epoch, int(seq))
            else:
                self._applied[key] = value
        now = self._clock()
        for b in self.buildings:
            self._heard[b] = now
        self._task = asyncio.create_task(self._run(), name="scaleout-central")
        if self.offline_after_s:
            self._health_task = asyncio.create_task(self._watch_links(), name="scaleout-links")

    async def stop(self) -> None:
        """Stop consuming; entries read but not committed stay pending for the next start."""
        for task in (self._task, self._health_task):
            if task is None:
                continue
            if (exc := await stop_task(task)) is not None:
                log.error("central: the consumer task had failed", exc_info=exc)
        self._task = self._health_task = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true, re-checking after every commit (tests)."""
        while not predicate():
            self._progress.clear()
            await self._progress.wait()

    async def _seed(self) -> None:
        current = await self.redis.hgetall(self.keys.current)
        if not current:
            return
        names, values, quality, reason, ts = [], [], [], [], []
        for k, v in current.items():
            try:
                value, q, r, t = json.loads(v)
            except (ValueError, TypeError):
                continue
            names.append(_sid(k))
            values.append(value)
            quality.append(int(q))
            reason.append(int(r))
            ts.append(float(t))
        n = self._apply(Entry(KIND_DATA, "", 0, 0.0, names, values, quality, reason, ts))
        log.info("seeded %d current values from %s", n, self.keys.current)

    # ------------------------------------------------------------------ consuming
    async def _run(self) -> None:
        retry_s = _RETRY_MIN_S
        recovered = False
        streams = {self.keys.changes(b): ">" for b in self.buildings}
        names = {self.keys.changes(b): b for b in self.buildings}
        while True:
            try:
                if not recovered:
                    for b in self.buildings:
                        await self._recover(b)
                    recovered = True
                reply = await self.redis.xreadgroup(
                    self.group, self.consumer, streams, count=self.count, block=self.block_ms
                )
                for stream, entries in reply or ():
                    await self._process(names[_sid(stream)], entries)
                retry_s = _RETRY_MIN_S
            except LINK_ERRORS as exc:
                raise_if_cancelled()
                log.warning("central: redis unreachable (%s); retrying", exc)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, _RETRY_MAX_S)

    async def _recover(self, building: str) -> None:
        """Claim other consumers' pending entries, then process this consumer's in id order."""
        stream = self.keys.changes(building)
        while True:
            pending = await self.redis.xpending_range(stream, self.group, "-", "+", 1000)
            foreign = [p for p in pending if _sid(p["consumer"]) != self.consumer]
            if not foreign:
                break
            wait_ms = self.claim_idle_ms - min(int(p["time_since_delivered"]) for p in foreign)
            if wait_ms > 0:
                log.warning(
                    "central: %d entries of %s pending at another consumer; claiming them in %d ms",
                    len(foreign),
                    stream,
                    wait_ms,
                )
                await asyncio.sleep(wait_ms / 1000)
                continue
            start = "0-0"
            while True:
                reply = await self.redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer,
                    self.claim_idle_ms,
                    start_id=start,
                    count=self.count,
                )
                self.claimed += len(reply[1])  # [next start, [(id, fields)], deleted ids]
                start = _sid(reply[0])
                if start == "0-0":
                    break
        while True:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {stream: "0"}, count=self.count
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self._process(building, entries)

    async def _process(self, building: str, entries: list[Any]) -> None:
        """Apply and commit one building's entries (in id order)."""
        if not entries:
            return
        ack: list[str] = []
        new: list[tuple[str, Entry]] = []
        applied = self._applied.get(building)
        src = self._src.get(building)
        for raw_id, fields in entries:
            sid = _sid(raw_id)
            ack.append(sid)
            if not fields:  # trimmed while pending
                continue
            if applied is not None and _sid_key(sid) <= _sid_key(applied):
                self.duplicates += 1
                continue
            try:
                entry = decode_entry(fields[b"p"])
            except (KeyError, ValueError) as exc:
                log.error("central: entry %s of %s skipped: %s", sid, building, exc)
                continue
            if src is not None and entry.epoch == src[0] and entry.seq <= src[1]:
                self.duplicates += 1
                continue
            src = (entry.epoch, entry.seq)
            new.append((sid, entry))
        self._heard[building] = self._clock()
        if not new:
            await self._ack_only(building, ack)
            return
        latest: dict[str, str] = {}
        data_entries = records = 0
        for _, entry in new:
            if entry.kind == KIND_HEARTBEAT:
                continue
            data_entries += 1
            records += len(entry.names)
            self._apply(entry)
            self.db.flush()  # one bus delivery per entry: subscribers see every change
            for n, v, q, r, t in zip(
                entry.names, entry.values, entry.quality, entry.reason, entry.ts, strict=True
            ):
                # the hash value is JSON [value, quality, reason, ts]; floats formatted directly
                text = repr(v) if type(v) is float and math.isfinite(v) else json.dumps(v)
                latest[n] = f"[{text},{q},{r},{t!r}]"
        last_id, last_entry = new[-1]
        args: list[Any] = [
            building,
            self.group,
            new[0][0],
            last_id,
            f"{last_entry.epoch}:{last_entry.seq}",
            len(ack),
            *ack,
            data_entries,
            records,
        ]
        for n, v in latest.items():
            args.append(n)
            args.append(v)
        keys = [
            self.keys.applied(self.group),
            self.keys.current,
            self.keys.stats(self.group),
            self.keys.changes(building),
        ]
        done = await self._commit(keys, args)
        self._applied[building] = last_id
        self._src[building] = (last_entry.epoch, last_entry.seq)
        if done:
            self.applied_entries += data_entries
            self.applied_records += records
            if self.keep_latencies:
                now = self._clock()
                self.latencies.extend(now - e.t0 for _, e in new if e.kind != KIND_HEARTBEAT)
        else:
            log.warning(
                "central: entries of %s up to %s were committed by another consumer",
                building,
                last_id,
            )
        if self.on_commit is not None and done:
            self.on_commit(building, data_entries, records)
        self._progress.set()
        if not self._online.get(building, False):
            await self._set_online(building, True)

    async def _commit(self, keys: list[str], args: list[Any]) -> bool:
        """Run the commit script; retry while Redis is unreachable (it is idempotent).

        Return True if these entries are committed by this call: the script applied them,
        or a retry finds them applied up to exactly our last id (the first attempt went
        through but its reply was lost). False: another consumer had committed them.
        """
        retry_s = _RETRY_MIN_S
        retried = False
        while True:
            try:
                reply = await self._script(keys=keys, args=args)
            except LINK_ERRORS as exc:
                raise_if_cancelled()
                log.warning("central: commit failed (%s); retrying", exc)
                retried = True
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, _RETRY_MAX_S)
                continue
            if reply == 1:
                return True
            return retried and _sid(reply) == args[3]

    async def _ack_only(self, building: str, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.keys.changes(building), self.group, *ids)

    def _apply(self, entry: Entry) -> int:
        """Write one entry's rows into the database; return the number of rows applied."""
        db = self.db
        catalog = db.catalog
        index = catalog.index
        kinds = catalog.kinds
        ids = np.fromiter(
            (index.get(n, -1) for n in entry.names), dtype=np.int64, count=len(entry.names)
        )
        known = ids >= 0
        if not known.all():
            self.unknown_tags += int(np.count_nonzero(~known))
        values = entry.values
        plain = known.all() and None not in values and not (kinds[ids] == KIND_STR).any()
        if plain:
            if ids.size:
                db.update_many(
                    ids,
                    np.asarray(values, dtype=np.float64),
                    np.asarray(entry.quality, dtype=np.uint8),
                    np.asarray(entry.ts, dtype=np.float64),
                    np.asarray(entry.reason, dtype=np.uint8),
                )
            return int(ids.size)
        rows = np.flatnonzero(known).tolist()
        num = [i for i in rows if values[i] is not None and kinds[ids[i]] != KIND_STR]
        if num:
            sel = np.asarray(num, dtype=np.int64)
            db.update_many(
                ids[sel],
                np.asarray([values[i] for i in num], dtype=np.float64),
                np.asarray(entry.quality, dtype=np.uint8)[sel],
                np.asarray(entry.ts, dtype=np.float64)[sel],
                np.asarray(entry.reason, dtype=np.uint8)[sel],
            )
        for i in rows:
            if values[i] is None:
                db.set_quality([int(ids[i])], entry.quality[i], entry.reason[i], entry.ts[i])
            elif kinds[ids[i]] == KIND_STR:
                db.update(entry.names[i], values[i], entry.quality[i], entry.ts[i], entry.reason[i])
        return len(rows)

    # ------------------------------------------------------------------ link health
    async def _watch_links(self) -> None:
        assert self.offline_after_s
        while True:
            await asyncio.sleep(min(1.0, self.offline_after_s / 3))
            now = self._clock()
            for b in self.buildings:
                if self._online.get(b, True) and now - self._heard[b] > self.offline_after_s:
                    await self._set_online(b, False)

    async def _set_online(self, building: str, online: bool) -> None:
        name = f"collector.{building}.online"
        was = self._online.get(building)
        self._online[building] = online
        if name in self.db:
            self.db.update(name, online)
        if not online:
            tags = [t for t in self._by_building.get(building, ()) if t in self.db]
            if tags:
                ids = self.db.ids_of(tags)
                q = self.db.state_of(ids)[0]
                good = ids[q == Quality.GOOD]
                self.db.set_quality(good, Quality.UNCERTAIN, Reason.STALE)
            log.warning(
                "central: building %s silent for %.0f s: its values marked stale",
                building,
                self.offline_after_s,
            )
        elif was is False and self.resync is not None:
            log.info("central: building %s heard again; requesting a snapshot", building)
            asyncio.create_task(self._resync(building), name=f"resync-{building}")  # noqa: RUF006

    async def _resync(self, building: str) -> None:
        resync = self.resync
        if resync is None:  # the caller checked; the attribute is never unset
            return
        try:
            await resync(building)
        except Exception:
            log.exception("central: resync of building %s failed", building)


class CurrentValues:
    """Read the committed current values from the Redis hash (a read-only central replica)."""

    def __init__(self, redis: Any, keys: StreamKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def read(self, names: list[str]) -> dict[str, tuple[Any, Quality, Reason, float]]:
        """Return ``name -> (value, quality, reason, ts)`` for the names that have a value."""
        if not names:
            return {}
        raw = await self.redis.hmget(self.keys.current, names)
        result: dict[str, tuple[Any, Quality, Reason, float]] = {}
        for n, v in zip(names, raw, strict=True):
            if v is not None:
                value, q, r, t = json.loads(v)
                result[n] = (value, Quality(int(q)), Reason(int(r)), float(t))
        return result

    async def snapshot(self) -> dict[str, tuple[Any, Quality, Reason, float]]:
        """Return every committed current value."""
        raw = await self.redis.hgetall(self.keys.current)
        return {
            _sid(k): (v[0], Quality(int(v[1])), Reason(int(v[2])), float(v[3]))
            for k, v in ((k, json.loads(v)) for k, v in raw.items())
        }
