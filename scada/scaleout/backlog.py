"""Trim the building streams to what the centrals still need; cap them to protect Redis.

A change stream is trimmed only below the oldest entry some consumer group still needs:
per group, its smallest pending (delivered, not acknowledged) id, or the id just after
its last delivered one when nothing is pending; the stream floor is the smallest over
every group. One Lua script per stream and pass reads ``XINFO GROUPS`` / ``XPENDING``
and runs ``XTRIM MINID ~ floor`` atomically, so an entry a central has not committed is
never trimmed for being old. A stream with no group yet (no central ever started) is
not trimmed by age at all.

What remains is the **backlog** (``XLEN`` after trimming: entries not acknowledged by
every group, plus at most one partly acknowledged stream node). It is bounded by a hard
cap that protects Redis memory: ``BacklogPolicy.max_entries`` per stream, and
``max_bytes`` divided by the mean entry size this collector has sent. When the backlog
reaches ``warn_fraction`` of the cap it is logged and reported (``backlog_high``); if it
ever exceeds the cap the oldest entries are dropped, counted (``HINCRBY`` on
``P:lost`` in the same script, so the count survives restarts) and logged as an error:
never silently.

``BacklogTrimmer`` runs one pass every ``trim_interval_s`` and sooner when a twentieth
of the cap has been sent since the last pass. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scada.scaleout.redis_bus import LINK_ERRORS, raise_if_cancelled, stop_task
from scada.scaleout.wire import LUA_STREAM_IDS
from tags.model import Source, TagDef, TagType

__all__ = ["Backlog", "BacklogPolicy", "BacklogTrimmer", "backlog_tag_defs", "backlog_tag_names"]

log = logging.getLogger(__name__)

#: Redis memory per stream entry beyond its payload (listpack fields, ids), for ``max_bytes``.
ENTRY_OVERHEAD_BYTES = 40

# KEYS: stream, lost hash. ARGV: building, cap (entries).
# Returns {length after, trimmed (acknowledged), lost (over the cap), lost total, groups}.
_TRIM_LUA = (
    LUA_STREAM_IDS
    + """
local stream = KEYS[1]
local function total(add)
  if add > 0 then return redis.call('HINCRBY', KEYS[2], ARGV[1], add) end
  return tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
end
if redis.call('EXISTS', stream) == 0 then
  return {0, 0, 0, total(0), 0}
end
local floor = false
local groups = redis.call('XINFO', 'GROUPS', stream)
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local f
  if tonumber(info['pending']) > 0 then
    f = redis.call('XPENDING', stream, info['name'])[2]
  else
    local ms, sq = string.match(info['last-delivered-id'], '^(%d+)-(%d+)$')
    f = ms .. '-' .. string.format('%d', tonumber(sq) + 1)
  end
  if not floor or less(f, floor) then floor = f end
end
local trimmed = 0
if floor then trimmed = redis.call('XTRIM', stream, 'MINID', '~', floor) end
local len = redis.call('XLEN', stream)
local cap = tonumber(ARGV[2])
local lost = 0
if len > cap then
  -- exact trims: first every acknowledged entry, so what the cap drops is all unacknowledged
  if floor then trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', floor) end
  lost = redis.call('XTRIM', stream, 'MAXLEN', cap)
  len = redis.call('XLEN', stream)
end
return {len, trimmed, lost, total(lost), #groups}
"""
)


def backlog_tag_names(building: str) -> dict[str, str]:
    """Return ``field -> tag name`` of a building's backlog status tags (``collector.<b>.*``)."""
    return {
        "backlog": f"collector.{building}.backlog",
        "backlog_high": f"collector.{building}.backlog_high",
        "lost": f"collector.{building}.lost",
    }


def backlog_tag_defs(buildings: list[str]) -> list[TagDef]:
    """Return the ``collector.<building>.backlog/.backlog_high/.lost`` tags.

    The collector sets them after each trim pass; they reach the central with the
    building's changes.
    """
    defs = []
    for b in buildings:
        names = backlog_tag_names(b)
        defs += [
            TagDef(
                names["backlog"],
                TagType.INT,
                unit="entries",
                source=Source.SYSTEM,
                building=b,
                description=f"entries of building {b}'s stream not yet acknowledged "
                "by every central",
            ),
            TagDef(
                names["backlog_high"],
                TagType.BOOL,
                source=Source.SYSTEM,
                building=b,
                description=f"building {b}'s stream backlog is near its hard cap",
            ),
            TagDef(
                names["lost"],
                TagType.INT,
                unit="entries",
                source=Source.SYSTEM,
                building=b,
                description=f"entries of building {b} dropped unacknowledged at the hard cap",
            ),
        ]
    return defs


@dataclass(frozen=True, slots=True)
class BacklogPolicy:
    """How far a building stream may grow while a central is away.

    ``max_entries``: hard cap per stream (entries). ``max_bytes``: memory budget per
    stream (payload plus ``ENTRY_OVERHEAD_BYTES`` per entry, at this collector's mean
    entry size); the smaller of the two applies. ``warn_fraction``: backlog share of the
    cap that raises ``backlog_high``. ``trim_interval_s``: seconds between trim passes.
    Raises ``ValueError`` naming the field that is out of range.
    """

    max_entries: int = 5_000_000
    max_bytes: int = 2 * 1024**3
    warn_fraction: float = 0.8
    trim_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError(
                "backlog max_entries (--backlog-max-entries) must be at least 1, "
                f"not {self.max_entries}"
            )
        if self.max_bytes < 1:
            raise ValueError(
                f"backlog max_bytes (--backlog-max-mb) must be at least 1, not {self.max_bytes}"
            )
        if not 0.0 < self.warn_fraction <= 1.0:
            raise ValueError(f"backlog warn_fraction must be in (0, 1], not {self.warn_fraction:g}")
        if self.trim_interval_s <= 0:
            raise ValueError(
                f"backlog trim_interval_s must be above 0, not {self.trim_interval_s:g}"
            )

    def cap(self, mean_entry_bytes: float | None) -> int:
        """Return the cap in entries for streams whose entries average ``mean_entry_bytes``."""
        if not mean_entry_bytes:
            return self.max_entries
        per_entry = mean_entry_bytes + ENTRY_OVERHEAD_BYTES
        return max(1, min(self.max_entries, int(self.max_bytes // per_entry)))


@dataclass(frozen=True, slots=True)
class Backlog:
    """The state of one building stream after a trim pass."""

    building: str
    stream: str
    backlog: int  # entries left (not acknowledged by every group, plus node slack)
    cap: int  # hard cap in entries that applied
    trimmed: int  # acknowledged entries removed by this pass
    lost: int  # unacknowledged entries dropped at the cap by this pass
    lost_total: int  # every entry ever dropped at the cap (``P:lost``)
    groups: int  # consumer groups reading the stream
    high: bool  # the backlog is at or above the warning fraction of the cap


class BacklogTrimmer:
    """Trim the building streams of one collector (see the module docstring).

    ``streams`` maps a stream key to its building. ``lost_key`` is the hash of loss
    counters (``StreamKeys.lost``). ``on_status(backlog)`` is called after every pass for
    every stream (status tags). Feed it the sent entries with ``note_sent`` (the
    publisher's ``on_sent`` hook). Call ``await start()`` / ``await stop()``, or
    ``await trim()`` for one pass.
    """

    def __init__(
        self,
        redis: Any,
        streams: Mapping[str, str],
        lost_key: str,
        policy: BacklogPolicy | None = None,
        *,
        on_status: Callable[[Backlog], None] | None = None,
    ) -> None:
        self.redis = redis
        self.streams = dict(streams)
        self.lost_key = lost_key
        self.policy = policy or BacklogPolicy()
        self.on_status = on_status
        self.passes = 0
        self.last: dict[str, Backlog] = {}
        self._sent_entries: dict[str, int] = {}
        self._sent_bytes: dict[str, int] = {}
        self._since_pass = 0
        self._every = max(1, self.policy.max_entries // 20)
        self._high: dict[str, bool] = {}
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._script: Any = None

    # ------------------------------------------------------------------ feeding
    def note_sent(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Count entries Redis accepted (loop thread); wake the trimmer when many were sent."""
        n = 0
        for stream, payload in items:
            n += 1
            self._sent_entries[stream] = self._sent_entries.get(stream, 0) + 1
            self._sent_bytes[stream] = self._sent_bytes.get(stream, 0) + len(payload)
            if stream not in self.streams:
                self.streams[stream] = stream
        self._since_pass += n
        if self._since_pass >= self._every:
            self._due.set()

    def cap(self, stream: str) -> int:
        """Return the cap in entries that applies to ``stream`` now."""
        sent = self._sent_entries.get(stream, 0)
        mean = self._sent_bytes.get(stream, 0) / sent if sent else None
        return self.policy.cap(mean)

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Start the periodic passes (the first one right away)."""
        self._due.set()
        self._task = asyncio.create_task(self._run(), name="scaleout-trimmer")

    async def stop(self) -> None:
        """Stop the periodic passes."""
        if (exc := await stop_task(self._task)) is not None:
            log.error("stream trimmer had failed", exc_info=exc)
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self.policy.trim_interval_s)
            self._due.clear()
            try:
                await self.trim()
            except LINK_ERRORS as exc:  # the publisher spools meanwhile; try next pass
                raise_if_cancelled()
                log.debug("stream trim skipped: redis unreachable (%s)", exc)

    # ------------------------------------------------------------------ trimming
    async def trim(self) -> dict[str, Backlog]:
        """Run one pass over every stream; return ``building -> Backlog``.

        Raises the redis link errors (``LINK_ERRORS``) when Redis is unreachable.
        """
        if self._script is None:
            self._script = self.redis.register_script(_TRIM_LUA)
        self._since_pass = 0
        result: dict[str, Backlog] = {}
        for stream, building in list(self.streams.items()):
            cap = self.cap(stream)
            length, trimmed, lost, lost_total, groups = await self._script(
                keys=[stream, self.lost_key], args=[building, cap]
            )
            state = Backlog(
                building,
                stream,
                int(length),
                cap,
                int(trimmed),
                int(lost),
                int(lost_total),
                int(groups),
                self._judge(building, stream, int(length), cap, int(lost), int(groups)),
            )
            result[building] = self.last[building] = state
            if self.on_status is not None:
                try:
                    self.on_status(state)
                except Exception:
                    log.exception("backlog status listener failed for %s", building)
        self.passes += 1
        return result

    def _judge(
        self, building: str, stream: str, length: int, cap: int, lost: int, groups: int
    ) -> bool:
        """Log what a pass means for ``stream``; return whether its backlog is high."""
        high = length >= self.policy.warn_fraction * cap
        if high != self._high.get(building, False):
            if high:
                log.warning(
                    "stream %s (building %s): backlog %d entries is %.0f %% of the cap of %d "
                    "(%s); entries are dropped at the cap",
                    stream,
                    building,
                    length,
                    100.0 * length / cap,
                    cap,
                    "no central group reads it yet" if not groups else "a central is behind",
                )
            else:
                log.info(
                    "stream %s (building %s): backlog %d entries, below %.0f %% of the cap again",
                    stream,
                    building,
                    length,
                    100.0 * self.policy.warn_fraction,
                )
        if lost:
            log.error(
                "stream %s (building %s) reached its cap of %d entries: the %d oldest "
                "unacknowledged entries were dropped (central down too long? raise "
                "--backlog-max-entries / --backlog-max-mb)",
                stream,
                building,
                cap,
                lost,
            )
        self._high[building] = high
        return high
