"""Secrets in the site configuration: ``${NAME}`` and ``${file:/path}`` references, hidden values.

A secret field (SMTP password, webhook URL and headers, modem PIN, InfluxDB token) is written
as a reference, so the YAML files (which the config API versions and shows) hold no secret:

* ``${NAME}``: the environment variable ``NAME`` (letters, digits, ``_``; not a digit first);
* ``${file:/run/secrets/smtp}``: the contents of a file (docker secrets), one trailing
  newline stripped; a relative path is relative to the working directory;
* ``$${`` stands for a literal ``${``; any other ``$`` is kept as written.

References may sit inside other text (``"Bearer ${HOOK_TOKEN}"``). Expansion happens when
the model is validated (``load_site``, the config API's validation, direct construction),
so an unset variable or an unreadable file is an ordinary located config error
(``file:line:col: notifications.notifiers[0].password: environment variable SMTP_PASSWORD
is not set``). Messages never contain an expanded value.

``Secret`` (a pydantic ``SecretStr``) prints and serialises as ``**********``; code that
needs the value calls ``get_secret_value()``. ``Expanded`` is a plain ``str`` field with the
same expansion, for settings that are not secret but differ per deployment (InfluxDB URL).

This module imports only the standard library and pydantic, so the section models of
``alarms/``, ``historian/`` and ``billing/`` (which ``scada.config`` imports) can use it.
"""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, SecretStr

__all__ = ["Expanded", "Secret", "SecretValue", "expand", "find_secrets", "has_reference"]

#: ``$${`` (escape), ``${...}`` (a reference) or ``${`` without its ``}``.
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE_MAX_BYTES = 64 * 1024


def expand(text: str, env: Mapping[str, str] | None = None) -> str:
    """Return ``text`` with ``${NAME}``, ``${file:/path}`` and ``$${`` expanded.

    ``env`` defaults to ``os.environ``. Raises ``ValueError`` naming the variable or file
    (never the value) when a variable is unset, a file cannot be read, or a reference is
    malformed.
    """
    if "${" not in text:
        return text
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "$${":
            return "${"
        ref = m.group(1)
        if ref is None:
            raise ValueError("'${' without a closing '}' (write '$${' for a literal '${')")
        if ref.startswith("file:"):
            return _read_file(ref[5:])
        if not _NAME.fullmatch(ref):
            raise ValueError(
                f"invalid reference '${{{ref}}}': use ${{NAME}} (an environment variable) "
                "or ${file:/path}"
            )
        if ref not in env:
            raise ValueError(f"environment variable {ref} is not set")
        return env[ref]

    return _TOKEN.sub(sub, text)


def _read_file(path: str) -> str:
    if not path:
        raise ValueError("'${file:}' needs a path, like ${file:/run/secrets/smtp_password}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    if len(data) > _FILE_MAX_BYTES:
        raise ValueError(f"secret file {path} is larger than {_FILE_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"secret file {path} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def has_reference(text: str) -> bool:
    """Return True if ``text`` holds a ``${...}`` reference (an escaped ``$${`` is none)."""
    return any(m.group(0) != "$${" for m in _TOKEN.finditer(text))


class SecretValue(SecretStr):
    """An expanded secret; ``written`` is the text as written in the YAML (safe to show)."""

    def __init__(self, secret_value: str, written: str | None = None) -> None:
        super().__init__(secret_value)
        self.written = secret_value if written is None else written

    @property
    def inline(self) -> bool:
        """True if the secret itself was written in the file (no ``${...}`` reference)."""
        return bool(self.written) and not has_reference(self.written)


def _to_secret(value: Any) -> Any:
    if isinstance(value, str):
        return SecretValue(expand(value), value)
    if isinstance(value, SecretStr) and not isinstance(value, SecretValue):
        return SecretValue(value.get_secret_value(), "")  # built in code: neither inline nor a ref
    return value  # SecretValue passes; anything else fails as "not a string"


def _to_text(value: Any) -> Any:
    return expand(value) if isinstance(value, str) else value


#: A secret config field: references expanded, the value hidden (``**********``) in reprs and JSON.
Secret = Annotated[SecretValue, BeforeValidator(_to_secret)]
#: A plain text field whose ``${NAME}`` / ``${file:...}`` references are expanded (not hidden).
Expanded = Annotated[str, BeforeValidator(_to_text)]

PathT = tuple[str | int, ...]


def find_secrets(obj: Any, path: PathT = ()) -> Iterator[tuple[PathT, SecretValue]]:
    """Yield ``(path, value)`` for every ``SecretValue`` inside a model (lists and dicts too).

    Only fields whose annotation can hold a secret are visited, so a large site (thousands
    of points) costs almost nothing.
    """
    if isinstance(obj, SecretValue):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in _secret_fields(type(obj)):
            yield from find_secrets(getattr(obj, name), (*path, name))
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield from find_secrets(item, (*path, i))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from find_secrets(item, (*path, key))


@functools.cache
def _secret_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    return tuple(
        name
        for name, field in cls.model_fields.items()
        if _may_hold_secret(field.annotation, frozenset())
    )


def _may_hold_secret(tp: Any, seen: frozenset[Any]) -> bool:
    if tp in seen:
        return False
    if isinstance(tp, type):
        if issubclass(tp, SecretStr):
            return True
        if issubclass(tp, BaseModel):
            return any(
                _may_hold_secret(f.annotation, seen | {tp}) for f in tp.model_fields.values()
            )
        return False
    origin = typing.get_origin(tp)
    if origin is None:
        return False  # a plain or untyped field (``Any``) never holds a validated secret
    if origin is typing.Annotated:
        return _may_hold_secret(typing.get_args(tp)[0], seen)
    if origin in (typing.Union, types.UnionType, list, tuple, dict, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, Mapping | list | tuple)
    ):
        return any(_may_hold_secret(a, seen) for a in typing.get_args(tp))
    return False
