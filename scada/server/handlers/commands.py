"""Commands over REST: select, operate, cancel, list, batches (select-before-operate).

Thin wrappers over :class:`~scada.services.commands.CommandService`; its
:class:`~scada.services.commands.CommandError` becomes the HTTP status it names. The
idempotency key comes from the body (``idempotency_key``) or the ``Idempotency-Key``
header.
"""

from __future__ import annotations

import math
import time
from typing import Any

from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.schemas import BatchBody, CommandBody
from scada.services.commands import CommandError
from tags.model import iso

__all__ = [
    "BatchApi",
    "BatchCancelApi",
    "BatchOneApi",
    "BatchOperateApi",
    "CommandApi",
    "CommandCancelApi",
    "CommandOperateApi",
    "CommandsApi",
]


#: Most commands ``GET /api/commands`` lists (``limit``).
MAX_LISTED = 1000


def _fail(exc: CommandError) -> ApiError:
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if exc.retry_ts is not None:  # min_interval_s: when the same request may pass
        extra["retry_at"] = iso(exc.retry_ts)
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_ts - time.time())))
    if exc.command is not None:
        extra["command"] = exc.command.to_json()
    return ApiError(exc.status, exc.message, headers=headers, **extra)


class _CmdBase(ApiHandler):
    def key(self, body_key: str | None) -> str | None:
        key = body_key or self.request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 200:
            raise ApiError(422, "Idempotency-Key: 1 to 200 characters")
        return key


class CommandsApi(_CmdBase):
    """``GET /api/commands`` (recent) and ``POST /api/commands`` (select)."""

    def get(self) -> None:
        limit = self.arg_int("limit", 100, lo=1, hi=MAX_LISTED)
        state = self.arg("state")
        cmds = self.ctx.commands.list(limit=limit, state=state)
        self.reply({"commands": [c.to_json() for c in cmds]})

    def post(self) -> None:
        body = self.body(CommandBody)
        assert self.user is not None
        key = self.key(body.idempotency_key)
        known = key is not None and self.ctx.commands.by_key(self.user, key) is not None
        try:
            cmd = self.ctx.commands.select(
                self.user, body.tag, body.value, reason=body.reason, source=self.source, key=key
            )
        except CommandError as exc:
            raise _fail(exc) from None
        self.reply(cmd.to_json(), 200 if known else 201)


class CommandApi(_CmdBase):
    """``GET /api/commands/{id}``."""

    def get(self, command_id: str) -> None:
        try:
            self.reply(self.ctx.commands.get(command_id).to_json())
        except CommandError as exc:
            raise _fail(exc) from None


class CommandOperateApi(_CmdBase):
    """``POST /api/commands/{id}/operate``: carry out; answers the final state."""

    async def post(self, command_id: str) -> None:
        assert self.user is not None
        try:
            cmd = await self.ctx.commands.operate(self.user, command_id, source=self.source)
        except CommandError as exc:
            raise _fail(exc) from None
        self.reply(cmd.to_json())


class CommandCancelApi(_CmdBase):
    """``POST /api/commands/{id}/cancel``."""

    def post(self, command_id: str) -> None:
        assert self.user is not None
        try:
            cmd = self.ctx.commands.cancel(self.user, command_id, source=self.source)
        except CommandError as exc:
            raise _fail(exc) from None
        self.reply(cmd.to_json())


class BatchApi(_CmdBase):
    """``POST /api/commands/batch``: select many targets; a result per target."""

    def post(self) -> None:
        body = self.body(BatchBody)  # targets, or a pattern with a value (422 otherwise)
        assert self.user is not None
        if body.pattern is not None:
            assert body.value is not None
            targets = self.ctx.commands.expand(body.pattern, body.value)
            if not targets:
                raise ApiError(404, f"no tag matches {body.pattern!r}")
        else:
            assert body.targets is not None
            targets = [(t.tag, t.value) for t in body.targets]
        try:
            batch = self.ctx.commands.select_batch(
                self.user,
                targets,
                reason=body.reason,
                source=self.source,
                key=self.key(body.idempotency_key),
            )
        except CommandError as exc:
            raise _fail(exc) from None
        self.reply(batch.to_json(), 201)


class BatchOneApi(_CmdBase):
    """``GET /api/commands/batch/{id}``."""

    def get(self, batch_id: str) -> None:
        try:
            self.reply(self.ctx.commands.get_batch(batch_id).to_json())
        except CommandError as exc:
            raise _fail(exc) from None


class BatchOperateApi(_CmdBase):
    """``POST /api/commands/batch/{id}/operate``: operate all selected targets."""

    async def post(self, batch_id: str) -> None:
        assert self.user is not None
        try:
            batch = await self.ctx.commands.operate_batch(self.user, batch_id, source=self.source)
        except CommandError as exc:
            raise _fail(exc) from None
        self.reply(batch.to_json())


class BatchCancelApi(_CmdBase):
    """``POST /api/commands/batch/{id}/cancel``."""

    def post(self, batch_id: str) -> None:
        assert self.user is not None
        try:
            batch = self.ctx.commands.cancel_batch(self.user, batch_id, source=self.source)
        except CommandError as exc:
            raise _fail(exc) from None
        self.reply(batch.to_json())
