"""The websocket ``/ws``: live tag values, alarm and command events, and operator ops.

Protocol (JSON text messages):

* client -> server: ``{"op": "subscribe", "patterns": ["b1.*"], "interval_ms": 1000}``
  (``interval_ms`` optional: a longer time between changes messages, for slow links), ``{"op":
  "unsubscribe", "patterns": [...]}``, ``{"op": "ack", "alarms": [id or key, ...],
  "comment": "..."}``, ``{"op": "shelve", "alarm", "duration_s", "reason"}``,
  ``{"op": "unshelve", "alarm"}``, ``{"op": "select", "tag", "value", "reason", "key"}``,
  ``{"op": "operate", "command"}``, ``{"op": "cancel", "command"}``, ``{"op": "ping"}``.
  Any op may carry ``"req"``, echoed in the answer.
* server -> client: ``{"type": "snapshot", "seq", "tags"}`` for the tags a subscribe
  added, then ``{"type": "changes", "seq", "tags"}`` every ``min_interval_s`` (50 ms) at
  most, or the client's ``interval_ms``, with the latest value per tag (``tags`` maps names to ``{"value", "quality",
  "reason", "ts"}`` as ``scada poll --json``); ``{"type": "alarm", ...}`` and
  ``{"type": "command", ...}`` events; ``{"type": "result", "op", "req", ...}`` answers;
  ``{"type": "error", "reason", "op", "req"}`` without closing the connection;
  ``{"type": "pong"}``; ``{"type": "overflow", "dropped": n}`` when events were dropped.

Flow control, the send cadence and the latency design are in :mod:`scada.server.hub`.
Each client is written to without awaiting: the write buffer of a connection never holds
more than one round (answers, events, then changes); answers and events go out at once.

Threading: loop-thread only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import tornado.websocket

from scada.server.hub import MAX_CLIENT_INTERVAL_S, MIN_INTERVAL_S, Hub
from scada.services.alarm_ops import AlarmOpError
from scada.services.auth import Action, User, may

if TYPE_CHECKING:
    from scada.server.context import ServerContext

__all__ = ["MIN_INTERVAL_S", "Hub", "WsHandler"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_PATTERNS = 256
MAX_EVENTS = 1000
#: Tags encoded per loop turn when a snapshot is large (about 10 ms of work each).
SNAPSHOT_CHUNK = 4096
MAX_REPLIES = 100


class WsHandler(tornado.websocket.WebSocketHandler):
    """One websocket client (module docstring); route ``/ws``."""

    ctx: ServerContext
    user: User

    def initialize(self, ctx: ServerContext, **_: Any) -> None:
        self.ctx = ctx
        assert ctx.hub is not None, "the server builds the hub before its routes"
        self.hub: Hub = ctx.hub
        self.patterns: list[str] = []
        self.mask = np.zeros(0, dtype=bool)
        self._allowed = np.zeros(0, dtype=bool)
        self.mask_key = b""
        self.sent_seq = 0  # seq of the last changes (or first snapshot): changes after it pend
        self._events: collections.deque[str] = collections.deque(maxlen=MAX_EVENTS)
        self._replies: collections.deque[str] = collections.deque()
        self._dropped = 0
        self._inflight: asyncio.Future[None] | None = None  # the last write not yet done
        self._pump_scheduled = False
        self._owed: float | None = None  # nominal time of a step skipped while busy
        self.next_changes_at = -math.inf  # earliest nominal time of the next changes
        self.interval_s = 0.0  # asked time between changes messages (0: the hub's step)
        self._is_open = False
        self._building = False  # a snapshot is being encoded: changes wait until it is sent
        self.messages_sent = 0
        self.source = ""

    # ------------------------------------------------------------------ handshake
    def check_origin(self, origin: str) -> bool:
        """Allow same-host origins and the configured ones; non-browser clients send none."""
        parsed = urlparse(origin)
        host = parsed.netloc.lower()
        if host and host == self.request.host.lower():
            return True
        return origin.rstrip("/") in self.ctx.allowed_origins or host in self.ctx.allowed_origins

    def _refuse(self, status: int, message: str) -> None:
        """Answer the handshake ``status`` with a JSON error, as the REST API does."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", "GET")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": self._reason}))

    async def get(self, *args: Any, **kwargs: Any) -> None:
        cookies = {k: v.value for k, v in self.request.cookies.items()}
        user = self.ctx.auth.resolve(cookies, self.request.headers)[0]
        if user is None:
            self._refuse(401, "authentication required")
            return
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            self._refuse(400, 'not a websocket request: send "Upgrade: websocket"')
            return
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            self._refuse(403, f"origin {origin} not allowed")
            return
        self.user = user
        self.source = self.ctx.proxies.client(self.request)
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._is_open = True
        self.set_nodelay(True)  # a message's last segment must not wait for an ACK (Nagle)
        self.rebuild_mask()
        self.hub.add(self)
        self.ctx.metrics_ws_opened()

    def on_close(self) -> None:
        self._is_open = False
        self.hub.remove(self)

    # ------------------------------------------------------------------ subscriptions
    def rebuild_mask(self) -> None:
        """Recompute the subscribed-tag mask (after a subscribe or a config reload)."""
        n = self.hub._size()
        self._allowed = self.hub.tenant_mask(self.user)
        mask = self.hub.db.catalog.mask(self.patterns) if self.patterns else np.zeros(n, bool)
        self.mask = mask & self._allowed
        self.mask_key = self.mask.tobytes()

    @property
    def pending(self) -> int:
        """Tags waiting to be sent to this client (bounded by the subscribed tags)."""
        return int(self.hub.pending_ids(self).size)

    @property
    def busy(self) -> bool:
        """True while the last write to this client has not completed, or a snapshot is built."""
        return self._inflight is not None or self._building

    def owe(self, nominal: float) -> None:
        """Remember a step skipped while a write was in flight (sent when it completes)."""
        self._owed = nominal

    def push_event(self, text: str) -> None:
        if len(self._events) == self._events.maxlen:
            self._dropped += 1
        self._events.append(text)
        self._schedule_pump()

    def _reply(self, obj: dict[str, Any]) -> None:
        self._replies.append(json.dumps(obj, default=str))
        self._schedule_pump()

    def _error(
        self, reason: str, msg: dict[str, Any] | None = None, status: int | None = None
    ) -> None:
        out: dict[str, Any] = {"type": "error", "reason": reason}
        if msg:
            out["op"] = msg.get("op")
            if "req" in msg:
                out["req"] = msg["req"]
        if status is not None:
            out["status"] = status
        self._reply(out)

    # ------------------------------------------------------------------ sending
    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        if not self.busy:
            self._send_round(None)

    def send_changes(self, data: bytes, seq: int, next_at: float) -> None:
        """Write the queued answers and events, then ``data`` (hub step; client not busy).

        ``seq`` is the hub's seq the message is current to; ``next_at`` the earliest
        nominal time of the next changes message.
        """
        self._owed = None
        self.sent_seq = seq
        self.next_changes_at = next_at
        self._send_round(data)

    def _send_round(self, changes: bytes | None) -> None:
        """Write answers, events, an overflow note, then ``changes``, without awaiting.

        Only the last write's future is kept: the next round starts when it is done, so
        the connection's write buffer never holds more than one round.
        """
        if not self._is_open:
            return
        texts: list[str | bytes] = list(self._replies)
        self._replies.clear()
        texts.extend(self._events)
        self._events.clear()
        if self._dropped:
            texts.append(json.dumps({"type": "overflow", "dropped": self._dropped}))
            self._dropped = 0
        if changes is not None:
            texts.append(changes)
        fut: asyncio.Future[None] | None = None
        try:
            for text in texts:
                fut = self.write_message(text)
                fut.add_done_callback(self._on_written)
        except tornado.websocket.WebSocketClosedError:
            return
        self.messages_sent += len(texts)
        self.hub.messages_sent += len(texts)
        self._inflight = fut

    def _on_written(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None or fut is not self._inflight:
            return
        self._inflight = None
        self._resume()

    def _resume(self) -> None:
        """Send what waited while the client was busy: replies, then owed changes."""
        if not self._is_open or self.busy:
            return
        owed, self._owed = self._owed, None
        hub = self.hub
        ids = hub.pending_ids(self) if owed is not None else None
        if owed is not None and ids is not None and ids.size:
            next_at = owed + max(hub.min_interval_s, self.interval_s)
            self.send_changes(hub.changes_message(ids), hub.seq, next_at)
        elif self._replies or self._events or self._dropped:
            self._send_round(None)

    # ------------------------------------------------------------------ receiving
    async def on_message(self, message: str | bytes) -> None:
        if len(message) > MAX_MESSAGE_BYTES:
            self._error(f"message too large: {len(message)} bytes (limit {MAX_MESSAGE_BYTES})")
            return
        try:
            msg = json.loads(message)
        except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: ~1,000 deep
            self._error("invalid JSON")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            self._error('expected an object with an "op"')
            return
        if len(self._replies) >= MAX_REPLIES:
            self._error("too many requests in flight", msg, 429)
            return
        op = msg["op"]
        handler = _OPS.get(op)
        if handler is None:
            self._error(f"unknown op {op!r}; expected one of {', '.join(sorted(_OPS))}", msg)
            return
        action = OP_ACTIONS[op]
        if action is not None and not may(self.user, action):
            self.ctx.audit.record(f"ws.{op}", user=self.user, source=self.source, result="denied")
            self._error(f"user {self.user.name} ({self.user.role.value}) may not {op}", msg, 403)
            return
        try:
            await handler(self, msg)
        except _OpError as exc:
            self._error(exc.message, msg, exc.status)
        except Exception as exc:  # never close the connection for one bad op
            log.exception("websocket op %s failed", op)
            self._error(f"internal error: {type(exc).__name__}", msg, 500)

    def _answer(self, msg: dict[str, Any], **payload: Any) -> None:
        out: dict[str, Any] = {"type": "result", "op": msg["op"]}
        if "req" in msg:
            out["req"] = msg["req"]
        out.update(payload)
        self._reply(out)

    # ---- ops
    async def _op_ping(self, msg: dict[str, Any]) -> None:
        out: dict[str, Any] = {"type": "pong", "ts": time.time()}
        if "req" in msg:
            out["req"] = msg["req"]
        self._reply(out)

    async def _op_subscribe(self, msg: dict[str, Any]) -> None:
        patterns = _patterns(msg)
        interval_s = _interval(msg, self.hub.min_interval_s)
        new = [p for p in patterns if p not in self.patterns]
        if len(self.patterns) + len(new) > MAX_PATTERNS:
            raise _OpError(f"too many subscriptions (limit {MAX_PATTERNS} patterns)", 429)
        before = self.mask.copy()
        quiet = not self.hub.pending_ids(self).size
        if interval_s is not None:
            self.interval_s = interval_s
        self.patterns.extend(new)
        self.rebuild_mask()
        self.hub._recompute_union()
        old = np.zeros(self.mask.size, dtype=bool)
        k = min(before.size, old.size)
        old[:k] = before[:k]
        added = np.flatnonzero(self.mask & ~old)
        seq = self.hub.db.seq
        if quiet:
            # nothing else pending: the snapshot is the state at seq (otherwise the
            # pending changes follow, some of the added tags maybe among them again)
            self.sent_seq = max(self.sent_seq, seq)
        body = await self._snapshot_body(added)
        text = f'{{"type":"snapshot","seq":{seq},"tags":{{{body}}}}}'
        if "req" in msg:
            text = text[:-1] + f',"req":{json.dumps(msg["req"])}}}'
        self._replies.append(text)
        self._resume()

    async def _snapshot_body(self, ids: np.ndarray) -> str:
        """Encode the snapshot of ``ids`` in chunks, letting the loop run between them.

        A whole estate is hundreds of thousands of tags (over a second of encoding): in one go
        it would stall polling, alarms and every other client. Meanwhile the client counts as
        busy, so changes of tags already encoded wait and follow the snapshot, never precede it.
        """
        if ids.size <= SNAPSHOT_CHUNK:
            return self.hub.snapshot(ids)
        self._building = True
        try:
            parts = []
            for start in range(0, ids.size, SNAPSHOT_CHUNK):
                part = self.hub.snapshot(ids[start : start + SNAPSHOT_CHUNK])
                if part:
                    parts.append(part)
                await asyncio.sleep(0)
            return ",".join(parts)
        finally:
            self._building = False

    async def _op_unsubscribe(self, msg: dict[str, Any]) -> None:
        patterns = _patterns(msg)
        self.patterns = [p for p in self.patterns if p not in patterns]
        self.rebuild_mask()
        self.hub._recompute_union()
        self._answer(msg, patterns=self.patterns)

    async def _op_ack(self, msg: dict[str, Any]) -> None:
        refs = msg.get("alarms")
        if (
            not isinstance(refs, list)
            or not refs
            or not all(isinstance(r, str | int) and not isinstance(r, bool) for r in refs)
        ):
            raise _OpError('"alarms" must be a non-empty list of occurrence ids or keys', 422)
        comment = msg.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise _OpError('"comment" must be a string', 422)
        with _alarm_op():
            done = self.ctx.alarm_ops.ack(self.user, refs, comment, source=self.source)
        self._answer(msg, acked=[a.to_json() for a in done])

    async def _op_shelve(self, msg: dict[str, Any]) -> None:
        ref, duration, reason = msg.get("alarm"), msg.get("duration_s"), msg.get("reason")
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            raise _OpError('"alarm" must be an occurrence id or key', 422)
        with _alarm_op():
            a = self.ctx.alarm_ops.shelve(self.user, ref, duration, reason, source=self.source)
        self._answer(msg, alarm=a.to_json())

    async def _op_unshelve(self, msg: dict[str, Any]) -> None:
        ref, comment = msg.get("alarm"), msg.get("comment")
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            raise _OpError('"alarm" must be an occurrence id or key', 422)
        if comment is not None and not isinstance(comment, str):
            raise _OpError('"comment" must be a string', 422)
        with _alarm_op():
            a = self.ctx.alarm_ops.unshelve(self.user, ref, comment, source=self.source)
        self._answer(msg, alarm=a.to_json())

    async def _op_select(self, msg: dict[str, Any]) -> None:
        from scada.services.commands import CommandError

        tag, reason, key = msg.get("tag"), msg.get("reason", ""), msg.get("key")
        if not isinstance(tag, str) or "value" not in msg:
            raise _OpError('"tag" (string) and "value" are required', 422)
        if not isinstance(reason, str) or (key is not None and not isinstance(key, str)):
            raise _OpError('"reason" and "key" must be strings', 422)
        try:
            cmd = self.ctx.commands.select(
                self.user, tag, msg["value"], reason=reason, source=self.source, key=key
            )
        except CommandError as exc:
            raise _OpError(exc.message, exc.status) from None
        self._answer(msg, command=cmd.to_json())

    async def _op_operate(self, msg: dict[str, Any]) -> None:
        from scada.services.commands import CommandError

        cid = msg.get("command")
        if not isinstance(cid, str):
            raise _OpError('"command" (the id from select) is required', 422)
        try:
            cmd = await self.ctx.commands.operate(self.user, cid, source=self.source)
        except CommandError as exc:
            raise _OpError(exc.message, exc.status) from None
        self._answer(msg, command=cmd.to_json())

    async def _op_cancel(self, msg: dict[str, Any]) -> None:
        from scada.services.commands import CommandError

        cid = msg.get("command")
        if not isinstance(cid, str):
            raise _OpError('"command" (the id from select) is required', 422)
        try:
            cmd = self.ctx.commands.cancel(self.user, cid, source=self.source)
        except CommandError as exc:
            raise _OpError(exc.message, exc.status) from None
        self._answer(msg, command=cmd.to_json())


class _OpError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@contextlib.contextmanager
def _alarm_op() -> Iterator[None]:
    """Turn an :class:`AlarmOpError` into the op's error answer (404, 422, 503)."""
    try:
        yield
    except AlarmOpError as exc:
        raise _OpError(exc.message, exc.status) from None


def _patterns(msg: dict[str, Any]) -> list[str]:
    p = msg.get("patterns")
    if isinstance(p, str):
        p = [p]
    if not isinstance(p, list) or not p or not all(isinstance(x, str) and x for x in p):
        raise _OpError('"patterns" must be a non-empty list of tag globs', 422)
    if len(p) > MAX_PATTERNS:
        raise _OpError(f"too many patterns (limit {MAX_PATTERNS})", 429)
    return list(dict.fromkeys(p))


def _interval(msg: dict[str, Any], step_s: float) -> float | None:
    """Return the ``interval_ms`` of a subscribe in seconds (None: not given)."""
    ms = msg.get("interval_ms")
    if ms is None:
        return None
    low, high = step_s * 1000, MAX_CLIENT_INTERVAL_S * 1000
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not low <= ms <= high:
        raise _OpError(f'"interval_ms" must be a number from {low:g} to {high:g}', 422)
    return ms / 1000


_OPS = {
    "ping": WsHandler._op_ping,
    "subscribe": WsHandler._op_subscribe,
    "unsubscribe": WsHandler._op_unsubscribe,
    "ack": WsHandler._op_ack,
    "shelve": WsHandler._op_shelve,
    "unshelve": WsHandler._op_unshelve,
    "select": WsHandler._op_select,
    "operate": WsHandler._op_operate,
    "cancel": WsHandler._op_cancel,
}

#: The permission each websocket op needs (None: any authenticated user).
OP_ACTIONS: dict[str, Action | None] = {
    "ping": None,
    "subscribe": Action.TAGS_READ,
    "unsubscribe": Action.TAGS_READ,
    "ack": Action.ALARMS_ACK,
    "shelve": Action.ALARMS_SHELVE,
    "unshelve": Action.ALARMS_SHELVE,
    "select": Action.COMMANDS_OPERATE,
    "operate": Action.COMMANDS_OPERATE,
    "cancel": Action.COMMANDS_OPERATE,
}
