"""The Redis change bus of a collector: local fan-out plus one Redis Stream per building.

``RedisBus`` is a ``LocalBus`` (so the collector's own subscribers work unchanged) whose
``publish`` also hands every batch, split by building, to a ``StreamPublisher``. The
publisher ``XADD``s entries in pipelines (``scada.scaleout.backlog`` trims the streams to
what the centrals have not acknowledged, under a hard cap); when Redis cannot be
reached it appends them to the on-disk ``Spool`` and, once Redis answers again, replays
the spool oldest first before anything newer: no change is lost and per-building order
is kept. Entries carry ``(epoch, seq)`` so the central can drop the duplicates a
half-executed pipeline leaves behind (see ``scada.scaleout.wire``).

Loop-thread only (like ``LocalBus``). ``publish`` never blocks on the network: it
queues; the publisher task sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scada.scaleout.spool import Spool
from scada.scaleout.wire import (
    KIND_DATA,
    KIND_HEARTBEAT,
    StreamKeys,
    batch_payloads,
    building_code_array,
    encode_entry,
)
from tags.bus import ChangeBatch, LocalBus
from tags.catalog import TagCatalog

__all__ = ["LINK_ERRORS", "RedisBus", "StreamPublisher", "raise_if_cancelled", "stop_task"]

log = logging.getLogger(__name__)

#: Errors that mean "Redis is unreachable right now" (retry later), not a bug.
LINK_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0


def raise_if_cancelled() -> None:
    """Re-raise a pending cancellation inside a ``except LINK_ERRORS`` retry handler.

    redis-py can turn a cancellation that lands mid-read into a ``ConnectionError``;
    without this check a retry loop would swallow ``task.cancel()`` and never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[Any] | None) -> BaseException | None:
    """Cancel ``task`` and wait for it; return the exception it had died of, if any.

    Cancels again every 0.5 s: a cancellation landing inside redis-py's read timeout
    (``asyncio.timeout`` on Python 3.11) can be lost, and a blocking read would go on.
    """
    if task is None:
        return None
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if task.cancelled():
        return None
    return task.exception()


class StreamPublisher:
    """Send ``(stream, payload)`` entries to Redis in order; spool them while Redis is down.

    ``redis`` is a ``redis.asyncio.Redis`` (bytes responses). Entries are added without
    ``MAXLEN``: the streams are trimmed by a ``BacklogTrimmer``, fed by ``on_sent(items)``
    (called with every batch Redis accepted). ``max_queue`` entries at most wait in
    memory; beyond that they go to the spool.
    Call ``await start()`` and ``await stop()``; ``stop`` spools what was not sent.
    """

    def __init__(
        self,
        redis: Any,
        spool: Spool,
        *,
        pipeline_entries: int = 200,
        max_queue: int = 10_000,
        on_sent: Callable[[list[tuple[str, bytes]]], None] | None = None,
    ) -> None:
        self.redis = redis
        self.spool = spool
        self.on_sent = on_sent
        self.pipeline_entries = pipeline_entries
        self.max_queue = max_queue
        self.connected = True
        self.published = 0  # entries Redis accepted (live and replayed)
        self.spooled = 0  # entries ever written to the spool
        self.dropped_heartbeats = 0
        self._queue: deque[tuple[str, bytes, bool]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._link_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ producer side
    def enqueue(self, stream: str, payload: bytes, *, durable: bool = True) -> None:
        """Queue one entry (loop thread). Non-durable entries (heartbeats) are never spooled."""
        if not durable and not self.connected:
            self.dropped_heartbeats += 1
            return
        self._queue.append((stream, payload, durable))
        self._idle.clear()
        self._wake.set()
        if len(self._queue) > self.max_queue:
            self._spill()

    def _spill(self) -> None:
        """Move every queued durable entry to the spool (keeps order: the spool drains first)."""
        items = [(s, p) for s, p, durable in self._queue if durable]
        self.dropped_heartbeats += len(self._queue) - len(items)
        self._queue.clear()
        if items:
            self.spool.append(items)
            self.spooled += len(items)

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Open the spool and start the sending task (entries left in the spool go first)."""
        self.spool.open()
        if len(self.spool):
            log.info(
                "spool %s holds %d entries from an earlier run", self.spool.path, len(self.spool)
            )
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="scaleout-publisher")

    async def stop(self, *, drain_timeout_s: float = 2.0) -> None:
        """Try to send what is queued for up to ``drain_timeout_s``, spool the rest, stop."""
        if self._task is None:
            return
        if self.connected and (self._queue or len(self.spool)):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_idle(), drain_timeout_s)
        self._stopping.set()
        if (exc := await stop_task(self._task)) is not None:
            log.error("publisher task had failed", exc_info=exc)
        self._task = None
        self._spill()
        self.spool.close()

    async def wait_idle(self) -> None:
        """Wait until the queue and the spool are empty (everything reached Redis)."""
        while self._queue or len(self.spool):
            self._idle.clear()
            await self._idle.wait()

    async def wait_link(self, connected: bool) -> None:
        """Wait until the publisher sees Redis as ``connected`` (True) or unreachable (False)."""
        while self.connected is not connected:
            self._link_changed.clear()
            await self._link_changed.wait()

    def _set_link(self, connected: bool) -> None:
        if connected is not self.connected:
            self.connected = connected
            self._link_changed.set()
            if connected:
                log.warning("redis reachable again: replaying %d spooled entries", len(self.spool))
            else:
                log.warning("redis unreachable: spooling changes to %s", self.spool.path)

    # ------------------------------------------------------------------ sending
    async def _run(self) -> None:
        retry_s = _RETRY_MIN_S
        while True:
            if not self._queue and not len(self.spool):
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self.connected:
                self._spill()
                try:
                    await self.redis.ping()
                except LINK_ERRORS:
                    raise_if_cancelled()
                    await self._pause(retry_s)
                    retry_s = min(retry_s * 2, _RETRY_MAX_S)
                    continue
                self._set_link(True)
            retry_s = _RETRY_MIN_S
            if len(self.spool):
                rows = self.spool.head(self.pipeline_entries)
                try:
                    await self._send([(s, p) for _, s, p in rows])
                except LINK_ERRORS:
                    raise_if_cancelled()
                    self._set_link(False)
                    continue
                self.spool.remove_through(rows[-1][0])
                continue
            items = [
                self._queue.popleft() for _ in range(min(len(self._queue), self.pipeline_entries))
            ]
            try:
                await self._send([(s, p) for s, p, _ in items])
            except LINK_ERRORS:
                raise_if_cancelled()
                self._queue.extendleft(reversed(items))
                self._set_link(False)
                self._spill()

    async def _send(self, items: list[tuple[str, bytes]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for stream, payload in items:
            pipe.xadd(stream, {"p": payload})
        await pipe.execute()
        self.published += len(items)
        if self.on_sent is not None:
            self.on_sent(items)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class RedisBus(LocalBus):
    """A ``LocalBus`` that also forwards every published batch to the building streams.

    ``tag_building`` names the building of each tag to forward (others stay local);
    ``epoch`` identifies this run (default: a random id). Loop-thread only.
    """

    def __init__(
        self,
        publisher: StreamPublisher,
        keys: StreamKeys,
        tag_building: Mapping[str, str],
        *,
        epoch: str | None = None,
        chunk: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.publisher = publisher
        self.keys = keys
        self.tag_building = dict(tag_building)
        self.buildings = sorted(set(self.tag_building.values()))
        self.epoch = epoch or uuid.uuid4().hex[:12]
        self.chunk = chunk
        self._clock = clock
        self.entries = 0  # durable entries (changes and snapshots) queued so far
        self._seq: dict[str, int] = dict.fromkeys(self.buildings, 0)
        self._last_sent: dict[str, float] = dict.fromkeys(self.buildings, 0.0)
        self._codes = building_code_array([], self.tag_building, self.buildings)

    def set_catalog(self, catalog: TagCatalog) -> None:
        """Adopt ``catalog``; recompute which building each tag id belongs to."""
        super().set_catalog(catalog)
        self._codes = building_code_array(list(catalog.names), self.tag_building, self.buildings)

    def publish(self, batch: ChangeBatch) -> None:
        """Deliver ``batch`` locally, then queue it for the building streams."""
        super().publish(batch)
        self.forward(batch, KIND_DATA)

    def forward(self, batch: ChangeBatch, kind: str = KIND_DATA) -> int:
        """Queue the forwarded rows of ``batch`` as entries of ``kind``; return the entry count."""
        if not len(batch):
            return 0
        now = self._clock()
        count = 0
        for building, cols in batch_payloads(batch, self._codes, self.buildings, self.chunk):
            self._seq[building] += 1
            payload = encode_entry(
                kind,
                self.epoch,
                self._seq[building],
                now,
                cols["n"],
                cols["v"],
                cols["q"],
                cols["r"],
                cols["t"],
            )
            self.publisher.enqueue(self.keys.changes(building), payload)
            self._last_sent[building] = now
            count += 1
        self.entries += count
        return count

    def heartbeat(self, every_s: float) -> int:
        """Queue a heartbeat for each building silent for ``every_s``; return how many."""
        now = self._clock()
        count = 0
        for building in self.buildings:
            if now - self._last_sent[building] >= every_s:
                self._seq[building] += 1
                payload = encode_entry(KIND_HEARTBEAT, self.epoch, self._seq[building], now)
                self.publisher.enqueue(self.keys.changes(building), payload, durable=False)
                self._last_sent[building] = now
                count += 1
        return count
