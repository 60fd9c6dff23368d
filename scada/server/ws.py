"""The websocket ``/ws``: live tag values, alarm and command events, and operator ops.

Protocol (JSON text messages):

* client -> server: ``{"op": "subscribe", "patterns": ["b1.*"]}``, ``{"op":
  "unsubscribe", "patterns": [...]}``, ``{"op": "ack", "alarms": [id or key, ...],
  "comment": "..."}``, ``{"op": "shelve", "alarm", "duration_s", "reason"}``,
  ``{"op": "unshelve", "alarm"}``, ``{"op": "select", "tag", "value", "reason", "key"}``,
  ``{"op": "operate", "command"}``, ``{"op": "cancel", "command"}``, ``{"op": "ping"}``.
  Any op may carry ``"req"``, echoed in the answer.
* server -> client: ``{"type": "snapshot", "seq", "tags"}`` for the tags a subscribe
  added, then ``{"type": "changes", "seq", "tags"}`` at most every ``min_interval_s``
  (100 ms) with the latest value per tag (``tags`` maps names to ``{"value", "quality",
  "reason", "ts"}`` as ``scada poll --json``); ``{"type": "alarm", ...}`` and
  ``{"type": "command", ...}`` events; ``{"type": "result", "op", "req", ...}`` answers;
  ``{"type": "error", "reason", "op", "req"}`` without closing the connection;
  ``{"type": "pong"}``; ``{"type": "overflow", "dropped": n}`` when events were dropped.

Flow control: one bus subscription for all clients (:class:`Hub`); each change is
encoded once into a JSON fragment, and each client keeps only a dirty bit per tag, so a
slow client costs at most one pending value per subscribed tag, never a queue of batches.
Each client has one sender task that awaits ``write_message`` before sending more.
Events are kept in a bounded deque per client.

Threading: loop-thread only.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import tornado.websocket

from scada.server.auth import Action, Role, User, may
from tags.catalog import KIND_BOOL, KIND_FLOAT, KIND_STR
from tags.model import Quality, Reason, iso

if TYPE_CHECKING:
    from scada.server.context import ServerContext

__all__ = ["Hub", "WsHandler"]

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PATTERNS = 256
MAX_EVENTS = 1000
MAX_REPLIES = 100

_QUALITY_JSON = [json.dumps(q.label) for q in Quality]
_REASON_JSON = [json.dumps(r.label) for r in Reason]


class Hub:
    """Fan-out of tag changes, alarm and command events to every websocket client."""

    def __init__(self, ctx: ServerContext, *, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.ctx = ctx
        self.db = ctx.runtime.db
        self.min_interval_s = min_interval_s
        self.clients: set[WsHandler] = set()
        self._frag: list[str | None] = []
        self._names_json: list[str | None] = []
        self._union = np.zeros(0, dtype=bool)
        self._fresh = np.zeros(0, dtype=bool)  # fragment up to date
        self._unsubscribers: list[Callable[[], None]] = []
        self.changes_seen = 0
        self.messages_sent = 0

    def start(self) -> None:
        """Subscribe to the tag bus, alarm and command events and config reloads."""
        self._unsubscribers.append(self.db.subscribe("*", self._on_batch, name="websocket"))
        self._unsubscribers.append(self.db.add_reload_listener(self._on_reload))
        alarms = self.ctx.alarms
        if alarms is not None:
            self._unsubscribers.append(alarms.subscribe(self._on_alarm))
        self._unsubscribers.append(self.ctx.commands.subscribe(self._on_command))
        self._on_reload(None)

    def stop(self) -> None:
        for unsub in self._unsubscribers:
            unsub()
        self._unsubscribers.clear()
        for c in list(self.clients):
            c.close(1001, "server stopping")

    # ------------------------------------------------------------------ clients
    def add(self, client: WsHandler) -> None:
        self.clients.add(client)

    def remove(self, client: WsHandler) -> None:
        self.clients.discard(client)
        self._recompute_union()

    def _size(self) -> int:
        return len(self.db.catalog)

    def _on_reload(self, _summary: Any) -> None:
        n = self._size()
        if len(self._frag) < n:
            extra = n - len(self._frag)
            self._frag.extend([None] * extra)
            self._names_json.extend([None] * extra)
        names = self.db.catalog.names
        for i in range(n):
            name = names[i]
            self._names_json[i] = None if name is None else json.dumps(name)
            if name is None:
                self._frag[i] = None
        self._fresh = np.zeros(n, dtype=bool)  # a tag's kind may have changed: encode again
        for c in self.clients:
            c.rebuild_mask()
        self._recompute_union()

    def _recompute_union(self) -> None:
        u = np.zeros(self._size(), dtype=bool)
        for c in self.clients:
            u |= c.mask
        self._union = u

    def tenant_mask(self, user: User) -> np.ndarray:
        """Return the tags ``user`` may read (all, or a tenant's linked ones)."""
        n = self._size()
        if user.role is not Role.TENANT:
            return np.ones(n, dtype=bool) if may(user, Action.TAGS_READ) else np.zeros(n, bool)
        m = np.zeros(n, dtype=bool)
        for i, name in enumerate(self.db.catalog.names):
            if name is None:
                continue
            d = self.db.definition(name)
            if may(user, Action.TAGS_READ, (name, d.household or "")):
                m[i] = True
        return m

    # ------------------------------------------------------------------ bus
    def _on_batch(self, batch: Any) -> None:
        self.changes_seen += len(batch)
        if self._union.size < self._size():
            self._fresh[:] = False
            return  # a reload is pending; the listener rebuilds before the next batch
        ids = batch.ids
        inside = self._union[ids]
        if not inside.all():
            self._fresh[ids[~inside]] = False  # encoded again when someone subscribes
        rows = np.flatnonzero(inside)
        if not rows.size or not self.clients:
            return
        sub_ids = ids[rows]
        self._encode(
            sub_ids,
            batch.values[rows],
            batch.valid[rows],
            batch.quality[rows],
            batch.reason[rows],
            batch.ts[rows],
            batch.texts,
        )
        for c in self.clients:
            c.mark(sub_ids, batch.seq)

    def _encode(
        self,
        ids: np.ndarray,
        values: np.ndarray,
        valid: np.ndarray,
        quality: np.ndarray,
        reason: np.ndarray,
        ts: np.ndarray,
        texts: Any,
    ) -> None:
        """Store the JSON fragment ``"name":{"value","quality","reason","ts"}`` of each row.

        The same wire form as ``TagValue.to_json``, built from the arrays in one pass.
        """
        kinds = self.db.catalog.kinds
        frag, names, fresh = self._frag, self._names_json, self._fresh
        iso_cache: dict[float, str] = {}
        for tid, v, ok, q, r, t in zip(
            ids.tolist(),
            values.tolist(),
            valid.tolist(),
            quality.tolist(),
            reason.tolist(),
            ts.tolist(),
            strict=True,
        ):
            name = names[tid]
            if name is None:
                continue
            kind = kinds[tid]
            if not ok:
                text = "null"
            elif kind == KIND_FLOAT:
                text = repr(v) if math.isfinite(v) else "null"
            elif kind == KIND_STR:
                text = json.dumps(texts.get(tid))
            elif kind == KIND_BOOL:
                text = "true" if v else "false"
            else:
                text = str(int(v)) if math.isfinite(v) else "null"
            when = iso_cache.get(t)
            if when is None:
                stamp = iso(t)
                when = iso_cache[t] = "null" if stamp is None else f'"{stamp}"'
            frag[tid] = (
                f'{name}:{{"value":{text},"quality":{_QUALITY_JSON[q]},'
                f'"reason":{_REASON_JSON[r]},"ts":{when}}}'
            )
            fresh[tid] = True

    def fragments(self, ids: np.ndarray) -> str:
        frag = self._frag
        return ",".join(f for i in ids.tolist() if (f := frag[i]) is not None)

    def snapshot(self, ids: np.ndarray) -> str:
        """Return the JSON body (``"name": {...}, ...``) of the current values of ``ids``.

        Reuses the fragments kept fresh for subscribed tags; encodes only the others.
        """
        stale = ids[~self._fresh[ids]]
        if stale.size:
            db = self.db
            q, r, ts, valid = db.state_of(stale)
            kinds = db.catalog.kinds[stale]
            strs = stale[kinds == KIND_STR]
            texts = {int(i): db.read_id(int(i)).value for i in strs.tolist()} if strs.size else {}
            self._encode(stale, db.values_of(stale), valid, q, r, ts, texts)
        return self.fragments(ids)

    def _on_alarm(self, event: Any) -> None:
        text = json.dumps(event.to_json())
        for c in self.clients:
            if may(c.user, Action.ALARMS_READ):
                c.push_event(text)

    def _on_command(self, event: dict[str, Any]) -> None:
        text = json.dumps(event, default=str)
        for c in self.clients:
            if may(c.user, Action.COMMANDS_READ):
                c.push_event(text)


class WsHandler(tornado.websocket.WebSocketHandler):
    """One websocket client (module docstring); route ``/ws``."""

    ctx: ServerContext
    user: User

    def initialize(self, ctx: ServerContext, **_: Any) -> None:
        self.ctx = ctx
        self.hub: Hub = ctx.hub
        self.patterns: list[str] = []
        self.mask = np.zeros(0, dtype=bool)
        self._allowed = np.zeros(0, dtype=bool)
        self._dirty = np.zeros(0, dtype=bool)
        self._has_dirty = False
        self._seq = 0
        self._events: collections.deque[str] = collections.deque(maxlen=MAX_EVENTS)
        self._replies: collections.deque[str] = collections.deque()
        self._dropped = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_changes = 0.0
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

    async def get(self, *args: Any, **kwargs: Any) -> None:
        cookies = {k: v.value for k, v in self.request.cookies.items()}
        user = self.ctx.auth.resolve(cookies, self.request.headers)[0]
        if user is None:
            self.set_status(401)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": "authentication required"}))
            return
        self.user = user
        self.source = self.request.remote_ip or ""
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.rebuild_mask()
        self.hub.add(self)
        self.ctx.metrics_ws_opened()
        self._task = asyncio.create_task(self._sender(), name="ws-sender")

    def on_close(self) -> None:
        self.hub.remove(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # ------------------------------------------------------------------ subscriptions
    def rebuild_mask(self) -> None:
        """Recompute the subscribed-tag mask (after a subscribe or a config reload)."""
        n = self.hub._size()
        self._allowed = self.hub.tenant_mask(self.user)
        mask = self.hub.db.catalog.mask(self.patterns) if self.patterns else np.zeros(n, bool)
        self.mask = mask & self._allowed
        if self._dirty.size < n:
            self._dirty = np.concatenate((self._dirty, np.zeros(n - self._dirty.size, bool)))
        self._dirty &= self.mask

    def mark(self, ids: np.ndarray, seq: int) -> None:
        """Note changed tag ids (bus callback via the hub): coalesced, latest value wins."""
        sel = self.mask[ids]
        if not sel.any():
            return
        self._dirty[ids[sel]] = True
        self._has_dirty = True
        self._seq = max(self._seq, seq)
        self._wake.set()

    @property
    def pending(self) -> int:
        """Tags waiting to be sent to this client (bounded by the subscribed tags)."""
        return int(self._dirty.sum())

    def push_event(self, text: str) -> None:
        if len(self._events) == self._events.maxlen:
            self._dropped += 1
        self._events.append(text)
        self._wake.set()

    def _reply(self, obj: dict[str, Any]) -> None:
        self._replies.append(json.dumps(obj, default=str))
        self._wake.set()

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
    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._replies:
                    await self._send(self._replies.popleft())
                while self._events:
                    await self._send(self._events.popleft())
                if self._dropped:
                    n, self._dropped = self._dropped, 0
                    await self._send(json.dumps({"type": "overflow", "dropped": n}))
                if self._has_dirty:
                    wait = self._last_changes + self.hub.min_interval_s - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if self._replies or self._events:
                        self._wake.set()  # answers first; changes follow at once
                        self._last_changes = loop.time() - self.hub.min_interval_s
                        continue
                    msg = self._take_changes()
                    if msg is not None:
                        self._last_changes = loop.time()
                        await self._send(msg)
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("websocket sender for %s failed", getattr(self, "user", None))
            self.close(1011, "internal error")

    def _take_changes(self) -> str | None:
        self._has_dirty = False
        ids = np.flatnonzero(self._dirty)
        if not ids.size:
            return None
        self._dirty[ids] = False
        body = self.hub.fragments(ids)
        return f'{{"type":"changes","seq":{self._seq},"tags":{{{body}}}}}'

    async def _send(self, text: str) -> None:
        self.messages_sent += 1
        self.hub.messages_sent += 1
        await self.write_message(text)

    # ------------------------------------------------------------------ receiving
    async def on_message(self, message: str | bytes) -> None:
        if len(message) > MAX_MESSAGE_BYTES:
            self._error(f"message too large: {len(message)} bytes (limit {MAX_MESSAGE_BYTES})")
            return
        try:
            msg = json.loads(message)
        except (ValueError, UnicodeDecodeError):
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
        new = [p for p in patterns if p not in self.patterns]
        if len(self.patterns) + len(new) > MAX_PATTERNS:
            raise _OpError(f"too many subscriptions (limit {MAX_PATTERNS} patterns)", 429)
        before = self.mask.copy()
        self.patterns.extend(new)
        self.rebuild_mask()
        self.hub._recompute_union()
        old = np.zeros(self.mask.size, dtype=bool)
        k = min(before.size, old.size)
        old[:k] = before[:k]
        added = np.flatnonzero(self.mask & ~old)
        seq = self.hub.db.seq
        self._seq = max(self._seq, seq)
        body = self.hub.snapshot(added)
        text = f'{{"type":"snapshot","seq":{seq},"tags":{{{body}}}}}'
        if "req" in msg:
            text = text[:-1] + f',"req":{json.dumps(msg["req"])}}}'
        self._replies.append(text)
        self._wake.set()

    async def _op_unsubscribe(self, msg: dict[str, Any]) -> None:
        patterns = _patterns(msg)
        self.patterns = [p for p in self.patterns if p not in patterns]
        self.rebuild_mask()
        self.hub._recompute_union()
        self._answer(msg, patterns=self.patterns)

    async def _op_ack(self, msg: dict[str, Any]) -> None:
        alarms = self.ctx.require_alarms_ws()
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
        try:
            done = alarms.ack(refs, self.user.name, comment)
        except KeyError as exc:
            raise _OpError(str(exc.args[0]), 404) from None
        for a in done:
            self.ctx.audit.record(
                "alarm.ack",
                user=self.user,
                source=self.source,
                target=a.key,
                before={"state": "unacked"},
                after={"state": a.state.value},
                detail=comment,
            )
        self._answer(msg, acked=[a.to_json() for a in done])

    async def _op_shelve(self, msg: dict[str, Any]) -> None:
        alarms = self.ctx.require_alarms_ws()
        ref, duration, reason = msg.get("alarm"), msg.get("duration_s"), msg.get("reason")
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            raise _OpError('"alarm" must be an occurrence id or key', 422)
        try:
            a = alarms.shelve(ref, self.user.name, duration, reason)
        except KeyError as exc:
            raise _OpError(str(exc.args[0]), 404) from None
        except (ValueError, TypeError) as exc:
            raise _OpError(str(exc), 422) from None
        self.ctx.audit.record(
            "alarm.shelve",
            user=self.user,
            source=self.source,
            target=a.key,
            after={"until": a.shelved_until},
            detail=reason,
        )
        self._answer(msg, alarm=a.to_json())

    async def _op_unshelve(self, msg: dict[str, Any]) -> None:
        alarms = self.ctx.require_alarms_ws()
        ref = msg.get("alarm")
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            raise _OpError('"alarm" must be an occurrence id or key', 422)
        try:
            a = alarms.unshelve(ref, self.user.name, msg.get("comment"))
        except KeyError as exc:
            raise _OpError(str(exc.args[0]), 404) from None
        except (ValueError, TypeError) as exc:
            raise _OpError(str(exc), 422) from None
        self.ctx.audit.record("alarm.unshelve", user=self.user, source=self.source, target=a.key)
        self._answer(msg, alarm=a.to_json())

    async def _op_select(self, msg: dict[str, Any]) -> None:
        from scada.server.commands import CommandError

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
        from scada.server.commands import CommandError

        cid = msg.get("command")
        if not isinstance(cid, str):
            raise _OpError('"command" (the id from select) is required', 422)
        try:
            cmd = await self.ctx.commands.operate(self.user, cid, source=self.source)
        except CommandError as exc:
            raise _OpError(exc.message, exc.status) from None
        self._answer(msg, command=cmd.to_json())

    async def _op_cancel(self, msg: dict[str, Any]) -> None:
        from scada.server.commands import CommandError

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


def _patterns(msg: dict[str, Any]) -> list[str]:
    p = msg.get("patterns")
    if isinstance(p, str):
        p = [p]
    if not isinstance(p, list) or not p or not all(isinstance(x, str) and x for x in p):
        raise _OpError('"patterns" must be a non-empty list of tag globs', 422)
    if len(p) > MAX_PATTERNS:
        raise _OpError(f"too many patterns (limit {MAX_PATTERNS})", 429)
    return list(dict.fromkeys(p))


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
