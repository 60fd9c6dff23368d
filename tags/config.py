"""Pydantic models of the ``tags:`` section: memory tags and computed tags.

Every model forbids unknown keys and is frozen (:class:`configbase.model.ConfigModel`).
Cross references (expression names, cycles, duplicates) are checked by the site loader
(``scada.config``), which knows where each value was written. :func:`command_limit` is the
rule for the command limits (``min_interval_s``, ``max_step``) that memory tags and device
points (``drivers.config``) share.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from configbase.model import ConfigModel, Id
from i18n import MultiText
from tags.model import TagType

__all__ = [
    "MAX_STEP_DOC",
    "MIN_INTERVAL_DOC",
    "ComputedTagConfig",
    "MemoryTagConfig",
    "TagConfig",
    "ValueType",
    "command_limit",
]

#: Value types of memory and computed tags (the ``TagType`` values).
ValueType = Literal["bool", "int", "float", "str"]

MIN_INTERVAL_DOC = (
    "shortest time between two operated commands on this tag (s); protects relays and "
    "actuators (scada/services/commands.py)"
)
MAX_STEP_DOC = "largest change from the current value in one command (numeric writable tags)"
_NOT_NUMERIC = frozenset({"bool", "str"})


def command_limit(
    name: str, value: float | None, info: ValidationInfo, *, not_numeric: Collection[str] = ()
) -> float | None:
    """Check a command limit against the fields validated before it (type, writable).

    The limit is only for writable tags and, when ``not_numeric`` is given, not for the
    types it names. A field that failed its own validation is missing from ``info.data``:
    nothing to add then.
    """
    if value is None:
        return value
    if info.data.get("writable") is False:
        raise ValueError(f"{name} is only for writable points")
    typ = info.data.get("type")
    if typ in not_numeric:
        raise ValueError(f"{name} is only for numeric points, not type {typ}")
    return value


class MemoryTagConfig(ConfigModel):
    """A tag set by operators, the API or other services (a note, a mode, a manual value)."""

    name: Id
    type: ValueType = "float"
    unit: str = ""
    description: MultiText = ""
    initial: Any = None
    writable: bool = True
    min: float | None = None
    max: float | None = None
    min_interval_s: float | None = Field(None, gt=0, description=MIN_INTERVAL_DOC)
    max_step: float | None = Field(None, gt=0, description=MAX_STEP_DOC)
    deadband: float = Field(0.0, ge=0)
    historize: bool = True

    @field_validator("min_interval_s")
    @classmethod
    def _min_interval(cls, v: float | None, info: ValidationInfo) -> float | None:
        return command_limit("min_interval_s", v, info)

    @field_validator("max_step")
    @classmethod
    def _max_step(cls, v: float | None, info: ValidationInfo) -> float | None:
        v = command_limit("max_step", v, info, not_numeric=_NOT_NUMERIC)
        if v is not None and "initial" in info.data and info.data["initial"] is None:
            raise ValueError("max_step needs an `initial` value (the first command steps from it)")
        return v

    @model_validator(mode="after")
    def _check_initial(self) -> MemoryTagConfig:
        if self.initial is not None:
            try:
                TagType(self.type).coerce(self.initial)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"initial value does not fit type {self.type}: {exc}") from None
        return self


class ComputedTagConfig(ConfigModel):
    """A tag computed from other tags by ``expr`` (see tags/expr.py for the language)."""

    name: Id
    type: ValueType = "float"
    expr: str = Field(min_length=1)
    unit: str = ""
    description: MultiText = ""
    deadband: float = Field(0.0, ge=0)
    historize: bool = True

    @field_validator("expr")
    @classmethod
    def _strip(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty expression")
        return v


def _tag_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "computed" if "expr" in value else "memory"
    return "computed" if hasattr(value, "expr") else "memory"


#: An item of ``tags:``: computed when it has ``expr``, memory otherwise.
TagConfig = Annotated[
    Annotated[MemoryTagConfig, Tag("memory")] | Annotated[ComputedTagConfig, Tag("computed")],
    Discriminator(_tag_kind),
]
