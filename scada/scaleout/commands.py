"""Commands from the central to the collectors, and their results, over Redis Streams.

``RemoteWriter.write(tag, value)`` (central) has the contract of
``DriverManager.write``: it raises the same ``WriteRejected`` subclasses (``UnknownTag``,
``NotWritable``, ``WrongType``, ``OutOfRange``) when the collector refuses the write, and
otherwise returns a ``WriteResult``; a collector that does not answer within
``timeout_s`` gives ``WriteResult(state=failed)`` naming the building.

Wire: the central ``XADD``s ``{"p": JSON}`` to ``commands:<building>`` with ``id``,
``op`` (``write`` or ``resync``), ``tag``, ``value``, ``reply_to`` (its results stream)
and ``deadline`` (epoch seconds). The collector's ``CommandServer`` reads its
buildings' command streams with the consumer group ``collectors``, runs each command,
``XADD``s ``{"p": JSON}`` with ``id`` and ``result`` or ``error`` to ``reply_to`` and
``XACK``s. A command read after its deadline is not executed (a valve command must not
fire minutes late) and is answered ``failed: expired``.

Loop-thread only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.exceptions import ResponseError

from drivers.base import (
    NotWritable,
    OutOfRange,
    UnknownTag,
    WriteRejected,
    WriteResult,
    WriteState,
    WrongType,
)
from scada.scaleout.redis_bus import LINK_ERRORS, raise_if_cancelled, stop_task
from scada.scaleout.wire import StreamKeys

__all__ = ["COLLECTOR_GROUP", "CommandServer", "RemoteWriter"]

log = logging.getLogger(__name__)

COLLECTOR_GROUP = "collectors"
_REJECTIONS: dict[str, type[WriteRejected]] = {
    cls.__name__: cls for cls in (UnknownTag, NotWritable, WrongType, OutOfRange, WriteRejected)
}
_RETRY_S = 0.5
_RESULTS_MAXLEN = 10_000

Writer = Callable[[str, Any], Awaitable[WriteResult]]


def _result_from_json(data: Mapping[str, Any]) -> WriteResult:
    return WriteResult(
        tag=str(data["tag"]),
        device=str(data["device"]),
        state=WriteState(data["state"]),
        value=data.get("value"),
        read_back=data.get("read_back"),
        message=str(data.get("message", "")),
    )


class RemoteWriter:
    """Route ``write(tag, value)`` to the collector of the tag's building and await its result.

    ``redis`` is a ``redis.asyncio.Redis`` used only by this writer (its result reader
    blocks on it). ``tag_building`` maps each device tag to its building.
    Call ``await start()`` before writing and ``await stop()`` at the end.
    """

    def __init__(
        self,
        redis: Any,
        keys: StreamKeys,
        tag_building: Mapping[str, str],
        *,
        central_id: str = "central-1",
        timeout_s: float = 10.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.tag_building = dict(tag_building)
        self.central_id = central_id
        self.timeout_s = timeout_s
        self.results_stream = keys.results(central_id)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start reading this central's results stream (from now on)."""
        self._task = asyncio.create_task(self._read_results(), name="scaleout-results")
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop reading results; writes still waiting fail with their timeout message."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def write(self, tag: str, value: Any) -> WriteResult:
        """Write ``value`` to ``tag`` through its building's collector (see the module docstring)."""
        building = self.tag_building.get(tag)
        if building is None:
            raise UnknownTag(f"tag {tag} is not a point of a device served by a collector", tag)
        reply = await self._call(building, {"op": "write", "tag": tag, "value": value})
        if reply is None:
            return WriteResult(
                tag,
                tag.rpartition(".")[0],
                WriteState.FAILED,
                value,
                message=f"no result from the collector of building {building} within "
                f"{self.timeout_s:g} s",
            )
        error = reply.get("error")
        if error is not None:
            cls = _REJECTIONS.get(str(error.get("type")))
            message = str(error.get("message", ""))
            if cls is not None:
                raise cls(message, tag, error.get("device"))
            return WriteResult(
                tag,
                tag.rpartition(".")[0],
                WriteState.FAILED,
                value,
                message=f"collector error: {message}",
            )
        return _result_from_json(reply["result"])

    async def resync(self, building: str) -> bool:
        """Ask ``building``'s collector to publish a full snapshot; return True if it did."""
        reply = await self._call(building, {"op": "resync"})
        return reply is not None and "error" not in reply

    async def _call(self, building: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if self._task is None:
            raise RuntimeError("RemoteWriter.start() was not awaited")
        cid = uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = fut
        message = {
            **body,
            "id": cid,
            "reply_to": self.results_stream,
            "deadline": time.time() + self.timeout_s,
        }
        try:
            await self.redis.xadd(
                self.keys.commands(building), {"p": json.dumps(message)}, maxlen=_RESULTS_MAXLEN
            )
            return await asyncio.wait_for(fut, self.timeout_s)
        except TimeoutError:
            return None
        except LINK_ERRORS as exc:
            raise_if_cancelled()
            log.warning("command to building %s not sent: %s", building, exc)
            return None
        finally:
            self._waiting.pop(cid, None)

    async def _read_results(self) -> None:
        last = "$"
        while True:
            try:
                if last == "$":
                    info = await self.redis.xinfo_stream(self.results_stream)
                    last = info["last-generated-id"]
            except ResponseError:  # the stream does not exist yet
                last = "0-0"
            except LINK_ERRORS:
                raise_if_cancelled()
                self._ready.set()
                await asyncio.sleep(_RETRY_S)
                continue
            self._ready.set()
            try:
                reply = await self.redis.xread({self.results_stream: last}, count=100, block=1000)
            except LINK_ERRORS:
                raise_if_cancelled()
                await asyncio.sleep(_RETRY_S)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    try:
                        data = json.loads(fields[b"p"])
                    except (KeyError, ValueError):
                        log.error("malformed result %s on %s", entry_id, self.results_stream)
                        continue
                    fut = self._waiting.get(str(data.get("id")))
                    if fut is not None and not fut.done():
                        fut.set_result(data)


class CommandServer:
    """Run the commands addressed to ``buildings`` (collector side).

    ``writer`` is ``DriverManager.write``; ``resync(building)`` publishes a full snapshot
    of that building (the collector's). ``consumer`` names this collector in the group.
    """

    def __init__(
        self,
        redis: Any,
        keys: StreamKeys,
        buildings: list[str],
        writer: Writer,
        resync: Callable[[str], int] | None = None,
        *,
        consumer: str = "collector-1",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.buildings = list(buildings)
        self.writer = writer
        self.resync = resync
        self.consumer = consumer
        self.handled = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start consuming commands (groups are created at the stream's current end)."""
        self._task = asyncio.create_task(self._run(), name="scaleout-commands")
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop consuming (a command being executed is cancelled, not acknowledged)."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _ensure_groups(self) -> None:
        for b in self.buildings:
            try:
                await self.redis.xgroup_create(
                    self.keys.commands(b), COLLECTOR_GROUP, id="$", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _run(self) -> None:
        if not self.buildings:
            self._ready.set()
            return
        streams = {self.keys.commands(b): "0" for b in self.buildings}  # own pending first
        grouped = False
        while True:
            try:
                if not grouped:
                    await self._ensure_groups()
                    grouped = True
                self._ready.set()
                reply = await self.redis.xreadgroup(
                    COLLECTOR_GROUP, self.consumer, streams, count=50, block=1000
                )
            except LINK_ERRORS:
                raise_if_cancelled()
                grouped = False
                self._ready.set()
                await asyncio.sleep(_RETRY_S)
                continue
            got_any = False
            for stream, entries in reply or ():
                name = stream.decode() if isinstance(stream, bytes) else stream
                if not entries and streams[name] == "0":
                    streams[name] = ">"  # pending ones done: now new ones
                for entry_id, fields in entries:
                    if not fields:  # pending entry deleted by trimming
                        continue
                    got_any = True
                    await self._handle(name, entry_id, fields)
            if not got_any:
                for name in streams:
                    streams[name] = ">"

    async def _handle(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            cmd = json.loads(fields[b"p"])
            cid, reply_to = str(cmd["id"]), str(cmd["reply_to"])
        except (KeyError, ValueError, TypeError):
            log.error("malformed command %s on %s: acknowledged and ignored", entry_id, stream)
            await self._ack(stream, entry_id)
            return
        reply: dict[str, Any] = {"id": cid}
        op = cmd.get("op")
        if float(cmd.get("deadline", 0)) < time.time():
            reply["error"] = {"type": "Expired", "message": f"command {cid} expired before it ran"}
        elif op == "write":
            tag = str(cmd.get("tag"))
            try:
                result = await self.writer(tag, cmd.get("value"))
                reply["result"] = result.to_json()
            except WriteRejected as exc:
                reply["error"] = {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "device": exc.device,
                }
            except Exception as exc:  # a driver bug must not stop the command loop
                log.exception("command %s: write %s failed", cid, tag)
                reply["error"] = {"type": type(exc).__name__, "message": str(exc)}
        elif op == "resync" and self.resync is not None:
            building = stream.rpartition(":")[2]
            reply["result"] = {"entries": self.resync(building)}
        else:
            reply["error"] = {"type": "UnknownCommand", "message": f"unknown command op {op!r}"}
        # counted before the reply goes out: whoever gets the reply sees the count include it
        # (a reply lost with Redis is answered again after reconnect, and counted again)
        self.handled += 1
        try:
            await self.redis.xadd(
                reply_to, {"p": json.dumps(reply, default=str)}, maxlen=_RESULTS_MAXLEN
            )
        except LINK_ERRORS:
            raise_if_cancelled()
            log.warning("result of command %s not delivered: redis unreachable", cid)
            return  # not acknowledged: it is re-read (and answered, or expired) after reconnect
        await self._ack(stream, entry_id)

    async def _ack(self, stream: str, entry_id: bytes) -> None:
        try:
            await self.redis.xack(stream, COLLECTOR_GROUP, entry_id)
        except LINK_ERRORS:
            raise_if_cancelled()
