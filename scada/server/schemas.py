"""Request bodies of the REST API as pydantic models: one definition validates and documents.

The handlers validate bodies with these models (422 with the field path on error) and
:mod:`scada.server.openapi` publishes their JSON schemas, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AckBody",
    "BatchBody",
    "BatchTarget",
    "CommandBody",
    "ConfigProposal",
    "LoginBody",
    "RollbackBody",
    "ServiceBody",
    "SetupBody",
    "ShelveBody",
    "TokenBody",
    "UnshelveBody",
    "UserCreateBody",
    "UserUpdateBody",
]

Scalar = bool | int | float | str
Ref = int | str


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    """Credentials for ``POST /api/login``."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordBody(_Body):
    """``POST /api/me/password``: the current password and the new one."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class SetupBody(_Body):
    """First-run admin bootstrap: the one-time setup token and the new admin's credentials."""

    token: str = Field(min_length=1, max_length=200)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)


class AckBody(_Body):
    """Acknowledge alarms by occurrence id or key, with an optional comment."""

    alarms: list[Ref] = Field(min_length=1, max_length=1000)
    comment: str | None = Field(None, max_length=2000)


class ShelveBody(_Body):
    """Shelve an alarm point for a while, with a reason."""

    duration_s: float = Field(gt=0, le=30 * 24 * 3600)
    reason: str = Field(min_length=1, max_length=2000)


class UnshelveBody(_Body):
    comment: str | None = Field(None, max_length=2000)


class ServiceBody(_Body):
    """Take an alarm point out of service (``on: true``, reason required) or back."""

    on: bool
    reason: str | None = Field(None, max_length=2000)


class CommandBody(_Body):
    """Select a tag for writing a value (select-before-operate, step 1)."""

    tag: str = Field(min_length=1, max_length=300)
    value: Scalar
    reason: str = Field("", max_length=2000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class BatchTarget(_Body):
    tag: str = Field(min_length=1, max_length=300)
    value: Scalar


class BatchBody(_Body):
    """Select many targets at once: a list, or every tag matching ``pattern`` with ``value``."""

    targets: list[BatchTarget] | None = Field(None, min_length=1, max_length=1000)
    pattern: str | None = Field(None, min_length=1, max_length=300)
    value: Scalar | None = None
    reason: str = Field("", max_length=2000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class ConfigProposal(_Body):
    """Changed or new configuration files ``{relative path: YAML text}``."""

    files: dict[str, str] = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=2000)


class RollbackBody(_Body):
    version: int = Field(ge=1)


class UserCreateBody(_Body):
    name: str = Field(min_length=1, max_length=64)
    role: str
    password: str = Field(min_length=8, max_length=1024)
    links: list[str] = Field(default_factory=list, max_length=1000)


class UserUpdateBody(_Body):
    role: str | None = None
    password: str | None = Field(None, min_length=8, max_length=1024)
    links: list[str] | None = Field(None, max_length=1000)


class TokenBody(_Body):
    label: str = Field("", max_length=200)
    ttl_s: float | None = Field(None, gt=0, le=10 * 365 * 24 * 3600)


def scalar_ok(value: Any) -> bool:
    """Return True for a JSON scalar a command may carry."""
    return isinstance(value, bool | int | float | str)
