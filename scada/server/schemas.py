"""Request bodies of the REST API as pydantic models: one definition validates and documents.

The handlers validate bodies with these models (422 with the field path on error) and
:mod:`scada.server.openapi` publishes their JSON schemas, so the two cannot drift apart.
Rules between fields that pydantic cannot derive a schema for (a batch names targets or a
pattern; only tenants have links) are written twice, side by side: as a validator and as the
JSON Schema keyword that says the same.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonValue

from scada.services.auth import ASSIGNABLE_ROLES, Role
from scada.services.users import MAX_PASSWORD, MIN_PASSWORD, NAME_RE, check_password

__all__ = [
    "AckBody",
    "BatchBody",
    "BatchTarget",
    "CommandBody",
    "ConfigProposal",
    "JsonInt",
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


def _json_int(value: Any) -> Any:
    """Read JSON's integers as JSON Schema does: ``5.0`` is 5; ``true`` and ``"5"`` are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _password(value: str) -> str:
    check_password(value)  # the store's own rule and message ("password too short: ...")
    return value


#: A password a user may set (``users.check_password``: MIN_PASSWORD .. MAX_PASSWORD characters).
NewPassword = Annotated[
    str,
    AfterValidator(_password),
    Field(json_schema_extra={"minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD}),
]
#: An integer as JSON Schema's ``"type": "integer"`` reads one (the bodies are strict otherwise).
JsonInt = Annotated[int, BeforeValidator(_json_int)]
Scalar = bool | int | float | str
Ref = JsonInt | str

#: A configuration file of a proposal: a relative ``.yaml`` / ``.yml`` path of plain names.
CONFIG_FILE = r"^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.ya?ml$"
_ROLES = [r.value for r in ASSIGNABLE_ROLES]
_ROLE_ENUM: list[JsonValue] = list(_ROLES)
_NAME = NAME_RE.pattern
#: Only tenant users have links (``UserStore`` refuses them on others), as JSON Schema.
_TENANT_OR_NO_LINKS: list[JsonValue] = [
    {"properties": {"role": {"const": Role.TENANT.value}}, "required": ["role"]},
    {"properties": {"links": {"maxItems": 0}}},
]


def _check_role(value: str | None) -> None:
    if value is not None and value not in _ROLES:
        raise ValueError(f"unknown role {value!r}; expected one of {', '.join(_ROLES)}")


def _links_tenant_only(role: str | None, links: list[str] | None) -> None:
    if role is not None and role != Role.TENANT.value and links:
        raise ValueError("only tenant users have links")


class _Body(BaseModel):
    # strict: a JSON value of another type is refused, not converted (false is not alarm 0)
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(_Body):
    """Credentials for ``POST /api/login``."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class PasswordBody(_Body):
    """``POST /api/me/password``: the current password and the new one."""

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: NewPassword


class SetupBody(_Body):
    """First-run admin bootstrap: the one-time setup token and the new admin's credentials."""

    token: str = Field(min_length=1, max_length=200)
    username: str = Field(pattern=_NAME)
    password: NewPassword


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

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["targets"],
                    "properties": {"targets": {"type": "array"}, "pattern": {"type": "null"}},
                },
                {
                    "required": ["pattern", "value"],
                    "properties": {
                        "pattern": {"type": "string"},
                        "value": {"not": {"type": "null"}},
                        "targets": {"type": "null"},
                    },
                },
            ]
        }
    )

    targets: list[BatchTarget] | None = Field(None, min_length=1, max_length=1000)
    pattern: str | None = Field(None, min_length=1, max_length=300)
    value: Scalar | None = None
    reason: str = Field("", max_length=2000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _targets_or_pattern(self) -> Self:
        if (self.targets is None) == (self.pattern is None):
            raise ValueError('give either "targets" or "pattern" (with "value")')
        if self.pattern is not None and self.value is None:
            raise ValueError('"pattern" needs "value"')
        return self


class ConfigProposal(_Body):
    """Changed or new configuration files ``{relative path: YAML text}``."""

    files: dict[str, str] = Field(
        min_length=1, max_length=200, json_schema_extra={"propertyNames": {"pattern": CONFIG_FILE}}
    )
    comment: str = Field("", max_length=2000)

    @field_validator("files")
    @classmethod
    def _file_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            if not re.fullmatch(CONFIG_FILE, name):
                raise ValueError(
                    f"invalid file name {name!r}: a relative .yaml path of letters, digits, "
                    "_ . - (not starting with a dot)"
                )
        return files


class RollbackBody(_Body):
    version: JsonInt = Field(ge=1)


class UserCreateBody(_Body):
    """A new user: name, role, password and (tenants only) the accounts / households linked."""

    model_config = ConfigDict(json_schema_extra={"anyOf": _TENANT_OR_NO_LINKS})

    name: str = Field(pattern=_NAME)
    role: str = Field(json_schema_extra={"enum": _ROLE_ENUM})
    password: NewPassword
    links: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        _check_role(role)
        return role

    @model_validator(mode="after")
    def _links(self) -> Self:
        _links_tenant_only(self.role, self.links)
        return self


class UserUpdateBody(_Body):
    """Changes of a user: role, password, links (tenants only)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [*_TENANT_OR_NO_LINKS, {"properties": {"role": {"type": "null"}}}]
        }
    )

    role: str | None = Field(None, json_schema_extra={"enum": [*_ROLE_ENUM, None]})
    password: NewPassword | None = None
    links: list[str] | None = Field(None, max_length=1000)

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str | None) -> str | None:
        _check_role(role)
        return role

    @model_validator(mode="after")
    def _links(self) -> Self:
        _links_tenant_only(self.role, self.links)
        return self


class TokenBody(_Body):
    label: str = Field("", max_length=200)
    ttl_s: float | None = Field(None, gt=0, le=10 * 365 * 24 * 3600)


def scalar_ok(value: Any) -> bool:
    """Return True for a JSON scalar a command may carry."""
    return isinstance(value, bool | int | float | str)
