"""Command value objects: states, the command record, batches and the refusal error.

Pure data (no I/O): :mod:`scada.services.commands` holds the service that changes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from tags.model import iso

__all__ = ["Batch", "Command", "CommandError", "CommandState"]


class CommandState(enum.StrEnum):
    """States of a command (issue 6 item 5)."""

    SELECTED = "selected"
    OPERATED = "operated"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {CommandState.CONFIRMED, CommandState.FAILED, CommandState.EXPIRED, CommandState.CANCELLED}
)


class CommandError(Exception):
    """A command request was refused: ``status`` is the HTTP status to answer.

    ``command`` is the (failed, expired, ...) command concerned, if there is one;
    ``retry_ts`` (epoch seconds) when the same request may be tried again, for a refusal
    that passes with time (``min_interval_s``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        command: Command | None = None,
        *,
        retry_ts: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.command = command
        self.retry_ts = retry_ts

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.retry_ts is not None:
            out["retry_at"] = iso(self.retry_ts)
        if self.command is not None:
            out["command"] = self.command.to_json()
        return out


@dataclass(slots=True)
class Command:
    """One command; mutable only by the service."""

    id: str
    tag: str
    value: Any
    user: str
    reason: str
    state: CommandState
    created_ts: float
    expires_ts: float
    source: str = "internal"
    device: str | None = None
    batch: str | None = None
    key: str | None = None
    operated_ts: float | None = None
    finished_ts: float | None = None
    read_back: Any = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tag": self.tag,
            "value": self.value,
            "user": self.user,
            "reason": self.reason,
            "state": self.state.value,
            "created_at": iso(self.created_ts),
            "expires_at": iso(self.expires_ts),
            "operated_at": iso(self.operated_ts),
            "finished_at": iso(self.finished_ts),
            "device": self.device,
            "batch": self.batch,
            "read_back": self.read_back,
            "message": self.message,
        }


@dataclass(slots=True)
class Batch:
    """Several commands selected together; ``results`` has one entry per target, in order."""

    id: str
    user: str
    created_ts: float
    expires_ts: float
    targets: list[tuple[str, Any]]
    commands: list[Command | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        results = []
        for (tag, value), cmd, err in zip(self.targets, self.commands, self.errors, strict=True):
            r: dict[str, Any] = {"tag": tag, "value": value}
            if cmd is not None:
                r.update(
                    id=cmd.id, state=cmd.state.value, read_back=cmd.read_back, message=cmd.message
                )
            else:
                r.update(id=None, state=CommandState.FAILED.value, message=err or "")
            if err:
                r["error"] = err
            results.append(r)
        return {
            "id": self.id,
            "user": self.user,
            "expires_at": iso(self.expires_ts),
            "results": results,
        }
