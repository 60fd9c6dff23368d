"""What the HMI calls in other packages, behind small adapters (the HMI holds no business rules).

* ``ServerAuth`` adapts the auth service ``scada.services.auth.Auth`` (``user_for(cookies, headers)``)
  and its one permission table (``may``) to :class:`hmi.session.HmiAuth`.
* ``CommandClient`` is the select-before-operate interface the command panels use;
  ``ServiceCommands`` adapts the command service to it.

Action names are the server's (``tags.read``, ``alarms.ack``, ``alarms.shelve``,
``commands.operate``, ``config.read``, ``config.write``, ``billing.read``, ``billing.write``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hmi.session import HmiUser
from scada.services.auth import Auth, may
from scada.services.command_model import CommandError
from scada.services.commands import CommandService

__all__ = [
    "CommandClient",
    "CommandStatus",
    "ServerAuth",
    "ServiceCommands",
    "status_from",
]

log = logging.getLogger(__name__)


class ServerAuth:
    """``HmiAuth`` over the server's ``Auth`` object and its ``may`` function."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    def user_of(self, cookies: dict[str, str], headers: dict[str, Any]) -> HmiUser | None:
        """Return the user of a Bokeh session's request, or None when not logged in."""
        flat = {k: (v[-1] if isinstance(v, list) else v) for k, v in headers.items()}
        user = self._auth.user_for(cookies, flat)
        return None if user is None else self._wrap(user)

    def user_named(self, name: str) -> HmiUser | None:
        """Return the user ``name`` as stored now (role changes apply to new pages), or None."""
        user = self._auth.users.get(name)
        return self._wrap(user) if user is not None else None

    @staticmethod
    def _wrap(user: Any) -> HmiUser:
        role = getattr(user.role, "value", str(user.role))
        links = tuple(getattr(user, "links", ()) or ())
        return HmiUser(name=user.name, role=role, raw=user, households=links, accounts=links)

    def may(self, user: HmiUser, action: str, target: str | None = None) -> bool:
        """Return the server's permission answer for ``user``."""
        return bool(may(user.raw, action, target))


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """State of one command as the HMI shows it (``expires_at`` epoch seconds)."""

    id: str | None
    state: str
    tag: str
    value: Any
    expires_at: float | None = None
    message: str = ""


class CommandClient(Protocol):
    """Select-before-operate, as issue 6's command service offers it."""

    async def select(self, user: HmiUser, tag: str, value: Any) -> CommandStatus:
        """Select a write of ``value`` to ``tag``; the result's state is ``selected`` or a refusal."""
        ...

    async def operate(self, user: HmiUser, command_id: str) -> CommandStatus:
        """Carry out a selected command; return its final state."""
        ...

    async def cancel(self, user: HmiUser, command_id: str) -> CommandStatus:
        """Cancel a selected command."""
        ...


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def status_from(obj: Any, tag: str = "", value: Any = None) -> CommandStatus:
    """Return a ``CommandStatus`` from the service's reply (an object or a JSON-like mapping)."""
    get = obj.get if isinstance(obj, Mapping) else (lambda k, d=None: getattr(obj, k, d))
    state = get("state", "failed")
    state = getattr(state, "value", state)
    message = get("message", None) or get("error", None) or get("reason", None) or ""
    return CommandStatus(
        id=None if get("id") is None else str(get("id")),
        state=str(state),
        tag=str(get("tag", tag) or tag),
        value=get("value", value),
        expires_at=_epoch(get("expires_ts", None) or get("expires_at", None)),
        message=str(message),
    )


class ServiceCommands:
    """``CommandClient`` over the server's ``CommandService`` (``scada.services.commands``).

    A refusal (``CommandError``: role, limits, unknown tag, device offline, expired) comes
    back as a status carrying the failed command's state and message, so the panel shows it.
    Steps are recorded in the audit log with the user's source, ``hmi <client address>``
    (:attr:`HmiUser.source <hmi.session.HmiUser.source>`).
    """

    def __init__(self, service: CommandService) -> None:
        self.service = service

    @staticmethod
    def _refused(exc: Exception, tag: str, value: Any) -> CommandStatus:
        cmd = getattr(exc, "command", None)
        message = str(getattr(exc, "message", None) or exc)
        if cmd is not None:
            st = status_from(cmd, tag, value)
            return CommandStatus(st.id, st.state, st.tag, st.value, st.expires_at, message)
        return CommandStatus(None, "rejected", tag, value, None, message)

    async def select(self, user: HmiUser, tag: str, value: Any) -> CommandStatus:
        try:
            cmd = self.service.select(user.raw, tag, value, source=user.source)
        except Exception as exc:
            if not _is_refusal(exc):
                raise
            return self._refused(exc, tag, value)
        return status_from(cmd, tag, value)

    async def operate(self, user: HmiUser, command_id: str) -> CommandStatus:
        try:
            cmd = await self.service.operate(user.raw, command_id, source=user.source)
        except Exception as exc:
            if not _is_refusal(exc):
                raise
            return self._refused(exc, "", None)
        return status_from(cmd)

    async def cancel(self, user: HmiUser, command_id: str) -> CommandStatus:
        try:
            cmd = self.service.cancel(user.raw, command_id, source=user.source)
        except Exception as exc:
            if not _is_refusal(exc):
                raise
            return self._refused(exc, "", None)
        return status_from(cmd)

    async def select_batch(
        self, user: HmiUser, targets: list[tuple[str, Any]]
    ) -> tuple[str | None, list[CommandStatus]]:
        """Select several writes at once; return the batch id and one status per target."""
        try:
            batch = self.service.select_batch(user.raw, targets, source=user.source)
        except Exception as exc:
            if not _is_refusal(exc):
                raise
            return None, [self._refused(exc, t, v) for t, v in targets]
        return batch.id, _batch_statuses(batch)

    async def operate_batch(self, user: HmiUser, batch_id: str) -> list[CommandStatus]:
        """Operate a selected batch; return one final status per target."""
        batch = await self.service.operate_batch(user.raw, batch_id, source=user.source)
        return _batch_statuses(batch)

    async def cancel_batch(self, user: HmiUser, batch_id: str) -> list[CommandStatus]:
        """Cancel what is still selected of a batch."""
        batch = self.service.cancel_batch(user.raw, batch_id, source=user.source)
        return _batch_statuses(batch)

    def subscribe(self, callback: Any) -> Any:
        """Subscribe to the service's command events (``{"type": "command", ...}``)."""
        return self.service.subscribe(callback)


def _is_refusal(exc: Exception) -> bool:
    """Return True for the service's own refusals (``CommandError``) and value errors."""
    return isinstance(exc, CommandError | ValueError | KeyError | PermissionError)


def _batch_statuses(batch: Any) -> list[CommandStatus]:
    out = []
    for (tag, value), cmd, err in zip(batch.targets, batch.commands, batch.errors, strict=True):
        if cmd is None:
            out.append(CommandStatus(None, "failed", tag, value, None, err or ""))
        else:
            st = status_from(cmd, tag, value)
            out.append(CommandStatus(st.id, st.state, tag, value, st.expires_at, err or st.message))
    return out
